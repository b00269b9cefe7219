"""A real Triton Inference Server on loopback: the one the ``nvidia-pytriton`` wheel bundles.

pytriton ships Triton's ``tritonserver`` binary, its libraries and the Python backend (stubs
built for Python 3.8 to 3.13), not the ONNX Runtime or TensorRT backends; models exported with
``actionnet-export triton --backend python`` run ONNX Runtime inside that backend.

The server's Python is not the client's: the stub embeds the system's libpython of its minor
version and is built against numpy 1 (with numpy 2 it passes tensors as zeros), so the models run
in a small environment of their own, as they would in the NGC image's Python. ``server_env()``
finds or builds it: ``ACTIONNET_TRITON_PYTHON`` when set (with a pytriton already installed for the
client's Python or that one), otherwise ``<repo>/.venv-triton``, a venv of the system python3
(``/usr/bin/python3``, Debian packages python3-venv and libpython3-dev) holding ``numpy<2``,
``onnxruntime`` and ``nvidia-pytriton`` (``--no-deps``: its requirements pin numpy<2 for its own
Python API, of which only the server binary is used here). tests/envs.py's ``build_venv`` builds
it once, under a file lock, and it is reused while its stamp (written last, keyed by the base
Python and what it installs) matches.

``TritonServer`` lays out the backend folder as pytriton itself does (the stub for that Python
beside the backend library), puts that Python first on the server's PATH, and starts the server on
127.0.0.1 only, on a free port. Used by the tests and by scripts/bench_triton.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import envs  # beside this file (tests/); scripts/bench_triton.py puts that folder on the path

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-triton"
SYSTEM_PYTHON = "/usr/bin/python3"  # the Python whose libpython the backend stub embeds
# what the server's environment holds: (pip arguments) per install step
REQUIREMENTS = (("numpy<2", "onnxruntime"), ("--no-deps", "nvidia-pytriton>=0.5"))
APT = "python3-venv libpython3-dev"

_FIND_ROOT = ("import importlib.util, sys; s = importlib.util.find_spec('pytriton'); "
              "print(list(s.submodule_search_locations)[0] if s and s.submodule_search_locations else '')")


class ServerEnvError(envs.EnvError):
    """The server's environment is missing and cannot be built here (the message says why)."""


@dataclass(frozen=True)
class ServerEnv:
    """The bundled server's folder, the Python its models run under, and how long building took
    (0 when it was already there)."""
    root: Path
    python: str
    build_seconds: float = 0.0


def pytriton_root(python: Optional[str] = None) -> Optional[Path]:
    """The bundled server's folder in ``python``'s environment (default: this interpreter's), or
    None when nvidia-pytriton is not installed there. pytriton is located, not imported (its
    client half wants gevent and numpy<2)."""
    if python is None:
        import importlib.util

        spec = importlib.util.find_spec("pytriton")
        where = list(spec.submodule_search_locations)[0] if spec and spec.submodule_search_locations else ""
    else:
        r = subprocess.run([python, "-I", "-c", _FIND_ROOT], capture_output=True, text=True, env=_clean_env())
        where = r.stdout.strip() if r.returncode == 0 else ""
    if not where:
        return None
    root = Path(where).resolve() / "tritonserver"
    return root if (root / "bin" / "tritonserver").exists() else None


def server_env(log=sys.stderr) -> ServerEnv:
    """The server and its models' Python, built when missing (see the module's docstring).

    Raises ServerEnvError with the reason (and the apt packages to install, where that is it) when
    the environment cannot be had; callers decide whether that is a skip or a failure."""
    configured = os.environ.get("ACTIONNET_TRITON_PYTHON")
    if configured:
        if not os.path.exists(configured):
            raise ServerEnvError(f"ACTIONNET_TRITON_PYTHON={configured} does not exist")
        root = pytriton_root() or pytriton_root(configured)
        if root is not None:
            return ServerEnv(root, configured)
    python, seconds = build_server_venv(log=log)
    root = pytriton_root(python)
    if root is None:
        raise ServerEnvError(f"{VENV} has no pytriton/tritonserver after installing nvidia-pytriton")
    return ServerEnv(root, configured or python, seconds)


def build_server_venv(base_python: str = SYSTEM_PYTHON, log=sys.stderr):
    """``(python, seconds)``: ``.venv-triton``'s interpreter, built by tests/envs.py's
    ``build_venv`` (file lock, stamp written last and keyed by the base Python and REQUIREMENTS:
    two pytest runs never build it at once, an interrupted build is redone, a complete one reused)
    from ``base_python``, whose shared libpython the backend stub loads."""
    hint = f"install the Debian packages {APT} (apt-get install {APT})"
    if not os.path.exists(base_python):
        raise ServerEnvError(f"no system Python at {base_python} for the Triton server's models; {hint}")
    r = subprocess.run([base_python, "-I", "-c", "import os, sysconfig as s; print(os.path.join("
                        "s.get_config_var('LIBDIR') or '', s.get_config_var('INSTSONAME') or ''))"],
                       capture_output=True, text=True, env=_clean_env())
    libpython = r.stdout.strip()
    if r.returncode != 0 or not os.path.isfile(libpython):
        raise ServerEnvError(f"{base_python} has no shared libpython ({libpython or r.stderr.strip()[-200:]}), "
                             f"which the Triton Python backend's stub loads; {hint}")
    t0 = time.monotonic()
    try:
        python = envs.build_venv(VENV.name, [list(args) for args in REQUIREMENTS], python=base_python)
    except envs.EnvError as e:
        raise ServerEnvError(f"building {VENV}: {e} (needs {APT} and the package index)") from None
    seconds = time.monotonic() - t0
    if seconds >= 1 and log is not None:  # built now (or waited for another run building it)
        print(f"the Triton server's environment {VENV} took {seconds:.0f} s to build", file=log, flush=True)
    return str(python), seconds


def _clean_env() -> dict:
    """This process's environment without what would point another Python at this one's packages."""
    env = os.environ.copy()
    for k in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__"):
        env.pop(k, None)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class TritonServer:
    """``with TritonServer(repo) as srv: srv.url`` -> ``grpc://127.0.0.1:PORT``; stop/start again
    on the same port (a restart, as a crashed server comes back)."""

    def __init__(self, repo, env: Optional[ServerEnv] = None, grpc_port: Optional[int] = None,
                 log_path: Optional[str] = None):
        env = env or server_env()
        self.root = Path(env.root)
        self.python = env.python
        self.python_version = subprocess.run(
            [self.python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, check=True).stdout.strip()
        self.repo = str(repo)
        self.grpc_port = grpc_port or free_port()
        self.url = f"grpc://{HOST}:{self.grpc_port}"
        self._work = tempfile.mkdtemp(prefix="actionnet-triton-")
        self.log_path = log_path or os.path.join(self._work, "server.log")
        self.proc: Optional[subprocess.Popen] = None
        self._backends = self._lay_out_backends()

    def _lay_out_backends(self) -> str:
        backends = Path(self._work) / "backends"
        py = backends / "python"
        py.mkdir(parents=True)
        src = self.root / "backends" / "python"
        for f in src.iterdir():
            if f.is_file():
                os.symlink(f, py / f.name)
        stub = self.root / "python_backend_stubs" / self.python_version / "triton_python_backend_stub"
        if not stub.exists():
            raise RuntimeError(f"pytriton has no Python backend stub for Python {self.python_version}")
        shutil.copy(stub, py / "triton_python_backend_stub")
        return str(backends)

    def _env(self) -> dict:
        env = os.environ.copy()
        libs = self.root.parent.parent / "nvidia_pytriton.libs"
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (env.get("LD_LIBRARY_PATH"), str(libs)) if p)
        # the stub finds its environment through the first python on PATH (pytriton does the same)
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONHOME", None)
        env["PATH"] = os.pathsep.join((os.path.dirname(self.python), env.get("PATH", "")))
        return env

    def start(self, timeout: float = 60.0) -> "TritonServer":
        cmd = [str(self.root / "bin" / "tritonserver"), f"--model-repository={self.repo}",
               f"--backend-directory={self._backends}", f"--grpc-address={HOST}", f"--grpc-port={self.grpc_port}",
               "--allow-http=false", "--allow-metrics=false", "--allow-gpu-metrics=false", "--log-verbose=0",
               "--exit-on-error=true", "--strict-readiness=true"]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self._env(),
                                     start_new_session=True)
        log.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(f"{HOST}:{self.grpc_port}")
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"tritonserver exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    if client.is_server_ready():
                        return
                except Exception:
                    pass
                time.sleep(0.2)
        finally:
            client.close()
        self.stop()
        raise RuntimeError(f"tritonserver not ready after {timeout:g} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def kill(self) -> None:
        """Gone at once, as a crashed server is (SIGKILL to its process group: stubs too)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._work, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


class Relay:
    """A TCP relay on 127.0.0.1 in front of a server's port, to take the server away from a client
    for an exact time: ``down()`` closes the relay's port and cuts its connections (the client sees
    connection refused, as when the server's process is gone); ``down(count=True)`` cuts them too
    but keeps the port open and resets every new connection at once, counting them in ``resets``
    (each is one connection attempt of the client's); ``up()`` relays again, on the same port.
    The server behind it keeps running, so an outage is as long as the test says, not as long as a
    restart happens to take. ``url`` is what a client is given."""

    def __init__(self, target_port: int, port: Optional[int] = None):
        self.target = (HOST, target_port)
        self.port = port or free_port()
        self.url = f"grpc://{HOST}:{self.port}"
        self.connections = 0  # connections accepted and relayed, over the relay's life
        self.resets = 0  # connections reset at once while down(count=True)
        self._lock = threading.Lock()
        self._listener: Optional[socket.socket] = None
        self._relaying = False
        self._open: set = set()

    def up(self) -> "Relay":
        with self._lock:
            self._relaying = True
            if self._listener is not None:
                return self
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, self.port))
        s.listen(64)
        with self._lock:
            self._listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()
        return self

    def down(self, count: bool = False) -> None:
        with self._lock:
            self._relaying = False
            listener = None if count else self._listener
            if not count:
                self._listener = None
            conns, self._open = list(self._open), set()
        for sock in ([listener] if listener else []) + conns:
            _cut(sock)

    def close(self) -> None:
        self.down()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                if self._listener is listener and not self._relaying:
                    self.resets += 1
                    _cut(client)
                    continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _cut(client)
                continue
            with self._lock:
                if self._listener is not listener:  # went down meanwhile
                    _cut(client)
                    _cut(upstream)
                    return
                self._open.update((client, upstream))
                self.connections += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._open.discard(src)
            self._open.discard(dst)
        _cut(src)
        _cut(dst)


def _cut(sock: socket.socket) -> None:
    """Reset and close (shutdown first: close alone does not wake a thread blocked on the socket)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()

"""A real Triton Inference Server on loopback: the one the ``nvidia-pytriton`` wheel bundles.

pytriton ships Triton's ``tritonserver`` binary, its libraries and the Python backend (stubs
built for Python 3.8 to 3.13), not the ONNX Runtime or TensorRT backends; models exported with
``actionnet-export triton --backend python`` run ONNX Runtime inside that backend.

The server's Python is not the client's: the stub embeds the system's libpython of its minor
version and is built against numpy 1 (with numpy 2 it passes tensors as zeros), so the models run
in a small environment of their own, ``ACTIONNET_TRITON_PYTHON`` (.ci/run makes it: the system
python3 with numpy<2 and onnxruntime), as they would in the NGC image's Python. This helper lays
out the backend folder as pytriton itself does (the stub for that Python beside the backend
library), puts that Python first on the server's PATH, and starts the server on 127.0.0.1 only,
on a free port. Used by the tests and by scripts/bench_triton.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

HOST = "127.0.0.1"


def pytriton_root() -> Optional[Path]:
    """The bundled server's folder, or None when nvidia-pytriton is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("pytriton")  # not imported: its client half wants gevent
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0]).resolve() / "tritonserver"
    return root if (root / "bin" / "tritonserver").exists() else None


def server_python() -> Optional[str]:
    """The Python the server's models run under (``ACTIONNET_TRITON_PYTHON``), if set and there."""
    p = os.environ.get("ACTIONNET_TRITON_PYTHON")
    return p if p and os.path.exists(p) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class TritonServer:
    """``with TritonServer(repo) as srv: srv.url`` -> ``grpc://127.0.0.1:PORT``; stop/start again
    on the same port (a restart, as a crashed server comes back)."""

    def __init__(self, repo, python: Optional[str] = None, grpc_port: Optional[int] = None,
                 log_path: Optional[str] = None):
        root = pytriton_root()
        if root is None:
            raise RuntimeError("nvidia-pytriton is not installed (pip install nvidia-pytriton)")
        self.root = root
        self.python = python or server_python()
        if not self.python:
            raise RuntimeError("no Python for the server's models: set ACTIONNET_TRITON_PYTHON (see .ci/run)")
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

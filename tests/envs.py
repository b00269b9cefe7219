"""Python environments the tests build for themselves, once, so that a fresh clone needs nothing
but the README's test line (issue 24: CI runs that line and nothing else).

- ``lean``: ``pip install -e .`` alone, no torch: the runtime must import and run there.
- ``triton``: the system Python with numpy<2, ONNX Runtime and the Triton server that
  nvidia-pytriton bundles (tests/triton_server.py says why it cannot be the test environment).

Each is a venv in the repository (gitignored), built under a file lock and marked complete by a
stamp written last: an interrupted build is redone, two pytest runs never build one folder at
once, and a later run reuses it until what it installs changes. The packages come from the
package index, as the README's install lines do; an environment variable naming a ready
interpreter skips the build (``ACTIONNET_LEAN_PYTHON``, ``ACTIONNET_TRITON_PYTHON``).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]


class EnvError(RuntimeError):
    pass


def build_venv(name: str, installs: Sequence[Sequence[str]], python: str = sys.executable,
               key_files: Sequence[Path] = ()) -> Path:
    """``ROOT/name`` with each of ``installs`` run as ``pip install ARGS``; its interpreter.
    ``key_files`` (e.g. pyproject.toml) are part of the stamp, so editing them rebuilds."""
    folder = ROOT / name
    h = hashlib.sha256(repr((os.path.realpath(python), [list(i) for i in installs])).encode())
    for f in key_files:
        h.update(Path(f).read_bytes())
    key = h.hexdigest()
    stamp = folder / ".actionnet-stamp"
    exe = folder / "bin" / "python"
    with open(ROOT / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == key and exe.exists():
            return exe
        shutil.rmtree(folder, ignore_errors=True)
        _run([python, "-m", "venv", str(folder)], f"{python} -m venv")
        for args in installs:
            _run([str(exe), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args],
                 f"pip install {' '.join(args)} into {name}")
        stamp.write_text(key)
    return exe


def _run(cmd, what: str) -> None:
    # the new environment's own interpreter, not the one the tests run under
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        raise EnvError(f"{what} failed: {' | '.join(tail)}")


def lean_python() -> str:
    """The interpreter of a runtime-only install (``pip install -e .``, no torch)."""
    ready = os.environ.get("ACTIONNET_LEAN_PYTHON")
    if ready:
        return ready
    return str(build_venv(".venv-lean", [["-e", str(ROOT)]], key_files=[ROOT / "pyproject.toml"]))


def require(build, what: str):
    """``build()``, or the test fails on CI and is skipped with the reason elsewhere (a developer
    offline can still run the rest)."""
    import pytest

    try:
        return build()
    except EnvError as e:
        if os.environ.get("CI"):
            pytest.fail(f"{what}: {e}")
        pytest.skip(f"{what}: {e}")

"""Shared fixtures: the trained synthetic test model, synthetic videos, the shared real data."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ACTIONNET_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session", autouse=True)
def _private_actionnet_home(tmp_path_factory):
    """Engine caches (OpenVINO compile cache, TensorRT engines) go to a temporary
    ``ACTIONNET_HOME``, never the developer's ~/.cache; subprocesses inherit it."""
    if os.environ.get("ACTIONNET_HOME"):
        yield
        return
    os.environ["ACTIONNET_HOME"] = str(tmp_path_factory.mktemp("actionnet-home"))
    try:
        yield
    finally:
        os.environ.pop("ACTIONNET_HOME", None)


def shared_file(rel: str) -> Path:
    """A file from ../shared/data; skipped on a user's fresh clone, a failure on CI."""
    p = SHARED / rel
    if not p.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{p} is missing on CI")
        pytest.skip(f"{p} not present (shared test data)")
    return p


@pytest.fixture(scope="session")
def lean_python() -> str:
    """The interpreter of a runtime-only install (``pip install -e .``, no torch), built once."""
    import envs

    return envs.require(envs.lean_python, "the runtime-only environment")


def wait_for(cond, timeout, what, proc=None, log=None):
    """Poll ``cond`` until it holds; fail naming ``what`` with the tail of ``log`` (a file the
    process under test writes to) once ``timeout`` passes or ``proc`` exits first."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.05)
    text = Path(log).read_text()[-3000:] if log and Path(log).exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{text}")


def run_cli(*args, module="actionnet.cli", timeout=600):
    """Run a console entry point in a subprocess; returns CompletedProcess (text)."""
    import subprocess

    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="session")
def synthetic_model(tmp_path_factory) -> Path:
    """The small 3D CNN trained on synthetic motion clips, exported by the export stage."""
    pytest.importorskip("torch")
    from actionnet.export.synthetic import build_test_model

    cached = _model_cache_path()
    if cached is not None and cached.exists():
        return cached
    out = tmp_path_factory.mktemp("models") / "synthetic.onnx"
    acc = build_test_model(str(out), log=sys.stderr)
    assert acc >= 0.95, f"synthetic test model trained to only {acc:.3f} validation accuracy"
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(out.read_bytes())
        os.replace(tmp, cached)
    return out


def _model_cache_path():
    """Where a developer's runs keep the trained model (``ACTIONNET_TEST_CACHE``), keyed by the
    code that makes it, so editing that code retrains. Unset (CI, a fresh clone): train each run."""
    folder = os.environ.get("ACTIONNET_TEST_CACHE")
    if not folder:
        return None
    import hashlib

    h = hashlib.sha256()
    for rel in ("export/synthetic.py", "export/onnx_export.py", "runtime/spec.py"):
        h.update((ROOT / rel).read_bytes())
    return Path(folder) / f"synthetic-{h.hexdigest()[:16]}.onnx"


@pytest.fixture(scope="session")
def synthetic_video(tmp_path_factory):
    """``make(label, frames=30, speed=0.8, ext='.mp4')`` writes a synthetic test video."""
    from actionnet.export.synthetic import video_frames, write_video

    folder = tmp_path_factory.mktemp("videos")

    def make(label: str, frames: int = 30, speed: float = 0.8, ext: str = ".mp4", **kw) -> Path:
        name = f"{label.replace(' ', '_')}-{frames}-{speed}{ext}"
        path = folder / name
        if not path.exists():
            write_video(str(path), video_frames(label, frames, speed, **kw))
        return path

    return make


@pytest.fixture(scope="session")
def int8_model(synthetic_model, tmp_path_factory) -> Path:
    """The synthetic model quantised to INT8 QDQ by ``actionnet-export quantize``, calibrated on
    image-folder clips of every class."""
    pytest.importorskip("onnx")
    from actionnet.export.quantize import quantize

    folder = tmp_path_factory.mktemp("calib")
    write_clip_folders(folder, per_label=3, seed=5)
    out = folder / "int8.onnx"
    quantize(str(synthetic_model), str(folder / "clips"), str(out), skip_frames=0, log=open(os.devnull, "w"))
    return out


def write_clip_folders(root: Path, per_label: int = 3, seed: int = 0) -> Path:
    """``root/clips/NN/000.png...``: one image folder per clip of T frames, every label."""
    import cv2
    import numpy as np

    from actionnet.export.synthetic import LABELS, random_clip

    rng = np.random.default_rng(seed)
    clips = root / "clips"
    for i in range(per_label * len(LABELS)):
        d = clips / f"{i:03d}"
        d.mkdir(parents=True, exist_ok=True)
        for j, f in enumerate(random_clip(LABELS[i % len(LABELS)], rng)):
            cv2.imwrite(str(d / f"{j:03d}.png"), f[..., ::-1])
    return clips


# The README's and the manual's commands that tests/test_docs.py ran (issue 29), listed at the end
# of the test output: (where, command) pairs; and how many blocks are marked not-run.
MARKDOWN_COMMANDS_RUN: list = []
MARKDOWN_NOT_RUN: list = []


def pytest_terminal_summary(terminalreporter):
    if MARKDOWN_COMMANDS_RUN:
        terminalreporter.section(f"Markdown commands run ({len(MARKDOWN_COMMANDS_RUN)}, tests/test_docs.py)")
        for where, command in MARKDOWN_COMMANDS_RUN:
            terminalreporter.write_line(f"{where}: {command}")
        terminalreporter.write_line(f"not run: {len(MARKDOWN_NOT_RUN)} blocks marked <!-- not-run: REASON --> "
                                    "(hardware, network, installs)")

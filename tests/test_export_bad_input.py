"""Bad input to the engine-era export commands (fp16), and an environment without the export
extra (the runtime install) or without ultralytics: one line on stderr, a non-zero exit, no
traceback, and nothing half-written."""

from __future__ import annotations

import functools
import re
import subprocess
import sys

import pytest

pytest.importorskip("onnx")

from conftest import run_cli  # noqa: E402


def _one_error(r, message):
    assert r.returncode != 0, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and message in errors[0], r.stderr


def _export(*args):
    return run_cli(*args, module="actionnet.export.cli")


def test_fp16_of_a_text_file_is_one_line(tmp_path):
    model = tmp_path / "text.onnx"
    model.write_text("hello\n")
    r = _export("fp16", model, "--output", tmp_path / "out.onnx")
    _one_error(r, "text.onnx is not an ONNX model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text.onnx"]


def test_fp16_into_a_missing_folder_is_one_line(synthetic_model, tmp_path):
    r = _export("fp16", synthetic_model, "--output", tmp_path / "no" / "out.onnx")
    _one_error(r, "does not exist")
    assert list(tmp_path.iterdir()) == []



@pytest.mark.parametrize("command", ["fp16", "quantize", "engine"])
def test_output_never_overwrites_the_model(synthetic_model, tmp_path, command):
    import shutil

    model = tmp_path / "m.onnx"
    shutil.copy(synthetic_model, model)
    before = model.read_bytes()
    extra = ["--calib", str(tmp_path)] if command == "quantize" else []
    r = _export(command, model, *extra, "--output", tmp_path / "." / "m.onnx")
    _one_error(r, "--output would overwrite the model")
    assert model.read_bytes() == before


# -- the export CLI where a library is missing -----------------------------------------------

# An uninstalled package as Python reports it: ModuleNotFoundError naming the module.
ABSENT = """
import importlib.abc, sys
class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {absent!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, _Absent())
from actionnet.export.cli import main
sys.exit(main(sys.argv[1:]))
"""
NO_TORCH = ("torch", "torchvision", "ultralytics")


def _export_without(absent, *args, python=None):
    """actionnet-export in a fresh interpreter: ``python`` as it is (a runtime-only install), or
    this one with the ``absent`` modules made unimportable."""
    code = ["-m", "actionnet.export.cli"] if python else ["-c", ABSENT.format(absent=tuple(absent))]
    return subprocess.run([python or sys.executable, *code, *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def annotated_model(tmp_path):
    """A foreign ONNX and its annotated copy (made here, where onnx is installed)."""
    from actionnet.export.custom import annotate
    from onnx_models import colour_model

    labels = tmp_path / "labels.txt"
    labels.write_text("red\nblue\n")
    foreign = colour_model(tmp_path / "foreign.onnx")
    annotate(str(foreign), str(labels), str(tmp_path / "annotated.onnx"))
    return foreign, labels, tmp_path / "annotated.onnx"


def test_export_cli_without_torch_helps_names_the_extra_and_runs_what_needs_no_torch(tmp_path, annotated_model,
                                                                                    lean_python):
    """The runtime install has no torch: --help and every command's --help still work; a command
    that needs PyTorch says so, and how to get it, in one line; triton and the annotation of a
    foreign ONNX, which need no torch, run."""
    foreign, labels, annotated = annotated_model
    # this interpreter with torch blocked, then a real runtime-only install (no torch, no onnx)
    for python in (None, lean_python):
        run = functools.partial(_export_without, NO_TORCH, python=python)
        r = run("--help")
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        for command in ("action", "image", "onnx", "stream", "triton", "xclip", "yolo", "quantize"):
            assert re.search(rf"^ +{command} ", r.stdout, re.M), (command, r.stdout)
        r = run("image", "--help")
        assert r.returncode == 0 and "--preset" in r.stdout, r.stderr
        need = "needs PyTorch: pip install 'actionnet[export]'"
        _one_error(run("image", "--arch", "resnet50", "--output", tmp_path / "i.onnx"), f"`image` {need}")
        _one_error(run("action", "--arch", "r3d_18", "--random", "--output", tmp_path / "a.onnx"), f"`action` {need}")
        _one_error(run("stream", "--arch", "movinet-a0", "--weights", tmp_path / "w.pth", "--output",
                       tmp_path / "s.onnx"), f"`stream` {need}")
        for args in (["onnx", foreign, "--labels", labels, "--output", tmp_path / "o.onnx"],
                     ["triton", annotated, "--repo", tmp_path / "repo", "--force"]):
            r = run(*args)
            if python and "needs onnx" in r.stderr:  # a runtime install without the onnx package
                _one_error(r, f"`{args[0]}` needs onnx: pip install 'actionnet[export]'")
                continue
            assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        if not python:
            assert (tmp_path / "o.onnx").is_file() and (tmp_path / "repo" / "annotated" / "config.pbtxt").is_file()
        assert not [p for p in ("i.onnx", "a.onnx", "s.onnx") if (tmp_path / p).exists()]


def test_yolo_without_ultralytics_names_the_install_that_works(tmp_path):
    """ultralytics is not in the export extra (its requirements pull opencv-python over the
    runtime's opencv-python-headless): the message names the --no-deps install, not the extra
    the user already has."""
    r = _export_without(("ultralytics",), "yolo", "yolov8n.yaml", "--output", tmp_path / "y.onnx")
    _one_error(r, "`yolo` needs ultralytics: pip install --no-deps ultralytics")
    assert "actionnet[export]" not in r.stderr and not (tmp_path / "y.onnx").exists()

"""Bad input to the engine-era export commands (fp16): one line on stderr,
a non-zero exit, no traceback, and nothing half-written."""

from __future__ import annotations

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


"""Backends behind one interface: OpenVINO and ONNX Runtime give the same scores on the same
clips, the choice ``auto`` makes and says, the flags, and reading metadata without ``onnx``."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from actionnet import engines
from actionnet.engines import choose_engine, open_engine
from actionnet.engines.onnxmeta import parse_metadata, read_metadata
from actionnet.errors import ModelError, UsageError
from conftest import run_cli

pytest.importorskip("openvino")


def _clips(n, batch=1, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (batch, 8, 32, 32, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("batch", [1, 3])
def test_openvino_matches_onnxruntime(synthetic_model, batch):
    with open_engine(str(synthetic_model), "openvino", threads=1) as ov, \
            open_engine(str(synthetic_model), "onnxruntime") as ort:
        assert ov.name == "openvino" and ov.input.name == ort.input.name and ov.input.dtype == np.uint8
        assert [o.name for o in ov.outputs] == [o.name for o in ort.outputs]
        assert ov.metadata == ort.metadata  # read from the file without the onnx package
        for x in _clips(3, batch):
            a, b = ov.infer(x), ort.infer(x)
            assert a.shape == (batch, 8)
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)  # f32 hint: no bf16 drift


def test_openvino_compile_cache_goes_under_actionnet_home(synthetic_model, tmp_path, monkeypatch):
    monkeypatch.setenv("ACTIONNET_HOME", str(tmp_path))
    with open_engine(str(synthetic_model), "openvino"):
        pass
    cached = os.listdir(tmp_path / "openvino")
    assert any(n.endswith(".blob") for n in cached), cached


def test_openvino_precision_and_input_checks(synthetic_model):
    from actionnet.engines.openvino import OpenVinoEngine

    with pytest.raises(UsageError, match="precision"):
        OpenVinoEngine(str(synthetic_model), precision="int4")
    with OpenVinoEngine(str(synthetic_model)) as ov:
        assert ov.precision == "fp32"
        with pytest.raises(ModelError, match="wants dtype uint8"):
            ov.infer(np.zeros((1, 8, 32, 32, 3), np.float32))
        with pytest.raises(ModelError, match="wants shape"):
            ov.infer(np.zeros((1, 8, 16, 32, 3), np.uint8))


@pytest.mark.parametrize("engine, precision, error", [
    ("cuda", None, "unknown engine 'cuda'"),
    ("openvino", "fp64", "unknown precision 'fp64'"),
])
def test_open_engine_rejects_unknown_names(synthetic_model, engine, precision, error):
    with pytest.raises(UsageError, match=error):
        open_engine(str(synthetic_model), engine, precision=precision)


def test_engine_file_on_cpu_backend_is_refused(tmp_path):
    e = tmp_path / "m.engine"
    e.write_bytes(b"x")
    with pytest.raises(UsageError, match="--engine tensorrt"):
        open_engine(str(e), "openvino")


@pytest.mark.parametrize("trt, providers, ov, want", [
    (True, ["CPUExecutionProvider"], True, "tensorrt"),
    (False, ["CUDAExecutionProvider", "CPUExecutionProvider"], True, "onnxruntime"),
    (False, ["CPUExecutionProvider"], True, "openvino"),
    (False, ["CPUExecutionProvider"], False, "onnxruntime"),
])
def test_auto_choice(monkeypatch, trt, providers, ov, want):
    from actionnet.engines import onnxruntime, openvino

    monkeypatch.setattr(engines, "_tensorrt_present", lambda: trt)
    monkeypatch.setattr(onnxruntime, "available_providers", lambda: providers)
    monkeypatch.setattr(openvino, "available", lambda: ov)
    assert choose_engine("m.onnx")[0] == want
    assert choose_engine("m.engine")[0] == "tensorrt"


def test_cli_engines_agree_and_auto_says_which(synthetic_model, synthetic_video, tmp_path):
    video = synthetic_video("blue left slow")
    labels = {}
    for engine in ("onnxruntime", "openvino", "auto"):
        events = tmp_path / f"{engine}.jsonl"
        r = run_cli("--model", synthetic_model, "--engine", engine, "--skip-frames=0", "--headless", "--events",
                    events, video)
        assert r.returncode == 0, r.stderr
        lines = map(json.loads, events.read_text().splitlines())
        labels[engine] = [e["label"] for e in lines if e["event"] == "classification"]
        if engine == "auto":
            assert "engine auto -> openvino (no GPU" in r.stderr
    assert labels["onnxruntime"] == labels["openvino"] == labels["auto"]
    assert set(labels["openvino"]) == {"blue left slow"} and len(labels["openvino"]) == 30 - 8 + 1


def test_cli_rejects_unknown_engine(synthetic_model, synthetic_video):
    r = run_cli("--model", synthetic_model, "--engine", "cuda", synthetic_video("red left slow"))
    assert r.returncode == 2 and "invalid choice: 'cuda'" in r.stderr and "Traceback" not in r.stderr


def test_metadata_without_onnx_package(synthetic_model):
    onnx = pytest.importorskip("onnx")
    want = {p.key: p.value for p in onnx.load(str(synthetic_model)).metadata_props}
    assert read_metadata(str(synthetic_model)) == want and "actionnet.labels" in want
    m = onnx.helper.make_model(onnx.helper.make_graph([], "g", [], []))
    assert parse_metadata(m.SerializeToString()) == {}


@pytest.mark.parametrize("data", [b"\x0a\xff\xff\xff\xff\x0f", b"\x72\x05ab", b"\x0f"])
def test_metadata_of_a_broken_file_is_a_model_error(tmp_path, data):
    p = tmp_path / "bad.onnx"
    p.write_bytes(data)
    with pytest.raises(ModelError, match="not a readable ONNX"):
        read_metadata(str(p))


def test_precision_on_onnxruntime_cpu_says_it_does_nothing(synthetic_model):
    import io

    log = io.StringIO()
    with open_engine(str(synthetic_model), "onnxruntime", precision="fp16", log=log) as e:
        assert e.providers == ["CPUExecutionProvider"]
    assert "--precision fp16 has no effect on ONNX Runtime" in log.getvalue()


@pytest.mark.parametrize("precision, flags", [
    (None, {}), ("fp32", {}), ("fp16", {"trt_fp16_enable": True}),
    ("int8", {"trt_fp16_enable": True, "trt_int8_enable": True}),
])
def test_onnxruntime_tensorrt_provider_options(precision, flags, tmp_path, monkeypatch):
    from actionnet.engines.onnxruntime import provider_options

    monkeypatch.setenv("ACTIONNET_HOME", str(tmp_path))
    got = provider_options(["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"], precision)
    folder = str(tmp_path / "ort-tensorrt")
    assert got == [("TensorrtExecutionProvider", {"trt_engine_cache_enable": True, "trt_engine_cache_path": folder,
                                                  "trt_timing_cache_enable": True, "trt_timing_cache_path": folder,
                                                  **flags}),
                   "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_missing_gpu_provider_names_the_present_ones(synthetic_model):
    from actionnet.engines.onnxruntime import OnnxRuntimeEngine
    from actionnet.errors import MissingLibraryError

    with pytest.raises(MissingLibraryError, match="CUDAExecutionProvider; available providers are: .*CPUExecution"):
        OnnxRuntimeEngine(str(synthetic_model), providers=["CUDAExecutionProvider"])


def test_missing_openvino_is_a_clear_error(synthetic_model, monkeypatch):
    from actionnet.engines import openvino
    from actionnet.errors import MissingLibraryError

    monkeypatch.setitem(__import__("sys").modules, "openvino", None)
    assert not openvino.available()
    assert choose_engine(str(synthetic_model))[0] == "onnxruntime"
    with pytest.raises(MissingLibraryError, match=r"pip install 'actionnet\[openvino\]'"):
        open_engine(str(synthetic_model), "openvino")


# -- review: OpenVINO's errors say why, in one line, and bad thread counts are refused ----------

def test_openvino_error_names_the_reason_not_the_source_line(synthetic_model):
    from actionnet.engines.openvino import OpenVinoEngine

    with pytest.raises(ModelError) as e:
        OpenVinoEngine(str(synthetic_model), threads=-1)
    msg = str(e.value)
    assert "INFERENCE_NUM_THREADS" in msg and "\n" not in msg and ".cpp:" not in msg, msg


def test_cli_text_file_as_model_on_openvino_is_one_clean_line(synthetic_video, tmp_path):
    model = tmp_path / "text.onnx"
    model.write_text("hello\n")
    r = run_cli("--model", model, "--engine", "openvino", synthetic_video("red right slow"), tmp_path / "out.mp4")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    # nothing but our own lines (OpenVINO's other frontends used to log parse errors here)
    assert all(line.startswith("actionnet") for line in r.stderr.splitlines()), r.stderr
    errors = [line for line in r.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "cannot load model" in errors[0] and "not a readable ONNX file" in errors[0], r.stderr
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize("engine", ["openvino", "onnxruntime"])
def test_negative_threads_are_a_usage_error(synthetic_model, synthetic_video, tmp_path, engine):
    with pytest.raises(UsageError, match="--threads must be >= 0"):
        open_engine(str(synthetic_model), engine, threads=-1)
    r = run_cli("--model", synthetic_model, "--engine", engine, "--threads=-2", "--headless",
                synthetic_video("red right slow"), tmp_path / "out.mp4")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == "actionnet: error: --threads must be >= 0 (0: all cores), got -2"

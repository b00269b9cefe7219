"""INT8 by explicit quantisation: the calibration reader feeds clips as the runtime does, the
QDQ file describes itself and runs on ONNX Runtime and OpenVINO, the agreement gate refuses,
verify reports, and the FP16 ONNX keeps its inputs and outputs."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("onnx")

from actionnet.errors import InputError, ModelError  # noqa: E402
from actionnet.export.agreement import compare  # noqa: E402
from actionnet.export.calibration import ClipReader, clips_from, sources_in, spec_of, split  # noqa: E402
from conftest import run_cli, write_clip_folders  # noqa: E402


def test_calibration_clips_are_prepared_like_the_runtime(synthetic_model, synthetic_video, tmp_path):
    """A video in the folder gives the same model input as the runtime's own window."""
    from actionnet.net import ActionNet

    folder = tmp_path / "calib"
    folder.mkdir()
    video = synthetic_video("red right slow")
    (folder / "a.mp4").write_bytes(video.read_bytes())
    spec = spec_of(str(synthetic_model))
    clips = clips_from(str(folder), spec, skip_frames=0)
    assert len(clips) == 30 // 8 and clips[0].shape == (1, 8, 32, 32, 3) and clips[0].dtype == np.uint8
    net = ActionNet(model=str(synthetic_model), skip_frames=0, engine="onnxruntime")
    from actionnet.sources import open_source

    with open_source(str(video)) as src:
        windows = []
        for frame, t in src:
            if net.update(frame, t) is not None:
                windows.append(net.buffer.window().copy())
    np.testing.assert_array_equal(clips[0][0], windows[0])  # frames 0..7
    np.testing.assert_array_equal(clips[1][0], windows[8])  # frames 8..15: non-overlapping
    # skip_frames=1 keeps every other frame: 15 stored frames, one clip
    assert len(clips_from(str(folder), spec, skip_frames=1)) == 1
    # no stride given: the model's recorded training stride, as the runtime takes it
    np.testing.assert_array_equal(clips_from(str(folder), spec.replace(skip_frames=0))[1], clips[1])
    assert len(clips_from(str(folder), spec.replace(skip_frames=2))) == 1  # 10 stored frames


def test_sources_and_split(tmp_path):
    clips_dir = write_clip_folders(tmp_path, per_label=1)
    assert len(sources_in(str(clips_dir))) == 8
    with pytest.raises(InputError, match="no videos or images"):
        sources_in(str(tmp_path / "clips" / "000" / ".."/ ".." ))
    with pytest.raises(InputError, match="not found"):
        sources_in(str(tmp_path / "nope"))
    calib, held = split(list(range(10)), 0.25)
    assert held == [3, 7] and len(calib) == 8 and not set(calib) & set(held)
    with pytest.raises(InputError, match="at least 2"):
        split([1], 0.25)
    r = ClipReader("frames", [np.zeros(1), np.ones(1)])
    assert [r.get_next()["frames"][0] for _ in range(2)] == [0, 1] and r.get_next() is None
    r.rewind()
    assert r.get_next()["frames"][0] == 0


def test_compare():
    ref = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    got = ref.copy()
    got[1] = [1.5, 1.0]
    a = compare(ref, got)
    assert (a.clips, a.top1, a.max_abs_diff) == (4, 0.75, 1.5) and not a.ok(0.97) and a.ok(0.75)
    with pytest.raises(ValueError):
        compare(ref, got[:2])


def test_int8_model_is_qdq_self_describing_and_agrees(int8_model, synthetic_model, tmp_path):
    import onnx

    m = onnx.load(str(int8_model))
    ops = {n.op_type for n in m.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["actionnet.precision"] == "int8-qdq" and spec_of(str(int8_model)) == spec_of(str(synthetic_model))
    # TensorRT wants signed, symmetric activations: every zero point is int8 0
    zps = [i for i in m.graph.initializer if i.name.endswith("zero_point")]
    assert zps and all(onnx.numpy_helper.to_array(z).dtype == np.int8 and not onnx.numpy_helper.to_array(z).any()
                       for z in zps)
    # held-out style check on fresh clips, on both CPU backends
    from actionnet.engines import open_engine
    from actionnet.export.agreement import outputs

    clips = clips_from(str(write_clip_folders(tmp_path, per_label=2, seed=11)), spec_of(str(int8_model)), 0)
    with open_engine(str(synthetic_model), "onnxruntime") as ref:
        want = outputs(ref, clips)
    for engine in ("onnxruntime", "openvino"):
        pytest.importorskip(engine)
        with open_engine(str(int8_model), engine) as e:
            report = compare(want, outputs(e, clips))
        assert report.top1 >= 0.97 and report.max_abs_diff < 0.1 * np.abs(want).max(), (engine, report)


def test_quantize_gate_refuses_and_force_writes(synthetic_model, tmp_path):
    clips = write_clip_folders(tmp_path, per_label=1, seed=3)
    out = tmp_path / "q.onnx"
    # no model can reach 101% agreement: the gate must refuse and write nothing
    r = run_cli("quantize", synthetic_model, "--calib", clips, "--output", out, "--skip-frames", "0",
                "--min-agreement", "1.01", module="actionnet.export.cli")
    assert r.returncode == 2 and not out.exists() and "Traceback" not in r.stderr
    assert "agrees with FP32 on only" in r.stderr.strip().splitlines()[-1]
    r = run_cli("quantize", synthetic_model, "--calib", clips, "--output", out, "--skip-frames", "0",
                "--min-agreement", "1.01", "--force", module="actionnet.export.cli")
    assert r.returncode == 0 and out.exists() and "written anyway" in r.stderr, r.stderr
    assert "top-1 agreement" in r.stderr


def test_quantize_needs_model_metadata_and_clips(synthetic_model, tmp_path):
    import onnx

    from actionnet.export.quantize import quantize

    bare = tmp_path / "bare.onnx"
    m = onnx.load(str(synthetic_model))
    del m.metadata_props[:]
    onnx.save(m, str(bare))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="no actionnet metadata"):
        quantize(str(bare), str(empty), str(tmp_path / "o.onnx"))
    with pytest.raises(InputError, match="no videos or images"):
        quantize(str(synthetic_model), str(empty), str(tmp_path / "o.onnx"))


def test_verify_cli(int8_model, synthetic_model, tmp_path):
    clips = write_clip_folders(tmp_path, per_label=1, seed=8)
    r = run_cli("verify", int8_model, "--against", synthetic_model, "--clips", clips, "--skip-frames", "0",
                "--engine", "openvino", module="actionnet.export.cli")
    assert r.returncode == 0, r.stderr
    assert "(openvino) vs" in r.stderr and "top-1 agreement" in r.stderr and ": OK" in r.stderr
    r = run_cli("verify", int8_model, "--against", synthetic_model, "--clips", clips, "--skip-frames", "0",
                "--min-agreement", "1.01", module="actionnet.export.cli")
    assert r.returncode == 1 and "FAIL" in r.stderr


def test_fp16_onnx_keeps_io_and_metadata(synthetic_model, tmp_path):
    pytest.importorskip("onnxconverter_common")
    import onnx

    from actionnet.engines import open_engine
    from actionnet.export.fp16 import to_fp16

    out = tmp_path / "h.onnx"
    to_fp16(str(synthetic_model), str(out))
    m = onnx.load(str(out))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in m.graph.initializer)
    assert not any(i.data_type == onnx.TensorProto.FLOAT and i.dims for i in m.graph.initializer
                   if "Conv" in i.name or "weight" in i.name)
    x = np.random.default_rng(1).integers(0, 255, (1, 8, 32, 32, 3), dtype=np.uint8)
    with open_engine(str(out), "onnxruntime") as h, open_engine(str(synthetic_model), "onnxruntime") as f:
        assert h.input.dtype == np.uint8 and h.outputs[0].dtype == np.float32
        assert h.metadata["actionnet.precision"] == "fp16"
        a, b = h.infer(x), f.infer(x)
        assert a.argmax() == b.argmax()
        np.testing.assert_allclose(a, b, atol=0.05 * np.abs(b).max())
    assert os.listdir(tmp_path) == ["h.onnx"]


def test_int8_model_runs_in_the_cli_on_openvino(int8_model, synthetic_video, tmp_path):
    pytest.importorskip("openvino")
    import json

    ev = tmp_path / "ev.jsonl"
    r = run_cli("--model", int8_model, "--engine", "openvino", "--precision", "int8", "--skip-frames=0",
                "--headless", "--events", ev, synthetic_video("red right slow"))
    assert r.returncode == 0, r.stderr
    labels = [e["label"] for e in map(json.loads, ev.read_text().splitlines()) if e["event"] == "classification"]
    assert len(labels) == 30 - 8 + 1 and sum(lab == "red right slow" for lab in labels) >= 0.97 * len(labels), labels

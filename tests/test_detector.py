"""The detector: real YOLOv5n on a real video, decode of every layout, letterbox geometry, errors."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from actionnet.detector import Detector, Letterbox, decode, infer_layout, nms
from actionnet.errors import ModelError, UsageError
from conftest import run_cli, shared_file
from detector_fakes import square_detector

# Checked by eye (a person in the middle of the room at 300 and 600; nobody at 0, 30, 210).
PERSON_FRAMES = (300, 600)
EMPTY_FRAMES = (0, 30, 210)


def _frames(path, wanted):
    from actionnet.sources import open_source

    out = {}
    with open_source(str(path)) as src:
        for i, (f, _) in enumerate(src):
            if i in wanted:
                out[i] = f
            if i >= max(wanted):
                break
    return out


def test_real_yolov5n_finds_the_person_and_nothing_in_the_empty_room():
    weights = shared_file("weights/yolov5n.onnx")
    video = shared_file("videos/people_walking.mp4")
    det = Detector(str(weights), conf=0.25, threads=1, log=None)
    assert det.spec.layout == "yolov5" and det.spec.labels[0] == "person"
    frames = _frames(video, set(PERSON_FRAMES + EMPTY_FRAMES))
    for i in PERSON_FRAMES:
        d = det(frames[i])
        assert len(d) == 1, f"frame {i}: {len(d)} persons"
        x1, y1, x2, y2 = d.boxes[0]
        h, w = frames[i].shape[:2]
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h  # frame pixels, clipped
        assert y2 - y1 > 0.7 * h and 100 < x2 - x1 < 250, d.boxes  # a standing person, whole height
        assert d.scores[0] > 0.7 and d.classes[0] == 0
    for i in EMPTY_FRAMES:
        assert len(det(frames[i])) == 0, f"frame {i} is an empty room"
    # every class: still no invented person, and the table is not taken for one
    everything = Detector(str(weights), conf=0.25, classes=None, threads=1, log=None)
    assert all(c != 0 for i in EMPTY_FRAMES for c in everything(frames[i]).classes)


def test_letterbox_round_trip():
    lb = Letterbox(640, 640)
    frame = np.zeros((432, 768, 3), np.uint8)
    frame[100:200, 300:400] = (0, 0, 255)  # BGR red
    blob = lb(frame)
    assert blob.shape == (1, 3, 640, 640) and blob.dtype == np.float32
    s, left, top, nw, nh = lb.geometry(frame.shape)
    assert (nw, nh, left) == (640, 360, 0) and top == 140
    assert blob[0, 0, 140 + 100 * 360 // 432 + 5, 300 * 640 // 768 + 5] == pytest.approx(1.0)  # R plane
    assert blob[0, 0, 10, 10] == pytest.approx(114 / 255)
    box = np.array([[300 * s, 100 * s + top, 400 * s, 200 * s + top]], np.float32)
    assert np.allclose(lb.to_frame(box, frame.shape), [[300, 100, 400, 200]], atol=1e-3)


def test_decode_yolov5_yolov8_and_end2end_agree():
    rng = np.random.default_rng(0)
    c = 3
    boxes = np.array([[100, 100, 40, 80], [300, 200, 50, 50], [102, 101, 40, 80]], np.float32)  # cx cy w h
    cls = np.zeros((3, c), np.float32)
    cls[0, 0], cls[1, 2], cls[2, 0] = 0.9, 0.8, 0.6
    noise = np.concatenate([rng.uniform(0, 640, (50, 4)), np.zeros((50, c))], 1).astype(np.float32)
    v8 = np.concatenate([np.concatenate([boxes, cls], 1), noise])  # [N, 4 + C]
    obj = np.ones((len(v8), 1), np.float32)
    v5 = np.concatenate([v8[:, :4], obj, v8[:, 4:]], 1)[None]  # [1, N, 5 + C]
    b8, s8, c8 = decode(v8.T[None], "yolov8", 0.25, None)
    b5, s5, c5 = decode(v5, "yolov5", 0.25, None)
    assert np.allclose(b8, b5) and np.allclose(s8, s5) and (c8 == c5).all()
    assert np.allclose(b8[0], [80, 60, 120, 140]) and list(c8) == [0, 2, 0]
    keep = nms(b8, s8, c8, 0.45, 100)
    assert list(keep) == [0, 1]  # the overlapping weaker box of class 0 goes
    only0 = decode(v8.T[None], "yolov8", 0.25, np.array([0]))
    assert list(only0[2]) == [0, 0]
    # objectness multiplies: 0.9 x 0.2 is below the threshold
    v5[0, 0, 4] = 0.2
    assert len(decode(v5, "yolov5", 0.25, None)[1]) == 2
    e2e = np.array([[[10, 20, 30, 40, 0.9, 0], [50, 50, 60, 60, 0.1, 0], [1, 2, 3, 4, 0.5, 5]]], np.float32)
    b, s, k = decode(e2e, "end2end", 0.25, np.array([0]))
    assert np.allclose(b, [[10, 20, 30, 40]]) and list(k) == [0]


def test_layout_from_shape():
    assert infer_layout((1, 25200, 85)) == ("yolov5", 80)
    assert infer_layout((1, 84, 8400)) == ("yolov8", 80)
    assert infer_layout((1, 300, 6)) == ("end2end", 0)
    with pytest.raises(ModelError, match="layout"):
        infer_layout((1, 5, 5))
    with pytest.raises(ModelError, match="expected"):
        infer_layout((1, 84))


def test_square_detector_boxes_land_on_the_squares(tmp_path):
    from persons_video import squares_frames

    path = square_detector(tmp_path / "sq.onnx")
    det = Detector(str(path), conf=0.25, log=None)
    frames, truth = squares_frames([("red", "right", 0.8, 40, 20), ("blue", "left", 0.8, 200, 90)], frames=3)
    for f, t in zip(frames, truth):
        d = det(f)
        assert len(d) == 2
        got = d.boxes[np.argsort(d.boxes[:, 1])]
        assert np.abs(got - np.array(t, np.float32)).max() <= 2.0


def test_detector_errors(tmp_path, synthetic_model):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(ModelError, match="not a readable ONNX file"):
        Detector(str(bad), log=None)
    with pytest.raises(ModelError, match="action model, not a detector"):
        Detector(str(synthetic_model), log=None)
    sq = square_detector(tmp_path / "sq.onnx")
    with pytest.raises(ModelError, match="does not fit layout yolov5"):
        Detector(str(sq), layout="yolov5", log=None)
    lying = square_detector(tmp_path / "lying.onnx", layout_meta="yolov5")  # metadata says v5, output is v8
    with pytest.raises(ModelError, match=r"does not fit layout yolov5 with 1 classes \(\[1, N, 6\]\)"):
        Detector(str(lying), log=None)
    with pytest.raises(UsageError, match="no class 'dog'"):
        Detector(str(sq), classes=("dog",), log=None)
    with pytest.raises(ModelError, match="not found"):
        Detector(str(tmp_path / "missing.onnx"), log=None)


def test_cli_detector_errors_are_one_line(tmp_path, synthetic_model, synthetic_video):
    video = synthetic_video("red right slow", frames=12)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    cases = [
        (["--persons", "--model", synthetic_model, video], "--persons needs --detector"),
        (["--persons", "--detector", bad, "--model", synthetic_model, video], "not a readable ONNX file"),
        (["--persons", "--detector", synthetic_model, "--model", synthetic_model, video], "not a detector"),
        (["--persons", "--detector", square_detector(tmp_path / "sq.onnx"), "--detector-layout", "yolov5",
          "--model", synthetic_model, video], "does not fit layout yolov5"),
    ]
    for args, msg in cases:
        r = run_cli(*args)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and msg in lines[0] and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("shape", [(432, 768, 3), (768, 432, 3), (640, 640, 3), (100, 300, 3)])
def test_letterbox_matches_a_plain_reference(shape):
    import cv2

    f = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    lb = Letterbox(640, 640)
    first = lb(f).copy()
    s, left, top, nw, nh = lb.geometry(shape)
    ref = np.full((640, 640, 3), 114, np.uint8)
    ref[top:top + nh, left:left + nw] = cv2.resize(f, (nw, nh), interpolation=cv2.INTER_LINEAR)
    want = ref[..., ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255
    assert np.abs(first - want).max() < 1e-6
    assert np.abs(lb(f) - want).max() < 1e-6  # second frame through the cached geometry


def test_foreign_detector_names_come_from_its_metadata(tmp_path):
    import onnx

    path = square_detector(tmp_path / "sq.onnx", metadata=False, labels=("cat", "dog"))
    m = onnx.load(str(path))
    m.metadata_props.add(key="names", value="{0: 'cat', 1: 'dog'}")  # as YOLOv5/ultralytics exports write it
    onnx.save(m, str(path))
    det = Detector(str(path), classes=("dog",), log=None)
    assert det.spec.labels == ("cat", "dog") and det.spec.layout == "yolov8" and list(det.class_ids) == [1]
    plain = square_detector(tmp_path / "plain.onnx", metadata=False, labels=("a", "b"))
    assert Detector(str(plain), classes=None, log=None).spec.labels == ("class0", "class1")


def test_detection_agreement_gates_clear_people_and_reports_borderline_ones():
    """The INT8 gate: a person either model finds clearly must be found by the other; a box
    within the margin of the threshold that one model keeps and the other drops is counted as
    borderline, not as a disagreement."""
    from actionnet.detector import Detections
    from actionnet.export.quantize_detector import compare

    def det(*rows):  # (x1, score) per box: 100-px squares along a row
        boxes = np.array([[x, 0, x + 100, 100] for x, _ in rows], np.float32).reshape(-1, 4)
        return Detections(boxes, np.array([s for _, s in rows], np.float32), np.zeros(len(rows), np.int64))

    class Fake:
        conf = 0.25

        def __init__(self, per_frame):
            self.per_frame = iter(per_frame)

        def __call__(self, frame):
            return next(self.per_frame)

    fp32 = [det((0, 0.9), (200, 0.30)), det((0, 0.8)), det(), det((0, 0.7), (400, 0.6))]
    int8 = [det((5, 0.88)), det((0, 0.78), (600, 0.28)), det((300, 0.5)), det((0, 0.7), (400, 0.6))]
    r = compare(Fake(fp32), Fake(int8), range(4))
    # clear FP32 people: 0.9, 0.8, 0.7, 0.6 -> all found; INT8's clear 0.5 on frame 2 is extra;
    # the 0.30 and 0.28 boxes are borderline
    assert (r.frames, r.reference, r.found, r.extra, r.borderline) == (4, 4, 4, 1, 2)
    assert r.agreement == 0.8 and "80.0% agreement (2 borderline" in str(r)
    same = compare(Fake(fp32), Fake(fp32), range(4))
    assert same.agreement == 1.0 and same.borderline == 0


def test_int8_detector_finds_the_same_people(tmp_path):
    """``actionnet-export quantize`` on the real YOLOv5n, calibrated on frames of a real video: the
    gate ran on both CPU engines, and on each the INT8 detector finds the person the FP32 one
    finds, where it finds it, and nobody in the empty room."""
    import importlib.util

    from actionnet.engines.onnxmeta import read_metadata
    from actionnet.export.quantize_detector import cpu_engines, is_detector
    from actionnet.tracker import iou_matrix

    weights, video = shared_file("weights/yolov5n.onnx"), shared_file("videos/people_walking.mp4")
    out = tmp_path / "yolov5n-int8.onnx"
    r = run_cli("quantize", weights, "--calib", video, "--max-clips", "24", "--output", out,
                module="actionnet.export.cli")
    assert r.returncode == 0, r.stderr
    engines = cpu_engines()
    assert engines == ["onnxruntime", "openvino"] or importlib.util.find_spec("openvino") is None
    for engine in engines:
        m = re.search(rf"held-out frames, {engine}: (\d+) of \1 clearly found people found again, 0 extra", r.stderr)
        assert m and int(m.group(1)) >= 2, r.stderr
    meta = read_metadata(str(out))
    assert is_detector(str(out)) and meta["actionnet.precision"] == "int8-qdq" and meta["actionnet.activations"] == "u8"
    frames = _frames(video, [0, 30, 300, 600])
    for engine in engines:
        fp32, int8 = Detector(str(weights), engine=engine, log=None), Detector(str(out), engine=engine, log=None)
        for i, f in frames.items():
            a, b = fp32(f), int8(f)
            assert len(a) == len(b) == (1 if i >= 300 else 0), (engine, i, len(a), len(b))
            if len(a):
                assert iou_matrix(a.boxes, b.boxes)[0, 0] > 0.8, (engine, i)
                assert abs(float(a.scores[0]) - float(b.scores[0])) < 0.05, (engine, i, a.scores, b.scores)


def test_detector_auto_engine_float_on_onnxruntime_int8_on_openvino(tmp_path):
    """Under ``auto`` on the CPU a float detector runs on ONNX Runtime and a CPU-quantised (u8)
    one on OpenVINO, an s8 one on ONNX Runtime, and the choice is said; an explicit engine is
    obeyed."""
    import io

    import onnx
    from onnx import TensorProto, helper

    pytest.importorskip("openvino")
    plain = square_detector(tmp_path / "float.onnx")
    m = onnx.load(str(plain))
    for n in m.graph.node:
        n.input[:] = ["images_dq" if i == "images" else i for i in n.input]
    m.graph.initializer.extend([helper.make_tensor("s", TensorProto.FLOAT, [], [1 / 255]),
                                helper.make_tensor("z", TensorProto.UINT8, [], [0])])
    m.graph.node.insert(0, helper.make_node("DequantizeLinear", ["images_q", "s", "z"], ["images_dq"]))
    m.graph.node.insert(0, helper.make_node("QuantizeLinear", ["images", "s", "z"], ["images_q"]))
    s8 = tmp_path / "int8-s8.onnx"  # unmarked or s8: TensorRT's format, kept off OpenVINO
    onnx.save(m, str(s8))
    m.metadata_props.add(key="actionnet.activations", value="u8")  # as actionnet-export quantize marks it
    qdq = tmp_path / "int8.onnx"
    onnx.save(m, str(qdq))
    frame = np.full((256, 256, 3), 30, np.uint8)
    frame[100:112, 50:62] = (0, 0, 255)
    for path, want in ((plain, "onnxruntime"), (qdq, "openvino"), (s8, "onnxruntime")):
        log = io.StringIO()
        det = Detector(str(path), log=log)
        assert det.engine.name == want and f"detector engine auto -> {want}" in log.getvalue()
        assert len(det(frame)) == 1  # the QDQ copy still finds the square
        det.close()
    assert Detector(str(plain), engine="openvino", log=None).engine.name == "openvino"


def test_int8_gate_refuses_frames_with_nobody_in_them(tmp_path):
    """Calibrated and checked on the empty room, the gate has nobody to compare: nothing is
    written, the error is one line, and no temporary file is left beside the output."""
    from actionnet.export.synthetic import write_video

    weights, video = shared_file("weights/yolov5n.onnx"), shared_file("videos/people_walking.mp4")
    empty = write_video(str(tmp_path / "empty.mp4"), list(_frames(video, range(0, 40, 5)).values()))
    out = tmp_path / "out" / "int8.onnx"
    r = run_cli("quantize", weights, "--calib", empty, "--max-clips", "8", "--output", out,
                module="actionnet.export.cli")
    lines = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert r.returncode != 0 and len(lines) == 1 and "nobody is clearly found" in lines[0], r.stderr
    assert "Traceback" not in r.stderr and not out.exists() and os.listdir(out.parent) == []
    r = run_cli("quantize", weights, "--calib", tmp_path / "missing.mp4", "--output", out, module="actionnet.export.cli")
    assert r.returncode != 0 and "no such file or folder" in r.stderr and "Traceback" not in r.stderr

"""actionnet-export yolo: ultralytics models -> self-describing ONNX; decode parity with ultralytics."""

from __future__ import annotations

import os

import numpy as np
import pytest

from actionnet.detector import Detector, DetectorSpec
from actionnet.tracker import iou_matrix
from conftest import run_cli

ultralytics = pytest.importorskip("ultralytics")
IMGSZ = 320


@pytest.fixture(scope="module")
def yolov8(tmp_path_factory):
    """A random-weight yolov8n from ultralytics' bundled YAML and its export."""
    import torch

    from actionnet.export.yolo import export_yolo
    from detector_fakes import spread_yolo

    folder = tmp_path_factory.mktemp("yolo")
    yolo = spread_yolo("yolov8n.yaml")
    head = yolo.model.model[-1]
    with torch.no_grad():  # and a rescaled class layer: thresholds and NMS have real work to do
        sd = float(torch.logit(_raw(yolo, _image())[4:].clamp(1e-6, 1 - 1e-6)).std())
        for seq in head.cv3:
            seq[-1].weight.mul_(1.5 / sd)
    out = folder / "v8.onnx"
    export_yolo(yolo, str(out), imgsz=IMGSZ)
    return yolo, out


def _raw(yolo, img):
    """The PyTorch model's raw [84, N] output for a BGR image of IMGSZ x IMGSZ."""
    import torch

    x = torch.from_numpy(img[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        o = yolo.model(x)
    return (o[0] if isinstance(o, (tuple, list)) else o)[0]


def _kth(scores, k):
    return float(np.sort(scores)[-k])


def _image(seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (12, 16, 3)).astype(np.uint8)
    return cv2.resize(coarse, (IMGSZ, IMGSZ), interpolation=cv2.INTER_CUBIC)


def test_export_writes_the_detector_spec(yolov8):
    _, path = yolov8
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    spec = DetectorSpec.from_metadata(props)
    assert spec.layout == "yolov8" and (spec.height, spec.width) == (IMGSZ, IMGSZ)
    assert spec.labels[0] == "person" and len(spec.labels) == 80
    det = Detector(str(path), log=None)
    assert det.engine.outputs[0].shape == (1, 84, 2100)


def test_decode_parity_with_ultralytics_prediction(yolov8):
    yolo, path = yolov8
    img = _image()
    raw = _raw(yolo, img).numpy()
    conf, iou = _kth(raw[4:].max(0), 400), 0.7  # 400 candidates before NMS
    ref = yolo.predict(img, imgsz=IMGSZ, conf=conf, iou=iou, verbose=False, max_det=300)[0].boxes
    ref_boxes, ref_scores, ref_cls = (t.cpu().numpy() for t in (ref.xyxy, ref.conf, ref.cls))
    det = Detector(str(path), conf=conf, iou=iou, classes=None, max_det=300, log=None)
    got = det(img)
    assert len(ref_boxes) >= 20, "the random model should give NMS something to do"
    # the same boxes, scores and classes, up to float noise between PyTorch and ONNX Runtime
    assert abs(len(got) - len(ref_boxes)) <= max(1, len(ref_boxes) // 50)
    m = iou_matrix(ref_boxes, got.boxes)
    j = m.argmax(axis=1)
    matched = m[np.arange(len(ref_boxes)), j] > 0.99
    assert matched.mean() >= 0.98
    assert np.allclose(ref_scores[matched], got.scores[j[matched]], atol=2e-3)
    assert (ref_cls[matched].astype(int) == got.classes[j[matched]]).all()
    # the class filter (person by default) keeps exactly what ultralytics' ``classes=`` keeps;
    # a random model prefers some classes, so filter on the one it finds most
    k = int(np.bincount(ref_cls.astype(int)).argmax())
    ref_k = yolo.predict(img, imgsz=IMGSZ, conf=conf, iou=iou, classes=[k], verbose=False, max_det=300)[0].boxes
    only = Detector(str(path), conf=conf, iou=iou, classes=[k], max_det=300, log=None)(img)
    assert len(ref_k) >= 3 and (only.classes == k).all()
    assert abs(len(only) - len(ref_k)) <= 1
    m = iou_matrix(ref_k.xyxy.cpu().numpy(), only.boxes)
    assert (m.max(axis=1) > 0.99).mean() >= 0.95


def test_end_to_end_head_exports_nms_free(tmp_path):
    from actionnet.export.yolo import export_yolo

    out = tmp_path / "y26.onnx"
    spec = export_yolo("yolo26n.yaml", str(out), imgsz=IMGSZ)
    assert spec.layout == "end2end"
    det = Detector(str(out), classes=None, conf=0.0, log=None)
    d = det(_image())
    assert det.engine.outputs[0].shape[2] == 6 and len(d) > 0
    assert (d.boxes[:, 2] >= d.boxes[:, 0]).all() and (d.boxes <= IMGSZ).all()


def test_cli_errors(tmp_path):
    r = run_cli("yolo", tmp_path / "missing.pt", "--output", tmp_path / "x.onnx", module="actionnet.export.cli")
    assert r.returncode == 2 and "checkpoint not found" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("yolo", "yolo11n-seg.yaml", "--output", tmp_path / "x.onnx", module="actionnet.export.cli")
    assert r.returncode == 2 and "segment model" in r.stderr
    r = run_cli("yolo", "yolov8n.yaml", "--imgsz", "300", "--output", tmp_path / "x.onnx",
                module="actionnet.export.cli")
    assert r.returncode == 2 and "multiple of 32" in r.stderr
    assert not os.path.exists(tmp_path / "x.onnx")


def test_cli_exports_yolo11_yaml(tmp_path):
    out = tmp_path / "y11.onnx"
    r = run_cli("yolo", "yolo11n.yaml", "--imgsz", "256", "--output", out, module="actionnet.export.cli")
    assert r.returncode == 0, r.stderr
    assert "yolov8 layout, 256x256 input, 80 classes (person" in r.stderr
    det = Detector(str(out), log=None)
    assert det.spec.layout == "yolov8" and det.engine.outputs[0].shape[1] == 84
    assert not [p for p in os.listdir(tmp_path) if p != "y11.onnx"]  # no ultralytics leftovers


def test_original_yolov5_checkpoint_exports_dynamic_and_finds_what_its_onnx_finds(tmp_path):
    """yolov5n.pt (ultralytics 8 refuses it) is rebuilt, exported with a dynamic input, run at
    the frame's aspect (384x640 for 16:9, said on start-up), and finds the person that YOLOv5's
    own export (yolov5n.onnx, 640x640) finds; the checkpoint's folder gets nothing written."""
    import io
    import shutil

    import cv2

    from conftest import shared_file
    from test_detector import _frames

    pt, ref_onnx = shared_file("weights/yolov5n.pt"), shared_file("weights/yolov5n.onnx")
    local = tmp_path / "ckpt" / "yolov5n.pt"
    local.parent.mkdir()
    shutil.copy(pt, local)
    out = tmp_path / "y5n-dyn.onnx"
    r = run_cli("yolo", local, "--dynamic", "--output", out, module="actionnet.export.cli")
    assert r.returncode == 0, r.stderr
    assert "original YOLOv5 checkpoint" in r.stderr and "dynamic input up to 640" in r.stderr
    assert os.listdir(local.parent) == ["yolov5n.pt"]
    log = io.StringIO()
    det, ref = Detector(str(out), threads=1, log=log), Detector(str(ref_onnx), threads=1, log=None)
    frame = cv2.resize(_frames(shared_file("videos/people_walking.mp4"), {100})[100], (1920, 1080))
    a, b = det(frame), ref(frame)
    assert "detector input 384x640 for 1920x1080 frames" in log.getvalue()
    assert len(a) == len(b) == 1 and iou_matrix(a.boxes, b.boxes)[0, 0] > 0.95
    assert abs(float(a.scores[0]) - float(b.scores[0])) < 0.05

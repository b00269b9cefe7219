"""Single-image actions and pose (issue 20): 2D classifiers as clip-length-1 models, photos in and
out, fine-tuning on image folders, pose decoding, posture, and per-person pose mode."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter, defaultdict

import numpy as np
import pytest

from actionnet.posture import posture
from actionnet.spec import ModelSpec

torch = pytest.importorskip("torch")

# BGR colours of the "people": the colour model tells them apart
COLOURS = {"blue": (230, 60, 40), "green": (60, 200, 40), "red": (40, 40, 220)}
GREY = 110


def _photo(colour, h=48, w=64, side=28, x=None, y=None, rng=None):
    rng = rng or np.random.default_rng(0)
    img = np.full((h, w, 3), GREY, np.float32) + rng.normal(0, 4, (h, w, 1))
    x = int(rng.integers(0, w - side)) if x is None else x
    y = int(rng.integers(0, h - side)) if y is None else y
    img[y:y + side, x:x + side] = np.array(COLOURS[colour]) + rng.integers(-25, 25, 3)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory):
    """``actionnet-train --arch tiny2d`` on class folders of photos (a coloured square on grey):
    a real fine-tune through the same loop as clips, its ONNX and report."""
    import cv2

    from actionnet.export.train.loop import Config, fit

    root = tmp_path_factory.mktemp("colours")
    rng = np.random.default_rng(1)
    for c in COLOURS:
        (root / "data" / c).mkdir(parents=True)
        for i in range(10):
            side = int(rng.integers(22, 34))
            cv2.imwrite(str(root / "data" / c / f"{i:02d}.png"), _photo(c, 40, 40, side, rng=rng))
    cfg = Config(output=str(root / "run"), arch="tiny2d", data=str(root / "data"), epochs=10, batch_size=8, lr=0.01,
                 workers=0, device="cpu", seed=0)
    result = fit(cfg, log=open(os.devnull, "w"))
    assert result.best_acc == 1.0, result.best_acc
    return root / "run"


def _spec(path) -> ModelSpec:
    from actionnet.engines.onnxmeta import read_metadata

    return ModelSpec.from_metadata(read_metadata(str(path)))


def _cli(*args):
    """The actionnet CLI in-process (a subprocess costs seconds of imports): (exit code, stderr)."""
    import contextlib
    import io

    from actionnet.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main([str(a) for a in args])
    return rc, err.getvalue()


def _events(path):
    """The classification lines (segment and summary lines close the run)."""
    return [e for e in map(json.loads, open(path)) if e.get("event") == "classification"]


# -- image models: export, spec, runtime ------------------------------------------------------

def test_trained_image_model_is_a_one_frame_clip_model(colour_model):
    spec = _spec(colour_model / "model.onnx")
    assert (spec.clip_length, spec.skip_frames, spec.layout, spec.arch) == (1, 0, "raw_nthwc", "tiny2d")
    assert spec.labels == tuple(sorted(COLOURS))
    assert (colour_model / "report").is_dir() and (colour_model / "labels.txt").read_text().split() == sorted(COLOURS)


def test_export_torchvision_image_model_spec_and_parity(tmp_path):
    """ResNet-18's preprocessing comes from torchvision's weight metadata; --size scales it; the
    ONNX takes [N, 1, H, W, 3] uint8 and matches PyTorch; a checkpoint's head must fit the labels."""
    import onnxruntime as ort

    from actionnet.errors import ModelError
    from actionnet.export.image_models import build_2d, export_image

    labels = tmp_path / "l.txt"
    labels.write_text("sit\nstand\nphone\n")
    torch.manual_seed(0)
    weights = tmp_path / "w.pth"
    torch.save(build_2d("resnet18", 3).state_dict(), weights)
    out = tmp_path / "r18.onnx"
    report = export_image("resnet18", str(out), weights=str(weights), labels=str(labels), size=64,
                          log=open(os.devnull, "w"))
    assert report.ok and report.max_abs_diff < 1e-3
    spec = _spec(out)
    assert (spec.clip_length, spec.height, spec.width, spec.skip_frames) == (1, 64, 64, 0)
    assert spec.resize_mode == "short_side" and spec.resize_size == (round(256 * 64 / 224),)
    assert spec.mean == pytest.approx((0.485, 0.456, 0.406)) and spec.labels == ("sit", "stand", "phone")
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape == ["N", 1, 64, 64, 3]
    with pytest.raises(ModelError, match="3 classes in its head"):
        export_image("resnet18", str(tmp_path / "x.onnx"), weights=str(weights), size=64)
    assert not (tmp_path / "x.onnx").exists()


def test_export_cli_takes_timm_style_names(tmp_path):
    from actionnet.export.cli import main

    labels = tmp_path / "l.txt"
    labels.write_text("a\nb\n")
    out = tmp_path / "m.onnx"
    assert main(["image", "--arch", "mobilenetv3_small", "--labels", str(labels), "--size", "64",
                 "--output", str(out)]) == 0
    assert _spec(out).arch == "mobilenet_v3_small" and _spec(out).num_classes == 2
    assert main(["image", "--arch", "resnet18", "--weights", str(tmp_path / "none.pth"),
                 "--output", str(tmp_path / "n.onnx")]) != 0


def test_preset_decides_the_preprocessing_written_into_the_model(tmp_path, capsys):
    """torchvision's DEFAULT weights of ResNet-50 and MobileNetV3-Large are V2 (short side 232); a
    checkpoint fine-tuned from V1 says --preset IMAGENET1K_V1 and gets V1's 256. A name torchvision
    does not have for that architecture is one line listing the ones it has."""
    pytest.importorskip("torchvision")
    from actionnet.errors import ActionNetError
    from actionnet.export.cli import main
    from actionnet.export.image_models import spec_from_weights

    for arch in ("resnet50", "mobilenet_v3_large"):
        v1, v2 = (spec_from_weights(arch, ("a", "b"), preset=p) for p in ("IMAGENET1K_V1", "IMAGENET1K_V2"))
        default = spec_from_weights(arch, ("a", "b"))
        assert (v1.resize_size, v2.resize_size, default.resize_size) == ((256,), (232,), (232,))
        assert v1.height == v2.height == 224 and v1.mean == v2.mean and v1.std == v2.std
    labels = tmp_path / "l.txt"
    labels.write_text("a\nb\n")
    resized = {}
    for preset in ("IMAGENET1K_V1", "imagenet1k_v2"):  # in any case
        out = tmp_path / f"{preset}.onnx"
        capsys.readouterr()
        assert main(["image", "--arch", "mobilenetv3_large", "--preset", preset, "--labels", str(labels),
                     "--size", "64", "--output", str(out)]) == 0
        assert preset.upper() in capsys.readouterr().err  # the preset used is said
        resized[preset.upper()] = _spec(out).resize_size
    assert resized == {"IMAGENET1K_V1": (round(256 * 64 / 224),), "IMAGENET1K_V2": (round(232 * 64 / 224),)}
    for arch, preset, choices in (("mobilenet_v3_large", "IMAGENET1K_V3", "IMAGENET1K_V1, IMAGENET1K_V2"),
                                  ("resnet18", "IMAGENET1K_V2", "IMAGENET1K_V1")):
        capsys.readouterr()
        assert main(["image", "--arch", arch, "--preset", preset, "--output", str(tmp_path / "x.onnx")]) != 0
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("actionnet-export: error:")]
        assert len(errors) == 1 and "Traceback" not in err and preset in errors[0] and choices in errors[0], err
        with pytest.raises(ActionNetError, match=choices):
            spec_from_weights(arch, preset=preset)
    assert not (tmp_path / "x.onnx").exists()


def test_parity_is_relative_to_the_scale_of_the_outputs(tmp_path):
    """Random MobileNet weights give logits of about 1e-10: a fixed absolute tolerance (1e-4) let
    any graph pass. The check is relative to the outputs' scale: float rounding (about 1e-6 of
    it) passes, an ONNX whose head is 1 % off fails, however small the logits."""
    import onnx
    from onnx import numpy_helper

    from actionnet.export import onnx_export
    from actionnet.export.image_models import build, spec_from_weights

    rng = np.random.default_rng(0)
    tiny = rng.normal(0, 1e-10, (4, 10)).astype(np.float32)
    assert onnx_export.parity_report(tiny, tiny * (1 + 2e-6)).ok
    assert not onnx_export.parity_report(tiny, tiny * 1.01).ok
    assert not onnx_export.parity_report(tiny, tiny + 1e-11).ok

    torch.manual_seed(0)
    spec = spec_from_weights("mobilenet_v3_small", ("a", "b", "c"), 32)
    model = build("mobilenet_v3_small", 3).eval()
    out = tmp_path / "m.onnx"
    report = onnx_export.export_clip_model(model, spec, str(out), log=open(os.devnull, "w"))
    assert report.ok and report.tolerance < 1e-9  # the logits are tiny, and so is what is allowed
    m = onnx.load(str(out))
    head = [n for n in m.graph.node if n.op_type in ("Gemm", "MatMul")][-1]
    for init in m.graph.initializer:
        if init.name == head.input[1]:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1.01), init.name))
    onnx.save(m, str(tmp_path / "perturbed.onnx"))
    wrapped = onnx_export.RawClipModel(model, spec.replace(layout="raw_nthwc")).eval()
    clips = onnx_export.sample_clips(spec, 2)
    assert onnx_export.parity(wrapped, str(out), clips).ok
    broken = onnx_export.parity(wrapped, str(tmp_path / "perturbed.onnx"), clips)
    assert not broken.ok and broken.max_abs_diff > broken.tolerance, broken


def test_photo_in_annotated_photo_out(tmp_path, colour_model):
    import cv2

    model = colour_model / "model.onnx"
    for c in COLOURS:
        photo = tmp_path / f"{c}.png"
        cv2.imwrite(str(photo), _photo(c, 120, 160, 80, rng=np.random.default_rng(7)))
        out, ev = tmp_path / f"{c}-out.jpg", tmp_path / f"{c}.jsonl"
        rc, err = _cli("--model", model, "--headless", "--events", ev, photo, out)
        assert rc == 0, err
        events = _events(ev)
        assert len(events) == 1 and events[0]["label"] == c
        drawn = cv2.imread(str(out))
        assert drawn.shape == (120, 160, 3)
        assert np.abs(drawn.astype(int) - cv2.imread(str(photo)).astype(int)).max() > 100  # the label is drawn


def test_image_folder_and_video_classify_every_frame(tmp_path, colour_model):
    import cv2

    from actionnet.outputs import VideoFileSink

    model = colour_model / "model.onnx"
    order = ["red", "green", "blue", "red"]
    (tmp_path / "in").mkdir()
    frames = [_photo(c, 96, 128, 64, rng=np.random.default_rng(i)) for i, c in enumerate(order)]
    for i, f in enumerate(frames):
        cv2.imwrite(str(tmp_path / "in" / f"{i}.png"), f)
    rc, err = _cli("--model", model, "--headless", "--events", tmp_path / "f.jsonl", tmp_path / "in",
                   str(tmp_path / "out") + "/")
    assert rc == 0, err
    assert [e["label"] for e in _events(tmp_path / "f.jsonl")] == order
    assert sorted(os.listdir(tmp_path / "out")) == [f"{i:05d}.jpg" for i in range(4)]
    video = tmp_path / "v.mp4"
    with VideoFileSink(str(video), 10) as sink:
        for f in frames:
            for _ in range(3):
                sink.write(f)
    rc, err = _cli("--model", model, "--headless", "--events", tmp_path / "v.jsonl", video)
    assert rc == 0, err
    assert [e["label"] for e in _events(tmp_path / "v.jsonl")] == [c for c in order for _ in range(3)]
    # several frames into one picture: one line, nothing written
    rc, err = _cli("--model", model, "--headless", tmp_path / "in", tmp_path / "one.jpg")
    assert rc != 0 and "holds one image" in err and "Traceback" not in err
    assert not (tmp_path / "one.jpg").exists()


# -- posture on synthetic keypoints -----------------------------------------------------------

def _body(shoulder, hip, knee, ankle, vis=(1.0, 1.0, 1.0, 1.0), spread=8.0):
    """17 COCO keypoints of a side-on figure: both sides at the given joints (x offset ``spread``)."""
    k = np.zeros((17, 3), np.float32)
    k[0] = (shoulder[0], shoulder[1] - 30, 1.0)
    for (left, right), p, v in (((5, 6), shoulder, vis[0]), ((11, 12), hip, vis[1]), ((13, 14), knee, vis[2]),
                                ((15, 16), ankle, vis[3])):
        k[left] = (p[0] - spread / 2, p[1], v)
        k[right] = (p[0] + spread / 2, p[1], v)
    return k


@pytest.mark.parametrize("want, joints", [
    ("standing", ((100, 50), (100, 100), (100, 145), (100, 190))),
    ("standing", ((100, 50), (100, 100), (110, 138), (100, 175))),   # mid-stride
    ("sitting", ((100, 50), (100, 100), (145, 100), (145, 145))),    # on a chair, side on
    ("sitting", ((100, 50), (100, 100), (100, 110), (100, 150))),    # on a chair, facing the camera
    ("sitting", ((100, 50), (105, 100), (90, 120), (115, 135))),     # squatting: knees folded
    ("lying", ((50, 100), (100, 104), (145, 106), (190, 108))),
    ("lying", ((190, 100), (140, 96), (95, 95), (50, 94))),          # the other way round
])
def test_posture_from_joint_angles(want, joints):
    assert posture(_body(*joints)) == want


def test_posture_needs_the_joints_that_decide():
    stand = ((100, 50), (100, 100), (100, 145), (100, 190))
    assert posture(_body(*stand, vis=(0.1, 1, 1, 1))) is None   # no shoulders
    assert posture(_body(*stand, vis=(1, 1, 0.1, 0.1))) is None  # no knees: sitting or standing?
    assert posture(_body(*stand, vis=(1, 1, 1, 0.1))) == "standing"  # ankles are not needed
    lying = ((50, 100), (100, 104), (145, 106), (190, 108))
    assert posture(_body(*lying, vis=(1, 1, 0.1, 0.1))) == "lying"  # the torso alone says lying


def test_skeleton_is_drawn_between_visible_joints():
    from actionnet.skeleton import draw_skeleton

    frame = np.zeros((200, 200, 3), np.uint8)
    k = _body((100, 50), (100, 100), (100, 145), (100, 190), vis=(1, 1, 1, 0.1))
    draw_skeleton(frame, k, (0, 255, 0))
    assert (frame[120, 96] == (0, 255, 0)).all()  # the left thigh, hip to knee
    assert frame[170:180, 90:110].max() == 0      # the shins end at invisible ankles: nothing drawn


# -- pose detectors ---------------------------------------------------------------------------

IMGSZ = 320


@pytest.fixture(scope="module")
def yolo_pose(tmp_path_factory):
    """A random-weight YOLO11n-pose from ultralytics' YAML, He-initialised so that scores spread
    (as in test_yolo_export), and its export."""
    pytest.importorskip("ultralytics")
    from actionnet.export.yolo import export_yolo
    from detector_fakes import spread_yolo

    folder = tmp_path_factory.mktemp("pose")
    yolo = spread_yolo("yolo11n-pose.yaml", every_conv=False)
    head = yolo.model.model[-1]
    with torch.no_grad():
        for seq in head.cv4:  # keypoint offsets of a few cells, not hundreds
            seq[-1].weight.mul_(0.02)
    out = folder / "pose.onnx"
    export_yolo(yolo, str(out), imgsz=IMGSZ)
    return yolo, out


def _image(seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (12, 16, 3)).astype(np.uint8)
    # twice the input size: scaled on the way in and out; square, because ultralytics predicts
    # on the smallest padded rectangle (fewer anchors) where the ONNX letterboxes to its full square
    return cv2.resize(coarse, (2 * IMGSZ, 2 * IMGSZ), interpolation=cv2.INTER_CUBIC)


def test_pose_decode_parity_with_ultralytics_prediction(yolo_pose):
    from actionnet.pose import PoseDetector, open_detector
    from actionnet.tracker import iou_matrix

    yolo, path = yolo_pose
    img = _image()
    # IoU 1: NMS keeps every candidate, so the comparison is of decoding and scaling alone (the
    # NMS itself is the detector's, held to ultralytics' in test_yolo_export)
    det = open_detector(str(path), conf=0.0, iou=1.0, classes=None, max_det=300, log=None)
    assert isinstance(det, PoseDetector) and det.kpt_shape == (17, 3)
    raw = det.infer(img)[0]
    nc = len(det.spec.labels)
    best = np.sort(raw[4:4 + nc].max(0))
    conf = float(best[-300] + best[-301]) / 2  # about 300 candidates, none tied at the threshold (> vs >=)
    det.conf = conf
    got = det(img)
    ref = yolo.predict(img, imgsz=IMGSZ, conf=conf, iou=1.0, verbose=False, max_det=300)[0]
    rb, rs = ref.boxes.xyxy.cpu().numpy(), ref.boxes.conf.cpu().numpy()
    rk = ref.keypoints.data.cpu().numpy()
    assert len(rb) >= 250 and abs(len(got) - len(rb)) <= 3  # float noise at the score threshold
    m = iou_matrix(rb, got.boxes)
    j = m.argmax(axis=1)
    matched = m[np.arange(len(rb)), j] > 0.99
    assert matched.mean() >= 0.95
    assert np.allclose(rs[matched], got.scores[j[matched]], atol=2e-3)
    assert got.keypoints.shape == (len(got), 17, 3)
    # keypoints in frame pixels and their visibilities, as ultralytics scales them
    assert np.abs(rk[matched, :, :2] - got.keypoints[j[matched], :, :2]).max() < 1.0
    assert np.abs(rk[matched, :, 2] - got.keypoints[j[matched], :, 2]).max() < 2e-3
    # padded frames: keypoints map back exactly as box corners do
    corners = np.array([[[10.0, 40.0, 1.0], [300.0, 200.0, 1.0]]], np.float32)
    for shape in ((240, 400, 3), (500, 200, 3)):
        box = det.letterbox.to_frame(corners[0, :, :2].reshape(1, 4), shape)[0]
        assert np.allclose(det.keypoints_to_frame(corners, shape)[0, :, :2].ravel(), box, atol=1e-3)


def test_pose_export_metadata_and_foreign_kpt_shape(yolo_pose, tmp_path):
    import onnx

    from actionnet.errors import ModelError
    from actionnet.pose import KEYPOINTS_KEY, keypoint_shape, open_detector

    _, path = yolo_pose
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props[KEYPOINTS_KEY]) == [17, 3] and props["actionnet.detector_layout"] == "yolov8"
    # an ultralytics export without actionnet metadata: its own kpt_shape says it is a pose model
    m = onnx.load(str(path))
    keep = [p for p in m.metadata_props if not p.key.startswith("actionnet.")]
    del m.metadata_props[:]
    m.metadata_props.extend(keep)
    foreign = tmp_path / "foreign.onnx"
    onnx.save(m, str(foreign))
    assert keypoint_shape({p.key: p.value for p in keep}) == (17, 3)
    det = open_detector(str(foreign), classes=None, log=None)  # a YAML model names its classes "0".."79"
    assert det.kpt_shape == (17, 3) and det.spec.labels[0] in ("person", "0")
    with pytest.raises(ModelError, match="corrupt"):
        keypoint_shape({KEYPOINTS_KEY: "[17"})


# -- per-person pose mode ---------------------------------------------------------------------

def _people_frames(n=24, h=128, w=256):
    """Two coloured 12-pixel squares walking across grey, one per colour."""
    rng = np.random.default_rng(3)
    frames = []
    for i in range(n):
        f = np.clip(np.full((h, w, 3), GREY, np.float32) + rng.normal(0, 3, (h, w, 1)), 0, 255).astype(np.uint8)
        for colour, x, y in (("red", 40 + 2 * i, 30), ("green", 200 - 2 * i, 80)):
            f[y:y + 12, x:x + 12] = COLOURS[colour]
        frames.append(f)
    return frames


def test_persons_pose_mode_labels_postures_and_skeletons(tmp_path, colour_model):
    sys.path.insert(0, os.path.dirname(__file__))
    from actionnet.persons import PersonActionNet
    from pose_fakes import square_pose_detector

    det = square_pose_detector(tmp_path / "pose.onnx", scale=3)
    frames = _people_frames()
    with PersonActionNet(str(colour_model / "model.onnx"), str(det), context=1.5, threshold=0.0, cadence=1,
                         log=None) as net:
        assert net.skip_frames == 0  # the image model stores every frame
        events = []
        for i, f in enumerate(frames):
            events += net.update(f, i / 30)
            if i == len(frames) - 1:
                drawn = net.annotate(f.copy())
        events += net.finish()
    by_track = defaultdict(list)
    for e in events:
        if e["event"] == "classification":
            by_track[e["track_id"]].append(e)
    assert len(by_track) == 2
    for items in by_track.values():
        want = "red" if items[0]["box"][1] < 50 else "green"
        assert Counter(e["label"] for e in items)[want] >= 0.9 * len(items)
        assert len(items) >= len(frames) - 3  # every frame, once tracked
        assert all(e["posture"] == "standing" and np.array(e["keypoints"]).shape == (17, 3) for e in items)
    # the skeleton: the red figure's left shin (knee to ankle, below its square) is drawn over the grey
    red = next(st for st in net.states.values() if st.box[1] < 50)
    mid = ((red.keypoints[13, :2] + red.keypoints[15, :2]) / 2).round().astype(int)
    assert np.abs(drawn[mid[1], mid[0]].astype(int) - frames[-1][mid[1], mid[0]].astype(int)).max() > 40

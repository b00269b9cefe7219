"""What a new user trips over in the first hour (issue 13): file permissions, the README's Quick
start and its test command, the zoo offline, export and training messages, the per-person overlay."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from actionnet import zoo
from actionnet.errors import ZooError

TRAIN = "actionnet.export.train.cli"
EXPORT = "actionnet.export.cli"


def run_main(module: str, capfd, *args):
    """A console entry point run in this process (no interpreter and torch start-up per call);
    stderr as the user would see it."""
    import importlib

    capfd.readouterr()
    try:
        code = importlib.import_module(module).main([str(a) for a in args])
    except SystemExit as e:  # argparse
        code = e.code
    return SimpleNamespace(returncode=code, stderr=capfd.readouterr().err)


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield 0o666 & ~mask
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def one_error_line(r, prog: str) -> str:
    assert r.returncode != 0, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith(f"{prog}: error:")]
    assert len(errors) == 1, r.stderr
    return errors[0]


# -- 2. written files get the user's permissions, not mkstemp's 0600 ---------------------------

@pytest.mark.parametrize("mask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_exported_annotated_engine_and_downloaded_files_follow_the_umask(tmp_path, monkeypatch, mask):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from actionnet.engines.header import EngineHeader, write_engine
    from actionnet.export.custom import annotate
    from actionnet.export.onnx_export import export_clip_model
    from actionnet.export.synthetic import test_model_spec, tiny_net
    from onnx_models import colour_model

    torch.manual_seed(0)
    spec = test_model_spec(("a", "b"))
    (tmp_path / "labels.txt").write_text("a\nb\n")
    payload = tmp_path / "w.bin"
    payload.write_bytes(b"weights")
    (tmp_path / "zoo.json").write_text(json.dumps({"w": {
        "format": "onnx", "url": payload.as_uri(), "file": "w.bin", "labels": str(tmp_path / "labels.txt")}}))
    monkeypatch.setenv("ACTIONNET_ZOO", str(tmp_path / "zoo.json"))
    with umask(mask) as want:
        export_clip_model(tiny_net(2), spec, str(tmp_path / "m.onnx"), log=open(os.devnull, "w"))
        foreign = colour_model(tmp_path / "foreign.onnx")
        annotate(str(foreign), str(tmp_path / "labels.txt"), str(tmp_path / "annotated.onnx"))
        write_engine(str(tmp_path / "m.engine"), EngineHeader({}, "10.0", "none", "0.0", "fp32"), b"plan")
        downloaded = zoo.resolve("w", cache=str(tmp_path / "cache"), log=open(os.devnull, "w")).model_path
    for name in ("m.onnx", "annotated.onnx", "m.engine"):
        assert mode(tmp_path / name) == want, (name, oct(mode(tmp_path / name)))
    assert mode(downloaded) == want and Path(downloaded).read_bytes() == b"weights"
    assert [p.name for p in (tmp_path / "cache" / "w").iterdir()] == ["w.bin"]  # no temporary file left


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory):
    """An untrained self-describing clip model: the commands below only need its shape and spec."""
    torch = pytest.importorskip("torch")
    from actionnet.export.onnx_export import export_clip_model
    from actionnet.export.synthetic import test_model_spec, tiny_net

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("small") / "small.onnx"
    export_clip_model(tiny_net(2), test_model_spec(("a", "b")), str(path), log=open(os.devnull, "w"))
    return path


def _command_inputs(command, src: Path, out: Path, small_onnx, monkeypatch):
    """(entry point module, arguments) of the cheapest real run of ``command``, its inputs in
    ``src``, everything it writes in ``out``."""
    labels = src / "labels.txt"
    labels.write_text("a\nb\n")
    if command == "action":
        pytest.importorskip("torchvision")
        return EXPORT, ["action", "--arch", "mc3_18", "--random", "--labels", labels, "--clip-length", 2, "--size", 32,
                        "--output", out / "m.onnx"]
    if command == "image":
        pytest.importorskip("torchvision")
        return EXPORT, ["image", "--arch", "resnet18", "--labels", labels, "--size", 32, "--output", out / "m.onnx"]
    if command == "onnx":
        from onnx_models import colour_model

        return EXPORT, ["onnx", colour_model(src / "foreign.onnx"), "--labels", labels, "--output", out / "m.onnx"]
    if command == "stream":
        torch = pytest.importorskip("torch")
        from actionnet.export.stream import build

        torch.manual_seed(0)
        torch.save(build("movinet-a0", 2).state_dict(), src / "w.pth")
        return EXPORT, ["stream", "--arch", "movinet-a0", "--weights", src / "w.pth", "--labels", labels,
                        "--size", 32, "--output", out / "m.onnx"]
    if command == "xclip":
        torch = pytest.importorskip("torch")
        pytest.importorskip("transformers")
        from transformers import XCLIPModel

        import xclip_fixtures as xf

        torch.manual_seed(0)
        n = xf.write_tokenizer_files(str(src), 2000)
        xf.save_hf_folder(XCLIPModel(xf.tiny_config(n, frames=4, image=32, patch=16)).eval(), str(src), 32, 2000)
        return EXPORT, ["xclip", src, "--output", out / "z.onnx"]  # and z.text.onnx beside it
    if command == "yolo":
        pytest.importorskip("ultralytics")
        return EXPORT, ["yolo", "yolov8n.yaml", "--imgsz", 96, "--output", out / "y.onnx"]
    if command == "quantize":
        from conftest import write_clip_folders

        return EXPORT, ["quantize", small_onnx, "--calib", write_clip_folders(src, per_label=1), "--skip-frames", 0,
                        "--force", "--output", out / "q.onnx"]
    if command == "fp16":
        pytest.importorskip("onnxconverter_common")
        return EXPORT, ["fp16", small_onnx, "--output", out / "h.onnx"]
    if command == "engine":  # the fake TensorRT 11 (tests/fake_tensorrt.py) builds a real engine file
        import fake_tensorrt
        from test_tensorrt import install_cuda

        monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt.load("11"))
        install_cuda(monkeypatch, "cuda-python-13")
        return EXPORT, ["engine", small_onnx, "--precision", "fp32", "--output", out / "m.engine"]
    if command == "triton":
        return EXPORT, ["triton", small_onnx, "--repo", out / "repo", "--backend", "python"]
    if command == "train":
        pytest.importorskip("torch")
        import cv2

        for i, colour in enumerate(((0, 0, 255), (255, 0, 0))):
            (src / "data" / "ab"[i]).mkdir(parents=True)
            for j in range(3):
                cv2.imwrite(str(src / "data" / "ab"[i] / f"{j}.png"), np.full((24, 24, 3), colour, np.uint8))
        return TRAIN, ["--arch", "tiny2d", "--data", src / "data", "--epochs", 1, "--batch-size", 2, "--workers", 0,
                       "--device", "cpu", "--output", out / "run"]
    raise AssertionError(command)


@pytest.mark.parametrize("command", ["action", "image", "onnx", "stream", "xclip", "yolo", "quantize", "fp16",
                                     "engine", "triton", "train"])
def test_every_export_command_writes_with_the_umask(command, tmp_path, monkeypatch, capfd, small_onnx):
    """Each command of actionnet-export (and actionnet-train) run for real on the smallest model
    it takes, under umask 027: every file it leaves has 0640, every folder 0750 (mkstemp's 0600
    and a hard-coded 0644 both fail), and no temporary file is left beside them."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    module, args = _command_inputs(command, src, out, small_onnx, monkeypatch)
    with umask(0o027) as want:
        r = run_main(module, capfd, *args)
    assert r.returncode == 0, r.stderr
    written = sorted(out.rglob("*"))
    assert [p for p in written if p.is_file()], "nothing written"
    assert not [p.name for p in written if p.name.startswith(".") or ".tmp" in p.name or ".partial" in p.name]
    modes = {str(p.relative_to(out)): oct(mode(p)) for p in written}
    assert modes == {k: oct(0o777 & ~0o027 if (out / k).is_dir() else want) for k in modes}


# -- 4. the zoo offline: exact paths in the message, the model found flat or nested ------------

@pytest.fixture
def tiny_zoo(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    from onnx_models import colour_model

    labels = tmp_path / "labels.txt"
    labels.write_text("red\nblue\n")
    entry = {"format": "onnx", "url": "http://127.0.0.1:9/Action-Tiny.tar.gz", "archive": "tar.gz",
             "file": "Action-Tiny/tiny-kinetics.onnx", "labels": str(labels), "input_blob": "0",
             "output_blob": "198"}
    (tmp_path / "zoo.json").write_text(json.dumps({"tiny": entry}))
    monkeypatch.setenv("ACTIONNET_ZOO", str(tmp_path / "zoo.json"))
    monkeypatch.setenv("ACTIONNET_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "tiny", colour_model(tmp_path / "m.onnx")


def test_offline_message_names_the_exact_paths(tiny_zoo):
    folder, _ = tiny_zoo
    with pytest.raises(ZooError) as e:
        zoo.resolve("tiny", download=False)
    msg = str(e.value)
    assert "http://127.0.0.1:9/Action-Tiny.tar.gz" in msg
    assert str(folder / "Action-Tiny" / "tiny-kinetics.onnx") in msg and str(folder / "tiny-kinetics.onnx") in msg
    assert "\n" not in msg


@pytest.mark.parametrize("where", ["flat", "nested"])
def test_a_model_put_where_the_message_says_is_found(tiny_zoo, where):
    import shutil

    folder, model = tiny_zoo
    with pytest.raises(ZooError) as e:
        zoo.resolve("tiny", download=False)
    paths = re.findall(r"(?<!\S)(/\S+\.onnx)", str(e.value))
    assert paths == [str(folder / "Action-Tiny" / "tiny-kinetics.onnx"), str(folder / "tiny-kinetics.onnx")]
    target = Path(paths[0] if where == "nested" else paths[1])
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(model, target)
    got = zoo.resolve("tiny", download=False)
    assert Path(got.model_path) == target


def test_shipped_resnet18_offline_message(tmp_path):
    folder = tmp_path / "resnet-18"
    with pytest.raises(ZooError) as e:
        zoo.resolve("resnet-18", cache=str(tmp_path), download=False)
    msg = str(e.value)
    assert "https://nvidia.box.com/" in msg
    assert f"{folder}/Action-ResNet18/resnet-18-kinetics-moments.onnx" in msg
    assert f"{folder}/resnet-18-kinetics-moments.onnx" in msg


def test_torchvision_weights_put_by_hand_are_checked(tmp_path, monkeypatch):
    (tmp_path / "zoo.json").write_text(json.dumps({"tv": {
        "format": "torchvision", "arch": "r3d_18", "url": "http://127.0.0.1:9/r3d_18-b3b3357e.pth",
        "sha256_prefix": "b3b3357e", "labels": "kinetics400.txt"}}))
    monkeypatch.setenv("ACTIONNET_ZOO", str(tmp_path / "zoo.json"))
    with pytest.raises(ZooError) as e:
        zoo.resolve("tv", cache=str(tmp_path), download=False)
    assert str(tmp_path / "tv" / "r3d_18-b3b3357e.pth") in str(e.value)
    (tmp_path / "tv").mkdir()
    (tmp_path / "tv" / "r3d_18-b3b3357e.pth").write_bytes(b"something else")
    with pytest.raises(ZooError, match="checksum mismatch .* does not start with b3b3357e"):
        zoo.resolve("tv", cache=str(tmp_path), download=False)


# -- 6. export: the architecture first, a video is not a checkpoint, --random ------------------

@pytest.fixture(scope="module")
def mc3_checkpoint(tmp_path_factory):
    """A torchvision MC3-18 state dict (zeros: only names and shapes matter here)."""
    torch = pytest.importorskip("torch")
    import torchvision

    path = tmp_path_factory.mktemp("mc3") / "mc3_18-a90a0ba3.pth"
    with torch.device("meta"):
        model = torchvision.models.get_model("mc3_18", num_classes=400)
    torch.save({k: torch.zeros(v.shape, dtype=v.dtype) for k, v in model.state_dict().items()}, path)
    return path


@pytest.mark.parametrize("with_labels", [False, True])
def test_a_checkpoint_of_another_architecture_says_so_first(mc3_checkpoint, tmp_path, capfd, with_labels):
    from actionnet.models import LABELS

    labels = ["--labels", f"{LABELS}/kinetics400.txt"] if with_labels else []
    r = run_main(EXPORT, capfd, "action", "--arch", "resnet-18", "--weights", mc3_checkpoint, *labels, "--output",
                 tmp_path / "m.onnx")
    line = one_error_line(r, "actionnet-export")
    assert "does not fit resnet-18" in line and "it is a mc3_18 checkpoint: pass --arch mc3_18" in line
    assert "--labels" not in line and not (tmp_path / "m.onnx").exists()


def test_a_video_as_weights_is_not_a_checkpoint(synthetic_video, tmp_path, capfd):
    pytest.importorskip("torch")
    video = synthetic_video("red right slow", frames=4)
    r = run_main(EXPORT, capfd, "action", "--arch", "r3d_18", "--weights", video, "--output", tmp_path / "m.onnx")
    line = one_error_line(r, "actionnet-export")
    assert f"{video}: not a PyTorch checkpoint (it is an MP4/MOV video)" in line
    assert "load key" not in r.stderr and "weights_only" not in r.stderr.lower()


def test_random_weights_export_says_so_and_marks_the_model(tmp_path, capfd):
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "random.onnx"
    r = run_main(EXPORT, capfd, "action", "--arch", "resnet-18", "--random", "--size", 32, "--clip-length", 4,
                 "--output", out)
    assert r.returncode == 0, r.stderr
    assert "WARNING: --random: the weights are RANDOM" in r.stderr and "(RANDOM WEIGHTS)" in r.stderr
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["actionnet.weights"] == "random" and meta["actionnet.arch"] == "resnet-18"
    r = run_main(EXPORT, capfd, "action", "--arch", "resnet-18", "--output", out)
    assert r.returncode == 2 and "--weights" in r.stderr and "--random" in r.stderr


# -- 8. training: from-scratch warning, no empty run folder, finished runs, last.pt, curves -----

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny run, trained to the end under umask 027."""
    pytest.importorskip("torch")
    import io

    from actionnet.export.train.loop import Config, fit
    from actionnet.export.train.synthetic_clips import write_dataset

    root = tmp_path_factory.mktemp("newuser-train")
    data = write_dataset(str(root / "clips"), "direction", per_class=4, frames=16, seed=1)
    run = root / "run"
    log = io.StringIO()
    with umask(0o027) as want:
        fit(Config(output=str(run), data=data, arch="tiny3d", epochs=2, batch_size=4, workers=0), log=log)
    return run, log.getvalue(), want


def test_training_writes_files_with_the_umask_mode(finished_run):
    run, _, want = finished_run
    written = [p for p in run.rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {"model.onnx", "last.pt", "best.pt", "labels.txt", "curves.png"}
    assert {p.name: oct(mode(p)) for p in written} == {p.name: oct(want) for p in written}


def test_a_finished_run_keeps_no_optimizer_and_is_not_resumed(finished_run, capfd):
    import torch

    run, log, _ = finished_run
    assert "starts from random weights" not in log  # tiny3d is small
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["finished"] is True and last["epoch"] == 2
    assert not {"optimizer", "scheduler", "scaler"} & set(last)
    onnx_before = (run / "model.onnx").stat().st_mtime_ns
    r = run_main(TRAIN, capfd, "--resume", run)
    assert r.returncode == 0, r.stderr
    assert "finished all its 2 epochs already" in r.stderr and "nothing to resume" in r.stderr
    assert "parity" not in r.stderr and (run / "model.onnx").stat().st_mtime_ns == onnx_before
    r = run_main(TRAIN, capfd, "--resume", run, "--epochs", 3)
    line = one_error_line(r, "actionnet-train")
    assert "keeps no optimizer state" in line and "--weights" in line


def test_a_large_network_from_scratch_warns_and_a_refused_run_leaves_no_folder(tmp_path, capfd):
    pytest.importorskip("torch")
    out = tmp_path / "runs" / "x"
    r = run_main(TRAIN, capfd, "--data", tmp_path / "missing", "--arch", "r3d_18", "--output", out)
    one_error_line(r, "actionnet-train")
    assert "warning: r3d_18 (33M parameters) starts from random weights (no --weights)" in r.stderr
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_flat_curves_are_drawn_inside_the_frame():
    pytest.importorskip("torch")
    from actionnet.export.train.report import draw_curves

    history = [dict(epoch=e, train_loss=0.7, val_loss=0.7, train_acc=1.0, val_acc=1.0) for e in (1, 2, 3)]
    img = draw_curves(history, width=480, height=300).astype(int)
    top, bottom = 30, 300 - 35
    for panel in (img[:, :480], img[:, 480:]):
        b, r = panel[..., 0], panel[..., 2]
        curve = (np.abs(b - r) > 80) & (panel.min(axis=2) < 200)  # blue or orange, not black or grey
        curve[:, :60] = False  # the legend sits top right; the labels at the left
        curve[:top + 3 + 40, -80:] = False
        rows = np.nonzero(curve.any(axis=1))[0]
        assert rows.size, "no curve drawn"
        assert rows.min() >= top + 4 and rows.max() <= bottom - 4, (rows.min(), rows.max())


# -- 9. the per-person overlay: one decimal, visible boxes, readable text --------------------

def person(track_id, box, label="wave", confidence=0.4567):
    last = SimpleNamespace(label=label, confidence=confidence)
    return SimpleNamespace(id=track_id, box=box, last=last, reported=last, buffer=SimpleNamespace(stored=16))


def contrast(a, b) -> float:
    def lum(bgr):
        c = [v / 255 for v in bgr]
        c = [v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4 for v in c]
        return 0.0722 * c[0] + 0.7152 * c[1] + 0.2126 * c[2]

    la, lb = sorted((lum(a), lum(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_person_label_has_one_decimal():
    from actionnet.person_overlay import PersonOverlay

    assert PersonOverlay.text(person(3, (0, 0, 1, 1)), 16) == "#3 wave 45.7%"


def test_person_boxes_are_thicker_than_one_pixel():
    from actionnet.person_overlay import PersonOverlay, colour

    frame = np.zeros((480, 640, 3), np.uint8)
    PersonOverlay().annotate(frame, [person(0, (100, 100, 300, 400))], 16)
    row = frame[300]  # well below the label
    on = np.nonzero(np.all(row == colour(0), axis=1))[0]
    left = on[on < 200]
    assert left.size >= 2 and 100 in left, left


def test_person_label_text_is_readable_on_every_box_colour():
    from actionnet.person_overlay import _PALETTE, PersonOverlay, colour

    for track_id in range(len(_PALETTE)):
        frame = np.full((360, 640, 3), 128, np.uint8)
        PersonOverlay().annotate(frame, [person(track_id, (100, 100, 300, 300))], 16)
        c = np.array(colour(track_id))
        label = frame[40:97, 100:300].astype(int)  # the label's filled box ends 2 px above the person's box
        inside = np.all(label == c, axis=2)
        assert inside.sum() > 100, "no label background found"
        ys, xs = np.nonzero(inside)
        area = label[ys.min():ys.max() + 1, xs.min():xs.max() + 1].reshape(-1, 3)
        far = area[np.abs(area - c).sum(1).argmax()]  # the text's most saturated pixel
        assert contrast(far, c) >= 4.5, (track_id, c, far, contrast(far, c))

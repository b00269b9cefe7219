"""Training internals: architectures and heads, modes, the ig65m R(2+1)D-34, clips that equal
what the runtime feeds, and the runtime honouring the stride a model was trained at."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from actionnet.errors import ModelError  # noqa: E402
from actionnet.export.train.models import Trainable, build, head_prefix  # noqa: E402
from conftest import run_cli  # noqa: E402


@pytest.mark.parametrize("arch", ["resnet-18", "r3d_18", "mc3_18", "r2plus1d_18", "s3d", "r2plus1d_34", "tiny3d"])
def test_every_arch_gets_a_head_for_the_users_labels(arch):
    labels = ("a", "b", "c")
    net, spec = build(arch, labels)
    head = dict(net.named_parameters())[head_prefix(arch) + "weight"]
    assert head.shape[0] == 3
    assert spec.labels == labels and spec.arch == arch
    if arch != "s3d":  # s3d needs 14+ frames at 224: too slow to run here
        x = torch.zeros(1, 3, spec.clip_length, spec.height, spec.width)
        with torch.no_grad():
            assert net.eval()(x).shape == (1, 3)


def test_modes_train_what_they_say():
    net, _ = build("resnet-18", ("a", "b"))
    lin = Trainable(net, "resnet-18", "linear")
    assert lin.names == ["fc.weight", "fc.bias"]
    last = Trainable(net, "resnet-18", "last")
    assert all(n.startswith(("layer4.", "fc.")) for n in last.names) and "layer4.0.conv1.weight" in last.names
    full = Trainable(net, "resnet-18", "full")
    assert full.counts()["trainable"] == full.counts()["total"]


def test_linear_probe_keeps_backbone_batchnorm_frozen():
    net, spec = build("tiny3d", ("a", "b"))
    t = Trainable(net, "tiny3d", "linear")
    before = net[1].running_mean.clone()
    t.train()
    net(torch.randn(4, 3, spec.clip_length, spec.height, spec.width) * 3 + 1)
    assert torch.equal(before, net[1].running_mean)
    assert net[13].training


def test_backbone_weights_load_and_the_old_head_is_dropped(tmp_path):
    src, _ = build("tiny3d", tuple("abcdefgh"))
    torch.save(src.state_dict(), tmp_path / "w.pt")
    net, _ = build("tiny3d", ("x", "y"), weights=str(tmp_path / "w.pt"))
    assert torch.equal(net[0].weight, src[0].weight)
    assert net[13].weight.shape == (2, 64)


def test_a_checkpoint_of_another_arch_is_refused_naming_the_key(tmp_path):
    src, _ = build("resnet-18", ("a", "b"))
    torch.save(src.state_dict(), tmp_path / "r18.pt")
    with pytest.raises(ModelError, match=r"does not fit r3d_18: missing key 'stem.0.weight'"):
        build("r3d_18", ("a", "b"), weights=str(tmp_path / "r18.pt"))


# -- R(2+1)D-34 as ig65m-pytorch publishes it -------------------------------------------------

def test_ig65m_r2plus1d_34_has_caffe2_midplanes_and_batchnorm():
    from actionnet.export.ig65m import r2plus1d_34

    m = r2plus1d_34(400)
    assert m.layer2[0].conv2[0][0].out_channels == 288
    assert m.layer3[0].conv2[0][0].out_channels == 576
    assert m.layer4[0].conv2[0][0].out_channels == 1152
    # torchvision's formula (what r2plus1d_18 would do) for the first conv of the same block
    assert m.layer2[0].conv1[0][0].out_channels == 230
    bns = [x for x in m.modules() if isinstance(x, torch.nn.BatchNorm3d)]
    assert bns and all(b.eps == 1e-3 for b in bns)
    assert sum(p.numel() for p in m.parameters()) == pytest.approx(63.7e6, rel=0.01)


def test_torchvision_style_r2plus1d_34_checkpoint_is_refused(tmp_path):
    from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, R2Plus1dStem, VideoResNet

    tv = VideoResNet(BasicBlock, [Conv2Plus1D] * 4, [3, 4, 6, 3], R2Plus1dStem, num_classes=400)
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    r = run_cli("action", "--arch", "r2plus1d_34", "--weights", tmp_path / "tv.pth", "--output", tmp_path / "x.onnx",
                module="actionnet.export.cli")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "layer2.0.conv2.0.0.weight" in r.stderr and "[288, 128, 1, 3, 3]" in r.stderr
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.slow
def test_ig65m_export_with_parity_and_metadata(tmp_path):
    import onnx

    from actionnet.export.ig65m import r2plus1d_34

    torch.manual_seed(0)
    weights = tmp_path / "r2plus1d_34_clip32_ft_kinetics_from_ig65m-ade133f1.pth"
    torch.save(r2plus1d_34(400).state_dict(), weights)
    out = tmp_path / "ig65m.onnx"
    # --size 56 keeps the parity run short on a CPU; the graph is the same
    r = run_cli("action", "--arch", "r2plus1d_34", "--weights", weights, "--size", 56, "--output", out,
                module="actionnet.export.cli")
    assert r.returncode == 0, r.stderr
    assert "parity vs PyTorch" in r.stderr and "OK" in r.stderr
    props = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
    assert props["actionnet.clip_length"] == "32"  # from the published file name
    assert props["actionnet.arch"] == "r2plus1d_34"
    assert json.loads(props["actionnet.mean"]) == [0.43216, 0.394666, 0.37645]
    assert len(json.loads(props["actionnet.labels"])) == 400


def test_ig65m_head_without_label_map_needs_labels(tmp_path):
    from actionnet.export.ig65m import r2plus1d_34

    torch.save(r2plus1d_34(487).state_dict(), tmp_path / "r2plus1d_34_clip8_ig65m_from_scratch-9bae36ae.pth")
    r = run_cli("action", "--arch", "r2plus1d_34", "--weights", tmp_path / "r2plus1d_34_clip8_ig65m_from_scratch-9bae36ae.pth",
                "--output", tmp_path / "x.onnx", module="actionnet.export.cli")
    assert r.returncode != 0 and "487 classes" in r.stderr and "--labels" in r.stderr


# -- clips equal what the runtime feeds ---------------------------------------------------------

@pytest.mark.parametrize("skip", [0, 1, 2])
def test_validation_clip_is_exactly_the_runtime_window(synthetic_model, synthetic_video, skip):
    import actionnet
    from actionnet.export.train.clips import ClipDataset, span
    from actionnet.export.train.data import Sample
    from actionnet.sources import open_source

    path = synthetic_video("red right slow", frames=30, speed=0.4)
    net = actionnet.ActionNet(model=str(synthetic_model), skip_frames=skip)
    T = net.spec.clip_length
    with open_source(str(path)) as src:
        for n, (frame, _) in enumerate(src):
            net.update(frame)
            if n == span(T, skip) - 1:
                break
    window = net.buffer.window().copy()
    ds = ClipDataset([Sample(str(path), 0, 0, span(T, skip), 30)], net.spec, skip, train=False, val_clips=1)
    clip, label = ds[0]
    assert clip.dtype == np.uint8 and clip.shape == window.shape
    assert np.array_equal(clip, window)


def test_training_clips_are_random_but_reproducible(synthetic_video):
    from actionnet.export.synthetic import test_model_spec
    from actionnet.export.train.clips import ClipDataset
    from actionnet.export.train.data import Sample

    path = synthetic_video("red right slow", frames=30, speed=0.4)
    ds = ClipDataset([Sample(str(path), 0, 0, None, 30)], test_model_spec(), 1, train=True, seed=5)
    a, b, c = ds[(1, 0)][0], ds[(1, 0)][0], ds[(2, 0)][0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


# -- the runtime honours the stride written at training ----------------------------------------

def _with_stride(src, dst, skip):
    import onnx

    from actionnet.export.onnx_export import add_metadata

    m = onnx.load(str(src))
    props = {p.key: p.value for p in m.metadata_props}
    from actionnet.spec import ModelSpec

    spec = ModelSpec.from_metadata(props).replace(skip_frames=skip)
    onnx.save(add_metadata(m, spec), str(dst))
    return dst


def test_runtime_uses_the_models_stride_unless_told_otherwise(synthetic_model, synthetic_video, tmp_path):
    import actionnet
    from actionnet.export.synthetic import video_frames

    model = _with_stride(synthetic_model, tmp_path / "stride2.onnx", 2)
    net = actionnet.ActionNet(model=str(model))
    assert net.spec.skip_frames == 2 and net.buffer.skip_frames == 2
    assert actionnet.ActionNet(model=str(model), skip_frames=0).buffer.skip_frames == 0
    assert actionnet.ActionNet(model=str(synthetic_model)).buffer.skip_frames == 1  # no record: the default
    # 0.8 px per video frame reads "fast" at the recorded stride 2 and "slow" at 0 (see test_api)
    frames = video_frames("blue left slow", 24, 0.8)
    labels = [net.get_class_desc(net.classify(f)[0]) for f in frames]
    assert labels[-1] == "blue left fast"
    ev = tmp_path / "ev.jsonl"
    r = run_cli("--model", model, "--events", ev, "--headless", "--no-progress", synthetic_video("blue left slow"))
    assert r.returncode == 0, r.stderr
    assert {e["label"] for e in map(json.loads, open(ev)) if e["event"] == "classification"} == {"blue left fast"}
    r = run_cli("--model", model, "--skip-frames=0", "--events", ev, "--headless", synthetic_video("blue left slow"))
    assert {e["label"] for e in map(json.loads, open(ev)) if e["event"] == "classification"} == {"blue left slow"}


def test_seeking_reads_the_same_frames_as_decoding_from_the_start(tmp_path):
    from actionnet.export.synthetic import write_video
    from actionnet.export.train.clips import read_frames, read_frames_from_start
    from actionnet.export.train.synthetic_clips import video

    rng = np.random.default_rng(0)
    frames = []
    for k in range(4):  # 4 x 80 frames, the square crossing again and again: every frame differs
        frames += video({"direction": "right" if k % 2 else "left"}, 80, rng, width=64, height=64,
                        speed_per_frame=0.3)
    path = str(tmp_path / "long.mp4")
    write_video(path, frames)
    for idx in ([0, 2, 4], [100, 102, 104, 104], [251, 260, 300, 319], [318, 319, 330]):
        a, b = read_frames(path, idx), read_frames_from_start(path, idx)
        assert len(a) == len(idx)
        for x, y in zip(a, b):
            assert np.array_equal(x, y), idx


def test_per_person_mode_uses_the_models_stride_too(synthetic_model, tmp_path):
    from actionnet.persons import PersonActionNet
    from detector_fakes import square_detector

    model = _with_stride(synthetic_model, tmp_path / "stride2.onnx", 2)
    det = str(square_detector(tmp_path / "sq.onnx"))
    with PersonActionNet(str(model), det, log=None) as net:
        assert net.skip_frames == 2
    with PersonActionNet(str(model), det, skip_frames=0, log=None) as net:
        assert net.skip_frames == 0
    with PersonActionNet(str(synthetic_model), det, log=None) as net:
        assert net.skip_frames == 1

"""The export stage: checkpoints in, self-describing ONNX out, parity checked, bad files refused."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from actionnet.export import cli as export_cli  # noqa: E402
from actionnet.export.resnet3d import resnet3d  # noqa: E402
from actionnet.models import LABELS  # noqa: E402
from actionnet.spec import JETSON_DEFAULTS, ModelSpec, read_labels  # noqa: E402


def export(*argv) -> int:
    return export_cli.main([str(a) for a in argv])


def spec_of(path) -> ModelSpec:
    return ModelSpec.from_metadata({p.key: p.value for p in onnx.load(str(path)).metadata_props})


def run_ort(path, x):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.fixture(scope="module")
def km_checkpoint(tmp_path_factory):
    """A resnet-18 checkpoint shaped like 3D-ResNets-PyTorch's r3d18_KM_200ep.pth: a training
    dict whose state_dict keys carry DataParallel's ``module.`` prefix."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "r3d18_KM_200ep.pth"
    state = {f"module.{k}": v for k, v in resnet3d("resnet-18").state_dict().items()}
    torch.save({"epoch": 200, "arch": "resnet-18", "state_dict": state, "optimizer": {}}, path)
    return path


def test_resnet18_km_checkpoint_exports_self_describing_onnx(km_checkpoint, tmp_path, capsys):
    out = tmp_path / "resnet18.onnx"
    assert export("action", "--arch", "resnet-18", "--weights", km_checkpoint, "--output", out) == 0
    err = capsys.readouterr().err
    assert "parity vs PyTorch" in err and "top-1 agreement 100.0%" in err and "-> OK" in err
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    spec = spec_of(out)
    assert spec.labels == read_labels(f"{LABELS}/kinetics700_moments_1039.txt") and spec.num_classes == 1039
    assert (spec.clip_length, spec.height, spec.width) == (16, 112, 112)
    assert spec.mean == JETSON_DEFAULTS["mean"] and spec.std == (1.0, 1.0, 1.0) and spec.color_order == "RGB"
    assert spec.layout == "raw_nthwc" and spec.arch == "resnet-18"
    # dynamic batch; the graph does /255, mean and the transpose itself, so it must equal PyTorch fed by hand
    clips = np.random.default_rng(1).integers(0, 256, (2, 16, 112, 112, 3), dtype=np.uint8)
    got = run_ort(out, clips)
    model = resnet3d("resnet-18").eval()
    model.load_state_dict({k[7:]: v for k, v in torch.load(km_checkpoint)["state_dict"].items()})
    x = (torch.from_numpy(clips).float() / 255 - torch.tensor(JETSON_DEFAULTS["mean"])).permute(0, 4, 1, 2, 3)
    with torch.no_grad():
        ref = model(x).numpy()
    assert got.shape == (2, 1039)
    np.testing.assert_allclose(got, ref, atol=1e-3)


@pytest.mark.parametrize("model_arch,ckpt_arch,message", [
    ("resnet-34", "resnet-18", "missing key 'layer1.2.conv1.weight' (model shape [64, 64, 3, 3, 3])"),
    ("resnet-18", "resnet-34", "unexpected key 'layer1.2.conv1.weight'"),
])
def test_checkpoint_of_another_depth_is_refused_naming_the_key(tmp_path, capsys, model_arch, ckpt_arch, message):
    ckpt = tmp_path / "c.pth"
    torch.save({"state_dict": resnet3d(ckpt_arch).state_dict()}, ckpt)
    out = tmp_path / "m.onnx"
    assert export("action", "--arch", model_arch, "--weights", ckpt, "--output", out) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0 and not out.exists()


def test_checkpoint_with_other_shapes_is_refused_naming_key_and_shapes(tmp_path, capsys):
    from actionnet.export.resnet3d import ResNet3D

    ckpt = tmp_path / "c.pth"
    torch.save(ResNet3D([2, 2, 2, 2], conv1_t_size=3).state_dict(), ckpt)
    assert export("action", "--arch", "resnet-18", "--weights", ckpt, "--output", tmp_path / "m.onnx") != 0
    err = capsys.readouterr().err
    assert "key 'conv1.weight' has shape [64, 3, 3, 7, 7], the model wants [64, 3, 7, 7, 7]" in err


def test_head_size_must_match_the_labels(tmp_path, capsys):
    ckpt = tmp_path / "c.pth"
    torch.save(resnet3d("resnet-18", num_classes=400).state_dict(), ckpt)
    assert export("action", "--arch", "resnet-18", "--weights", ckpt, "--output", tmp_path / "m.onnx") != 0
    assert "400 classes in its head (fc.weight)" in capsys.readouterr().err


def test_unreadable_checkpoint_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    assert export("action", "--arch", "r3d_18", "--weights", bad, "--output", tmp_path / "m.onnx") != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("actionnet-export: error: cannot read checkpoint") and "\n" not in err


@pytest.mark.parametrize("arch", ["r3d_18", "mc3_18", "r2plus1d_18"])
def test_torchvision_resnets_take_their_spec_from_torchvision(arch, tmp_path, capsys):
    import torchvision

    weights = torchvision.models.get_model_weights(arch).DEFAULT
    ckpt = tmp_path / weights.url.rsplit("/", 1)[-1]
    torch.manual_seed(0)
    torch.save(torchvision.models.get_model(arch, num_classes=400).state_dict(), ckpt)
    out = tmp_path / f"{arch}.onnx"
    # half size keeps the test quick; the aspect of torchvision's 128x171 resize is kept
    assert export("action", "--arch", arch, "--weights", ckpt, "--output", out, "--size", 56, "--clip-length", 8) == 0
    assert "-> OK" in capsys.readouterr().err
    spec = spec_of(out)
    t = weights.transforms()
    assert spec.mean == tuple(t.mean) and spec.std == tuple(t.std)
    assert spec.labels == tuple(weights.meta["categories"]) and spec.arch == arch
    assert (spec.clip_length, spec.height, spec.width) == (8, 56, 56)
    assert spec.resize_mode == "resize_crop" and spec.resize_size == (64, 86) and spec.sample_fps == 15.0


def test_torchvision_spec_defaults_per_architecture():
    from actionnet.export.torchvision_models import ARCHS, spec_from_weights

    got = {a: spec_from_weights(a) for a in ARCHS}
    assert (got["r3d_18"].clip_length, got["r3d_18"].height, got["r3d_18"].resize_size) == (16, 112, (128, 171))
    assert (got["s3d"].height, got["s3d"].resize_mode, got["s3d"].resize_size) == (224, "resize_crop", (256, 256))
    assert (got["mvit_v2_s"].clip_length, got["mvit_v2_s"].resize_mode, got["mvit_v2_s"].resize_size) == \
        (16, "short_side", (256,))
    assert got["mvit_v2_s"].sample_fps == 7.5 and got["mvit_v1_b"].mean == (0.45, 0.45, 0.45)
    assert got["swin3d_t"].clip_length == 32 and got["swin3d_b"].mean == (0.485, 0.456, 0.406)
    assert all(s.num_classes == 400 for s in got.values())


def test_fixed_size_architectures_refuse_other_sizes():
    from actionnet.errors import ModelError
    from actionnet.export.torchvision_models import spec_from_weights

    with pytest.raises(ModelError, match="fixed 224x224"):
        spec_from_weights("mvit_v2_s", size=112)
    with pytest.raises(ModelError, match="at least 14 frames"):
        spec_from_weights("s3d", clip_length=8)


def test_fine_tuned_head_exports_with_its_labels(tmp_path, capsys):
    import torchvision

    ckpt = tmp_path / "ucf.pth"
    torch.save(torchvision.models.get_model("r3d_18", num_classes=101).state_dict(), ckpt)
    out = tmp_path / "ucf.onnx"
    argv = ["action", "--arch", "r3d_18", "--weights", ckpt, "--output", out, "--size", 56, "--clip-length", 8]
    assert export(*argv) != 0
    assert "101 classes in its head (fc.weight), but Kinetics-400 has 400; pass --labels" in capsys.readouterr().err
    assert export(*argv, "--labels", f"{LABELS}/ucf101.txt") == 0
    assert spec_of(out).labels == read_labels(f"{LABELS}/ucf101.txt")


def test_swin3d_exports_at_a_small_size(tmp_path, capsys):
    import torchvision

    ckpt = tmp_path / "swin.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.get_model("swin3d_t", num_classes=400).state_dict(), ckpt)
    out = tmp_path / "swin.onnx"
    assert export("action", "--arch", "swin3d_t", "--weights", ckpt, "--output", out,
                  "--size", 64, "--clip-length", 8) == 0
    assert "-> OK" in capsys.readouterr().err
    assert run_ort(out, np.zeros((2, 8, 64, 64, 3), np.uint8)).shape == (2, 400)


def test_broken_parity_writes_nothing(tmp_path, monkeypatch):
    from actionnet.errors import ModelError
    from actionnet.export import onnx_export
    from actionnet.export.synthetic import test_model_spec, tiny_net

    spec = test_model_spec()
    broken = onnx_export.ParityReport(max_abs_diff=0.5, top1_agreement=0.5, clips=2, tolerance=1e-4)
    monkeypatch.setattr(onnx_export, "parity", lambda *a, **k: broken)
    out = tmp_path / "m.onnx"
    with pytest.raises(ModelError, match="parity broken, .* not written"):
        onnx_export.export_clip_model(tiny_net(), spec, str(out))
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_parity_report_catches_a_different_model(tmp_path):
    from actionnet.export import onnx_export
    from actionnet.export.synthetic import test_model_spec, tiny_net

    spec = test_model_spec()
    torch.manual_seed(0)
    out = tmp_path / "m.onnx"
    assert onnx_export.export_clip_model(tiny_net(), spec, str(out)).ok
    torch.manual_seed(1)
    other = onnx_export.RawClipModel(tiny_net(), spec.replace(layout="raw_nthwc")).eval()
    report = onnx_export.parity(other, str(out), onnx_export.sample_clips(spec, 4))
    assert not report.ok and report.max_abs_diff > report.tolerance


# -- foreign ONNX + label file ---------------------------------------------------------------

def test_custom_onnx_is_annotated_and_runs_without_flags(tmp_path, capsys):
    from onnx_models import colour_model

    src = colour_model(tmp_path / "c.onnx")
    labels = tmp_path / "labels.txt"
    labels.write_text("red\nblue\n")
    out = tmp_path / "annotated.onnx"
    assert export("onnx", src, "--labels", labels, "--output", out, "--mean", "0.4,0.4,0.4") == 0
    assert "defaults assumed for: color_order" in capsys.readouterr().err
    spec = spec_of(out)
    assert spec.labels == ("red", "blue") and (spec.clip_length, spec.height, spec.width) == (4, 16, 16)
    assert spec.input_name == "0" and spec.output_name == "198" and spec.layout == "ncthw"
    assert spec.mean == (0.4, 0.4, 0.4) and spec.std == (1.0, 1.0, 1.0) and spec.output_kind == "logits"
    onnx.checker.check_model(onnx.load(str(out)))

    from actionnet import ActionNet

    net = ActionNet(model=str(out), skip_frames=0, threshold=0.0)  # no labels, no blobs, no flags
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 2] = 200  # BGR
    for _ in range(4):
        class_id, conf = net.classify(red)
    assert net.get_class_desc(class_id) == "red" and conf > 0.9


def test_custom_onnx_softmax_output_is_recorded_as_probabilities(tmp_path):
    from onnx import helper

    from actionnet.export.custom import annotate
    from onnx_models import colour_model

    src = colour_model(tmp_path / "c.onnx", output_name="logits")
    m = onnx.load(str(src))
    m.graph.node.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1))
    m.graph.output[0].name = "probs"
    onnx.save(m, str(src))
    labels = tmp_path / "l.txt"
    labels.write_text("a\nb\n")
    assert annotate(str(src), str(labels), str(tmp_path / "o.onnx")).output_kind == "probabilities"


@pytest.mark.parametrize("make,labels,message", [
    (dict(rank=4), "a\nb\n", "has rank 4"),
    (dict(), "a\nb\nc\n", "3 labels, but output '198' has 2 classes"),
    (dict(clip_length=4), "", "is empty"),
])
def test_custom_onnx_mismatches_are_refused(tmp_path, capsys, make, labels, message):
    from onnx_models import colour_model

    src = colour_model(tmp_path / "c.onnx", **make)
    lab = tmp_path / "l.txt"
    lab.write_text(labels)
    out = tmp_path / "o.onnx"
    assert export("onnx", src, "--labels", lab, "--output", out) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and not out.exists()


def test_not_an_onnx_file_is_refused(tmp_path, capsys):
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"\x00garbage")
    lab = tmp_path / "l.txt"
    lab.write_text("a\n")
    assert export("onnx", bad, "--labels", lab, "--output", tmp_path / "o.onnx") != 0
    assert "is not an ONNX model" in capsys.readouterr().err


def test_unknown_arch_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as e:
        export("action", "--arch", "resnet-50", "--weights", "x.pth", "--output", tmp_path / "o.onnx")
    assert e.value.code == 2

import pytest

from actionnet.errors import LabelError, ModelError
from actionnet.spec import JETSON_DEFAULTS, ModelSpec, foreign_spec, read_labels


def spec(**kw):
    base = dict(labels=("a", "b"), clip_length=16, height=112, width=112, input_name="x", output_name="y")
    base.update(kw)
    return ModelSpec(**base)


def test_metadata_round_trip():
    s = spec(layout="raw_nthwc", mean=(0.1, 0.2, 0.3), std=(0.5, 0.6, 0.7), resize_mode="resize_crop",
             resize_size=(128, 171), sample_fps=15.0, labels=("a b", "c,d", 'e"f'))
    props = s.to_metadata()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in props.items())
    assert ModelSpec.from_metadata(props) == s


def test_foreign_model_has_no_spec():
    assert ModelSpec.from_metadata({"producer": "pytorch"}) is None


def test_corrupt_metadata_is_a_model_error():
    props = spec().to_metadata()
    props["actionnet.labels"] = "[not json"
    with pytest.raises(ModelError, match="corrupt"):
        ModelSpec.from_metadata(props)


@pytest.mark.parametrize("kw,match", [
    (dict(layout="nchw"), "layout"), (dict(color_order="RGBA"), "colour order"), (dict(std=(0, 1, 1)), "std"),
    (dict(clip_length=0), "positive"), (dict(labels=()), "label"), (dict(resize_mode="fit"), "resize mode"),
])
def test_invalid_spec(kw, match):
    with pytest.raises(ModelError, match=match):
        spec(**kw)


def test_foreign_defaults_follow_jetson_inference_and_say_so():
    s = foreign_spec(["N", 3, 16, 112, 112], "0", "198", 3, labels=["a", "b", "c"])
    assert s.mean == (0.4345, 0.4051, 0.3775) and s.std == (1.0, 1.0, 1.0) and s.color_order == "RGB"
    assert s.output_kind == "logits" and s.layout == "ncthw"
    assert "mean" in s.assumed and "clip_length" not in s.assumed  # T came from the shape
    s2 = foreign_spec([1, 3, 8, 64, 64], "0", "198", 2, labels=["a", "b"], mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    assert s2.clip_length == 8 and s2.mean == (0.5, 0.5, 0.5) and "mean" not in s2.assumed
    assert set(JETSON_DEFAULTS) >= set(s.assumed)


def test_foreign_checks():
    with pytest.raises(ModelError, match="rank 4"):
        foreign_spec([1, 3, 112, 112], "0", "198", 2, labels=["a", "b"])
    with pytest.raises(LabelError, match="3 labels, but output '198' has 2 classes"):
        foreign_spec([1, 3, 16, 112, 112], "0", "198", 2, labels=["a", "b", "c"])
    with pytest.raises(LabelError, match="--labels"):
        foreign_spec([1, 3, 16, 112, 112], "0", "198", 2)


def test_read_labels(tmp_path):
    p = tmp_path / "l.txt"
    p.write_text("run\njump\n\n")
    assert read_labels(p) == ("run", "jump")
    (tmp_path / "e.txt").write_text("\n")
    with pytest.raises(LabelError, match="empty"):
        read_labels(tmp_path / "e.txt")
    with pytest.raises(LabelError, match="cannot read"):
        read_labels(tmp_path / "missing.txt")


# -- --mean, --std, --value-scale: honoured on the host, refused where the graph normalises ------

def _with_spec(path, spec):
    """Write ``spec`` into the ONNX at ``path``'s metadata, as the export stage does."""
    import onnx

    model = onnx.load(str(path))
    for k, v in spec.to_metadata().items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return path


def _zero_shot_model(path, t=2, size=8, dim=4):
    """A raw-frame zero-shot graph: uint8 frames [N, T, H, W, 3] and text embeddings [L, dim] ->
    one score per label. Its arithmetic does not matter here, only its contract."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Cast", ["frames"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["f", "axes"], ["m"], keepdims=0),
        helper.make_node("Unsqueeze", ["m", "one"], ["m1"]),
        helper.make_node("ReduceSum", ["text", "one"], ["t"], keepdims=0),
        helper.make_node("Mul", ["m1", "t"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "zero-shot",
        [helper.make_tensor_value_info("frames", TensorProto.UINT8, ["N", t, size, size, 3]),
         helper.make_tensor_value_info("text", TensorProto.FLOAT, ["L", dim])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", "L"])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [4], [1, 2, 3, 4]),
                     helper.make_tensor("one", TensorProto.INT64, [1], [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return _with_spec(path, spec(labels=(), clip_length=t, height=size, width=size, input_name="frames",
                                 output_name="logits", layout="raw_nthwc", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                                 text_input="text", text_encoder="text.onnx", embed_dim=dim))


@pytest.mark.parametrize("flag", [dict(mean=(0.1, 0.2, 0.3)), dict(std=(1.0, 1.0, 1.0)), dict(value_scale=1.0)],
                         ids=["mean", "std", "value_scale"])
def test_normalisation_overrides_are_refused_for_a_zero_shot_model_that_normalises_in_its_graph(tmp_path, flag):
    from actionnet.errors import UsageError
    from actionnet.model import load_action_model

    path = _zero_shot_model(tmp_path / "zs.onnx")
    with pytest.raises(UsageError, match=r"^--(mean|std|value-scale): .*zs.onnx normalises inside its graph"):
        load_action_model(str(path), ["run", "jump"], engine="onnxruntime", log=None, **flag)


def test_normalisation_overrides_take_effect_for_a_host_normalised_model(tmp_path):
    """A self-describing float model ([N, 3, T, H, W], layout ncthw) is normalised on the host, so
    --mean reaches it: grey frames score red when less is taken off red than off blue, and blue
    the other way round."""
    import numpy as np

    import actionnet
    from onnx_models import colour_model

    path = _with_spec(colour_model(tmp_path / "m.onnx"),
                      spec(labels=("red", "blue"), clip_length=4, height=16, width=16, input_name="0",
                           output_name="198", layout="ncthw", mean=(0.4, 0.4, 0.4)))
    grey = np.full((32, 32, 3), 128, np.uint8)
    got = {}
    for mean in ((0.0, 0.0, 0.3), (0.3, 0.0, 0.0)):
        with actionnet.ActionNet(model=str(path), mean=mean, skip_frames=0, threshold=0.0, engine="onnxruntime",
                                 log=None) as net:
            assert net.spec.mean == mean
            got[mean] = [net.classify(grey) for _ in range(4)][-1]
    assert net.get_class_desc(got[(0.0, 0.0, 0.3)][0]) == "red"
    assert net.get_class_desc(got[(0.3, 0.0, 0.0)][0]) == "blue"

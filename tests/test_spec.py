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

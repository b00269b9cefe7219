"""The model contract: everything the runtime needs to feed a model, read from one place.

Every ONNX file the export stage writes carries a :class:`ModelSpec` in its ``metadata_props``
(string keys, string values, prefixed ``actionnet.``), so a model and its preprocessing cannot
drift apart. A foreign ONNX carries none of it: :func:`foreign_spec` fills the gaps from flags
and the documented defaults of jetson-inference's resnet-18/34-kinetics-moments models, and
records which defaults it assumed so the runtime can say so.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence, Tuple

from .errors import LabelError, ModelError

STATE_INITS = ("zeros", "values")
STATE_DTYPES = ("float32", "float16", "int64", "int32", "uint8")


@dataclass(frozen=True)
class StateSpec:
    """One state tensor of a streaming model: fed as input ``name``, returned as output ``output``.

    ``shape`` leaves out the batch axis (one row per stream or tracked person). ``init`` says
    how a new stream starts: ``zeros``, or ``values``: the bytes in ``values`` (base64, the
    dtype's little-endian layout, one row), for states whose start is not zero.
    """

    name: str
    output: str
    shape: Tuple[int, ...]
    dtype: str = "float32"
    init: str = "zeros"
    values: str = ""

    def __post_init__(self):
        if self.init not in STATE_INITS:
            raise ModelError(f"invalid model spec: state {self.name!r} init must be one of {STATE_INITS}, got {self.init!r}")
        if self.dtype not in STATE_DTYPES:
            raise ModelError(f"invalid model spec: state {self.name!r} dtype must be one of {STATE_DTYPES}, got {self.dtype!r}")
        if not all(isinstance(d, int) and d >= 1 for d in self.shape):
            raise ModelError(f"invalid model spec: state {self.name!r} needs a fixed positive shape, got {list(self.shape)}")
        if self.init == "values" and not self.values:
            raise ModelError(f"invalid model spec: state {self.name!r} starts from stored values but carries none")
        object.__setattr__(self, "shape", tuple(self.shape))

    def to_json(self) -> dict:
        d = dict(name=self.name, output=self.output, shape=list(self.shape), dtype=self.dtype, init=self.init)
        if self.init == "values":
            d["values"] = self.values
        return d

    @classmethod
    def from_json(cls, d: Mapping) -> "StateSpec":
        return cls(name=d["name"], output=d["output"], shape=tuple(d["shape"]), dtype=d.get("dtype", "float32"),
                   init=d.get("init", "zeros"), values=d.get("values", ""))

PREFIX = "actionnet."
SPEC_VERSION = "1"

TASKS = ("action", "detector")
OUTPUT_KINDS = ("logits", "probabilities")
# raw_nthwc: uint8 frames exactly as the frame buffer holds them, [N, T, H, W, C]; the graph
# casts, scales, normalises and transposes. ncthw: float32 normalised on the host, [N, C, T, H, W]
# (the layout of 3D-ResNets, torchvision video models and jetson-inference's ONNX files).
LAYOUTS = ("raw_nthwc", "ncthw")
COLOR_ORDERS = ("RGB", "BGR")
# short_side: scale the shorter side to resize_size[0], centre-crop (H, W).
# resize_crop: squash to resize_size (h, w), centre-crop (H, W) (torchvision's r3d/mc3/r2plus1d).
# squash: resize to (H, W), aspect ratio not kept. letterbox: fit inside (H, W), pad.
RESIZE_MODES = ("short_side", "resize_crop", "squash", "letterbox")

# jetson-inference's resnet-18/34-kinetics-moments ONNX (c/actionNet.cpp): RGB, 16x112x112,
# x/255 minus the Kinetics mean, std 1, logits out (it adds the softmax itself).
JETSON_DEFAULTS = dict(
    clip_length=16,
    height=112,
    width=112,
    color_order="RGB",
    resize_mode="short_side",
    resize_size=(112,),
    value_scale=255.0,
    mean=(0.4345, 0.4051, 0.3775),
    std=(1.0, 1.0, 1.0),
    output_kind="logits",
)


@dataclass(frozen=True)
class ModelSpec:
    """How to feed one model and read its output. Validated on construction."""

    labels: Tuple[str, ...]
    clip_length: int
    height: int
    width: int
    input_name: str
    output_name: str
    task: str = "action"
    output_kind: str = "logits"
    layout: str = "ncthw"
    color_order: str = "RGB"
    resize_mode: str = "short_side"
    resize_size: Tuple[int, ...] = ()
    value_scale: float = 255.0
    mean: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    sample_fps: Optional[float] = None
    # Frames dropped between stored frames when the model was trained (actionnet-train writes
    # it); the runtime uses it unless --skip-frames is given. None: not recorded.
    skip_frames: Optional[int] = None
    arch: str = ""
    # Zero-shot models (runtime/zeroshot.py): the input that takes one text embedding per label
    # ([L, embed_dim] float32), the text-encoder ONNX beside the model that makes them, and the
    # embedding size. Such a model carries no labels; they are given at run time.
    text_input: str = ""
    text_encoder: str = ""
    embed_dim: Optional[int] = None
    # Streaming models (``frames, *state -> scores, *state'``): their state tensors. Empty for
    # clip models. For a streaming model ``clip_length`` is the number of frames per step (1
    # for MoViNet Stream and TSM online) and ``skip_frames`` the stride the state expects.
    states: Tuple[StateSpec, ...] = ()
    # Names of the fields that came from defaults rather than the model or the user.
    assumed: Tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self):
        def check(ok, what):
            if not ok:
                raise ModelError(f"invalid model spec: {what}")

        check(self.task in TASKS, f"task must be one of {TASKS}, got {self.task!r}")
        check(self.output_kind in OUTPUT_KINDS, f"output kind must be one of {OUTPUT_KINDS}, got {self.output_kind!r}")
        check(self.layout in LAYOUTS, f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        check(self.color_order in COLOR_ORDERS, f"colour order must be one of {COLOR_ORDERS}, got {self.color_order!r}")
        check(self.resize_mode in RESIZE_MODES, f"resize mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        check(self.clip_length >= 1 and self.height >= 1 and self.width >= 1,
              f"clip length and size must be positive, got T={self.clip_length} H={self.height} W={self.width}")
        check(len(self.mean) == 3 and len(self.std) == 3, "mean and std need 3 values each")
        check(all(s > 0 for s in self.std), f"std must be positive, got {self.std}")
        check(self.value_scale > 0, f"value scale must be positive, got {self.value_scale}")
        check(len(self.labels) >= 1 or self.zero_shot, "a model needs at least one label")
        check(not self.zero_shot or (self.text_encoder and self.embed_dim),
              "a zero-shot model needs its text encoder file and embedding size")
        check(self.skip_frames is None or self.skip_frames >= 0, f"skip frames must be >= 0, got {self.skip_frames}")
        names = [st.name for st in self.states] + [st.output for st in self.states]
        check(len(set(names)) == len(names) and self.input_name not in names and self.output_name not in names,
              "state input and output names must be unique and differ from the frame input and the scores")
        if not self.resize_size:
            object.__setattr__(self, "resize_size", _default_resize_size(self.resize_mode, self.height, self.width))

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def streaming(self) -> bool:
        """True for a model that carries state from step to step instead of seeing whole clips."""
        return bool(self.states)

    @property
    def raw_input(self) -> bool:
        """True when the graph takes uint8 frames and does the arithmetic itself."""
        return self.layout == "raw_nthwc"

    @property
    def zero_shot(self) -> bool:
        """True when the labels are text prompts embedded at run time (an extra model input)."""
        return bool(self.text_input)

    def replace(self, **changes) -> "ModelSpec":
        return dataclasses.replace(self, **changes)

    # -- ONNX metadata_props round trip -------------------------------------------------
    def to_metadata(self) -> dict:
        """String key/value pairs for ONNX ``metadata_props`` (and TensorRT engine headers)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d.pop("assumed")
        states = d.pop("states")
        out = {PREFIX + "spec_version": SPEC_VERSION}
        if states:
            out[PREFIX + "states"] = json.dumps([st.to_json() for st in states])
        for k, v in d.items():
            if v is None or v == "":
                continue
            out[PREFIX + k] = json.dumps(list(v)) if isinstance(v, (tuple, list)) else str(v)
        return out

    @classmethod
    def from_metadata(cls, props: Mapping[str, str]) -> Optional["ModelSpec"]:
        """The spec stored in ``props``, or None when the model carries none (a foreign model)."""
        if PREFIX + "spec_version" not in props:
            return None
        kw = {}
        try:
            for f in dataclasses.fields(cls):
                key = PREFIX + f.name
                if key not in props or f.name == "assumed":
                    continue
                raw = props[key]
                if f.name == "states":
                    kw["states"] = tuple(StateSpec.from_json(x) for x in json.loads(raw))
                elif f.name in ("labels", "resize_size", "mean", "std"):
                    kw[f.name] = tuple(json.loads(raw))
                elif f.name in ("clip_length", "height", "width", "skip_frames", "embed_dim"):
                    kw[f.name] = int(raw)
                elif f.name in ("value_scale", "sample_fps"):
                    kw[f.name] = float(raw)
                else:
                    kw[f.name] = raw
            return cls(**kw)
        except (ValueError, TypeError, KeyError) as e:  # json errors are ValueErrors
            raise ModelError(f"model metadata is corrupt ({type(e).__name__}: {e})") from None


def _default_resize_size(mode: str, h: int, w: int) -> Tuple[int, ...]:
    if mode == "short_side":
        return (min(h, w),)
    return (h, w)


def read_labels(path) -> Tuple[str, ...]:
    """One class name per line (line N = class N-1); blank trailing lines ignored."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.rstrip("\r\n") for line in f]
    except OSError as e:
        raise LabelError(f"cannot read label file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise LabelError(f"label file {path} is not UTF-8 text") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise LabelError(f"label file {path} is empty")
    return tuple(lines)


def foreign_spec(
    input_shape: Sequence,
    input_name: str,
    output_name: str,
    num_outputs: Optional[int],
    labels: Optional[Sequence[str]] = None,
    **overrides,
) -> ModelSpec:
    """Spec for an ONNX without actionnet metadata: flags first, then the model's shape, then
    jetson-inference's defaults. ``assumed`` lists the defaults taken."""
    if len(input_shape) != 5:
        raise ModelError(
            f"input {input_name!r} has rank {len(input_shape)} (shape {list(input_shape)}); "
            "an action model takes a 5-D clip [N, C, T, H, W]"
        )
    _, c, t, h, w = input_shape
    if isinstance(c, int) and c != 3:
        raise ModelError(f"input {input_name!r} has {c} channels (shape {list(input_shape)}); expected 3 in [N, 3, T, H, W]")
    from_shape = {k: v for k, v in (("clip_length", t), ("height", h), ("width", w)) if isinstance(v, int) and v > 0}
    kw = dict(JETSON_DEFAULTS)
    kw.update(from_shape)
    assumed = [k for k in JETSON_DEFAULTS if k not in from_shape and overrides.get(k) is None]
    kw.update({k: v for k, v in overrides.items() if v is not None})
    if labels is None:
        raise LabelError("this model carries no labels; pass --labels FILE (one class name per line)")
    labels = tuple(labels)
    if num_outputs is not None and num_outputs != len(labels):
        raise LabelError(
            f"label count does not match the model: {len(labels)} labels, "
            f"but output {output_name!r} has {num_outputs} classes"
        )
    if "resize_size" not in overrides or overrides.get("resize_size") is None:
        kw["resize_size"] = _default_resize_size(kw["resize_mode"], kw["height"], kw["width"])
    return ModelSpec(
        labels=labels, input_name=input_name, output_name=output_name, layout="ncthw",
        assumed=tuple(assumed), **kw,
    )

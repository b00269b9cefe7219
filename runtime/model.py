"""Opening an action model: the engine plus the spec that says how to feed it.

Self-describing models (written by ``actionnet-export``) carry their spec; foreign ONNX files get
one from flags, their input shape and jetson-inference's defaults (see :mod:`actionnet.spec`).
Flags override metadata field by field. Shapes are checked here, once, so that a wrong model
fails at load time with a clear message instead of deep inside the first inference.

:func:`open_classifier` is the one way both run modes open their model: zoo name or file,
engine, spec, the stride it was trained at, frame preparation and a scorer per stream.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Optional

from .config import ClassifierOptions
from .engines import Engine, open_engine
from .errors import LabelError, ModelError, UsageError
from .preprocess import FramePreparer, HostNormalizer
from .scores import Scorer
from .spec import PREFIX, ModelSpec, foreign_spec
from .zeroshot import fixed_labels

# spec fields a user may override from the command line
PREP_FIELDS = ("color_order", "resize_mode", "resize_size", "mean", "std", "value_scale", "output_kind")
# The arithmetic a raw-frame model (layout raw_nthwc: every actionnet export) does inside its
# graph. The host hands such a model its uint8 frames untouched, so an override of these has
# nowhere to act; colour order, resize and output kind stay on the host and can be overridden.
IN_GRAPH_FIELDS = (("mean", "--mean"), ("std", "--std"), ("value_scale", "--value-scale"))


def resolve_network(network: Optional[str], model: Optional[str], labels: Optional[str], input_blob: Optional[str],
                    output_blob: Optional[str], overrides: dict, log=sys.stderr):
    """``(model, labels, input_blob, output_blob, overrides)``: a zoo name (``--network``, default
    resnet-18) fills in what the user did not give; with ``--model`` everything stays as given."""
    if model is not None:
        return model, labels, input_blob, output_blob, overrides
    from .zoo import resolve

    entry = resolve(network or "resnet-18", log=log)
    overrides = dict(overrides)
    for k, v in entry.spec_overrides.items():
        if overrides.get(k) is None:  # the CLI passes every flag, unset ones as None
            overrides[k] = v
    return (entry.model_path, labels or entry.labels_path, input_blob or entry.input_blob,
            output_blob or entry.output_blob, overrides)


def load_action_model(path: str, labels=None, input_blob: Optional[str] = None,
                      output_blob: Optional[str] = None, engine: str = "auto", threads: Optional[int] = None,
                      log=sys.stderr, precision: Optional[str] = None, **overrides):
    """Open ``path`` and return ``(engine, spec)``, checked against each other. ``labels``: a label
    file, or the label names (a zero-shot model's text prompts, see :mod:`actionnet.zeroshot`)."""
    unknown = set(overrides) - set(PREP_FIELDS)
    if unknown:
        raise TypeError(f"unknown overrides: {sorted(unknown)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    eng = open_engine(path, engine, threads=threads, precision=precision, log=log)
    try:
        spec = _spec_for(eng, labels, input_blob, output_blob, overrides)
        _check(eng, spec)
        if spec.zero_shot:  # hook: issue 16 (zero-shot models embed their prompts once, here)
            from .zeroshot import bind_labels

            eng, spec = bind_labels(eng, spec, labels, threads=threads, log=log)
    except Exception:
        eng.close()
        raise
    if spec.assumed and log is not None:
        print(f"actionnet: {path} carries no actionnet metadata; assumed jetson-inference defaults for: "
              f"{', '.join(spec.assumed)}", file=log)
    return eng, spec


def _spec_for(eng: Engine, labels, input_blob, output_blob, overrides) -> ModelSpec:
    if input_blob and input_blob != eng.input.name:
        raise ModelError(f"model {eng.path} has no input {input_blob!r}; its input is {eng.input.name!r}")
    out = eng.output(output_blob)
    task = eng.metadata.get(PREFIX + "task", "action")
    if task != "action":  # before the spec is read: a detector's metadata is no action spec
        raise ModelError(f"{eng.path} is a {task} model, not an action model")
    spec = ModelSpec.from_metadata(eng.metadata)
    if spec is None:
        n = out.shape[-1] if out.shape and isinstance(out.shape[-1], int) else None
        return foreign_spec(eng.input.shape, eng.input.name, out.name, n,
                            labels=fixed_labels(labels), **overrides)
    if spec.task != "action":
        raise ModelError(f"{eng.path} is a {spec.task} model, not an action model")
    if spec.raw_input:
        _refuse_in_graph_overrides(eng.path, spec, overrides)
    changes = dict(overrides)
    if labels and not spec.zero_shot:
        changes["labels"] = fixed_labels(labels)
    if output_blob:
        changes["output_name"] = out.name
    return spec.replace(**changes) if changes else spec


def _refuse_in_graph_overrides(path: str, spec: ModelSpec, overrides: dict) -> None:
    """Refuse a mean, std or value scale the graph would never see, rather than take it and
    silently compute the model's own. Undoing the graph's normalisation on the host is no way out:
    the input is uint8, so the frames would be clipped and rounded. The model's own values change
    nothing and pass (a script may give every model the same flags)."""
    differ = [flag for name, flag in IN_GRAPH_FIELDS
              if overrides.get(name) is not None and not _same(overrides[name], getattr(spec, name))]
    if differ:
        own = (f"mean {_nums(spec.mean)}, std {_nums(spec.std)}, value scale {spec.value_scale:g}")
        raise UsageError(f"{', '.join(differ)}: {path} normalises inside its graph (it takes raw uint8 frames; "
                         f"{own}), out of the runtime's reach; leave {'them' if len(differ) > 1 else 'it'} out, or "
                         f"re-export the model with the values it needs (actionnet-export action --mean/--std for "
                         f"3D ResNets)")


def _same(given, own) -> bool:
    a = tuple(given) if isinstance(given, (tuple, list)) else (given,)
    b = tuple(own) if isinstance(own, (tuple, list)) else (own,)
    return len(a) == len(b) and all(math.isclose(float(x), float(y), rel_tol=1e-6, abs_tol=1e-9) for x, y in zip(a, b))


def _nums(values) -> str:
    return ",".join(f"{v:g}" for v in values)


def _check(eng: Engine, spec: ModelSpec) -> None:
    shape = eng.input.shape
    t, h, w = spec.clip_length, spec.height, spec.width
    want = ("N", t, h, w, 3) if spec.raw_input else ("N", 3, t, h, w)
    if len(shape) != 5:
        raise ModelError(f"input {eng.input.name!r} of {eng.path} has rank {len(shape)} (shape {list(shape)}); "
                         f"an action model takes a 5-D clip {list(want)}")
    for got, exp in zip(shape[1:], want[1:]):
        if isinstance(got, int) and got != exp:
            raise ModelError(f"input {eng.input.name!r} of {eng.path} has shape {list(shape)}; "
                             f"the model spec wants {list(want)}")
    out = eng.output(spec.output_name)
    n = out.shape[-1] if out.shape else None
    if isinstance(n, int) and n != spec.num_classes:
        raise LabelError(f"label count does not match the model: {spec.num_classes} labels, "
                         f"but output {out.name!r} has {n} classes")


@dataclass
class Classifier:
    """An opened action model and everything needed to feed it and read its scores."""

    engine: Engine
    spec: ModelSpec
    options: ClassifierOptions
    skip_frames: int  # the stride in use: the user's, else the model's training stride, else 1
    prepare: FramePreparer

    def normalizer(self, batch: int = 1) -> Optional[HostNormalizer]:
        """Host-side normalisation for models that do not normalise in their graph (else None)."""
        return None if self.spec.raw_input else HostNormalizer(self.spec, batch=batch)

    def scorer(self) -> Scorer:
        """A fresh scorer (its smoothing is per stream or per person)."""
        o, s = self.options, self.spec
        return Scorer(s.labels, logits=s.output_kind == "logits", threshold=o.threshold, top_k=o.top_k,
                      smoothing=o.smoothing)

    def describe(self) -> str:
        s = self.spec
        return f"model {self.engine.path} ({s.clip_length}x{s.height}x{s.width}, {s.num_classes} classes, {self.engine.name})"

    def close(self) -> None:
        self.engine.close()


def open_classifier(options: ClassifierOptions, log=sys.stderr) -> Classifier:
    """Validate ``options``, resolve a zoo name, open the engine and read the spec."""
    o = options.validate()
    model, labels, input_blob, output_blob, overrides = resolve_network(
        o.network, o.model, o.labels, o.input_blob, o.output_blob, o.overrides(), log)
    engine, spec = load_action_model(model, labels, input_blob, output_blob, engine=o.engine, threads=o.threads,
                                     log=log, precision=o.precision, **overrides)
    skip = o.skip_frames if o.skip_frames is not None else spec.skip_frames if spec.skip_frames is not None else 1
    if engine.metadata.get("actionnet.weights") == "random" and log is not None:
        print(f"actionnet: warning: {model} has random weights (actionnet-export --random): its labels mean nothing",
              file=log)
    return Classifier(engine, spec, o, skip, FramePreparer(spec))

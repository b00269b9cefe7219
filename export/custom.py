"""``actionnet-export onnx``: a foreign action ONNX + label file -> checked, self-describing ONNX.

Checks what would otherwise fail at the first frame: a 5-D [N, 3, T, H, W] input (T, H, W fixed
or given), an output with one score per label, a graph ONNX Runtime can run on one clip. The
spec is built by the same :func:`actionnet.spec.foreign_spec` the runtime uses for unannotated
files, so ``actionnet --model=x.onnx --labels=l.txt`` and the annotated file behave the same.
The graph is not changed; only ``metadata_props`` are written.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

import numpy as np

from actionnet import files
from actionnet.errors import ModelError
from actionnet.spec import COLOR_ORDERS, RESIZE_MODES, ModelSpec, foreign_spec, read_labels

HELP = "check a foreign action ONNX against its label file and write it with actionnet metadata"


def add_arguments(p) -> None:
    from actionnet.config import floats as _floats

    p.add_argument("model", help="ONNX file taking [N, 3, T, H, W] float clips")
    p.add_argument("--labels", required=True, help="label file, one class per line")
    p.add_argument("--output", required=True, help="annotated ONNX file to write")
    p.add_argument("--input-blob", help="input tensor name (default: the only input)")
    p.add_argument("--output-blob", help="output tensor name (default: the first output)")
    p.add_argument("--clip-length", type=int, help="frames per clip, when the model's T is dynamic")
    p.add_argument("--size", type=_floats(2), metavar="H,W", help="input height,width, when dynamic")
    p.add_argument("--mean", type=_floats(3), help="per-channel mean after value scaling (default jetson's Kinetics mean)")
    p.add_argument("--std", type=_floats(3), help="per-channel std (default 1,1,1)")
    p.add_argument("--value-scale", type=float, help="divide pixel values by this first (default 255)")
    p.add_argument("--color-order", choices=COLOR_ORDERS, help="channel order the model expects (default RGB)")
    p.add_argument("--resize-mode", choices=RESIZE_MODES, help="how frames are fitted (default short_side)")
    p.add_argument("--output-kind", choices=("logits", "probabilities"),
                   help="what the model outputs (default: probabilities when the graph ends in Softmax)")


def run(args) -> int:
    overrides = dict(clip_length=args.clip_length, mean=args.mean, std=args.std, value_scale=args.value_scale,
                     color_order=args.color_order, resize_mode=args.resize_mode, output_kind=args.output_kind)
    if args.size:
        overrides.update(height=int(args.size[0]), width=int(args.size[1]))
    spec = annotate(args.model, args.labels, args.output, args.input_blob, args.output_blob, **overrides)
    print(f"actionnet-export: wrote {args.output}: {spec.clip_length}x{spec.height}x{spec.width} {spec.color_order}, "
          f"{spec.num_classes} classes ({spec.output_kind})"
          + (f"; defaults assumed for: {', '.join(spec.assumed)}" if spec.assumed else ""), file=sys.stderr)
    return 0


def annotate(path: str, labels: str, output: str, input_blob=None, output_blob=None, **overrides):
    import onnx

    try:
        model = onnx.load(path)
    except FileNotFoundError:
        raise ModelError(f"model file not found: {path}") from None
    except Exception as e:  # protobuf DecodeError and friends
        raise ModelError(f"{path} is not an ONNX model ({type(e).__name__})") from None
    inputs = _graph_inputs(model)
    if input_blob is None and len(inputs) != 1:
        raise ModelError(f"{path} has {len(inputs)} inputs ({', '.join(inputs)}); pick one with --input-blob")
    in_name = input_blob or next(iter(inputs))
    if in_name not in inputs:
        raise ModelError(f"{path} has no input {in_name!r}; its inputs are: {', '.join(inputs)}")
    outputs = {o.name: _dims(o) for o in model.graph.output}
    out_name = output_blob or model.graph.output[0].name
    if out_name not in outputs:
        raise ModelError(f"{path} has no output {out_name!r}; its outputs are: {', '.join(outputs)}")
    out_shape = outputs[out_name]
    n = out_shape[-1] if out_shape and isinstance(out_shape[-1], int) else None
    if overrides.get("output_kind") is None:
        overrides["output_kind"] = "probabilities" if _ends_in_softmax(model, out_name) else "logits"
    spec = foreign_spec(inputs[in_name], in_name, out_name, n, labels=read_labels(labels), **overrides)
    _smoke_run(path, spec)
    add_metadata(model, spec, {"actionnet.assumed": ",".join(spec.assumed)} if spec.assumed else None)
    onnx.checker.check_model(model)
    _save_atomic(model, output)
    return spec


def add_metadata(path_or_model, spec: ModelSpec, extra: Optional[dict] = None):
    """Stamp ``spec`` (and ``extra`` string pairs) into an ONNX model's metadata_props. Here,
    not in onnx_export (PyTorch code), so that annotating a foreign ONNX needs no torch."""
    import onnx

    model = onnx.load(path_or_model) if isinstance(path_or_model, (str, os.PathLike)) else path_or_model
    props = dict(spec.to_metadata())
    props.update({k: str(v) for k, v in (extra or {}).items()})
    keep = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    return model


def _dims(value_info):
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in value_info.type.tensor_type.shape.dim]


def _graph_inputs(model):
    init = {i.name for i in model.graph.initializer}
    return {i.name: _dims(i) for i in model.graph.input if i.name not in init}


def _ends_in_softmax(model, out_name: str) -> bool:
    return any(out_name in node.output and node.op_type == "Softmax" for node in model.graph.node)


def _smoke_run(path: str, spec) -> None:
    """One clip through ONNX Runtime: catches graphs that load but cannot run at this shape."""
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = np.zeros((1, 3, spec.clip_length, spec.height, spec.width), np.float32)
    try:
        y = sess.run([spec.output_name], {spec.input_name: x})[0]
    except Exception as e:
        first = str(e).strip().splitlines()[0][:200]
        raise ModelError(f"{path} does not run on a [1, 3, {spec.clip_length}, {spec.height}, {spec.width}] clip: "
                         f"{first}") from None
    if y.shape[-1] != spec.num_classes:
        raise ModelError(f"{path} output {spec.output_name!r} has {y.shape[-1]} classes on a real run, "
                         f"but the label file has {spec.num_classes}")


def _save_atomic(model, output: str) -> None:
    import onnx

    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise ModelError(f"cannot write {output}: folder {folder} does not exist")
    fd, tmp = files.mkstemp(folder, prefix=".annotate-", suffix=".onnx")
    os.close(fd)
    try:
        onnx.save(model, tmp)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)

"""``actionnet-export triton MODEL... --repo DIR``: a Triton Inference Server model repository.

One folder per model::

    DIR/NAME/config.pbtxt      platform, inputs, outputs, batching, instances, actionnet metadata
    DIR/NAME/labels.txt        the score output's label file (Triton's classification extension)
    DIR/NAME/1/model.onnx      version 1 (model.plan for a TensorRT engine; model.py beside
                               model.onnx for the Python backend)

The model's actionnet metadata (labels, clip length, preprocessing, stride, detector layout,
streaming state) goes into the config's ``parameters`` as the same ``actionnet.*`` string
pairs the ONNX file carries, so a client given only the model's name reads its whole spec from
the server's model-config endpoint and cannot drift from the model it is served.

The batch axis is Triton's (``max_batch_size``), so the clip input is declared as the frame
buffer holds it, uint8 ``[T, H, W, 3]``. Dynamic batching merges requests from many streams;
the default queue delay (5 ms) is nothing against a clip that spans about a second of video.
A streaming model (``actionnet.states`` in its metadata) gets sequence batching with implicit
state instead: Triton keeps each stream's state on the server between requests.

The config is written by hand (text format) so that the export stage needs no tritonclient;
the tests parse every config with tritonclient's own model-config protobuf.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from actionnet.errors import ModelError, UsageError

HELP = "write a Triton Inference Server model repository (config.pbtxt, labels, version 1) for models"

BACKENDS = ("auto", "onnxruntime", "tensorrt", "python")
PREFIX = "actionnet."

# numpy dtype name -> Triton data type
TRITON_TYPES = {"uint8": "TYPE_UINT8", "int8": "TYPE_INT8", "int32": "TYPE_INT32", "int64": "TYPE_INT64",
                "float16": "TYPE_FP16", "float32": "TYPE_FP32", "float64": "TYPE_FP64", "bool": "TYPE_BOOL"}
# ONNX TensorProto element type -> numpy dtype name
_ONNX_TYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64"}

# The Python-backend model the tests' server runs (pytriton's Triton has only that backend): the
# exported ONNX through ONNX Runtime, every request of a dynamic batch in one session run.
PYTHON_MODEL = '''"""actionnet: runs model.onnx (beside this file) with ONNX Runtime inside Triton's Python backend.

Triton hands execute() every request of a dynamic batch; they are concatenated along the batch
axis, run in one ONNX Runtime call and split back, so requests from many streams share a run.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        cfg = json.loads(args["model_config"])
        opts = ort.SessionOptions()
        threads = cfg.get("parameters", {}).get("intra_op_threads", {}).get("string_value", "")
        if threads:
            opts.intra_op_num_threads = int(threads)
        here = os.path.dirname(os.path.abspath(__file__))
        self.session = ort.InferenceSession(os.path.join(here, "model.onnx"), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        self.inputs = [i["name"] for i in cfg["input"]]
        self.outputs = [o["name"] for o in cfg["output"]]

    def execute(self, requests):
        arrays = {n: [pb_utils.get_input_tensor_by_name(r, n).as_numpy() for r in requests] for n in self.inputs}
        sizes = [a.shape[0] for a in arrays[self.inputs[0]]]
        feeds = {n: (v[0] if len(v) == 1 else np.concatenate(v)) for n, v in arrays.items()}
        outs = self.session.run(self.outputs, feeds)
        responses, start = [], 0
        for n in sizes:
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(o[start:start + n]))
                       for name, o in zip(self.outputs, outs)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += n
        return responses
'''


def add_arguments(p) -> None:
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="self-describing ONNX (action model, detector, zero-shot with labels folded in) "
                        "or actionnet TensorRT .engine")
    p.add_argument("--repo", required=True, help="model repository folder (created; other models kept)")
    p.add_argument("--name", help="model name on the server (one MODEL only; default: the file's stem)")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="auto: onnxruntime_onnx for .onnx, tensorrt_plan for .engine; python: ONNX Runtime "
                        "inside Triton's Python backend (servers without the ONNX Runtime backend)")
    p.add_argument("--max-batch", type=int, default=16,
                   help="max_batch_size: most clips in one batch (default 16; 0 for models with a fixed batch)")
    p.add_argument("--preferred-batch", default="4,8,16",
                   help="dynamic batching's preferred batch sizes, comma-separated (default 4,8,16)")
    p.add_argument("--queue-delay-us", type=int, default=5000,
                   help="how long a request may wait for others to batch with, microseconds (default 5000)")
    p.add_argument("--instances", type=int, default=1, help="model instances per device (default 1)")
    p.add_argument("--device", choices=("gpu", "cpu"), default="gpu", help="instance kind (default gpu)")
    p.add_argument("--threads", type=int, help="Python backend: ONNX Runtime threads per instance")
    p.add_argument("--force", action="store_true", help="replace a model folder of the same name")


def run(args) -> int:
    if args.name and len(args.models) > 1:
        raise UsageError("--name names one model; give one MODEL or drop --name")
    preferred = _ints(args.preferred_batch, "--preferred-batch")
    for path in args.models:
        folder = export_model(path, args.repo, name=args.name, backend=args.backend, max_batch=args.max_batch,
                              preferred=preferred, queue_delay_us=args.queue_delay_us, instances=args.instances,
                              device=args.device, threads=args.threads, force=args.force, log=sys.stderr)
        print(f"actionnet-export: wrote {folder}", file=sys.stderr)
    return 0


def _ints(text: str, flag: str) -> List[int]:
    try:
        v = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{flag} wants comma-separated integers, got {text!r}") from None
    if any(x < 1 for x in v):
        raise UsageError(f"{flag} wants positive integers, got {text!r}")
    return v


# ------------------------------------------------------------------------------------------
# What the model takes and returns


class Tensor:
    def __init__(self, name: str, dtype: str, dims: Sequence):
        self.name, self.dtype = name, dtype
        self.dims = [d if isinstance(d, int) and d > 0 else -1 for d in dims]


def onnx_io(path: str) -> Tuple[List[Tensor], List[Tensor], Dict[str, str]]:
    """Graph inputs (initializers excluded), outputs and ``metadata_props`` of an ONNX file."""
    import onnx

    try:
        m = onnx.load(path, load_external_data=False)
    except Exception as e:  # protobuf DecodeError and friends
        raise ModelError(f"{path} is not a readable ONNX file ({type(e).__name__}: {e})") from None
    inits = {i.name for i in m.graph.initializer}

    def tensors(values):
        out = []
        for v in values:
            if v.name in inits:
                continue
            tt = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
            out.append(Tensor(v.name, _ONNX_TYPES.get(tt.elem_type, "float32"), dims))
        return out

    return tensors(m.graph.input), tensors(m.graph.output), {p.key: p.value for p in m.metadata_props}


def engine_io(path: str) -> Tuple[List[Tensor], List[Tensor], Dict[str, str], bytes]:
    """An actionnet TensorRT engine: I/O from its header's spec (no TensorRT needed here), and
    the bare plan Triton loads (the actionnet header stripped)."""
    from actionnet.engines.header import read_engine

    header, plan = read_engine(path)
    meta = dict(header.metadata)
    task = meta.get(PREFIX + "task")
    if task == "action":
        t, h, w = (int(meta[PREFIX + k]) for k in ("clip_length", "height", "width"))
        n = len(json.loads(meta[PREFIX + "labels"]))
        ins = [Tensor(meta[PREFIX + "input_name"], "uint8", [-1, t, h, w, 3])]
        outs = [Tensor(meta[PREFIX + "output_name"], "float32", [-1, n])]
    elif task == "detector":
        name, shape = next(iter(header.inputs.items())) if header.inputs else ("images", [1, 3, -1, -1])
        ins = [Tensor(name, "float32", [-1 if header.max_batch > 1 else 1, *shape[1:]])]
        outs = []  # Triton's auto-complete reads the plan's outputs
    else:
        raise ModelError(f"{path} carries no actionnet spec; export it from a self-describing ONNX")
    return ins, outs, meta, plan


# ------------------------------------------------------------------------------------------
# config.pbtxt


def _quote(s: str) -> str:
    """A protobuf text-format string literal (ASCII only: other bytes as octal escapes)."""
    out = []
    for b in s.encode("utf-8"):
        c = chr(b)
        if c in '"\\':
            out.append("\\" + c)
        elif 32 <= b < 127:
            out.append(c)
        else:
            out.append(f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def _dims(dims: Sequence[int]) -> str:
    return "[ " + ", ".join(str(int(d)) for d in dims) + " ]"


def config_pbtxt(name: str, inputs: List[Tensor], outputs: List[Tensor], metadata: Dict[str, str],
                 platform: Optional[str] = None, backend: Optional[str] = None, max_batch: int = 16,
                 preferred: Sequence[int] = (4, 8, 16), queue_delay_us: int = 5000, instances: int = 1,
                 device: str = "gpu", label_output: Optional[str] = None, extra_parameters: Dict[str, str] = None,
                 max_sequence_idle_us: int = 5_000_000) -> str:
    """The text of a ``config.pbtxt``. ``inputs``/``outputs`` dims include the batch axis when
    ``max_batch > 0`` (it is dropped here: Triton adds it)."""
    lines = [f"name: {_quote(name)}"]
    if platform:
        lines.append(f"platform: {_quote(platform)}")
    if backend:
        lines.append(f"backend: {_quote(backend)}")
    lines.append(f"max_batch_size: {int(max_batch)}")
    states = json.loads(metadata.get(PREFIX + "states", "[]") or "[]")
    state_names = {s["name"] for s in states} | {s["output"] for s in states}

    def block(kind: str, tensors: List[Tensor]):
        items = []
        for t in tensors:
            if t.name in state_names:  # implicit state: Triton feeds and keeps it, not the client
                continue
            dims = t.dims[1:] if max_batch > 0 else t.dims
            body = [f"    name: {_quote(t.name)}", f"    data_type: {TRITON_TYPES.get(t.dtype, 'TYPE_FP32')}",
                    f"    dims: {_dims(dims)}"]
            if kind == "output" and t.name == label_output:
                body.append('    label_filename: "labels.txt"')
            items.append("  {\n" + "\n".join(body) + "\n  }")
        if items:
            lines.append(f"{kind} [\n" + ",\n".join(items) + "\n]")

    block("input", inputs)
    block("output", outputs)
    if states:
        lines.append(_sequence_batching(states, max_sequence_idle_us))
    elif max_batch > 0:
        pref = sorted({p for p in preferred if p <= max_batch})
        body = []
        if pref:
            body.append(f"  preferred_batch_size: {_dims(pref)}")
        body.append(f"  max_queue_delay_microseconds: {int(queue_delay_us)}")
        lines.append("dynamic_batching {\n" + "\n".join(body) + "\n}")
    kind = "KIND_GPU" if device == "gpu" else "KIND_CPU"
    lines.append(f"instance_group [\n  {{\n    count: {int(instances)}\n    kind: {kind}\n  }}\n]")
    params = dict(metadata)
    params.update(extra_parameters or {})
    if params:
        items = [f"  {{\n    key: {_quote(k)}\n    value: {{ string_value: {_quote(str(v))} }}\n  }}"
                 for k, v in sorted(params.items())]
        lines.append("parameters [\n" + ",\n".join(items) + "\n]")
    return "\n".join(lines) + "\n"


def _sequence_batching(states: List[dict], idle_us: int) -> str:
    """Sequence batching with implicit state: one state set per sequence (stream or track) kept
    on the server; a new sequence starts from zeros or from the values the model carries
    (written as ``initial_state/<name>.bin``)."""
    items = []
    for s in states:
        dt = TRITON_TYPES.get(s.get("dtype", "float32"), "TYPE_FP32")
        dims = _dims(s["shape"])
        init = ("zero_data: true" if s.get("init", "zeros") == "zeros"
                else f"data_file: {_quote(_state_file(s['name']))}")
        items.append(
            "    {\n"
            f"      input_name: {_quote(s['name'])}\n      output_name: {_quote(s['output'])}\n"
            f"      data_type: {dt}\n      dims: {dims}\n"
            f"      initial_state: {{\n        data_type: {dt}\n        dims: {dims}\n"
            f"        {init}\n        name: {_quote(s['name'] + '_init')}\n      }}\n"
            "    }")
    return ("sequence_batching {\n"
            f"  max_sequence_idle_microseconds: {int(idle_us)}\n"
            "  state [\n" + ",\n".join(items) + "\n  ]\n}")


def _state_file(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) + ".bin"


# ------------------------------------------------------------------------------------------
# The model folder


def export_model(path: str, repo: str, name: Optional[str] = None, backend: str = "auto", max_batch: int = 16,
                 preferred: Sequence[int] = (4, 8, 16), queue_delay_us: int = 5000, instances: int = 1,
                 device: str = "gpu", threads: Optional[int] = None, force: bool = False, log=None) -> str:
    """Write ``repo/name`` for the model at ``path``; returns the folder."""
    from actionnet.engines.tensorrt import is_engine_file

    if not os.path.isfile(path):
        raise ModelError(f"model file not found: {path}")
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if max_batch < 0 or instances < 1 or queue_delay_us < 0:
        raise UsageError("need --max-batch >= 0, --instances >= 1 and --queue-delay-us >= 0")
    name = name or os.path.splitext(os.path.basename(path))[0]
    if not name or "/" in name or name.startswith("."):
        raise UsageError(f"invalid model name {name!r}")
    engine_file = is_engine_file(path)
    if backend == "auto":
        backend = "tensorrt" if engine_file else "onnxruntime"
    if engine_file != (backend == "tensorrt"):
        raise UsageError(f"backend {backend} does not take {path}; TensorRT takes .engine files, "
                         "ONNX Runtime and the Python backend .onnx files")
    plan = None
    if engine_file:
        inputs, outputs, meta, plan = engine_io(path)
    else:
        inputs, outputs, meta = onnx_io(path)
    if not inputs:
        raise ModelError(f"{path} has no inputs")
    spec_meta = {k: v for k, v in meta.items() if k.startswith(PREFIX)}
    if PREFIX + "spec_version" not in spec_meta:
        raise ModelError(f"{path} carries no actionnet metadata; annotate it first "
                         "(actionnet-export onnx MODEL --labels FILE --output annotated.onnx)")
    states = json.loads(spec_meta.get(PREFIX + "states", "[]") or "[]")
    batch_axis = inputs[0].dims[0] if inputs[0].dims else 1
    if max_batch > 0 and batch_axis != -1:
        if log is not None:
            print(f"actionnet-export: {path} has a fixed batch of {batch_axis}: max_batch_size 0, "
                  f"no dynamic batching", file=log)
        max_batch = 0
    if max_batch > 0 and engine_file:
        from actionnet.engines.header import read_header

        built = read_header(path).max_batch
        if built < max_batch:
            max_batch = built  # the plan's optimisation profile ends there
    task = spec_meta.get(PREFIX + "task", "action")
    labels = json.loads(spec_meta.get(PREFIX + "labels", "[]"))
    label_output = spec_meta.get(PREFIX + "output_name") if task == "action" else None
    if label_output is None and task == "action" and outputs:
        label_output = outputs[0].name
    folder = os.path.join(repo, name)
    if os.path.exists(folder):
        if not force:
            raise UsageError(f"{folder} exists; pass --force to replace it")
        shutil.rmtree(folder)
    platform = {"onnxruntime": "onnxruntime_onnx", "tensorrt": "tensorrt_plan"}.get(backend)
    extra = {"intra_op_threads": str(threads)} if threads and backend == "python" else {}
    text = config_pbtxt(name, inputs, outputs, spec_meta, platform=platform,
                        backend="python" if backend == "python" else None, max_batch=max_batch,
                        preferred=preferred, queue_delay_us=queue_delay_us, instances=instances,
                        device="cpu" if backend == "python" else device, label_output=label_output,
                        extra_parameters=extra)
    tmp = folder + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "1"))
    try:
        with open(os.path.join(tmp, "config.pbtxt"), "w", encoding="utf-8") as f:
            f.write(text)
        if labels:
            with open(os.path.join(tmp, "labels.txt"), "w", encoding="utf-8") as f:
                f.write("\n".join(labels) + "\n")
        if engine_file:
            with open(os.path.join(tmp, "1", "model.plan"), "wb") as f:
                f.write(plan)
        else:
            shutil.copyfile(path, os.path.join(tmp, "1", "model.onnx"))
        if backend == "python":
            with open(os.path.join(tmp, "1", "model.py"), "w", encoding="utf-8") as f:
                f.write(PYTHON_MODEL)
        for s in states:
            if s.get("init") == "values":
                import base64

                os.makedirs(os.path.join(tmp, "initial_state"), exist_ok=True)
                with open(os.path.join(tmp, "initial_state", _state_file(s["name"])), "wb") as f:
                    f.write(base64.b64decode(s["values"]))
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if engine_file and log is not None:
        from actionnet.engines.header import read_header

        h = read_header(path)
        print(f"actionnet-export: {name}: TensorRT {h.trt_version} plan for {h.gpu_name}; the server's image "
              f"must ship the same TensorRT version and run on that GPU", file=log)
    return folder

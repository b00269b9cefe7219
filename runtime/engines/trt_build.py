"""ONNX -> TensorRT engine file, with the actionnet header (TensorRT 8.5/8.6, 10.x and 11.x).

Lives in the runtime (not the export stage) because the runtime rebuilds an engine from the
ONNX next to it when the engine was built for another GPU or TensorRT version; it needs no
torch (and no onnx, except to make the FP16 copy TensorRT 11 builds FP16 engines from). How a
precision is obtained on each version is decided in one place, :func:`build_recipe`. Every
TensorRT call is checked against the names of the real 8.6.1, 10.3.0 and 11.4 bindings (tests/
api_profiles/, tests/fake_tensorrt.py); none has run on a GPU here.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from ..errors import MissingLibraryError, ModelError, UsageError
from ..home import cache_dir as actionnet_home
from .base import PRECISIONS
from .header import EngineHeader, write_engine
from .onnxmeta import read_metadata, sha256_file


def import_tensorrt():
    try:
        import tensorrt
    except ImportError:
        raise MissingLibraryError(
            "TensorRT is not installed: on a Jetson it comes with JetPack (see jetson/README.md); "
            "on a desktop: pip install 'actionnet[tensorrt]'") from None
    return tensorrt


def profile_shapes(name: str, shape: Sequence, max_batch: int, opt_batch: Optional[int] = None
                   ) -> Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]:
    """(min, opt, max) of one input for an optimisation profile: batch 1..max_batch, every
    other dimension fixed: 5-D clips, 4-D detector images, and the extra inputs of zero-shot and
    streaming models (text embeddings, state tensors). A static batch stays what the model says."""
    shape = tuple(shape)
    rest = shape[1:]
    if any(not isinstance(d, int) or d < 1 for d in rest):
        raise ModelError(f"input {name!r} has shape {list(shape)}; only the first (batch) dimension may be dynamic "
                         "(re-export with fixed T, H and W)")
    if max_batch < 1:
        raise UsageError(f"--max-batch must be >= 1, got {max_batch}")
    if not shape:
        return (), (), ()
    b = shape[0]
    if isinstance(b, int) and b >= 1:
        lo = opt = hi = b
    else:
        opt = opt_batch if opt_batch is not None else max(1, (max_batch + 1) // 2) if max_batch > 2 else max_batch
        if not 1 <= opt <= max_batch:
            raise UsageError(f"--opt-batch must be between 1 and --max-batch {max_batch}, got {opt}")
        lo, hi = 1, max_batch
    return (lo, *rest), (opt, *rest), (hi, *rest)


def default_timing_cache() -> str:
    home = actionnet_home()
    return os.path.join(home, "tensorrt", "timing.cache")


def trt_version_tuple(version: str) -> Tuple[int, int]:
    parts = (str(version).split(".") + ["0"])[:2]
    try:
        return int(parts[0]), int(parts[1])
    except ValueError:
        raise MissingLibraryError(f"cannot read the TensorRT version {version!r}") from None


@dataclass(frozen=True)
class BuildRecipe:
    """How one precision is obtained on one TensorRT version."""
    network_flags: Tuple[str, ...]   # NetworkDefinitionCreationFlag members
    builder_flags: Tuple[str, ...]   # BuilderFlag members (weak typing: hints the builder may use)
    to_fp16: bool                    # build from an FP16 copy of the ONNX (actionnet-export fp16)
    how: str                         # recorded in the engine header


def build_recipe(trt_version: str, precision: str, graph: str, dla: bool = False) -> BuildRecipe:
    """The one place that decides how ``precision`` is built on ``trt_version`` from an ONNX
    whose own types are ``graph`` (``fp32``, ``fp16`` or ``qdq``, see :func:`graph_precision`).

    TensorRT 11 builds strongly typed networks only (its FP16/INT8 builder flags are gone):
    precision is the graph's, so FP16 is built from an FP16 copy of the ONNX and INT8 from a QDQ
    graph. 10.x has both modes: strongly typed when the graph already carries the precision
    asked for, the weak FP16 flag otherwise (and for DLA, kept on the weak flags it was built
    with before; whether DLA takes strongly typed networks is unverified). 8.5/8.6 (JetPack 5 and 6.0) have weak flags only, and need EXPLICIT_BATCH.
    A request a version cannot honour is a UsageError/ModelError: one line."""
    major, minor = trt_version_tuple(trt_version)
    if (major, minor) < (8, 5):
        raise MissingLibraryError(f"TensorRT {trt_version} is too old: actionnet needs 8.5 or newer "
                                  "(tensor-name I/O, execute_async_v3)")
    if graph == "qdq" and precision != "int8":
        raise UsageError(f"the model is INT8 (QuantizeLinear/DequantizeLinear nodes); build it with --precision int8, "
                         f"or build {precision} from the float model it was quantised from")
    if graph == "fp16" and precision != "fp16":
        raise UsageError(f"the model is FP16; build it with --precision fp16, or build {precision} from the FP32 model")
    if precision == "int8" and graph != "qdq":
        raise ModelError("INT8 engines are built from a QDQ model (QuantizeLinear/DequantizeLinear nodes); make one "
                         "with: actionnet-export quantize MODEL.onnx --calib CLIPS/ --output M-int8.onnx")
    if major >= 11:
        if dla:
            raise UsageError(f"--dla needs a Jetson's TensorRT (8.6 or 10.x, from JetPack); TensorRT {trt_version} "
                             "does not run on Jetsons and builds no DLA engines here")
        how = {"fp32": "strongly typed network from the FP32 graph",
               "fp16": ("strongly typed network from the FP16 graph" if graph == "fp16" else
                        "strongly typed network from an FP16 copy of the ONNX (actionnet-export fp16, inputs and "
                        "outputs kept)"),
               "int8": "strongly typed network from the QDQ graph: INT8 where it quantises, FP32 elsewhere"}[precision]
        return BuildRecipe(("STRONGLY_TYPED",), (), precision == "fp16" and graph != "fp16", f"TensorRT {major}: {how}")
    explicit = ("EXPLICIT_BATCH",) if major < 10 else ()
    strong = major >= 10 and not dla and graph != "fp32"
    if strong:  # the graph carries the precision asked for
        what = "the FP16 graph" if graph == "fp16" else "the QDQ graph: INT8 where it quantises, FP32 elsewhere"
        return BuildRecipe(("STRONGLY_TYPED",), (), False, f"TensorRT {major}: strongly typed network from {what}")
    flags = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16")}[precision]
    how = {"fp32": "FP32 graph, no precision flags", "fp16": "weak typing, FP16 builder flag",
           "int8": "weak typing from the QDQ graph, INT8 and FP16 builder flags"}[precision]
    if dla:
        flags += ("GPU_FALLBACK",)
        how += ", DLA with GPU fallback"
    return BuildRecipe(explicit, flags, False, f"TensorRT {major}: {how}")


def graph_precision(onnx_path: str) -> str:
    """``qdq`` when the graph has QuantizeLinear nodes, ``fp16`` when its weights are float16
    (or ``actionnet-export fp16`` wrote it), else ``fp32``. Read from the protobuf by hand, like the
    metadata: the runtime needs no ``onnx`` package for it."""
    from .onnxmeta import _fields

    with open(onnx_path, "rb") as f:
        buf = memoryview(f.read())
    fp16 = qdq = False
    try:
        for field, _, value in _fields(buf):
            if field == 14:  # metadata_props entry: key = 1, value = 2
                kv = {f: bytes(v) for f, _, v in _fields(value)}
                fp16 = fp16 or (kv.get(1) == b"actionnet.precision" and kv.get(2) == b"fp16")
            if field != 7:  # ModelProto.graph
                continue
            for gfield, _, g in _fields(value):
                if gfield == 1:  # NodeProto; op_type = 4
                    qdq = qdq or any(f == 4 and bytes(v) == b"QuantizeLinear" for f, _, v in _fields(g))
                elif gfield == 5:  # TensorProto initializer; data_type = 2, FLOAT16 = 10
                    fp16 = fp16 or any(f == 2 and v == 10 for f, _, v in _fields(g))
    except ValueError as e:
        raise ModelError(f"{onnx_path} is not an ONNX model ({e})") from None
    return "qdq" if qdq else "fp16" if fp16 else "fp32"


def default_precision(onnx_path: str) -> str:
    """The precision a model is built at when none is asked for: its own (int8 for a QDQ graph,
    fp16 for an FP16 one), else ``fallback``-free fp32."""
    return {"qdq": "int8", "fp16": "fp16"}.get(graph_precision(onnx_path), "fp32")


def _flag_bits(enum, names) -> int:
    bits = 0
    for n in names:
        bits |= 1 << int(getattr(enum, n))
    return bits


def _fp16_copy(onnx_path: str, folder: str) -> str:
    """An FP16 copy of the ONNX for a strongly typed FP16 build (removed after the build)."""
    from ..export.fp16 import to_fp16

    path = os.path.join(folder, f".{os.path.splitext(os.path.basename(onnx_path))[0]}-fp16-{os.getpid()}.onnx")
    try:
        to_fp16(onnx_path, path)
    except ModuleNotFoundError as e:
        raise MissingLibraryError(
            f"TensorRT 11 builds FP16 engines from an FP16 ONNX; converting needs {e.name}: "
            "pip install 'actionnet[tensorrt]', or convert elsewhere with actionnet-export fp16 and build that") from None
    return path


def _dims(d) -> tuple:
    return tuple(int(x) if int(x) >= 0 else None for x in d)


def build_engine(onnx_path: str, output: str, precision: str = "fp32", max_batch: int = 1,
                 opt_batch: Optional[int] = None, workspace_mb: int = 1024, dla_core: Optional[int] = None,
                 timing_cache: Optional[str] = None, device_info=None, log=sys.stderr) -> EngineHeader:
    """Build ``onnx_path`` into an engine file at ``output``; returns its header.

    ``device_info`` is ``(gpu name, compute capability)``; by default asked of CUDA."""
    if precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if dla_core is not None and precision == "fp32":
        raise UsageError("DLA runs FP16 or INT8 only; use --precision fp16 or int8 with --dla")
    if not os.path.isfile(onnx_path):
        raise ModelError(f"model file not found: {onnx_path}")
    if read_metadata(onnx_path).get("actionnet.activations") == "u8":
        raise ModelError(f"{onnx_path} is quantised for CPUs (u8 activations with a zero point); TensorRT takes "
                         "symmetric s8 only. Build from the FP32 model (--precision fp16), run this file on the CPU "
                         "(--detector-engine openvino), or quantize with --activations s8")
    trt = import_tensorrt()
    recipe = build_recipe(trt.__version__, precision, graph_precision(onnx_path), dla_core is not None)
    if device_info is None:
        from .cuda import open_cuda

        cuda = open_cuda()
        try:
            device_info = cuda.device_info()
        finally:
            cuda.close()
    out_dir = os.path.dirname(os.path.abspath(output))
    os.makedirs(out_dir, exist_ok=True)
    source = _fp16_copy(onnx_path, out_dir) if recipe.to_fp16 else onnx_path
    try:
        plan, inputs = _build(trt, recipe, source, onnx_path, max_batch, opt_batch, workspace_mb, dla_core,
                              timing_cache, log)
    finally:
        if source != onnx_path and os.path.exists(source):
            os.remove(source)
    print(f"actionnet-export: {precision}: {recipe.how}", file=log)
    gpu, cc = device_info
    header = EngineHeader(metadata=read_metadata(onnx_path), trt_version=trt.__version__, gpu_name=gpu,
                          compute_capability=cc, precision=precision, onnx_sha256=sha256_file(onnx_path),
                          onnx_name=os.path.basename(onnx_path), max_batch=int(max_batch), dla_core=dla_core,
                          inputs=inputs, precision_from=recipe.how)
    write_engine(output, header, plan)
    return header


def _build(trt, recipe: BuildRecipe, source: str, onnx_path: str, max_batch, opt_batch, workspace_mb, dla_core,
           timing_cache, log):
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_flag_bits(trt.NetworkDefinitionCreationFlag, recipe.network_flags))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(os.path.abspath(source)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse {onnx_path}: {errors or 'unknown error'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    for flag in recipe.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(dla_core)
    profile = builder.create_optimization_profile()
    inputs = {}
    for i in range(network.num_inputs):
        t = network.get_input(i)
        lo, opt, hi = profile_shapes(t.name, _dims(t.shape), max_batch, opt_batch)
        profile.set_shape(t.name, lo, opt, hi)
        inputs[t.name] = list(hi)
        print(f"actionnet-export: profile {t.name}: min {list(lo)} opt {list(opt)} max {list(hi)}", file=log)
    config.add_optimization_profile(profile)
    cache_path = timing_cache or default_timing_cache()
    cache_bytes = b""
    if os.path.isfile(cache_path):
        with open(cache_path, "rb") as f:
            cache_bytes = f.read()
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ModelError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    os.makedirs(os.path.dirname(os.path.abspath(cache_path)), exist_ok=True)
    tmp = cache_path + f".tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(memoryview(config.get_timing_cache().serialize()))
    os.replace(tmp, cache_path)
    return bytes(memoryview(plan)), inputs

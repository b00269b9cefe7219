"""ONNX -> TensorRT engine file, with the actionnet header (TensorRT 10 Python API).

Lives in the runtime (not the export stage) because the runtime rebuilds an engine from the
ONNX next to it when the engine was built for another GPU or TensorRT version; it needs no
torch and no onnx. The TensorRT calls are thin and follow the documented TensorRT 10 API; they
were written, not run, on the machines this project is tested on (no GPU). Everything around
them (profile shapes, header, cache keys) is tested on CPU with a fake ``tensorrt`` module.
"""

from __future__ import annotations

import os
import sys
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
    other dimension fixed. 5-D clips [N, C, T, H, W] or [N, T, H, W, C] and 4-D detector images
    [N, C, H, W]. A static batch stays what the model says."""
    shape = tuple(shape)
    if len(shape) not in (4, 5):
        raise ModelError(f"input {name!r} has shape {list(shape)}; TensorRT profiles are built for 4-D images "
                         "[N, C, H, W] and 5-D clips [N, C, T, H, W] / [N, T, H, W, C]")
    rest = shape[1:]
    if any(not isinstance(d, int) or d < 1 for d in rest):
        raise ModelError(f"input {name!r} has shape {list(shape)}; only the batch dimension may be dynamic "
                         "(re-export with fixed T, H and W)")
    if max_batch < 1:
        raise UsageError(f"--max-batch must be >= 1, got {max_batch}")
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


def _network_flags(trt) -> int:
    """Explicit batch: the only mode of TensorRT 10 (flag 0); a flag on 8.5/8.6 (JetPack 5 and 6.0)."""
    major = int(str(trt.__version__).split(".")[0])
    if major >= 10:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


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
    trt = import_tensorrt()
    if device_info is None:
        from .cuda import open_cuda

        cuda = open_cuda()
        try:
            device_info = cuda.device_info()
        finally:
            cuda.close()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(os.path.abspath(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse {onnx_path}: {errors or 'unknown error'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if precision == "int8":
        if not any(network.get_layer(i).type == trt.LayerType.QUANTIZE for i in range(network.num_layers)):
            raise ModelError(f"{onnx_path} has no QuantizeLinear/DequantizeLinear nodes; INT8 engines are built "
                             "from a QDQ model: actionnet-export quantize MODEL.onnx --calib CLIPS/ --output M-int8.onnx")
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)  # layers left unquantised may still run in FP16
    elif precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    if dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
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
    gpu, cc = device_info
    header = EngineHeader(metadata=read_metadata(onnx_path), trt_version=trt.__version__, gpu_name=gpu,
                          compute_capability=cc, precision=precision, onnx_sha256=sha256_file(onnx_path),
                          onnx_name=os.path.basename(onnx_path), max_batch=int(max_batch), dla_core=dla_core,
                          inputs=inputs)
    write_engine(output, header, bytes(memoryview(plan)))
    return header

"""Engine backends behind one interface, and the choice between them.

``auto`` picks the fastest backend present for the file and says which, and why:

1. a TensorRT engine file (``.engine``/``.trt``/``.plan``) -> native TensorRT;
2. TensorRT and a CUDA device present -> native TensorRT (an ONNX is built once and cached);
3. ONNX Runtime with its TensorRT or CUDA execution provider -> ONNX Runtime on the GPU;
4. OpenVINO installed -> OpenVINO on the CPU (its INT8 kernels are the fast CPU path);
5. otherwise ONNX Runtime on the CPU.

A ``grpc://HOST:PORT/NAME`` address is a model on a Triton Inference Server (``triton``).
"""

from __future__ import annotations

import sys
from typing import Optional, Tuple

from ..errors import UsageError
from .base import PRECISIONS, Engine, TensorInfo

ENGINES = ("auto", "tensorrt", "onnxruntime", "openvino", "triton")


def _tensorrt_present() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    from .cuda import cuda_available

    return cuda_available()


def choose_engine(path: str) -> Tuple[str, str]:
    """(backend, reason) that ``auto`` takes for ``path``."""
    from . import openvino
    from .onnxruntime import available_providers
    from .tensorrt import is_engine_file
    from .triton import is_server_url

    if is_server_url(path):
        return "triton", "a model on a Triton server"
    if is_engine_file(path):
        return "tensorrt", "a TensorRT engine file"
    if _tensorrt_present():
        return "tensorrt", "TensorRT and a CUDA GPU are present"
    gpu = [p for p in available_providers() if p in ("TensorrtExecutionProvider", "CUDAExecutionProvider")]
    if gpu:
        return "onnxruntime", f"ONNX Runtime has {gpu[0]}"
    if openvino.available():
        return "openvino", "no GPU; OpenVINO is the fastest CPU backend installed"
    return "onnxruntime", "no GPU and no OpenVINO"


# Several cameras in one process (runtime/site.py) set this to a pool so that every analyser that
# asks for the same model with the same options gets the one engine already loaded.
shared_pool = None


def open_engine(path: str, engine: str = "auto", threads: Optional[int] = None, precision: Optional[str] = None,
                log=None, max_batch: int = 1) -> Engine:
    """The engine for ``path``. ``auto`` picks the best backend present and says which on ``log``."""
    if shared_pool is not None:
        return shared_pool.get(_open_engine, path, engine, threads, precision, log, max_batch)
    return _open_engine(path, engine, threads, precision, log, max_batch)


def _open_engine(path: str, engine: str = "auto", threads: Optional[int] = None, precision: Optional[str] = None,
                 log=None, max_batch: int = 1) -> Engine:
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    if precision is not None and precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if threads is not None and threads < 0:
        raise UsageError(f"--threads must be >= 0 (0: all cores), got {threads}")
    if engine == "auto":
        engine, why = choose_engine(path)
        if log is not None:
            print(f"actionnet: engine auto -> {engine} ({why})", file=log)
    from .triton import is_server_url

    if engine == "triton" or is_server_url(path):
        if not is_server_url(path):
            raise UsageError(f"--engine triton runs models on a Triton server (--server URL --model NAME); "
                             f"{path} is not one")
        if engine != "triton":
            raise UsageError(f"{path} is a model on a Triton server; run it with --engine triton (or auto)")
        from .triton import TritonEngine

        return TritonEngine(path, log=log)
    if engine == "tensorrt":
        from .tensorrt import TensorRtEngine

        return TensorRtEngine(path, precision=precision, max_batch=max_batch, log=log or sys.stderr)
    from .tensorrt import is_engine_file

    if is_engine_file(path):
        raise UsageError(f"{path} is a TensorRT engine; run it with --engine tensorrt (or auto)")
    if engine == "openvino":
        from .openvino import OpenVinoEngine

        return OpenVinoEngine(path, threads=threads, precision=precision)
    from .onnxruntime import OnnxRuntimeEngine

    eng = OnnxRuntimeEngine(path, threads=threads, precision=precision)
    if precision in ("fp16", "int8") and "TensorrtExecutionProvider" not in eng.providers and log is not None:
        print(f"actionnet: --precision {precision} has no effect on ONNX Runtime without its TensorRT provider; "
              f"the model file's own types decide (use an FP16 or INT8 QDQ ONNX)", file=log)
    return eng


__all__ = ["Engine", "TensorInfo", "open_engine", "choose_engine", "ENGINES", "PRECISIONS"]

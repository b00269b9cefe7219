"""ONNX Runtime backend: CPU always; CUDA and TensorRT execution providers when installed."""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from ..errors import MissingLibraryError, ModelError
from ..home import cache_dir as actionnet_home
from .base import Engine, TensorInfo

_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(double)": np.float64,
}

# Fastest first; "auto" takes every one present in this order.
PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def _import():
    try:
        import onnxruntime
    except ImportError:  # pragma: no cover - a dependency of the package
        raise MissingLibraryError("ONNX Runtime is not installed: pip install onnxruntime (or onnxruntime-gpu)") from None
    return onnxruntime


def _trt_cache_dir() -> str:
    home = actionnet_home()
    return os.path.join(home, "ort-tensorrt")


def provider_options(providers, precision: Optional[str] = None, cache_dir: Optional[str] = None):
    """ONNX Runtime's ``providers`` argument: the TensorRT provider with its engine and timing
    caches (ORT's second GPU path: it builds TensorRT engines itself, keyed on the model and the
    GPU, so the minutes of building are paid once) and its fp16/int8 flags; others as named."""
    out = []
    for p in providers:
        if p == "TensorrtExecutionProvider":
            folder = cache_dir or _trt_cache_dir()
            opts = {"trt_engine_cache_enable": True, "trt_engine_cache_path": folder,
                    "trt_timing_cache_enable": True, "trt_timing_cache_path": folder}
            if precision in ("fp16", "int8"):
                opts["trt_fp16_enable"] = True
            if precision == "int8":
                opts["trt_int8_enable"] = True  # QDQ models carry their own scales
            out.append((p, opts))
        else:
            out.append(p)
    return out


def available_providers():
    return _import().get_available_providers()


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"

    def __init__(self, path: str, providers: Optional[Sequence[str]] = None, threads: Optional[int] = None,
                 cache_dir: Optional[str] = None, precision: Optional[str] = None):
        ort = _import()
        if not os.path.isfile(path):
            raise ModelError(f"model file not found: {path}")
        present = ort.get_available_providers()
        if providers is None:
            providers = [p for p in PROVIDER_ORDER if p in present]
        else:
            missing = [p for p in providers if p not in present]
            if missing:
                raise MissingLibraryError(
                    f"requested provider(s) {', '.join(missing)}; available providers are: {', '.join(present)}"
                )
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        provider_args = provider_options(providers, precision, cache_dir)
        try:
            self.session = ort.InferenceSession(path, sess_options=opts, providers=provider_args)
        except Exception as e:  # ORT raises its own Fail/InvalidGraph/... types
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"cannot load model {path}: {msg}") from None
        self.providers = self.session.get_providers()
        inputs = self.session.get_inputs()
        def info(t):
            return TensorInfo(t.name, tuple(t.shape), np.dtype(_DTYPES.get(t.type, np.float32)))

        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        super().__init__(path, tuple(info(i) for i in inputs), tuple(info(o) for o in self.session.get_outputs()), meta)

    def _run(self, feeds, outputs):
        return self.session.run(list(outputs), dict(feeds))

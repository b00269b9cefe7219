"""OpenVINO backend for x86 and ARM CPUs (``pip install 'actionnet[openvino]'``).

Reads the same ONNX and QDQ ONNX files as ONNX Runtime. Where it matters: OpenVINO runs the
INT8 3-D convolutions of a QDQ model as real INT8 kernels, where ONNX Runtime's CPU
``QLinearConv`` for 3-D is slower than its FP32 path (see docs/engines.md for the numbers).

Choices, and why:

* compiled once per model and cached under ``$ACTIONNET_HOME/openvino`` (default
  ``~/.cache/actionnet/openvino``): OpenVINO keys the cache on the model and the device
  settings, so a changed file or precision recompiles by itself;
* ``PERFORMANCE_HINT=LATENCY``: the runtime classifies one clip at a time, as it arrives;
* ``INFERENCE_PRECISION_HINT=f32`` unless asked otherwise: on CPUs with AMX, OpenVINO's default
  is bf16, and the scores drifted far enough from the FP32 reference to flip top-1 labels;
  a QDQ model still runs its quantised layers in INT8 under an f32 hint;
* threads from ``--threads`` (``INFERENCE_NUM_THREADS``), all cores otherwise.
"""

from __future__ import annotations

import os
import re
from typing import Optional

import numpy as np

from ..errors import MissingLibraryError, ModelError, UsageError
from ..home import cache_dir as actionnet_home
from .base import Engine, TensorInfo
from .onnxmeta import read_metadata

# --precision -> INFERENCE_PRECISION_HINT. int8 comes from the model's QDQ nodes; the layers
# around them stay f32.
PRECISION_HINTS = {None: "f32", "fp32": "f32", "int8": "f32", "fp16": "f16", "bf16": "bf16"}


def _import():
    try:
        import openvino
    except ImportError:
        raise MissingLibraryError("OpenVINO is not installed: pip install 'actionnet[openvino]'") from None
    return openvino


def available() -> bool:
    try:
        _import()
    except MissingLibraryError:
        return False
    return True


def cache_dir() -> str:
    home = actionnet_home()
    return os.path.join(home, "openvino")


def _reason(e: Exception) -> str:
    """The line of an OpenVINO exception that says what is wrong: its text is a chain of
    "Exception from src/...cpp:84:" and "Check '...' failed at ...cpp:58:" lines around it."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    said = [ln for ln in lines if not ln.startswith("Exception from ") and not re.match(r"Check '.*' failed at ", ln)]
    return (said or lines or [type(e).__name__])[-1]


def _shape(partial) -> tuple:
    return tuple(d.get_length() if d.is_static else None for d in partial)


class OpenVinoEngine(Engine):
    name = "openvino"

    def __init__(self, path: str, threads: Optional[int] = None, precision: Optional[str] = None,
                 device: str = "CPU", cache: Optional[str] = None):
        ov = _import()
        if not os.path.isfile(path):
            raise ModelError(f"model file not found: {path}")
        if precision not in PRECISION_HINTS:
            raise UsageError(f"OpenVINO precision must be one of fp32, fp16, bf16, int8; got {precision!r}")
        # Read the metadata first: it also proves the file is ONNX, before OpenVINO's other
        # frontends (TensorFlow text, Paddle...) try it and log their own parse errors.
        try:
            metadata = read_metadata(path)
        except ModelError as e:
            raise ModelError(f"OpenVINO cannot load model: {e}") from None
        core = ov.Core()
        folder = cache or cache_dir()
        os.makedirs(folder, exist_ok=True)
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision],
                  "CACHE_DIR": folder}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            model = core.read_model(path)
            self.compiled = core.compile_model(model, device, config)
        except RuntimeError as e:
            raise ModelError(f"OpenVINO cannot load model {path}: {_reason(e)}") from None
        inputs = self.compiled.inputs
        def info(p):
            return TensorInfo(p.get_any_name(), _shape(p.get_partial_shape()), np.dtype(p.get_element_type().to_dtype()))

        self._ports = {p.get_any_name(): p for p in self.compiled.outputs}
        self.request = self.compiled.create_infer_request()
        self.precision = precision or "fp32"
        super().__init__(path, tuple(info(p) for p in inputs), tuple(info(p) for p in self.compiled.outputs), metadata)

    def _run(self, feeds, outputs):
        # share_inputs: no copy of the frame window into OpenVINO's tensor; results are copied
        # out because the request reuses its output memory on the next call.
        self.request.infer(dict(feeds), share_inputs=True)
        return [self.request.get_tensor(self._ports[o]).data.copy() for o in outputs]

    def close(self) -> None:
        self.request = None
        self.compiled = None

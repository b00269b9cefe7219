"""Native TensorRT backend (TensorRT 10+): engine files with an actionnet header, or ONNX built
and cached on first use.

Hot path, per clip: one ``np.copyto`` into a pinned host buffer, one async upload, one
``execute_async_v3`` and async downloads on one stream, one synchronize. Buffers are sized for
the profile's max batch and allocated once; a model that takes raw frames gets its uint8 window
uploaded as is (a quarter of the bytes of float32, no host arithmetic).

Before TensorRT sees a plan, its header is checked against this TensorRT version and this GPU
(:func:`resolve_engine`): a mismatch or a corrupt file is rebuilt from the ONNX next to it, or
fails with the exact command to rebuild. The TensorRT and CUDA calls are written against the
documented APIs and not run here (no GPU on the build machines); the logic around them is tested
with a fake ``tensorrt`` module (tests/fake_tensorrt.py).
"""

from __future__ import annotations

import os
import sys
from typing import Optional

import numpy as np

from ..errors import ModelError
from ..home import cache_dir as actionnet_home
from .base import Engine, TensorInfo
from .header import EngineFileError, read_engine, read_header
from .onnxmeta import sha256_file
from .trt_build import build_engine, import_tensorrt

ENGINE_SUFFIXES = (".engine", ".trt", ".plan")


def _check(path: str):
    """The header of a whole, uncorrupted engine file (plan checksum verified)."""
    return read_engine(path)[0]


def is_engine_file(path: str) -> bool:
    return path.lower().endswith(ENGINE_SUFFIXES)


def cache_dir() -> str:
    home = actionnet_home()
    return os.path.join(home, "tensorrt")


def _rebuild_command(onnx: str, engine: str, precision: str, max_batch: int, dla) -> str:
    cmd = f"actionnet-export engine {onnx} --precision {precision} --max-batch {max_batch}"
    if dla is not None:
        cmd += f" --dla {dla}"
    return cmd + f" --output {engine}"


def resolve_engine(path: str, device_info, trt_version: str, precision: Optional[str] = None, max_batch: int = 1,
                   log=sys.stderr, build=build_engine) -> str:
    """The engine file to run for ``path`` on this GPU and TensorRT, building it if needed.

    * ``x.onnx``: cached under ``$ACTIONNET_HOME/tensorrt``, keyed by the ONNX's sha256,
      precision and max batch; the header also keys it on GPU and TensorRT version.
    * ``x.engine``: used when its header matches; rebuilt in place from the ONNX next to it
      (``header.onnx_name``, else ``x.onnx``) when it was built for another GPU or TensorRT, its
      ONNX changed, or it is corrupt; otherwise a ModelError with the command to rebuild.
    """
    gpu, cc = device_info
    if not is_engine_file(path):
        precision = precision or "fp32"
        sha = sha256_file(path)
        stem = os.path.splitext(os.path.basename(path))[0]
        cached = os.path.join(cache_dir(), f"{stem}-{sha[:12]}-{precision}-b{max_batch}.engine")
        reason = "not built yet"
        if os.path.isfile(cached):
            try:
                reason = _check(cached).mismatch(trt_version, gpu, cc, sha, precision)
            except EngineFileError as e:
                reason = str(e)
            if reason is None:
                return cached
        print(f"actionnet: building a TensorRT {precision} engine for {path} ({reason}); this takes a while, "
              f"once: {cached}", file=log)
        build(path, cached, precision=precision, max_batch=max_batch, device_info=device_info, log=log)
        return cached

    if not os.path.isfile(path):
        raise ModelError(f"model file not found: {path}")
    folder = os.path.dirname(os.path.abspath(path))
    onnx_default = os.path.splitext(path)[0] + ".onnx"
    try:
        header = _check(path)
    except EngineFileError as e:
        reason = str(e)
        try:  # a damaged plan behind a readable header: rebuild it as it was built
            header = read_header(path, check_size=False)
        except EngineFileError:
            header = None
        onnx = os.path.join(folder, header.onnx_name) if header and header.onnx_name else onnx_default
    else:
        onnx = os.path.join(folder, header.onnx_name) if header.onnx_name else onnx_default
        onnx_sha = sha256_file(onnx) if os.path.isfile(onnx) else None
        reason = header.mismatch(trt_version, gpu, cc, onnx_sha, precision)
        if reason is None:
            return path
    p = precision or (header.precision if header else "fp32")
    mb = header.max_batch if header else max_batch
    dla = header.dla_core if header else None
    if not os.path.isfile(onnx):
        raise ModelError(f"cannot run engine {path}: {reason}; rebuild it on this device from its ONNX: "
                         f"{_rebuild_command(os.path.basename(onnx), path, p, mb, dla)}")
    print(f"actionnet: rebuilding {path} from {onnx} ({reason})", file=log)
    build(onnx, path, precision=p, max_batch=mb, dla_core=dla, device_info=device_info, log=log)
    return path


class TensorRtEngine(Engine):
    name = "tensorrt"

    def __init__(self, path: str, precision: Optional[str] = None, max_batch: int = 1, log=sys.stderr):
        trt = import_tensorrt()
        from .cuda import open_cuda

        self.cuda = open_cuda()
        try:
            self._open(trt, path, precision, max_batch, log)
        except BaseException:  # a failed open must not hold the CUDA context and its buffers
            self.close()
            raise

    def _open(self, trt, path, precision, max_batch, log):
        engine_path = resolve_engine(path, self.cuda.device_info(), trt.__version__, precision, max_batch, log)
        header, plan = read_engine(engine_path)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self._logger)
        if header.dla_core is not None:
            self.runtime.DLA_core = int(header.dla_core)
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise EngineFileError(f"TensorRT cannot deserialize {engine_path}; rebuild it on this device")
        self.context = self.engine.create_execution_context()
        self.precision = header.precision
        self.stream, self._stream_handle = self.cuda.stream()
        ins, outs = [], []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            shape = tuple(int(d) if d >= 0 else None for d in self.engine.get_tensor_shape(name))
            (ins if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outs).append(
                TensorInfo(name, shape, dtype))
        if len(ins) != 1:
            raise ModelError(f"engine {engine_path} has {len(ins)} inputs; one clip input expected")
        # Buffers for the largest batch the profile allows, allocated once.
        max_in = tuple(self.engine.get_tensor_profile_shape(ins[0].name, 0)[2])
        self.context.set_input_shape(ins[0].name, max_in)
        self._host, self._dev = {}, {}
        for t, shape in [(ins[0], max_in)] + [(o, tuple(self.context.get_tensor_shape(o.name))) for o in outs]:
            host = self.cuda.pinned(shape, t.dtype)
            mem, ptr = self.cuda.malloc(host.nbytes)
            self._host[t.name], self._dev[t.name] = host, (mem, ptr)
            self.context.set_tensor_address(t.name, ptr)
        self.max_batch = max_in[0]
        super().__init__(engine_path, ins[0], tuple(outs), dict(header.metadata))

    def _run(self, feeds, outputs):
        if len(outputs) != 1:
            raise ModelError("the TensorRT backend returns one output per call")
        return [self._infer(feeds[self.input.name], outputs[0])]

    def _infer(self, x: np.ndarray, output: str) -> np.ndarray:
        n = x.shape[0]
        if n > self.max_batch:
            raise ModelError(f"batch {n} exceeds the engine's max batch {self.max_batch}; rebuild with --max-batch {n}")
        name = self.input.name
        host = self._host[name][:n]
        np.copyto(host, x)
        self.context.set_input_shape(name, x.shape)
        self.cuda.htod(self._dev[name][1], host, self.stream)
        self.context.execute_async_v3(self._stream_handle)
        # every output stays bound (TensorRT writes them all); only the one asked for comes back
        shape = tuple(self.context.get_tensor_shape(output))
        view = self._host[output].reshape(-1)[:int(np.prod(shape))].reshape(shape)
        self.cuda.dtoh(view, self._dev[output][1], self.stream)
        self.cuda.sync(self.stream)
        return view.copy()

    def close(self) -> None:
        self._host = self._dev = None  # views of pinned memory that cuda.close() frees
        self.context = None
        self.engine = None
        if getattr(self, "cuda", None) is not None:
            self.cuda.close()
            self.cuda = None

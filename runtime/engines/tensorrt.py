"""Native TensorRT backend (TensorRT 8.5/8.6, 10.x, 11.x): engine files with an actionnet header,
or ONNX built and cached on first use.

Hot path, per call: per input one ``np.copyto`` into its pinned host buffer and one async upload,
one ``execute_async_v3``, async downloads of the outputs asked for, one synchronize. Buffers are
sized for the profile's max shapes and allocated once, for every input (clips, text embeddings,
state tensors); a model that takes raw frames gets its uint8 window uploaded as is (a quarter of
the bytes of float32, no host arithmetic).

Before TensorRT sees a plan, its header is checked against this TensorRT version and this GPU
(:func:`resolve_engine`): a mismatch or a corrupt file is rebuilt from the ONNX next to it, or
fails with the exact command to rebuild. The TensorRT and CUDA calls are checked against the
names of the real bindings of each supported version (tests/api_profiles/) by version-faithful
fakes; none has run on a GPU here.
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
from .trt_build import build_engine, default_precision, import_tensorrt

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
        if not os.path.isfile(path):
            raise ModelError(f"model file not found: {path}")
        precision = precision or default_precision(path)
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
        if not ins:
            raise ModelError(f"engine {engine_path} has no inputs")
        # Buffers for the largest shapes profile 0 allows, allocated once; every tensor bound once.
        self._max = {}
        for t in ins:
            self._max[t.name] = tuple(int(d) for d in self.engine.get_tensor_profile_shape(t.name, 0)[2])
            self.context.set_input_shape(t.name, self._max[t.name])
        self._host, self._dev = {}, {}
        for t in ins + outs:
            shape = self._max[t.name] if t.name in self._max else tuple(self.context.get_tensor_shape(t.name))
            host = self.cuda.pinned(shape, t.dtype)
            mem, ptr = self.cuda.malloc(host.nbytes)
            self._host[t.name], self._dev[t.name] = host.reshape(-1), (mem, ptr)
            self.context.set_tensor_address(t.name, ptr)
        self.max_batch = self._max[ins[0].name][0] if self._max[ins[0].name] else 1
        super().__init__(engine_path, tuple(ins), tuple(outs), dict(header.metadata))

    def _run(self, feeds, outputs):
        with self.cuda.current():  # called from camera and classifier threads too
            return self._run_current(feeds, outputs)

    def _run_current(self, feeds, outputs):
        ctx, cuda, stream = self.context, self.cuda, self.stream
        for name, x in feeds.items():
            if x.ndim and x.shape[0] > self._max[name][0]:
                raise ModelError(f"batch {x.shape[0]} of {name!r} exceeds the engine's max batch {self._max[name][0]}; "
                                 f"rebuild with --max-batch {x.shape[0]}")
            host = self._host[name][:x.size].reshape(x.shape)
            np.copyto(host, x)
            ctx.set_input_shape(name, x.shape)
            cuda.htod(self._dev[name][1], host, stream)
        ctx.execute_async_v3(self._stream_handle)
        # every output stays bound (TensorRT writes them all); only those asked for come back
        views = []
        for name in outputs:
            shape = tuple(ctx.get_tensor_shape(name))
            view = self._host[name][:int(np.prod(shape))].reshape(shape)
            cuda.dtoh(view, self._dev[name][1], stream)
            views.append(view)
        cuda.sync(stream)
        return [v.copy() for v in views]

    def close(self) -> None:
        if getattr(self, "cuda", None) is not None:
            with self.cuda.current():  # pinned memory is freed in its context, whichever thread closes
                self._host = self._dev = None  # views of pinned memory that cuda.close() frees
        self._host = self._dev = None
        self.context = None
        self.engine = None
        if getattr(self, "cuda", None) is not None:
            self.cuda.close()
            self.cuda = None

"""Device memory, pinned host memory and one stream, through pycuda or cuda-python.

JetPack ships pycuda-friendly systems and NVIDIA's newer wheels ship cuda-python; the TensorRT
backend needs only the handful of calls below, so it takes whichever is installed: pycuda, or
cuda-python 12 (``cuda.bindings.runtime``, or the legacy ``cuda.cudart``) or 13 (only
``cuda.bindings.runtime``). Every name used is checked against the real modules' names
(tests/api_profiles/); not run on a GPU here.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from typing import Tuple

import numpy as np

from ..errors import MissingLibraryError

_HINT = ("CUDA is not available: install pycuda (pip install pycuda) or cuda-python "
         "(pip install cuda-python), with an NVIDIA driver and a GPU")


class _PyCuda:
    name = "pycuda"

    def __init__(self):
        import pycuda.driver as drv

        drv.init()
        if drv.Device.count() < 1:
            raise MissingLibraryError("pycuda finds no CUDA device")
        self.drv = drv
        self.device = drv.Device(0)
        self.context = self.device.retain_primary_context()
        self.context.push()
        self._owner = threading.get_ident()
        self._allocs = []  # freed in close(), while the context is still current

    @contextlib.contextmanager
    def current(self):
        """The context made current for a call from another thread. pycuda's driver API context
        is current on the thread that pushed it only, and engines are called from others: a
        live per-person run's classifier thread, each camera's thread under ``--config``."""
        if threading.get_ident() == self._owner:
            yield
            return
        self.context.push()
        try:
            yield
        finally:
            self.drv.Context.pop()

    def device_info(self) -> Tuple[str, str]:
        major, minor = self.device.compute_capability()
        return self.device.name(), f"{major}.{minor}"

    def pinned(self, shape, dtype) -> np.ndarray:
        return self.drv.pagelocked_empty(shape, dtype)

    def malloc(self, nbytes: int):
        mem = self.drv.mem_alloc(max(1, nbytes))
        self._allocs.append(mem)
        return mem, int(mem)

    def stream(self):
        s = self.drv.Stream()
        return s, s.handle

    def htod(self, dptr: int, host: np.ndarray, stream) -> None:
        self.drv.memcpy_htod_async(dptr, host, stream)

    def dtoh(self, host: np.ndarray, dptr: int, stream) -> None:
        self.drv.memcpy_dtoh_async(host, dptr, stream)

    def sync(self, stream) -> None:
        stream.synchronize()

    def close(self):
        with self.current():
            for mem in self._allocs:
                mem.free()
        self._allocs = []
        if self.context is not None and threading.get_ident() == self._owner:
            self.context.pop()
        self.context = None


class _CudaPython:
    name = "cuda-python"

    def __init__(self):
        try:
            from cuda.bindings import runtime as rt
        except ImportError:
            from cuda import cudart as rt
        self.rt = rt
        n = self._ok(rt.cudaGetDeviceCount())
        if n < 1:
            raise MissingLibraryError("cuda-python finds no CUDA device")
        self._pinned, self._device, self._streams = [], [], []  # freed by close()

    def current(self):
        """The runtime API binds the device's primary context on whichever thread calls it."""
        return contextlib.nullcontext()

    def _ok(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA error {err}")
        return rest[0] if len(rest) == 1 else rest

    def device_info(self) -> Tuple[str, str]:
        p = self._ok(self.rt.cudaGetDeviceProperties(0))
        name = p.name.decode() if isinstance(p.name, bytes) else str(p.name)
        return name.rstrip("\x00"), f"{p.major}.{p.minor}"

    def pinned(self, shape, dtype) -> np.ndarray:
        nbytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
        ptr = self._ok(self.rt.cudaMallocHost(nbytes))
        self._pinned.append(ptr)
        buf = (ctypes.c_byte * nbytes).from_address(int(ptr))
        return np.frombuffer(buf, dtype=dtype, count=int(np.prod(shape))).reshape(shape)

    def malloc(self, nbytes: int):
        ptr = self._ok(self.rt.cudaMalloc(max(1, nbytes)))
        self._device.append(ptr)
        return ptr, int(ptr)

    def stream(self):
        s = self._ok(self.rt.cudaStreamCreate())
        self._streams.append(s)
        return s, int(s)

    def htod(self, dptr: int, host: np.ndarray, stream) -> None:
        self._ok(self.rt.cudaMemcpyAsync(dptr, host.ctypes.data, host.nbytes,
                                         self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream))

    def dtoh(self, host: np.ndarray, dptr: int, stream) -> None:
        self._ok(self.rt.cudaMemcpyAsync(host.ctypes.data, dptr, host.nbytes,
                                         self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))

    def sync(self, stream) -> None:
        self._ok(self.rt.cudaStreamSynchronize(stream))

    def close(self):
        for s in self._streams:
            self.rt.cudaStreamDestroy(s)
        for p in self._device:
            self.rt.cudaFree(p)
        for p in self._pinned:
            self.rt.cudaFreeHost(p)
        self._pinned, self._device, self._streams = [], [], []


def open_cuda():
    """A CUDA helper from pycuda, else cuda-python; MissingLibraryError naming both."""
    reasons = []
    for cls, module in ((_PyCuda, "pycuda"), (_CudaPython, "cuda")):
        try:
            return cls()
        except ImportError:
            reasons.append(f"{module} not installed")
        except MissingLibraryError as e:
            reasons.append(str(e))
        except Exception as e:  # driver missing, no device: both libraries raise their own types
            reasons.append(f"{module}: {str(e).strip() or type(e).__name__}")
    raise MissingLibraryError(f"{_HINT} ({'; '.join(reasons)})")


def cuda_available() -> bool:
    """Cheap check for backend selection: a CUDA library is importable and sees a device."""
    try:
        open_cuda().close()
        return True
    except MissingLibraryError:
        return False

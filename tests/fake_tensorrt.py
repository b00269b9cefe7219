"""Version-faithful stand-ins for ``tensorrt``, ``pycuda.driver`` and ``cuda.bindings.runtime``.

``load("8.6" | "10.3" | "11")`` returns a fake ``tensorrt`` module that exposes exactly the
names the real binding of that version has (tests/api_profiles/, written by
scripts/api_profiles.py from the real wheels): module names, class members, enum members, and
the keyword names of each method. A call the version lacks raises AttributeError (or TypeError
for a keyword it does not take), as the real binding would. Behaviour the code relies on is
modelled where TensorRT documents it: 8.x's ONNX parser wants an EXPLICIT_BATCH network, a
strongly typed network refuses precision builder flags.

The builder records what it was asked for (flags, profiles, DLA, the parsed graph's own types:
``fp16`` weights, QDQ nodes) in the "plan", with the ONNX bytes it parsed; the runtime executes
that plan with ONNX Runtime through fake device memory, so buffer sizes, shapes and tensor
addresses are exercised. It proves nothing about TensorRT's kernels.

``pycuda_modules()`` and ``cuda_python_modules("12" | "13")`` give ``sys.modules`` entries for
fake CUDA libraries restricted the same way (pycuda from its sources, cuda-python from its
wheels), backed by the same fake device memory; ``FakeCuda`` stands in for the helper object
of actionnet.engines.cuda where a test does not care which library is behind it.
"""

from __future__ import annotations

import base64
import ctypes
import enum
import functools
import json
import os
import threading
import types

import numpy as np

PROFILES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "api_profiles")
TRT_VERSIONS = ("8.6", "10.3", "11")

# device memory: pointer -> uint8 array
MEMORY = {}
_next_ptr = [0x1000]
STATS = {"builds": 0}


@functools.lru_cache(maxsize=None)
def profile(name: str) -> dict:
    with open(os.path.join(PROFILES, name + ".json")) as f:
        return json.load(f)


def _device_alloc(nbytes):
    ptr = _next_ptr[0]
    _next_ptr[0] += nbytes + 256
    MEMORY[ptr] = np.zeros(max(1, nbytes), np.uint8)
    return ptr


# -- the guard --------------------------------------------------------------------------------

class _Api:
    """Base of every fake TensorRT object: public names outside the version's profile do not exist."""

    _names: dict = {}
    _real = "?"
    _version = "?"

    def __getattribute__(self, name):
        if name.startswith("_"):
            return object.__getattribute__(self, name)
        cls = type(self)
        if name not in cls._names:
            raise AttributeError(f"'tensorrt.{cls._real}' object has no attribute '{name}' (TensorRT {cls._version})")
        value = object.__getattribute__(self, name)
        params = cls._names[name]
        if params is not None and callable(value):
            return _keywords(value, params, f"{cls._real}.{name}", cls._version)
        return value

    def __setattr__(self, name, value):
        if not name.startswith("_") and name not in type(self)._names:
            raise AttributeError(f"'tensorrt.{type(self)._real}' object has no attribute '{name}' "
                                 f"(TensorRT {type(self)._version})")
        object.__setattr__(self, name, value)


def _keywords(fn, params, what, version):
    @functools.wraps(fn)
    def call(*args, **kw):
        bad = [k for k in kw if k not in params]
        if bad:
            raise TypeError(f"{what}() got unexpected keyword {bad[0]!r} (TensorRT {version} takes {params})")
        return fn(*args, **kw)

    return call


# -- implementations (every public name is checked against the profile at use) --------------

def _graph_types(data: bytes):
    """What the parsed ONNX itself carries: float16 weights, QDQ nodes."""
    import onnx

    m = onnx.load_from_string(data)
    fp16 = any(t.data_type == onnx.TensorProto.FLOAT16 for t in m.graph.initializer)
    qdq = any(n.op_type == "QuantizeLinear" for n in m.graph.node)
    return m, ("qdq" if qdq else "fp16" if fp16 else "fp32")


class Logger(_Api):
    _real = "Logger"
    VERBOSE, INFO, WARNING, ERROR, INTERNAL_ERROR = 4, 3, 2, 1, 0

    def __init__(self, min_severity=None):
        self.min_severity = min_severity


class INetworkDefinition(_Api):
    _real = "INetworkDefinition"

    def __init__(self, flags):
        self._flags, self._inputs, self._onnx, self._graph = flags, [], None, None

    @property
    def num_inputs(self):
        return len(self._inputs)

    def get_input(self, index):
        return self._inputs[index]


class ITensor(_Api):
    _real = "ITensor"

    def __init__(self, name, shape):
        self._name, self._shape = name, tuple(shape)

    @property
    def name(self):
        return self._name

    @property
    def shape(self):
        return self._shape


class OnnxParser(_Api):
    _real = "OnnxParser"

    def __init__(self, network, logger):
        self._network, self._errors = network, []

    def parse_from_file(self, model):
        net, m = self._network, self._m
        if m._major < 10 and not net._flags & (1 << int(m.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)):
            self._errors.append("ModelImporter: the ONNX parser only supports networks with an explicit batch dimension")
            return False
        try:
            with open(model, "rb") as f:
                data = f.read()
            onnx_model, graph = _graph_types(data)
        except Exception as e:  # noqa: BLE001 - any unreadable file is a parse error
            self._errors.append(f"cannot parse: {e}")
            return False
        net._onnx, net._graph = data, graph
        for i in onnx_model.graph.input:
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in i.type.tensor_type.shape.dim]
            net._inputs.append(self._m.ITensor(i.name, dims))
        return True

    @property
    def num_errors(self):
        return len(self._errors)

    def get_error(self, index):
        return self._errors[index]


class IOptimizationProfile(_Api):
    _real = "IOptimizationProfile"

    def __init__(self):
        self._shapes = {}

    def set_shape(self, input, min, opt, max):  # noqa: A002 - TensorRT's parameter names
        self._shapes[input] = [list(min), list(opt), list(max)]


class ITimingCache(_Api):
    _real = "ITimingCache"

    def __init__(self, data):
        self._data = bytes(data) + b"+"  # grows by one entry per build

    def serialize(self):
        return self._data


class IBuilderConfig(_Api):
    _real = "IBuilderConfig"

    def __init__(self):
        object.__setattr__(self, "_flags", set())
        self._profiles, self._pool, self._cache = [], {}, None
        object.__setattr__(self, "_device", "GPU")
        object.__setattr__(self, "_dla", -1)

    def set_memory_pool_limit(self, pool, pool_size):
        self._pool[pool.name] = pool_size

    def set_flag(self, flag):
        self._flags.add(flag.name)

    def add_optimization_profile(self, profile):
        self._profiles.append(profile)
        return len(self._profiles) - 1

    def create_timing_cache(self, serialized_timing_cache):
        return self._m.ITimingCache(serialized_timing_cache)

    def set_timing_cache(self, cache, ignore_mismatch):
        self._cache = cache
        return True

    def get_timing_cache(self):
        return self._cache

    @property
    def default_device_type(self):
        return self._device

    @default_device_type.setter
    def default_device_type(self, value):
        object.__setattr__(self, "_device", value.name)

    @property
    def DLA_core(self):  # noqa: N802 - TensorRT's name
        return self._dla

    @DLA_core.setter
    def DLA_core(self, value):  # noqa: N802
        object.__setattr__(self, "_dla", int(value))


class Builder(_Api):
    _real = "Builder"

    def __init__(self, logger):
        self._logger = logger

    def create_network(self, flags=0):
        return self._m.INetworkDefinition(int(flags))

    def create_builder_config(self):
        return self._m.IBuilderConfig()

    def create_optimization_profile(self):
        return self._m.IOptimizationProfile()

    def build_serialized_network(self, network, config):
        m = self._m
        names = {int(v): k for k, v in m.NetworkDefinitionCreationFlag.__members__.items()}
        net_flags = sorted(names[b] for b in names if network._flags & (1 << b))
        if "STRONGLY_TYPED" in net_flags and config._flags & {"FP16", "INT8", "BF16", "FP8"}:
            return None  # TensorRT: precision builder flags are not allowed on a strongly typed network
        STATS["builds"] += 1
        plan = {"onnx": base64.b64encode(network._onnx).decode(), "graph": network._graph,
                "network_flags": net_flags, "flags": sorted(config._flags),
                "profiles": [p._shapes for p in config._profiles], "workspace": config._pool.get("WORKSPACE"),
                "device": config._device, "dla_core": config._dla, "timing_cache": config._cache._data.decode(),
                "trt": m.__version__}
        return json.dumps(plan).encode()


class IExecutionContext(_Api):
    _real = "IExecutionContext"

    def __init__(self, engine):
        self._engine, self._shapes, self._addr = engine, {}, {}

    def set_input_shape(self, name, shape):
        self._shapes[name] = tuple(int(d) for d in shape)
        return True

    def get_tensor_shape(self, name):
        e = self._engine
        if name in self._shapes:
            return self._shapes[name]
        n = self._shapes[e._inputs[0]][0]
        return tuple(n if d < 0 else d for d in e._shapes[name])

    def set_tensor_address(self, name, memory):
        self._addr[name] = memory
        return True

    def execute_async_v3(self, stream_handle):
        e = self._engine
        feeds = {}
        for name in e._inputs:
            shape, dt = self._shapes[name], np.dtype(e._np[name])
            nbytes = int(np.prod(shape)) * dt.itemsize
            feeds[name] = MEMORY[self._addr[name]][:nbytes].view(dt).reshape(shape)
        for name, y in zip(e._outputs, e._session.run(e._outputs, feeds)):
            raw = np.ascontiguousarray(y).view(np.uint8).reshape(-1)
            buf = MEMORY[self._addr[name]]
            if raw.size > buf.size:
                raise RuntimeError(f"output {name} needs {raw.size} bytes, its buffer has {buf.size}")
            buf[:raw.size] = raw
        return True


_FROM_ORT = {"tensor(float)": "FLOAT", "tensor(uint8)": "UINT8", "tensor(float16)": "HALF", "tensor(int8)": "INT8",
             "tensor(int32)": "INT32", "tensor(int64)": "INT64", "tensor(bool)": "BOOL"}
_NP = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "UINT8": np.uint8, "INT32": np.int32,
       "INT64": np.int64, "BOOL": np.bool_}


class ICudaEngine(_Api):
    _real = "ICudaEngine"

    def __init__(self, plan):
        import onnxruntime

        self._plan = plan
        self._session = onnxruntime.InferenceSession(base64.b64decode(plan["onnx"]), providers=["CPUExecutionProvider"])
        ins, outs = self._session.get_inputs(), self._session.get_outputs()
        self._inputs, self._outputs = [i.name for i in ins], [o.name for o in outs]
        self._dtypes = {t.name: _FROM_ORT[t.type] for t in ins + outs}
        self._np = {k: _NP[v] for k, v in self._dtypes.items()}
        self._shapes = {t.name: [d if isinstance(d, int) else -1 for d in t.shape] for t in ins + outs}

    @property
    def num_io_tensors(self):
        return len(self._inputs) + len(self._outputs)

    def get_tensor_name(self, index):
        return (self._inputs + self._outputs)[index]

    def get_tensor_mode(self, name):
        return self._m.TensorIOMode.INPUT if name in self._inputs else self._m.TensorIOMode.OUTPUT

    def get_tensor_shape(self, name):
        return tuple(self._shapes[name])

    def get_tensor_dtype(self, name):
        return getattr(self._m.DataType, self._dtypes[name])

    def get_tensor_profile_shape(self, name, profile_index):
        return [tuple(s) for s in self._plan["profiles"][profile_index][name]]

    def create_execution_context(self, strategy=None):
        return self._m.IExecutionContext(self)


class Runtime(_Api):
    _real = "Runtime"

    def __init__(self, logger):
        object.__setattr__(self, "_dla", -1)

    def deserialize_cuda_engine(self, serialized_engine):
        try:
            plan = json.loads(bytes(serialized_engine).decode())
        except ValueError:
            return None
        if plan.get("trt") != self._m.__version__:
            return None  # TensorRT refuses a plan from another version
        return self._m.ICudaEngine(plan)

    @property
    def DLA_core(self):  # noqa: N802
        return self._dla

    @DLA_core.setter
    def DLA_core(self, value):  # noqa: N802
        object.__setattr__(self, "_dla", int(value))


_CLASSES = (Logger, INetworkDefinition, ITensor, OnnxParser, IOptimizationProfile, ITimingCache, IBuilderConfig,
            Builder, IExecutionContext, ICudaEngine, Runtime)
_ENUMS = ("NetworkDefinitionCreationFlag", "BuilderFlag", "MemoryPoolType", "DeviceType", "TensorIOMode", "DataType")


def load(version: str = "10.3") -> types.ModuleType:
    """A fresh fake ``tensorrt`` module with exactly the names of TensorRT ``version``."""
    prof = profile(f"tensorrt-{version}")
    mod = types.ModuleType("tensorrt")
    mod.__version__ = prof["version"]
    mod.__file__ = __file__
    mod._major = int(prof["version"].split(".")[0])
    mod._profile = version
    real_module = set(prof["module"])
    for name in _ENUMS:
        members = prof["classes"].get(name)
        if members is not None:
            setattr(mod, name, enum.IntEnum(name, {m: i for i, m in enumerate(sorted(members))}))
    for impl in _CLASSES:
        names = prof["classes"].get(impl._real)
        if names is None:
            continue
        cls = type(impl._real, (impl,), {"_names": names, "_version": prof["version"], "_m": mod})
        setattr(mod, impl._real, cls)
    if "nptype" in real_module:
        def nptype(trt_type):
            return _NP[trt_type.name]
        mod.nptype = nptype
    for name in list(vars(mod)):  # nothing the real module lacks
        if not name.startswith("_") and name not in real_module:
            delattr(mod, name)
    return mod


# -- CUDA ------------------------------------------------------------------------------------

class FakeCuda:
    """Stands in for actionnet.engines.cuda's pycuda/cuda-python helper."""

    name = "fake"

    def __init__(self, gpu="Orin (fake)", cc="8.7"):
        self.info = (gpu, cc)
        self.synced = 0
        self.pinned_shapes = []
        self.closed = 0

    def device_info(self):
        return self.info

    def pinned(self, shape, dtype):
        self.pinned_shapes.append((tuple(shape), np.dtype(dtype)))
        return np.zeros(shape, dtype)

    def malloc(self, nbytes):
        ptr = _device_alloc(nbytes)
        return MEMORY[ptr], ptr

    def stream(self):
        return object(), 7

    def htod(self, dptr, host, stream):
        raw = np.ascontiguousarray(host).view(np.uint8).reshape(-1)
        MEMORY[dptr][:raw.size] = raw

    def dtoh(self, host, dptr, stream):
        flat = host.reshape(-1).view(np.uint8)
        flat[:] = MEMORY[dptr][:flat.size]

    def sync(self, stream):
        self.synced += 1

    def current(self):
        import contextlib

        return contextlib.nullcontext()

    def close(self):
        self.closed += 1


GPU = ("NVIDIA H200 (fake)", 9, 0)
CALLS = {"htod": 0, "dtoh": 0, "sync": 0, "live_device": 0, "live_host": 0, "live_streams": 0}


def _restricted(name, allowed, attrs):
    mod = types.ModuleType(name)
    for k, v in attrs.items():
        if k in allowed:
            setattr(mod, k, v)
    return mod


def pycuda_modules() -> dict:
    """``sys.modules`` entries for a fake pycuda whose names are pycuda's own (tests/api_profiles/pycuda.json)."""
    allowed = set(profile("pycuda")["names"])

    class _Guarded:
        def __getattribute__(self, name):
            if not name.startswith("_") and name not in allowed:
                raise AttributeError(f"pycuda has no {name!r}")
            return object.__getattribute__(self, name)

    current = threading.local()  # the driver API: a context is current on the threads that pushed it

    def _stack():
        if not hasattr(current, "stack"):
            current.stack = []
        return current.stack

    def _need_context():
        if not _stack():
            raise RuntimeError("cuMemcpyHtoDAsync failed: invalid device context")

    class Context(_Guarded):
        def push(self):
            _stack().append(self)

        @staticmethod
        def pop():
            if not _stack():
                raise RuntimeError("cuCtxPopCurrent failed: invalid device context")
            return _stack().pop()

    class Device(_Guarded):
        def __init__(self, ordinal):
            self._ordinal = ordinal

        @staticmethod
        def count():
            return 1

        def name(self):
            return GPU[0]

        def compute_capability(self):
            return GPU[1], GPU[2]

        def retain_primary_context(self):
            return Context()

    class DeviceAllocation(_Guarded):
        def __init__(self, n):
            self._ptr = _device_alloc(n)
            CALLS["live_device"] += 1

        def __int__(self):
            return self._ptr

        def free(self):
            _need_context()
            CALLS["live_device"] -= 1

    class Stream(_Guarded):
        def __init__(self, flags=0):
            self.handle = 99

        def synchronize(self):
            CALLS["sync"] += 1

    def memcpy_htod_async(dest, src, stream=None):
        _need_context()
        raw = np.ascontiguousarray(src).view(np.uint8).reshape(-1)
        MEMORY[int(dest)][:raw.size] = raw
        CALLS["htod"] += 1

    def memcpy_dtoh_async(dest, src, stream=None):
        _need_context()
        flat = dest.reshape(-1).view(np.uint8)
        flat[:] = MEMORY[int(src)][:flat.size]
        CALLS["dtoh"] += 1

    drv = _restricted("pycuda.driver", allowed, {
        "init": lambda flags=0: None, "Device": Device, "Context": Context, "Stream": Stream,
        "mem_alloc": DeviceAllocation, "pagelocked_empty": lambda shape, dtype, order="C", mem_flags=0: np.zeros(shape, dtype),
        "memcpy_htod_async": memcpy_htod_async, "memcpy_dtoh_async": memcpy_dtoh_async})
    pkg = types.ModuleType("pycuda")
    pkg.__path__ = []
    pkg.driver = drv
    return {"pycuda": pkg, "pycuda.driver": drv}


def cuda_python_modules(version: str = "13") -> dict:
    """``sys.modules`` entries for a fake cuda-python 12 or 13 (``cuda.bindings.runtime``; 12 also
    has the legacy ``cuda.cudart``) whose names are that wheel's own."""
    prof = profile(f"cuda-python-{version}")
    allowed = set(prof["module"])
    host = {}

    class cudaMemcpyKind(enum.IntEnum):  # noqa: N801 - CUDA's names
        cudaMemcpyHostToHost = 0
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    ok = 0

    def cudaGetDeviceCount():  # noqa: N802
        return ok, 1

    def cudaGetDeviceProperties(device):  # noqa: N802
        return ok, types.SimpleNamespace(name=GPU[0].encode() + b"\x00" * 8, major=GPU[1], minor=GPU[2])

    def cudaMallocHost(size):  # noqa: N802
        buf = ctypes.create_string_buffer(size)
        host[ctypes.addressof(buf)] = buf
        CALLS["live_host"] += 1
        return ok, ctypes.addressof(buf)

    def cudaFreeHost(ptr):  # noqa: N802
        del host[int(ptr)]
        CALLS["live_host"] -= 1
        return (ok,)

    def cudaMalloc(size):  # noqa: N802
        CALLS["live_device"] += 1
        return ok, _device_alloc(size)

    def cudaFree(ptr):  # noqa: N802
        CALLS["live_device"] -= 1
        return (ok,)

    def cudaStreamCreate():  # noqa: N802
        CALLS["live_streams"] += 1
        return ok, 77

    def cudaStreamDestroy(stream):  # noqa: N802
        CALLS["live_streams"] -= 1
        return (ok,)

    def cudaStreamSynchronize(stream):  # noqa: N802
        CALLS["sync"] += 1
        return (ok,)

    def cudaMemcpyAsync(dst, src, count, kind, stream):  # noqa: N802
        if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
            MEMORY[int(dst)][:count] = np.frombuffer(ctypes.string_at(int(src), count), np.uint8)
            CALLS["htod"] += 1
        elif kind == cudaMemcpyKind.cudaMemcpyDeviceToHost:
            ctypes.memmove(int(dst), MEMORY[int(src)].ctypes.data, count)
            CALLS["dtoh"] += 1
        else:
            raise ValueError(kind)
        return (ok,)

    rt = _restricted("cuda.bindings.runtime", allowed, {k: v for k, v in locals().items() if k.startswith("cuda")})
    bindings = types.ModuleType("cuda.bindings")
    bindings.__path__ = []
    bindings.runtime = rt
    pkg = types.ModuleType("cuda")
    pkg.__path__ = []
    pkg.bindings = bindings
    mods = {"cuda": pkg, "cuda.bindings": bindings, "cuda.bindings.runtime": rt}
    if prof["legacy_cuda_cudart"]:
        pkg.cudart = rt
        mods["cuda.cudart"] = rt
    else:
        mods["cuda.cudart"] = None  # cuda-python 13 removed the legacy module
    return mods

"""A fake ``tensorrt`` module, for control flow only: it records what the builder is asked for
(profile shapes, flags, DLA, workspace, timing cache) in the "plan" it returns, and its runtime
executes that plan with ONNX Runtime on the ONNX it came from, through fake device memory
(:class:`FakeCuda`). It proves the code around TensorRT passes the right shapes, buffers and
addresses; it proves nothing about TensorRT itself.
"""

from __future__ import annotations

import enum
import json
import types

import numpy as np

__version__ = "10.3.0"

# device memory: pointer -> uint8 array
MEMORY = {}
_next_ptr = [0x1000]


class Logger:
    WARNING = 2

    def __init__(self, level=None):
        self.level = level


class LayerType(enum.Enum):
    CONVOLUTION = 1
    QUANTIZE = 2
    DEQUANTIZE = 3


class NetworkDefinitionCreationFlag(enum.IntEnum):
    EXPLICIT_BATCH = 0


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0


class BuilderFlag(enum.Enum):
    FP16 = 0
    INT8 = 1
    GPU_FALLBACK = 2


class DeviceType(enum.Enum):
    GPU = 0
    DLA = 1


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    UINT8 = 3


_NP = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8, DataType.UINT8: np.uint8}
_FROM_ORT = {"tensor(float)": DataType.FLOAT, "tensor(uint8)": DataType.UINT8, "tensor(float16)": DataType.HALF}


def nptype(dtype):
    return _NP[dtype]


class _Network:
    def __init__(self):
        self.inputs, self.layers, self.path = [], [], None

    @property
    def num_inputs(self):
        return len(self.inputs)

    def get_input(self, i):
        return self.inputs[i]

    @property
    def num_layers(self):
        return len(self.layers)

    def get_layer(self, i):
        return self.layers[i]


class OnnxParser:
    def __init__(self, network, logger):
        self.network, self.errors = network, []

    def parse_from_file(self, path):
        import onnx

        try:
            m = onnx.load(path)
        except Exception as e:
            self.errors.append(f"cannot parse: {e}")
            return False
        self.network.path = path
        for i in m.graph.input:
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in i.type.tensor_type.shape.dim]
            self.network.inputs.append(types.SimpleNamespace(name=i.name, shape=tuple(dims)))
        for n in m.graph.node:
            kind = {"QuantizeLinear": LayerType.QUANTIZE, "DequantizeLinear": LayerType.DEQUANTIZE}.get(
                n.op_type, LayerType.CONVOLUTION)
            self.network.layers.append(types.SimpleNamespace(type=kind, name=n.name))
        return True

    @property
    def num_errors(self):
        return len(self.errors)

    def get_error(self, i):
        return self.errors[i]


class _Profile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, lo, opt, hi):
        self.shapes[name] = [list(lo), list(opt), list(hi)]


class _TimingCache:
    def __init__(self, data):
        self.data = bytes(data) + b"+"  # grows by one entry per build

    def serialize(self):
        return self.data


class _Config:
    def __init__(self):
        self.flags, self.profiles, self.pool = set(), [], {}
        self.default_device_type, self.DLA_core, self.cache = DeviceType.GPU, -1, None

    def set_memory_pool_limit(self, pool, size):
        self.pool[pool.name] = size

    def set_flag(self, flag):
        self.flags.add(flag)

    def add_optimization_profile(self, p):
        self.profiles.append(p)
        return len(self.profiles) - 1

    def create_timing_cache(self, data):
        return _TimingCache(data)

    def set_timing_cache(self, cache, ignore_mismatch):
        self.cache = cache
        return True

    def get_timing_cache(self):
        return self.cache


class Builder:
    builds = 0  # class-level count, for cache tests

    def __init__(self, logger):
        pass

    def create_network(self, flags=0):
        net = _Network()
        net.flags = flags
        return net

    def create_builder_config(self):
        return _Config()

    def create_optimization_profile(self):
        return _Profile()

    def build_serialized_network(self, network, config):
        Builder.builds += 1
        plan = {"onnx": network.path, "network_flags": network.flags, "flags": sorted(f.name for f in config.flags),
                "profiles": [p.shapes for p in config.profiles], "workspace": config.pool.get("WORKSPACE"),
                "device": config.default_device_type.name, "dla_core": config.DLA_core,
                "timing_cache": config.cache.data.decode()}
        return json.dumps(plan).encode()


class _Context:
    def __init__(self, engine):
        self.engine, self.shapes, self.addr = engine, {}, {}

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        if name in self.shapes:
            return self.shapes[name]
        n = self.shapes[self.engine.input_name][0]
        return (n,) + tuple(self.engine.out_shapes[name][1:])

    def set_tensor_address(self, name, ptr):
        self.addr[name] = ptr
        return True

    def execute_async_v3(self, stream_handle):
        e = self.engine
        shape = self.shapes[e.input_name]
        dt = np.dtype(nptype(e.dtypes[e.input_name]))
        x = MEMORY[self.addr[e.input_name]][:int(np.prod(shape)) * dt.itemsize].view(dt).reshape(shape)
        outs = e.session.run(None, {e.input_name: x})
        for name, y in zip(e.output_names, outs):
            raw = np.ascontiguousarray(y).view(np.uint8).reshape(-1)
            MEMORY[self.addr[name]][:raw.size] = raw
        return True


class _Engine:
    def __init__(self, plan):
        import onnxruntime

        self.plan = plan
        self.session = onnxruntime.InferenceSession(plan["onnx"], providers=["CPUExecutionProvider"])
        i = self.session.get_inputs()[0]
        self.input_name = i.name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.dtypes = {t.name: _FROM_ORT[t.type] for t in self.session.get_inputs() + self.session.get_outputs()}
        self.out_shapes = {o.name: [d if isinstance(d, int) else -1 for d in o.shape] for o in self.session.get_outputs()}
        self.in_shape = [d if isinstance(d, int) else -1 for d in i.shape]

    @property
    def num_io_tensors(self):
        return 1 + len(self.output_names)

    def get_tensor_name(self, i):
        return ([self.input_name] + self.output_names)[i]

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if name == self.input_name else TensorIOMode.OUTPUT

    def get_tensor_shape(self, name):
        return tuple(self.in_shape if name == self.input_name else self.out_shapes[name])

    def get_tensor_dtype(self, name):
        return self.dtypes[name]

    def get_tensor_profile_shape(self, name, profile):
        return [tuple(s) for s in self.plan["profiles"][profile][name]]

    def create_execution_context(self):
        return _Context(self)


class Runtime:
    def __init__(self, logger):
        self.DLA_core = -1

    def deserialize_cuda_engine(self, plan):
        try:
            return _Engine(json.loads(bytes(plan).decode()))
        except ValueError:
            return None


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
        ptr = _next_ptr[0]
        _next_ptr[0] += nbytes + 256
        MEMORY[ptr] = np.zeros(nbytes, np.uint8)
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

    def close(self):
        self.closed += 1

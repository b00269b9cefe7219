"""TensorRT paths on a machine without TensorRT: profile shapes, the engine header, cache keys and
rebuilds, the builder's flags and the runtime's buffers, driven by tests/fake_tensorrt.py. What
the fake cannot show (TensorRT and CUDA themselves) is listed in docs/engines.md as not run."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import fake_tensorrt  # noqa: E402

from actionnet.engines import header as hdr  # noqa: E402
from actionnet.engines import trt_build  # noqa: E402
from actionnet.engines.header import EngineFileError, EngineHeader, read_engine, read_header, write_engine  # noqa: E402
from actionnet.engines.trt_build import profile_shapes  # noqa: E402
from actionnet.errors import MissingLibraryError, ModelError, UsageError  # noqa: E402

from conftest import run_cli  # noqa: E402


@pytest.fixture
def fake_trt(monkeypatch):
    """The fake ``tensorrt`` importable, a fake GPU, and a fresh build counter."""
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt)
    cuda = fake_tensorrt.FakeCuda()
    import actionnet.engines.cuda as cuda_mod

    monkeypatch.setattr(cuda_mod, "open_cuda", lambda: cuda)
    monkeypatch.setattr(fake_tensorrt.Builder, "builds", 0)
    return cuda


# -- profile shapes ------------------------------------------------------------------------

@pytest.mark.parametrize("shape, max_batch, opt, want", [
    (("N", 3, 16, 112, 112), 8, None, ((1, 3, 16, 112, 112), (4, 3, 16, 112, 112), (8, 3, 16, 112, 112))),
    ((None, 8, 32, 32, 3), 4, 2, ((1, 8, 32, 32, 3), (2, 8, 32, 32, 3), (4, 8, 32, 32, 3))),   # raw NTHWC
    ((-1, 3, 640, 640), 2, None, ((1, 3, 640, 640), (2, 3, 640, 640), (2, 3, 640, 640))),      # 4-D detector
    (("batch", 3, 640, 640), 1, None, ((1, 3, 640, 640),) * 3),
    ((1, 3, 640, 640), 8, None, ((1, 3, 640, 640),) * 3),                                       # static batch
])
def test_profile_shapes(shape, max_batch, opt, want):
    assert profile_shapes("x", shape, max_batch, opt) == want


@pytest.mark.parametrize("shape, max_batch, opt, error, text", [
    (("N", 3, 112), 1, None, ModelError, "4-D images"),
    (("N", 3, "T", 112, 112), 1, None, ModelError, "only the batch dimension"),
    (("N", 3, 16, 112, 112), 0, None, UsageError, "--max-batch"),
    (("N", 3, 16, 112, 112), 4, 5, UsageError, "--opt-batch"),
])
def test_profile_shape_errors(shape, max_batch, opt, error, text):
    with pytest.raises(error, match=text):
        profile_shapes("x", shape, max_batch, opt)


# -- the header ----------------------------------------------------------------------------

def _header(**kw):
    d = dict(metadata={"actionnet.task": "action"}, trt_version="10.3.0", gpu_name="Orin", compute_capability="8.7",
             precision="fp16", onnx_sha256="ab" * 32, onnx_name="m.onnx", max_batch=4, dla_core=None,
             inputs={"x": [4, 3, 16, 112, 112]})
    d.update(kw)
    return EngineHeader(**d)


def test_header_round_trip(tmp_path):
    path = tmp_path / "m.engine"
    write_engine(str(path), _header(), b"PLAN" * 1000)
    h, plan = read_engine(str(path))
    assert plan == b"PLAN" * 1000
    assert h == _header(plan_size=4000, plan_sha256=h.plan_sha256) and len(h.plan_sha256) == 64
    assert read_header(str(path)) == h
    assert os.listdir(tmp_path) == ["m.engine"]  # no temporary file left behind


def test_write_is_atomic_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "m.engine"
    write_engine(str(path), _header(), b"old")
    monkeypatch.setattr(hdr.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "No space left")))
    with pytest.raises(OSError):
        write_engine(str(path), _header(), b"new plan")
    assert read_engine(str(path))[1] == b"old" and os.listdir(tmp_path) == ["m.engine"]


@pytest.mark.parametrize("damage, text", [
    (lambda b: b[:-10], "truncated"),
    (lambda b: b[:20], "truncated"),
    (lambda b: b[:-3] + bytes([b[-3] ^ 0xFF]) + b[-2:], "corrupt"),
    (lambda b: b"\x00" * 64, "not an actionnet engine"),
    (lambda b: b[:8] + b"\xff\xff\xff\x7f" + b[12:], "corrupt"),
    (lambda b: b[:8] + b"\x02\x00\x00\x00[]", "corrupt"),  # a header that is JSON but not an object
])
def test_damaged_engine_files_are_detected(tmp_path, damage, text):
    path = tmp_path / "m.engine"
    write_engine(str(path), _header(), bytes(range(256)) * 10)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(EngineFileError, match=text):
        read_engine(str(path))


@pytest.mark.parametrize("args, text", [
    (("10.3.0", "Orin", "8.7"), None),
    (("10.4.0", "Orin", "8.7"), "TensorRT 10.3.0, this is TensorRT 10.4.0"),
    (("10.3.0", "NVIDIA GeForce RTX 4090", "8.9"), "built for Orin"),
    (("10.3.0", "Orin", "8.7", "cd" * 32), "changed"),
    (("10.3.0", "Orin", "8.7", "ab" * 32, "int8"), "built for fp16, int8 requested"),
])
def test_header_mismatch(args, text):
    reason = _header().mismatch(*args)
    assert reason is None if text is None else text in reason


# -- building ------------------------------------------------------------------------------

def _plan(path):
    return json.loads(read_engine(str(path))[1])


def test_build_records_profile_precision_and_header(fake_trt, synthetic_model, tmp_path):
    out = tmp_path / "m.engine"
    h = trt_build.build_engine(str(synthetic_model), str(out), precision="fp16", max_batch=4,
                               timing_cache=str(tmp_path / "t.cache"))
    plan = _plan(out)
    assert plan["profiles"] == [{"frames": [[1, 8, 32, 32, 3], [2, 8, 32, 32, 3], [4, 8, 32, 32, 3]]}]
    assert plan["flags"] == ["FP16"] and plan["device"] == "GPU" and plan["workspace"] == 1024 << 20
    assert (h.gpu_name, h.compute_capability, h.trt_version) == ("Orin (fake)", "8.7", "10.3.0")
    assert h.metadata["actionnet.input_name"] == "frames" and h.onnx_name == synthetic_model.name
    # the timing cache is read back and extended by the next build
    assert (tmp_path / "t.cache").read_bytes() == b"+"
    trt_build.build_engine(str(synthetic_model), str(out), timing_cache=str(tmp_path / "t.cache"))
    assert (tmp_path / "t.cache").read_bytes() == b"++" and _plan(out)["flags"] == []


def test_build_dla_and_int8(fake_trt, synthetic_model, tmp_path):
    with pytest.raises(UsageError, match="DLA runs FP16 or INT8"):
        trt_build.build_engine(str(synthetic_model), str(tmp_path / "a.engine"), precision="fp32", dla_core=0)
    with pytest.raises(ModelError, match="no QuantizeLinear"):
        trt_build.build_engine(str(synthetic_model), str(tmp_path / "a.engine"), precision="int8")
    assert not (tmp_path / "a.engine").exists()
    trt_build.build_engine(str(synthetic_model), str(tmp_path / "d.engine"), precision="fp16", dla_core=1)
    plan = _plan(tmp_path / "d.engine")
    assert plan["device"] == "DLA" and plan["dla_core"] == 1 and "GPU_FALLBACK" in plan["flags"]
    assert read_header(str(tmp_path / "d.engine")).dla_core == 1


def test_build_int8_from_qdq(fake_trt, int8_model, tmp_path):
    trt_build.build_engine(str(int8_model), str(tmp_path / "q.engine"), precision="int8")
    assert {"INT8", "FP16"} <= set(_plan(tmp_path / "q.engine")["flags"])


# -- cache keys and rebuilds ----------------------------------------------------------------

def _resolve(path, gpu=("Orin (fake)", "8.7"), version="10.3.0", **kw):
    from actionnet.engines.tensorrt import resolve_engine

    return resolve_engine(str(path), gpu, version, log=open(os.devnull, "w"), **kw)


def test_onnx_is_built_once_and_cached(fake_trt, synthetic_model):
    a = _resolve(synthetic_model, precision="fp16", max_batch=2)
    b = _resolve(synthetic_model, precision="fp16", max_batch=2)
    assert a == b and fake_tensorrt.Builder.builds == 1
    assert a.startswith(os.environ["ACTIONNET_HOME"])
    _resolve(synthetic_model, precision="fp32", max_batch=2)  # another precision: another engine
    _resolve(synthetic_model, gpu=("Xavier", "7.2"), precision="fp16", max_batch=2)  # another GPU: rebuilt
    assert fake_tensorrt.Builder.builds == 3


@pytest.mark.parametrize("change", ["gpu", "trt", "onnx", "corrupt"])
def test_engine_next_to_its_onnx_is_rebuilt(fake_trt, synthetic_model, tmp_path, change):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(synthetic_model.read_bytes())
    engine = tmp_path / "m.engine"
    trt_build.build_engine(str(onnx), str(engine), precision="fp16", max_batch=3)
    assert _resolve(engine) == str(engine) and fake_tensorrt.Builder.builds == 1  # matches: used as is
    kw = {}
    if change == "gpu":
        kw["gpu"] = ("Xavier", "7.2")
    elif change == "trt":
        kw["version"] = "10.7.0"
    elif change == "onnx":
        import onnx as onnx_lib

        m = onnx_lib.load(str(onnx))
        m.doc_string = "retrained"
        onnx_lib.save(m, str(onnx))
    else:
        data = engine.read_bytes()
        engine.write_bytes(data[:-5] + bytes([data[-5] ^ 1]) + data[-4:])  # one flipped bit in the plan
    if change == "trt":
        fake_trt_version = kw.pop("version")
        import fake_tensorrt as f

        old, f.__version__ = f.__version__, fake_trt_version
        try:
            assert _resolve(engine, version=fake_trt_version) == str(engine)
            assert read_header(str(engine)).trt_version == fake_trt_version
        finally:
            f.__version__ = old
    else:
        assert _resolve(engine, **kw) == str(engine)
    assert fake_tensorrt.Builder.builds == 2
    h = read_header(str(engine))
    assert (h.precision, h.max_batch) == ("fp16", 3)  # rebuilt as it was built
    if change == "gpu":
        assert h.gpu_name == "Xavier"


def test_engine_without_its_onnx_says_how_to_rebuild(fake_trt, synthetic_model, tmp_path):
    engine = tmp_path / "m.engine"
    trt_build.build_engine(str(synthetic_model), str(engine), precision="fp16", max_batch=8, dla_core=0)
    with pytest.raises(ModelError) as e:
        _resolve(engine, gpu=("Xavier", "7.2"))
    msg = str(e.value)
    assert "built for Orin (fake)" in msg
    assert f"actionnet-export engine {synthetic_model.name} --precision fp16 --max-batch 8 --dla 0 --output {engine}" in msg


# -- the runtime backend ---------------------------------------------------------------------

def test_tensorrt_engine_runs_and_matches_onnxruntime(fake_trt, synthetic_model, tmp_path):
    from actionnet.engines import open_engine

    engine = tmp_path / "m.engine"
    trt_build.build_engine(str(synthetic_model), str(engine), precision="fp16", max_batch=4)
    rng = np.random.default_rng(0)
    with open_engine(str(synthetic_model), "onnxruntime") as ref, open_engine(str(engine)) as eng:
        assert eng.name == "tensorrt" and eng.max_batch == 4 and eng.precision == "fp16"
        assert eng.metadata == ref.metadata  # the spec travels in the header
        assert eng.input.dtype == np.uint8  # raw frames are uploaded as uint8
        # pinned buffers sized once, for the max batch
        assert fake_trt.pinned_shapes[0] == ((4, 8, 32, 32, 3), np.dtype(np.uint8))
        for n in (1, 3, 4, 1):
            x = rng.integers(0, 255, (n, 8, 32, 32, 3), dtype=np.uint8)
            np.testing.assert_allclose(eng.infer(x), ref.infer(x), rtol=1e-5, atol=1e-5)
        assert len(fake_trt.pinned_shapes) == 2 and fake_trt.synced == 4  # no allocation per call
        with pytest.raises(ModelError, match="max batch 4"):
            eng.infer(np.zeros((5, 8, 32, 32, 3), np.uint8))


def test_onnx_with_engine_tensorrt_builds_and_caches(fake_trt, synthetic_model):
    from actionnet.engines import open_engine

    with open_engine(str(synthetic_model), "tensorrt", precision="fp16", log=open(os.devnull, "w")) as eng:
        assert eng.path.endswith("-fp16-b1.engine") and eng.precision == "fp16"
    with open_engine(str(synthetic_model), "tensorrt", precision="fp16"):
        pass
    assert fake_tensorrt.Builder.builds == 1


def test_missing_cuda_names_both_libraries(monkeypatch, synthetic_model):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt)
    for m in ("pycuda", "pycuda.driver", "cuda", "cuda.bindings", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, m, None)  # None in sys.modules makes import fail
    from actionnet.engines import open_engine

    with pytest.raises(MissingLibraryError, match="pycuda.*cuda-python"):
        open_engine(str(synthetic_model), "tensorrt")


def test_missing_tensorrt_is_one_clear_line(synthetic_model, synthetic_video):
    pytest.importorskip("onnx")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    r = run_cli("--model", synthetic_model, "--engine", "tensorrt", "--headless", synthetic_video("red left slow"))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == ("actionnet: error: TensorRT is not installed: on a Jetson it comes "
                                                 "with JetPack (see jetson/README.md); on a desktop: pip install "
                                                 "'actionnet[tensorrt]'")
    r = run_cli("engine", synthetic_model, "--output", "x.engine", module="actionnet.export.cli")
    assert r.returncode != 0 and "TensorRT is not installed" in r.stderr and "Traceback" not in r.stderr


def test_unreadable_engine_is_rebuilt_from_same_stem_onnx(fake_trt, synthetic_model, tmp_path):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(synthetic_model.read_bytes())
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"garbage, not an engine")
    assert _resolve(engine, precision="fp16") == str(engine)
    assert read_header(str(engine)).precision == "fp16" and fake_tensorrt.Builder.builds == 1


@pytest.mark.parametrize("version, flags", [("10.3.0", 0), ("8.6.2", 1), ("8.5.2.2", 1)])
def test_explicit_batch_on_tensorrt_8_and_10(fake_trt, synthetic_model, tmp_path, monkeypatch, version, flags):
    monkeypatch.setattr(fake_tensorrt, "__version__", version)
    trt_build.build_engine(str(synthetic_model), str(tmp_path / "m.engine"))
    assert _plan(tmp_path / "m.engine")["network_flags"] == flags
    assert read_header(str(tmp_path / "m.engine")).trt_version == version


def test_actionnet_runs_an_engine_file_like_its_onnx(fake_trt, synthetic_model, synthetic_video, tmp_path):
    """The whole runtime on the TensorRT path: the spec comes from the engine header, auto picks
    TensorRT for an engine file, and every classification matches the ONNX on ONNX Runtime."""
    import io

    from actionnet.net import ActionNet
    from actionnet.sources import open_source

    engine = tmp_path / "m.engine"
    trt_build.build_engine(str(synthetic_model), str(engine), precision="fp16")
    log = io.StringIO()
    results = {}
    for name, model, eng in (("trt", engine, "auto"), ("ort", synthetic_model, "onnxruntime")):
        with ActionNet(model=str(model), engine=eng, skip_frames=0, threshold=0.5, log=log) as net, \
                open_source(str(synthetic_video("blue left slow"))) as src:
            results[name] = [c.label for c in (net.update(f, t) for f, t in src) if c is not None]
            if name == "trt":
                assert net.engine.name == "tensorrt" and net.spec.labels == spec_labels(synthetic_model)
    assert "engine auto -> tensorrt (a TensorRT engine file)" in log.getvalue()
    assert results["trt"] == results["ort"] == ["blue left slow"] * (30 - 8 + 1)


def spec_labels(model):
    from actionnet.engines.onnxmeta import read_metadata
    from actionnet.spec import ModelSpec

    return ModelSpec.from_metadata(read_metadata(str(model))).labels


def test_detector_engine_profile_from_the_real_yolo_onnx(fake_trt, tmp_path):
    """A 4-D detector (YOLOv5n, static batch 1x3x640x640) builds with a fixed profile."""
    from conftest import shared_file

    yolo = shared_file("weights/yolov5n.onnx")
    trt_build.build_engine(str(yolo), str(tmp_path / "y.engine"), precision="fp16", max_batch=8)
    assert _plan(tmp_path / "y.engine")["profiles"] == [{"images": [[1, 3, 640, 640]] * 3}]


# -- review: CUDA resources are released on every path ----------------------------------------

def test_engine_that_fails_to_open_releases_cuda(fake_trt, synthetic_model, tmp_path):
    from actionnet.engines.tensorrt import TensorRtEngine

    engine = tmp_path / "m.engine"
    trt_build.build_engine(str(synthetic_model), str(engine), precision="fp16", device_info=("Xavier", "7.2"))
    with pytest.raises(ModelError, match="rebuild it on this device"):  # built for another GPU, no ONNX beside
        TensorRtEngine(str(engine), log=open(os.devnull, "w"))
    assert fake_trt.closed == 1


def test_engine_close_releases_cuda_once(fake_trt, synthetic_model, tmp_path):
    from actionnet.engines.tensorrt import TensorRtEngine

    engine = tmp_path / "m.engine"
    trt_build.build_engine(str(synthetic_model), str(engine), precision="fp16", device_info=("Orin (fake)", "8.7"))
    eng = TensorRtEngine(str(engine))
    eng.close()
    eng.close()
    assert fake_trt.closed == 1


def test_build_releases_the_cuda_it_opened(fake_trt, synthetic_model, tmp_path):
    trt_build.build_engine(str(synthetic_model), str(tmp_path / "m.engine"))  # device_info asked of CUDA
    assert fake_trt.closed == 1


class _FakeCudart:
    """cuda-python's runtime module, as far as actionnet.engines.cuda uses it; counts what is live."""

    class cudaMemcpyKind:
        cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost = 1, 2

    def __init__(self):
        import ctypes

        self._ctypes = ctypes
        self.host, self.device, self.streams = {}, set(), set()
        self._next = 1 << 20

    def cudaGetDeviceCount(self):
        return 0, 1

    def cudaMallocHost(self, n):
        buf = self._ctypes.create_string_buffer(n)
        ptr = self._ctypes.addressof(buf)
        self.host[ptr] = buf
        return 0, ptr

    def cudaFreeHost(self, ptr):
        del self.host[ptr]
        return (0,)

    def cudaMalloc(self, n):
        self._next += n + 256
        self.device.add(self._next)
        return 0, self._next

    def cudaFree(self, ptr):
        self.device.remove(ptr)
        return (0,)

    def cudaStreamCreate(self):
        self._next += 1
        self.streams.add(self._next)
        return 0, self._next

    def cudaStreamDestroy(self, s):
        self.streams.remove(s)
        return (0,)


def test_cuda_python_close_frees_device_memory_and_streams(monkeypatch):
    from actionnet.engines.cuda import _CudaPython

    rt = _FakeCudart()
    bindings = type(sys)("cuda.bindings")
    bindings.runtime = rt
    monkeypatch.setitem(sys.modules, "cuda", type(sys)("cuda"))
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", rt)
    cuda = _CudaPython()
    host = cuda.pinned((2, 3), np.float32)
    assert host.shape == (2, 3) and len(rt.host) == 1
    cuda.malloc(100)
    cuda.malloc(50)
    cuda.stream()
    assert len(rt.device) == 2 and len(rt.streams) == 1
    cuda.close()
    assert rt.host == {} and rt.device == set() and rt.streams == set()
    cuda.close()  # twice is harmless

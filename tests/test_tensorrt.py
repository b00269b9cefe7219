"""TensorRT paths on a machine without TensorRT, against version-faithful fakes of TensorRT 8.6,
10.3 and 11.4 and of pycuda and cuda-python 12 and 13 (tests/fake_tensorrt.py): each fake has
exactly the names of the real binding (tests/api_profiles/, from the real wheels), so a call a
version lacks fails that version's test. Plans run through ONNX Runtime. What the fakes cannot
show (TensorRT's kernels, CUDA itself) is listed in docs/engines.md as not run."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import fake_tensorrt  # noqa: E402
from actionnet.engines import (
    header as hdr,  # noqa: E402
    trt_build,  # noqa: E402
)
from actionnet.engines.header import EngineFileError, EngineHeader, read_engine, read_header, write_engine  # noqa: E402
from actionnet.engines.trt_build import build_recipe, graph_precision, profile_shapes  # noqa: E402
from actionnet.errors import MissingLibraryError, ModelError, UsageError  # noqa: E402
from conftest import run_cli  # noqa: E402
from fake_tensorrt import TRT_VERSIONS  # noqa: E402

# the CUDA library each TensorRT goes with where users get it: JetPack 5 (pycuda), a JetPack 6 /
# desktop 10.x (cuda-python 12), a desktop 11.x (cuda-python 13)
CUDA_FOR = {"8.6": "pycuda", "10.3": "cuda-python-12", "11": "cuda-python-13"}
GPU = (fake_tensorrt.GPU[0], f"{fake_tensorrt.GPU[1]}.{fake_tensorrt.GPU[2]}")


def install_cuda(monkeypatch, flavour):
    """Make ``flavour`` the CUDA library actionnet.engines.cuda finds (the other one absent)."""
    if flavour == "pycuda":
        mods = fake_tensorrt.pycuda_modules()
        mods.update({"cuda": None, "cuda.bindings": None, "cuda.bindings.runtime": None, "cuda.cudart": None})
    else:
        mods = fake_tensorrt.cuda_python_modules(flavour.rsplit("-", 1)[1])
        mods.update({"pycuda": None, "pycuda.driver": None})
    for k, v in mods.items():
        monkeypatch.setitem(sys.modules, k, v)


@pytest.fixture(params=TRT_VERSIONS)
def trt(request, monkeypatch):
    """One TensorRT version's fake as ``tensorrt`` with its usual CUDA library; a fresh build count."""
    mod = fake_tensorrt.load(request.param)
    monkeypatch.setitem(sys.modules, "tensorrt", mod)
    install_cuda(monkeypatch, CUDA_FOR[request.param])
    monkeypatch.setitem(fake_tensorrt.STATS, "builds", 0)
    return mod


@pytest.fixture
def trt11(monkeypatch):
    mod = fake_tensorrt.load("11")
    monkeypatch.setitem(sys.modules, "tensorrt", mod)
    install_cuda(monkeypatch, "cuda-python-13")
    monkeypatch.setitem(fake_tensorrt.STATS, "builds", 0)
    return mod


def _quiet():
    return open(os.devnull, "w")


# -- the fakes are the real bindings' names ------------------------------------------------------

def test_profiles_say_what_each_version_removed():
    """The issue's list of what TensorRT 11 removed, read from the real wheels (not typed in)."""
    p = {v: fake_tensorrt.profile(f"tensorrt-{v}")["classes"] for v in TRT_VERSIONS}
    for v in ("8.6", "10.3"):
        assert {"FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS", "FP8"} <= set(p[v]["BuilderFlag"])
        assert "int8_calibrator" in p[v]["IBuilderConfig"] and "device_memory_size" in p[v]["ICudaEngine"]
        assert "EXPLICIT_BATCH" in p[v]["NetworkDefinitionCreationFlag"]
    assert not {"FP16", "INT8", "BF16", "FP8", "OBEY_PRECISION_CONSTRAINTS"} & set(p["11"]["BuilderFlag"])
    assert "int8_calibrator" not in p["11"]["IBuilderConfig"] and "device_memory_size" not in p["11"]["ICudaEngine"]
    assert set(p["11"]["NetworkDefinitionCreationFlag"]) >= {"STRONGLY_TYPED"} and \
        "EXPLICIT_BATCH" not in p["11"]["NetworkDefinitionCreationFlag"]
    assert "STRONGLY_TYPED" not in p["8.6"]["NetworkDefinitionCreationFlag"]
    assert fake_tensorrt.profile("cuda-python-12")["legacy_cuda_cudart"] and \
        not fake_tensorrt.profile("cuda-python-13")["legacy_cuda_cudart"]


def test_a_call_a_version_lacks_fails_there(trt11, synthetic_model, tmp_path, monkeypatch):
    """The fake refuses what TensorRT 11 lacks: the weak FP16 flag the builder used to set, the
    EXPLICIT_BATCH flag, and keywords the binding does not take."""
    with pytest.raises(AttributeError, match="FP16"):
        trt11.BuilderFlag.FP16
    with pytest.raises(AttributeError, match="EXPLICIT_BATCH"):
        trt11.NetworkDefinitionCreationFlag.EXPLICIT_BATCH
    config = trt11.Builder(trt11.Logger(trt11.Logger.WARNING)).create_builder_config()
    with pytest.raises(AttributeError, match="int8_calibrator.*11.4"):
        config.int8_calibrator = None
    with pytest.raises(TypeError, match="unexpected keyword"):
        config.set_timing_cache(None, ignore_missmatch=False)
    # the builder of before this issue (weak FP16 flag on every version) fails on 11, as it did for users
    old = trt_build.BuildRecipe((), ("FP16",), False, "old")
    monkeypatch.setattr(trt_build, "build_recipe", lambda *a, **k: old)
    with pytest.raises(AttributeError, match="FP16"):
        trt_build.build_engine(str(synthetic_model), str(tmp_path / "m.engine"), precision="fp16", device_info=GPU)


def test_tensorrt_8_parser_needs_explicit_batch(monkeypatch, synthetic_model, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt.load("8.6"))
    monkeypatch.setattr(trt_build, "build_recipe", lambda *a, **k: trt_build.BuildRecipe((), (), False, "no flag"))
    with pytest.raises(ModelError, match="explicit batch"):
        trt_build.build_engine(str(synthetic_model), str(tmp_path / "m.engine"), device_info=GPU)


# -- profile shapes ------------------------------------------------------------------------

@pytest.mark.parametrize("shape, max_batch, opt, want", [
    (("N", 3, 16, 112, 112), 8, None, ((1, 3, 16, 112, 112), (4, 3, 16, 112, 112), (8, 3, 16, 112, 112))),
    ((None, 8, 32, 32, 3), 4, 2, ((1, 8, 32, 32, 3), (2, 8, 32, 32, 3), (4, 8, 32, 32, 3))),   # raw NTHWC
    ((-1, 3, 640, 640), 2, None, ((1, 3, 640, 640), (2, 3, 640, 640), (2, 3, 640, 640))),      # 4-D detector
    (("batch", 3, 640, 640), 1, None, ((1, 3, 640, 640),) * 3),
    ((1, 3, 640, 640), 8, None, ((1, 3, 640, 640),) * 3),                                       # static batch
    (("N", 512), 4, None, ((1, 512), (2, 512), (4, 512))),                                      # an embedding input
    ((7, 512), 4, None, ((7, 512),) * 3),                                                       # fixed text embeddings
])
def test_profile_shapes(shape, max_batch, opt, want):
    assert profile_shapes("x", shape, max_batch, opt) == want


@pytest.mark.parametrize("shape, max_batch, opt, error, text", [
    (("N", 3, "T", 112, 112), 1, None, ModelError, "only the first"),
    (("N", 3, 16, 112, 112), 0, None, UsageError, "--max-batch"),
    (("N", 3, 16, 112, 112), 4, 5, UsageError, "--opt-batch"),
])
def test_profile_shape_errors(shape, max_batch, opt, error, text):
    with pytest.raises(error, match=text):
        profile_shapes("x", shape, max_batch, opt)


# -- one function decides how a precision is built --------------------------------------------

@pytest.mark.parametrize("version, precision, graph, dla, net, flags, to_fp16", [
    ("11.4.0", "fp32", "fp32", False, ("STRONGLY_TYPED",), (), False),
    ("11.4.0", "fp16", "fp32", False, ("STRONGLY_TYPED",), (), True),     # an FP16 copy of the ONNX
    ("11.4.0", "fp16", "fp16", False, ("STRONGLY_TYPED",), (), False),
    ("11.4.0", "int8", "qdq", False, ("STRONGLY_TYPED",), (), False),
    ("10.3.0", "fp32", "fp32", False, (), (), False),
    ("10.3.0", "fp16", "fp32", False, (), ("FP16",), False),             # weak flag: still there in 10.x
    ("10.3.0", "fp16", "fp16", False, ("STRONGLY_TYPED",), (), False),   # the graph carries its precision
    ("10.3.0", "int8", "qdq", False, ("STRONGLY_TYPED",), (), False),
    ("10.3.0", "int8", "qdq", True, (), ("INT8", "FP16", "GPU_FALLBACK"), False),  # DLA: weak flags
    ("8.6.2", "fp32", "fp32", False, ("EXPLICIT_BATCH",), (), False),
    ("8.6.2", "fp16", "fp16", False, ("EXPLICIT_BATCH",), ("FP16",), False),
    ("8.5.2.2", "int8", "qdq", False, ("EXPLICIT_BATCH",), ("INT8", "FP16"), False),
])
def test_build_recipe(version, precision, graph, dla, net, flags, to_fp16):
    r = build_recipe(version, precision, graph, dla)
    assert (r.network_flags, r.builder_flags, r.to_fp16) == (net, flags, to_fp16)
    assert r.how.startswith(f"TensorRT {version.split('.')[0]}:")


@pytest.mark.parametrize("version, precision, graph, dla, error, text", [
    ("11.4.0", "fp16", "fp32", True, UsageError, "--dla needs a Jetson"),
    ("10.3.0", "int8", "fp32", False, ModelError, "actionnet-export quantize"),
    ("11.4.0", "fp16", "qdq", False, UsageError, "the model is INT8"),
    ("10.3.0", "fp32", "fp16", False, UsageError, "the model is FP16"),
    ("8.4.3", "fp32", "fp32", False, MissingLibraryError, "too old"),
])
def test_build_recipe_refuses_in_one_line(version, precision, graph, dla, error, text):
    with pytest.raises(error, match=text) as e:
        build_recipe(version, precision, graph, dla)
    assert "\n" not in str(e.value)


def test_graph_precision(synthetic_model, int8_model, tmp_path):
    from actionnet.export.fp16 import to_fp16

    to_fp16(str(synthetic_model), str(tmp_path / "h.onnx"))
    assert [graph_precision(str(p)) for p in (synthetic_model, int8_model, tmp_path / "h.onnx")] == ["fp32", "qdq", "fp16"]


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


# -- building, on each version ------------------------------------------------------------------

def _plan(path):
    return json.loads(read_engine(str(path))[1])


def _model_for(precision, synthetic_model, int8_model):
    return int8_model if precision == "int8" else synthetic_model


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_build_each_precision_on_each_version(trt, precision, synthetic_model, int8_model, tmp_path):
    """fp32, fp16 and int8 build on 8.6, 10.3 and 11 and run like the ONNX they came from. On 11
    the FP16 engine is built from an FP16 graph and the INT8 one from the QDQ graph, with no
    precision flag; the header says how."""
    from actionnet.engines import open_engine

    model = _model_for(precision, synthetic_model, int8_model)
    out = tmp_path / "m.engine"
    h = trt_build.build_engine(str(model), str(out), precision=precision, max_batch=2, log=_quiet())
    plan = _plan(out)
    want = build_recipe(trt.__version__, precision, graph_precision(str(model)))
    assert plan["flags"] == sorted(want.builder_flags) and plan["network_flags"] == sorted(want.network_flags)
    assert h.precision_from == want.how and read_header(str(out)).precision_from == want.how
    assert (h.gpu_name, h.compute_capability, h.trt_version) == (GPU[0], GPU[1], trt.__version__)
    expect_graph = {"fp32": "fp32", "fp16": "fp16" if trt._major >= 11 else "fp32", "int8": "qdq"}[precision]
    assert plan["graph"] == expect_graph
    assert not [f for f in os.listdir(tmp_path) if f != "m.engine"]  # the FP16 copy is gone
    rng = np.random.default_rng(1)
    x = rng.integers(0, 255, (2, 8, 32, 32, 3), dtype=np.uint8)
    with open_engine(str(model), "onnxruntime") as ref, open_engine(str(out), log=_quiet()) as eng:
        assert eng.name == "tensorrt" and eng.precision == precision and eng.metadata == ref.metadata
        a, b = eng.infer(x), ref.infer(x)
        assert a.shape == b.shape and (a.argmax(1) == b.argmax(1)).all()
        np.testing.assert_allclose(a, b, atol=0.05 if precision == "fp16" else 1e-5)


def test_build_records_profile_and_timing_cache(trt, synthetic_model, tmp_path):
    out = tmp_path / "m.engine"
    trt_build.build_engine(str(synthetic_model), str(out), precision="fp32", max_batch=4,
                           timing_cache=str(tmp_path / "t.cache"), log=_quiet())
    plan = _plan(out)
    assert plan["profiles"] == [{"frames": [[1, 8, 32, 32, 3], [2, 8, 32, 32, 3], [4, 8, 32, 32, 3]]}]
    assert plan["device"] == "GPU" and plan["workspace"] == 1024 << 20
    assert (tmp_path / "t.cache").read_bytes() == b"+"
    trt_build.build_engine(str(synthetic_model), str(out), timing_cache=str(tmp_path / "t.cache"), log=_quiet())
    assert (tmp_path / "t.cache").read_bytes() == b"++"


def test_build_dla_on_jetson_versions(trt, synthetic_model, int8_model, tmp_path):
    with pytest.raises(UsageError, match="DLA runs FP16 or INT8"):
        trt_build.build_engine(str(synthetic_model), str(tmp_path / "a.engine"), precision="fp32", dla_core=0)
    if trt._major >= 11:
        with pytest.raises(UsageError, match="--dla needs a Jetson"):
            trt_build.build_engine(str(int8_model), str(tmp_path / "d.engine"), precision="int8", dla_core=1)
        return
    trt_build.build_engine(str(int8_model), str(tmp_path / "d.engine"), precision="int8", dla_core=1, log=_quiet())
    plan = _plan(tmp_path / "d.engine")
    assert plan["device"] == "DLA" and plan["dla_core"] == 1 and "GPU_FALLBACK" in plan["flags"]
    assert read_header(str(tmp_path / "d.engine")).dla_core == 1


# -- cache keys and rebuilds ----------------------------------------------------------------

def _resolve(path, gpu=GPU, version=None, **kw):
    from actionnet.engines.tensorrt import resolve_engine

    return resolve_engine(str(path), gpu, version or sys.modules["tensorrt"].__version__, log=_quiet(), **kw)


def test_onnx_is_built_once_and_cached(trt, synthetic_model):
    a = _resolve(synthetic_model, precision="fp16", max_batch=2)
    b = _resolve(synthetic_model, precision="fp16", max_batch=2)
    assert a == b and fake_tensorrt.STATS["builds"] == 1
    assert a.startswith(os.environ["ACTIONNET_HOME"])
    _resolve(synthetic_model, precision="fp32", max_batch=2)  # another precision: another engine
    _resolve(synthetic_model, gpu=("Xavier", "7.2"), precision="fp16", max_batch=2)  # another GPU: rebuilt
    assert fake_tensorrt.STATS["builds"] == 3


@pytest.mark.parametrize("change", ["gpu", "trt", "onnx", "corrupt"])
def test_engine_next_to_its_onnx_is_rebuilt(trt, synthetic_model, tmp_path, change, monkeypatch):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(synthetic_model.read_bytes())
    engine = tmp_path / "m.engine"
    trt_build.build_engine(str(onnx), str(engine), precision="fp16", max_batch=3, log=_quiet())
    assert _resolve(engine) == str(engine) and fake_tensorrt.STATS["builds"] == 1  # matches: used as is
    kw = {}
    if change == "gpu":
        kw["gpu"] = ("Xavier", "7.2")
    elif change == "trt":  # TensorRT upgraded under the engine
        monkeypatch.setattr(trt, "__version__", trt.__version__ + ".1")
    elif change == "onnx":
        import onnx as onnx_lib

        m = onnx_lib.load(str(onnx))
        m.doc_string = "retrained"
        onnx_lib.save(m, str(onnx))
    else:
        data = engine.read_bytes()
        engine.write_bytes(data[:-5] + bytes([data[-5] ^ 1]) + data[-4:])  # one flipped bit in the plan
    assert _resolve(engine, **kw) == str(engine)
    assert fake_tensorrt.STATS["builds"] == 2
    h = read_header(str(engine))
    assert (h.precision, h.max_batch, h.trt_version) == ("fp16", 3, trt.__version__)  # rebuilt as it was built
    if change == "gpu":
        assert h.gpu_name == "Xavier"


def test_engine_without_its_onnx_says_how_to_rebuild(trt, synthetic_model, int8_model, tmp_path):
    engine = tmp_path / "m.engine"
    model, dla = (int8_model, 0) if trt._major < 11 else (synthetic_model, None)
    trt_build.build_engine(str(model), str(engine), precision="int8" if dla == 0 else "fp16", max_batch=8,
                           dla_core=dla, log=_quiet())
    with pytest.raises(ModelError) as e:
        _resolve(engine, gpu=("Xavier", "7.2"))
    msg = str(e.value)
    assert f"built for {GPU[0]}" in msg
    want = f"actionnet-export engine {model.name} --precision {'int8' if dla == 0 else 'fp16'} --max-batch 8"
    assert want + (" --dla 0" if dla == 0 else "") + f" --output {engine}" in msg


def test_an_onnx_without_precision_builds_at_its_own(trt11, synthetic_model, int8_model):
    assert _resolve(int8_model).endswith("-int8-b1.engine") and _resolve(synthetic_model).endswith("-fp32-b1.engine")
    with pytest.raises(UsageError, match="the model is INT8"):
        _resolve(int8_model, precision="fp16")


def test_unreadable_engine_is_rebuilt_from_same_stem_onnx(trt, synthetic_model, tmp_path):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(synthetic_model.read_bytes())
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"garbage, not an engine")
    assert _resolve(engine, precision="fp16") == str(engine)
    assert read_header(str(engine)).precision == "fp16" and fake_tensorrt.STATS["builds"] == 1


# -- the runtime backend ---------------------------------------------------------------------

def test_tensorrt_engine_runs_batches_without_allocating(trt, synthetic_model, tmp_path, monkeypatch):
    from actionnet.engines import open_engine

    engine = tmp_path / "m.engine"
    trt_build.build_engine(str(synthetic_model), str(engine), precision="fp32", max_batch=4, log=_quiet())
    rng = np.random.default_rng(0)
    with open_engine(str(synthetic_model), "onnxruntime") as ref, open_engine(str(engine)) as eng:
        assert eng.max_batch == 4 and eng.input.dtype == np.uint8  # raw frames are uploaded as uint8
        calls = dict(fake_tensorrt.CALLS)
        for n in (1, 3, 4, 1):
            x = rng.integers(0, 255, (n, 8, 32, 32, 3), dtype=np.uint8)
            np.testing.assert_allclose(eng.infer(x), ref.infer(x), rtol=1e-5, atol=1e-5)
        c = fake_tensorrt.CALLS
        assert (c["htod"] - calls["htod"], c["dtoh"] - calls["dtoh"], c["sync"] - calls["sync"]) == (4, 4, 4)
        assert c["live_device"] == calls["live_device"]  # nothing allocated per call
        with pytest.raises(ModelError, match="max batch 4"):
            eng.infer(np.zeros((5, 8, 32, 32, 3), np.uint8))


def _two_input_model(path):
    """frames [N, 4, 8, 8, 3] uint8 and text embeddings [N, 5] float -> scores [N, 5] and a state
    [N, 16]: a zero-shot-like model with two inputs and two outputs."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(3)
    w = rng.standard_normal((4 * 8 * 8 * 3, 5)).astype(np.float32) / 100
    nodes = [helper.make_node("Cast", ["frames"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Reshape", ["f", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["proj"]),
             helper.make_node("Mul", ["proj", "text"], ["scores"]),
             helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["state"])]
    inits = [helper.make_tensor("shape", TensorProto.INT64, [2], [0, -1]),
             helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.reshape(-1)),
             helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
             helper.make_tensor("ends", TensorProto.INT64, [1], [16]),
             helper.make_tensor("axes", TensorProto.INT64, [1], [1])]
    g = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("frames", TensorProto.UINT8, ["N", 4, 8, 8, 3]),
                                         helper.make_tensor_value_info("text", TensorProto.FLOAT, ["N", 5])],
                          [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 5]),
                           helper.make_tensor_value_info("state", TensorProto.FLOAT, ["N", 16])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def test_several_inputs_each_with_its_profile_and_buffers(trt, tmp_path):
    from actionnet.engines import open_engine

    model = _two_input_model(tmp_path / "two.onnx")
    engine = tmp_path / "two.engine"
    trt_build.build_engine(str(model), str(engine), max_batch=3, log=_quiet())
    assert set(_plan(engine)["profiles"][0]) == {"frames", "text"}
    rng = np.random.default_rng(2)
    with open_engine(str(model), "onnxruntime") as ref, open_engine(str(engine)) as eng:
        assert [i.name for i in eng.inputs] == ["frames", "text"]
        for n in (3, 1):
            feeds = {"frames": rng.integers(0, 255, (n, 4, 8, 8, 3), dtype=np.uint8),
                     "text": rng.standard_normal((n, 5)).astype(np.float32)}
            for want_out in (["scores", "state"], ["state"]):
                got, want = eng.run(feeds, want_out), ref.run(feeds, want_out)
                assert len(got) == len(want_out)
                for a, b in zip(got, want):
                    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        with pytest.raises(ModelError, match="feed them with run"):
            eng.infer(feeds["frames"])


@pytest.mark.parametrize("flavour", ["pycuda", "cuda-python-12", "cuda-python-13"])
def test_each_cuda_library_runs_the_engine_and_frees_everything(flavour, monkeypatch, synthetic_model, tmp_path):
    from actionnet.engines import open_engine

    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt.load("10.3"))
    install_cuda(monkeypatch, flavour)
    engine = tmp_path / "m.engine"
    trt_build.build_engine(str(synthetic_model), str(engine), log=_quiet())  # device info asked of CUDA
    assert read_header(str(engine)).gpu_name == GPU[0]
    live = {k: fake_tensorrt.CALLS[k] for k in ("live_device", "live_host", "live_streams")}
    x = np.random.default_rng(0).integers(0, 255, (1, 8, 32, 32, 3), dtype=np.uint8)
    with open_engine(str(synthetic_model), "onnxruntime") as ref, open_engine(str(engine)) as eng:
        assert eng.cuda.name == ("pycuda" if flavour == "pycuda" else "cuda-python")
        np.testing.assert_allclose(eng.infer(x), ref.infer(x), rtol=1e-5, atol=1e-5)
        assert fake_tensorrt.CALLS["live_device"] > live["live_device"]
    assert {k: fake_tensorrt.CALLS[k] for k in live} == live  # device, pinned memory and streams freed


@pytest.mark.parametrize("flavour", ["pycuda", "cuda-python-13"])
def test_an_engine_runs_from_other_threads(flavour, monkeypatch, synthetic_model, tmp_path):
    """A live per-person run classifies on its own thread and each --config camera runs on one:
    pycuda's context is current on the thread that made it only, so the engine makes it current
    for each call from another thread (the fake pycuda fails a copy without a current context)."""
    import threading

    from actionnet.engines import open_engine

    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt.load("10.3"))
    install_cuda(monkeypatch, flavour)
    engine = tmp_path / "m.engine"
    trt_build.build_engine(str(synthetic_model), str(engine), log=_quiet())
    x = np.random.default_rng(0).integers(0, 255, (1, 8, 32, 32, 3), dtype=np.uint8)
    got, errors = [], []
    with open_engine(str(engine)) as eng:
        here = eng.infer(x)

        def call():
            try:
                got.append(eng.infer(x))
            except Exception as e:  # reported below, with the thread's error
                errors.append(e)

        threads = [threading.Thread(target=call) for _ in range(2)]
        for t in threads:
            t.start()
            t.join()
    assert not errors and len(got) == 2, errors
    for y in got:
        np.testing.assert_array_equal(y, here)


def test_missing_cuda_names_both_libraries(monkeypatch, synthetic_model):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt.load("11"))
    for m in ("pycuda", "pycuda.driver", "cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
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


def test_actionnet_runs_an_engine_file_like_its_onnx(trt, synthetic_model, synthetic_video, tmp_path):
    """The whole runtime on the TensorRT path: the spec comes from the engine header, auto picks
    TensorRT for an engine file, and every classification matches the ONNX on ONNX Runtime."""
    import io

    from actionnet.net import ActionNet
    from actionnet.sources import open_source

    engine = tmp_path / "m.engine"
    trt_build.build_engine(str(synthetic_model), str(engine), precision="fp16", log=_quiet())
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


def test_detector_engine_profile_from_the_real_yolo_onnx(trt11, tmp_path):
    """A 4-D detector (YOLOv5n, static batch 1x3x640x640) builds with a fixed profile."""
    from conftest import shared_file

    yolo = shared_file("weights/yolov5n.onnx")
    trt_build.build_engine(str(yolo), str(tmp_path / "y.engine"), precision="fp32", max_batch=8, log=_quiet())
    assert _plan(tmp_path / "y.engine")["profiles"] == [{"images": [[1, 3, 640, 640]] * 3}]


# -- the unmodified CLI against a stand-in of TensorRT 11 ----------------------------------------

STANDIN = """import sys, fake_tensorrt
sys.modules[__name__] = fake_tensorrt.load({version!r})
"""
STANDIN_CUDA = """import sys, fake_tensorrt
_m = fake_tensorrt.cuda_python_modules("13")
sys.modules.update({{k: v for k, v in _m.items() if v is not None and k != {name!r}}})
sys.modules[__name__] = _m[{name!r}]
"""


def _standin_env(tmp_path, version="11"):
    """A PYTHONPATH on which ``import tensorrt`` is the fake of ``version`` and ``cuda`` is
    cuda-python 13's fake (no pycuda): what a desktop with TensorRT 11 has."""
    site = tmp_path / "site"
    (site / "cuda" / "bindings").mkdir(parents=True)
    (site / "tensorrt.py").write_text(STANDIN.format(version=version))
    (site / "cuda" / "__init__.py").write_text("")
    (site / "cuda" / "bindings" / "__init__.py").write_text("")
    (site / "cuda" / "bindings" / "runtime.py").write_text(STANDIN_CUDA.format(name="cuda.bindings.runtime"))
    (site / "pycuda").mkdir()
    (site / "pycuda" / "__init__.py").write_text("raise ImportError('no pycuda here')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.path.dirname(__file__)]))
    return env


def _cli(env, *args, module="actionnet.export.cli"):
    import subprocess

    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env)


def test_unmodified_cli_on_tensorrt_11(synthetic_model, int8_model, synthetic_video, tmp_path):
    """``actionnet-export engine`` builds fp32, fp16 and int8 with only TensorRT 11's names: FP16
    reaches the builder as an FP16 graph, INT8 as a QDQ graph, no precision flag; ``actionnet
    --engine tensorrt --precision fp16`` builds its cache and classifies; a request 11 cannot
    honour is one line."""
    env = _standin_env(tmp_path)
    for precision, model in (("fp32", synthetic_model), ("fp16", synthetic_model), ("int8", int8_model)):
        out = tmp_path / f"m-{precision}.engine"
        flags = ["--precision", precision] if precision != "int8" else []  # a QDQ model defaults to int8
        r = _cli(env, "engine", model, *flags, "--output", out)
        assert r.returncode == 0, r.stderr
        assert read_header(str(out)).precision == precision
        plan = _plan(out)
        assert plan["trt"].startswith("11.") and plan["flags"] == [] and plan["network_flags"] == ["STRONGLY_TYPED"]
        assert plan["graph"] == {"fp32": "fp32", "fp16": "fp16", "int8": "qdq"}[precision]
        assert "strongly typed" in read_header(str(out)).precision_from
    r = _cli(env, "engine", int8_model, "--precision", "int8", "--dla", "0", "--output", tmp_path / "d.engine")
    assert r.returncode != 0 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1 and "--dla needs" in r.stderr
    video = synthetic_video("blue left slow")
    labels = {}
    for engine in ("tensorrt", "onnxruntime"):
        r = _cli(env, "--model", synthetic_model, "--engine", engine, "--precision", "fp16", "--skip-frames", "0",
                 "--headless", "--events", "-", "--threshold", "0.5", video, module="actionnet.cli")
        assert r.returncode == 0, r.stderr
        lines = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        labels[engine] = [e["label"] for e in lines if e.get("event") == "classification"]
    assert labels["tensorrt"] == labels["onnxruntime"] == ["blue left slow"] * (30 - 8 + 1)
    r = _cli(env, "--model", synthetic_model, "--engine", "tensorrt", "--precision", "fp16", "--headless", video,
             module="actionnet.cli")
    assert r.returncode == 0 and "building" not in r.stderr  # the cached engine is used


# -- actionnet-export selfcheck -------------------------------------------------------------------

def test_selfcheck_reports_missing_libraries_and_times_every_backend(trt11, tmp_path, capsys):
    """On this CPU machine with the TensorRT 11 stand-in: every library gets a line (the missing
    ones say why), FP32/FP16/INT8 engines of a random 3D ResNet-18 are built and agree with the
    ONNX, and every backend present is timed per clip and end to end; one JSON, one table."""
    pytest.importorskip("torch")
    from actionnet.export.cli import main

    rc = main(["selfcheck", "--output", str(tmp_path / "sc"), "--size", "16", "--clip-length", "4", "--clips", "3",
               "--frames", "10", "--classes", "5", "--width", "8"])
    out = capsys.readouterr()
    report = json.loads((tmp_path / "sc" / "selfcheck.json").read_text())
    libs = {lib["name"]: lib for lib in report["libraries"]}
    assert set(libs) == {"tensorrt", "onnxruntime TensorRT provider", "onnxruntime CUDA provider",
                         "onnxruntime CPU provider", "pytorch CUDA", "pycuda", "cuda-python", "openvino"}
    assert libs["tensorrt"]["present"] and libs["tensorrt"]["version"] == trt11.__version__
    assert not libs["pycuda"]["present"] and libs["pycuda"]["detail"]  # blocked by the fixture: says why
    for name, lib in libs.items():
        line = [ln for ln in out.out.splitlines() if ln.startswith(name + " ")]
        assert line and ("missing (" in line[0]) != lib["present"]
    assert {p: e["built"] for p, e in report["engines"].items()} == {"fp32": True, "fp16": True, "int8": True}
    assert "FP16 copy" in report["engines"]["fp16"]["how"] and "QDQ" in report["engines"]["int8"]["how"]
    rows = {(r["backend"], r["precision"]): r for r in report["backends"]}
    for key in [("tensorrt", "fp32"), ("tensorrt", "fp16"), ("tensorrt", "int8"), ("onnxruntime CPU", "fp32"),
                ("onnxruntime CPU", "int8"), ("pytorch CPU", "fp32")]:
        r = rows[key]
        assert r["ok"] and r["ms_per_clip"] > 0 and r["end_to_end"]["classifications"] == 10 - 4 + 1, r
    assert rows[("tensorrt", "fp32")]["top1_agreement"] == 1.0 and rows[("tensorrt", "fp32")]["max_abs_diff"] < 1e-4
    assert rc == 0 and "tensorrt               fp16" in out.out


def test_cpu_quantised_model_is_refused_before_the_build(trt, synthetic_model, tmp_path, monkeypatch):
    """A QDQ file quantised with u8 activations (the CPU detector format) is refused in one line
    that says what to build instead, not left to the ONNX parser's error."""
    import onnx

    m = onnx.load(str(synthetic_model))
    m.metadata_props.add(key="actionnet.activations", value="u8")
    path = tmp_path / "cpu-int8.onnx"
    onnx.save(m, str(path))
    builds = fake_tensorrt.STATS["builds"]
    with pytest.raises(ModelError, match=r"quantised for CPUs .*\(--precision fp16\)"):
        trt_build.build_engine(str(path), str(tmp_path / "m.engine"), precision="int8", log=_quiet())
    assert not (tmp_path / "m.engine").exists() and fake_tensorrt.STATS["builds"] == builds
    m.metadata_props[-1].value = "s8"  # the same graph marked s8 gets past the check
    onnx.save(m, str(path))
    trt_build.build_engine(str(path), str(tmp_path / "m.engine"), precision="fp32", log=_quiet())
    assert (tmp_path / "m.engine").exists()

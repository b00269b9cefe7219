"""Write the API profiles the version-faithful fakes in tests/ are built from (tests/api_profiles/).

TensorRT: ``pip download --no-deps`` fetches the Python binding wheels (``tensorrt-bindings``
8.6.1, ``tensorrt-cu12-bindings`` 10.3.0 and 11.x). They cannot be imported without TensorRT's
libraries, but those libraries export only a dozen C entry points to the bindings
(``createInferBuilder_INTERNAL``, ``getPluginRegistry``, ...; ``nm -D --undefined-only``). This
script compiles a stub library that defines each of them as ``return NULL``, installs it under
every name the binding links to (libnvinfer.so.N, libnvonnxparser.so.N, ...), imports the real
bindings against it in a subprocess and records, for every class the project touches, its public
names and, for methods, the parameter names of each pybind11 signature. Nothing is called, so
nothing reaches the stubs: the names are the binding's own, not read from documentation.

cuda-python (``cuda-bindings`` 12.x and 13.x) imports without a driver: its runtime module's
names are read the same way. pycuda cannot be built without the CUDA toolkit; its names come
from its sdist's sources (``src/wrapper/wrap_cudadrv.cpp`` ``DEF_SIMPLE_FUNCTION``/``.def`` and
``pycuda/driver.py``), by regular expression.

    python scripts/api_profiles.py --work /tmp/apiwheels          # downloads, writes tests/api_profiles/*.json
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, os.pardir, "tests", "api_profiles")

TRT_WHEELS = {  # profile name -> pip requirement
    "tensorrt-8.6": "tensorrt-bindings==8.6.1",
    "tensorrt-10.3": "tensorrt-cu12-bindings==10.3.0",
    "tensorrt-11": "tensorrt-cu12-bindings==11.4.0.106",
}
CUDA_WHEELS = {"cuda-python-12": "cuda-bindings==12.9.10", "cuda-python-13": "cuda-bindings==13.5.0"}
PYCUDA = {"pycuda": "pycuda==2026.1"}

# classes whose names are recorded (what actionnet and tests/fake_tensorrt.py touch, and their neighbours)
TRT_CLASSES = ["Logger", "ILogger", "Builder", "INetworkDefinition", "ITensor", "ILayer", "OnnxParser",
               "IOptimizationProfile", "IBuilderConfig", "ITimingCache", "Runtime", "ICudaEngine",
               "IExecutionContext", "BuilderFlag", "NetworkDefinitionCreationFlag", "MemoryPoolType", "DeviceType",
               "TensorIOMode", "DataType", "LayerType", "Dims"]

STUB_C = r"""
#define S(n) void *n(void) { return 0; }
S(createInferBuilder_INTERNAL) S(createInferRefitter_INTERNAL) S(createInferRuntime_INTERNAL)
S(createNvOnnxParserRefitter_INTERNAL) S(createNvOnnxParser_INTERNAL) S(getBuilderPluginRegistry)
S(getNvOnnxParserVersion) S(getPluginRegistry) S(initLibNvInferPlugins)
S(_ZN11nvuffparser15createUffParserEv) S(_ZN11nvuffparser8FieldMapC1EPKcPKvNS_9FieldTypeEi)
S(_ZN14nvcaffeparser117createCaffeParserEv) S(_ZN14nvcaffeparser123shutdownProtobufLibraryEv)
"""

DUMP = r"""
import importlib, inspect, json, re, sys
mod = importlib.import_module(sys.argv[1])
classes = json.loads(sys.argv[2])
def params(doc):
    out = set()
    for line in (doc or "").splitlines():
        m = re.match(r"\s*(?:\d+\.\s*)?(\w+)\((.*)\)\s*->", line)
        if m:
            for p in re.split(r",\s*(?![^\[]*\])", m.group(2)):
                name = p.split(":")[0].split("=")[0].strip().lstrip("*")
                if name and name != "self":
                    out.add(name)
    return sorted(out)
def members(obj):
    d = {}
    for n in dir(obj):
        if n.startswith("_"):
            continue
        v = inspect.getattr_static(obj, n, None)
        d[n] = params(getattr(v, "__doc__", "")) if callable(getattr(obj, n, None)) and not isinstance(v, (int, property)) else None
    return d
res = {"version": getattr(mod, "__version__", None), "module": sorted(n for n in dir(mod) if not n.startswith("_")),
       "classes": {}}
for c in classes:
    obj = getattr(mod, c, None)
    if obj is None:
        continue
    res["classes"][c] = members(obj)
    ent = getattr(obj, "__members__", None)
    if ent is not None:  # an enum: its members only
        res["classes"][c] = {k: None for k in ent}
print(json.dumps(res))
"""


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def download(req, work, platform="manylinux_2_28_x86_64"):
    d = os.path.join(work, req.replace("==", "-"))
    os.makedirs(d, exist_ok=True)
    if not glob.glob(os.path.join(d, "*.whl")) + glob.glob(os.path.join(d, "*.tar.gz")):
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", d, req]
        if "pycuda" not in req:
            cmd += ["--only-binary=:all:", "--python-version", f"{sys.version_info[0]}.{sys.version_info[1]}",
                    "--platform", platform, "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64"]
        else:
            cmd += ["--no-binary=pycuda"]
        subprocess.run(cmd, check=True)
    files = glob.glob(os.path.join(d, "*.whl")) + glob.glob(os.path.join(d, "*.tar.gz"))
    return files[0]


def trt_profile(req, work):
    wheel = download(req, work)
    root = os.path.join(work, "x-" + os.path.basename(wheel))
    if not os.path.isdir(root):
        zipfile.ZipFile(wheel).extractall(root)
    stubs = os.path.join(work, "stubs")
    os.makedirs(stubs, exist_ok=True)
    lib = os.path.join(stubs, "libstub.so")
    if not os.path.isfile(lib):
        with open(os.path.join(stubs, "stub.c"), "w") as f:
            f.write(STUB_C)
        subprocess.run(["gcc", "-shared", "-fPIC", "-o", lib, os.path.join(stubs, "stub.c")], check=True)
    so = glob.glob(os.path.join(root, "tensorrt_bindings", "tensorrt*.so"))[0]
    needed = re.findall(r"\[(lib[^\]]+)\]", subprocess.run(["readelf", "-d", so], capture_output=True, text=True).stdout)
    for n in needed:
        if n.startswith("libnv"):
            dst = os.path.join(stubs, n)
            if not os.path.exists(dst):
                os.symlink(lib, dst)
    env = dict(os.environ, LD_LIBRARY_PATH=stubs, PYTHONPATH=root)
    out = subprocess.run([sys.executable, "-c", DUMP, "tensorrt_bindings", json.dumps(TRT_CLASSES)], env=env,
                         capture_output=True, text=True, check=True).stdout
    res = json.loads(out)
    res["source"] = {"wheel": os.path.basename(wheel), "sha256": sha256(wheel),
                     "how": "the real binding imported against stub TensorRT libraries (scripts/api_profiles.py); "
                            "names from dir(), method parameters from the pybind11 signatures"}
    return res


def cuda_python_profile(req, work):
    wheel = download(req, work)
    root = os.path.join(work, "x-" + os.path.basename(wheel))
    if not os.path.isdir(root):
        zipfile.ZipFile(wheel).extractall(root)
    out = subprocess.run([sys.executable, "-c", DUMP, "cuda.bindings.runtime",
                          json.dumps(["cudaMemcpyKind", "cudaDeviceProp", "cudaError_t"])],
                         env=dict(os.environ, PYTHONPATH=root), capture_output=True, text=True, check=True).stdout
    res = json.loads(out)
    legacy = os.path.isfile(os.path.join(root, "cuda", "cudart.py")) or bool(glob.glob(os.path.join(root, "cuda", "cudart*.so")))
    res["legacy_cuda_cudart"] = legacy
    res["version"] = req.split("==")[1]
    res["source"] = {"wheel": os.path.basename(wheel), "sha256": sha256(wheel),
                     "how": "cuda.bindings.runtime imported (no driver needed to import); names from dir()"}
    return res


def pycuda_profile(req, work):
    sdist = download(req, work)
    names = set()
    with tarfile.open(sdist) as t:
        for m in t.getmembers():
            if m.name.endswith("src/wrapper/wrap_cudadrv.cpp") or m.name.endswith("pycuda/driver.py"):
                text = t.extractfile(m).read().decode("utf-8", "replace")
                names |= set(re.findall(r"DEF_SIMPLE_(?:FUNCTION|METHOD|RO_MEMBER|RW_MEMBER)(?:_WITH_ARGS)?\(\s*(\w+)", text))
                names |= set(re.findall(r'(?:py::def|\.def|\.staticmethod|\.add_property)\(\s*"(\w+)"', text))
                names |= set(re.findall(r"^\s*def (\w+)\(", text, re.M))
                names |= set(re.findall(r'class_<.*?>\s*\(\s*"(\w+)"', text, re.S))
    return {"version": req.split("==")[1], "names": sorted(n for n in names if not n.startswith("_")),
            "source": {"sdist": os.path.basename(sdist), "sha256": sha256(sdist),
                       "how": "regular expressions over src/wrapper/wrap_cudadrv.cpp and pycuda/driver.py of the sdist "
                              "(pycuda does not build without the CUDA toolkit)"}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/actionnet-apiwheels")
    ap.add_argument("--only", nargs="*")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    jobs = [(n, r, trt_profile) for n, r in TRT_WHEELS.items()] + [(n, r, cuda_python_profile) for n, r in CUDA_WHEELS.items()] \
        + [(n, r, pycuda_profile) for n, r in PYCUDA.items()]
    for name, req, fn in jobs:
        if a.only and name not in a.only:
            continue
        prof = fn(req, a.work)
        path = os.path.join(OUT, name + ".json")
        with open(path, "w") as f:
            json.dump(prof, f, indent=0, sort_keys=True)
            f.write("\n")
        print(f"{path}: {prof.get('version')}")


if __name__ == "__main__":
    main()

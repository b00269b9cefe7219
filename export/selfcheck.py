"""``actionnet-export selfcheck``: what this machine's GPU stack can do for actionnet, in minutes, offline.

A subcommand of the export stage rather than a script in scripts/: it needs torch (the random
3D ResNet-18 comes from export/resnet3d.py) and onnx (quantisation), which the export stage
has, and a user who installed the package has ``actionnet-export`` on their PATH but no
checkout to run scripts from.

1. Lists TensorRT, ONNX Runtime's CUDA and TensorRT providers, PyTorch CUDA, pycuda,
   cuda-python and OpenVINO with their versions, one line each, missing ones with why.
2. Exports a 3D ResNet-18 with random weights (ONNX vs PyTorch parity checked) and an INT8 QDQ
   copy calibrated on clips written to disk (``actionnet-export quantize``, forced: random
   weights make agreement meaningless as a gate); where TensorRT is present, builds FP32,
   FP16 and INT8 engines the way ``actionnet-export engine`` does.
3. Runs every backend present on the same clips: top-1 agreement and max |diff| against the
   FP32 ONNX on ONNX Runtime's CPU provider, median milliseconds per clip (batch 1, after a
   warm-up), and end to end: frames through the runtime's own frame buffer, preparation
   (resize, crop), inference and scoring, as ``actionnet`` does after decoding.
4. Writes one JSON (``--json``) and prints a table.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time

HELP = "check the GPU stack (TensorRT, ONNX Runtime providers, CUDA libraries) and time every backend present"


def add_arguments(p):
    p.add_argument("--output", default="actionnet-selfcheck", help="working folder (models, engines, report)")
    p.add_argument("--json", help="report file (default OUTPUT/selfcheck.json)")
    p.add_argument("--clips", type=int, default=8, help="clips for agreement and per-clip timing (default 8)")
    p.add_argument("--frames", type=int, default=64, help="frames for the end-to-end timing (default 64)")
    p.add_argument("--size", type=int, default=112, help="input height and width (default 112)")
    p.add_argument("--clip-length", type=int, default=16, help="frames per clip (default 16)")
    p.add_argument("--classes", type=int, default=400, help="classes of the random head (default 400)")
    p.add_argument("--width", type=int, default=64,
                   help="channels of the first stage (default 64, ResNet-18's; the stages have 1x, 2x, 4x, 8x)")
    p.add_argument("--skip-tensorrt-build", action="store_true", help="report TensorRT but build no engine")


# -- what is installed ----------------------------------------------------------------------------

def _probe(name, fn):
    try:
        version, detail = fn()
        return {"name": name, "present": True, "version": version, "detail": detail}
    except Exception as e:  # noqa: BLE001 - every failure is a line of the report
        why = f"{type(e).__name__}: {e}".strip().splitlines()[0][:200]
        return {"name": name, "present": False, "version": None, "detail": why}


def _tensorrt():
    import tensorrt

    from actionnet.engines.trt_build import build_recipe

    how = "; ".join(f"{p}: {build_recipe(tensorrt.__version__, p, g).how.split(': ', 1)[1]}"
                    for p, g in (("fp16", "fp32"), ("int8", "qdq")))
    return tensorrt.__version__, how


def _ort_provider(provider):
    def probe():
        import onnxruntime

        present = onnxruntime.get_available_providers()
        if provider not in present:
            raise LookupError(f"onnxruntime {onnxruntime.__version__} has {', '.join(present)}")
        return onnxruntime.__version__, provider
    return probe


def _torch_cuda():
    import torch

    if not torch.cuda.is_available():
        raise LookupError(f"torch {torch.__version__} sees no CUDA device (torch.version.cuda={torch.version.cuda})")
    return torch.__version__, f"{torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}"


def _pycuda():
    import pycuda
    import pycuda.driver as drv

    drv.init()
    return getattr(pycuda, "VERSION_TEXT", "?"), f"{drv.Device.count()} device(s), {drv.Device(0).name()}"


def _cuda_python():
    try:
        import cuda.bindings as b
        from cuda.bindings import runtime as rt
        version = getattr(b, "__version__", "?")
    except ImportError:
        from cuda import cudart as rt
        version = "legacy cuda.cudart"
    err, n = rt.cudaGetDeviceCount()
    if int(err) != 0:
        raise RuntimeError(f"cudaGetDeviceCount: {err}")
    return version, f"{n} device(s)"


def _openvino():
    import openvino

    return openvino.__version__ if hasattr(openvino, "__version__") else openvino.get_version(), "CPU"


def inventory():
    return [_probe("tensorrt", _tensorrt),
            _probe("onnxruntime TensorRT provider", _ort_provider("TensorrtExecutionProvider")),
            _probe("onnxruntime CUDA provider", _ort_provider("CUDAExecutionProvider")),
            _probe("onnxruntime CPU provider", _ort_provider("CPUExecutionProvider")),
            _probe("pytorch CUDA", _torch_cuda),
            _probe("pycuda", _pycuda),
            _probe("cuda-python", _cuda_python),
            _probe("openvino", _openvino)]


# -- models -----------------------------------------------------------------------------------------

def _export_model(folder, size, clip_length, classes, log, width=64):
    import torch

    from .action import resnet3d_spec
    from .onnx_export import export_clip_model
    from .resnet3d import DEPTHS, ResNet3D

    torch.manual_seed(0)
    model = ResNet3D(DEPTHS["resnet-18"], classes, widths=tuple(width * k for k in (1, 2, 4, 8)))
    spec = resnet3d_spec("resnet-18", [f"class {i}" for i in range(classes)], clip_length, size)
    path = os.path.join(folder, "resnet18-random.onnx")
    report = export_clip_model(model, spec, path, log=log)
    return path, model, spec, report


def _write_clips(folder, clips):
    """Clips as image folders, the form ``actionnet-export quantize --calib`` reads."""
    import cv2

    for i, clip in enumerate(clips):
        d = os.path.join(folder, f"clip{i:02d}")
        os.makedirs(d, exist_ok=True)
        for j, frame in enumerate(clip):
            cv2.imwrite(os.path.join(d, f"{j:04d}.png"), frame[:, :, ::-1])  # RGB clip -> BGR file
    return folder


# -- timing -----------------------------------------------------------------------------------------

def _per_clip(engine, clips, output):
    import numpy as np

    engine.infer(clips[0], output)  # warm-up (CUDA context, kernel selection)
    times, outs = [], []
    for c in clips:
        t0 = time.perf_counter()
        outs.append(engine.infer(c, output))
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times), np.concatenate(outs).reshape(len(clips), -1)


def _end_to_end(engine, spec, frames):
    """Frames through the runtime's own buffer, preparation, inference and scoring (as
    ``ActionNet.update``), every stored frame classified once the window is full."""
    import numpy as np

    from actionnet.framebuffer import FrameBuffer
    from actionnet.preprocess import FramePreparer
    from actionnet.scores import Scorer

    buf = FrameBuffer(spec.clip_length, (spec.height, spec.width, 3), np.uint8, 0, 1)
    prepare = FramePreparer(spec)
    scorer = Scorer(spec.labels, logits=spec.output_kind == "logits", threshold=0.0, top_k=1)
    n = 0
    t0 = time.perf_counter()
    for i, frame in enumerate(frames):
        if not buf.sample():
            continue
        prepare(frame, buf.slot())
        buf.commit()
        if buf.due():
            scorer(engine.infer(buf.window()[None], spec.output_name)[0], i, 0.0)
            n += 1
    dt = time.perf_counter() - t0
    return {"frames": len(frames), "classifications": n, "seconds": round(dt, 4), "fps": round(len(frames) / dt, 2)}


def _frames(count, size, seed=1):
    """640x360 BGR frames: smooth noise that moves, so windows differ."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 256, (45, 80, 3), dtype=np.uint8), (640 + 4 * count, 360),
                      interpolation=cv2.INTER_LINEAR)
    return [np.ascontiguousarray(base[:, 4 * i:4 * i + 640]) for i in range(count)]


class _Torch:
    """PyTorch eager as a backend (the baseline a PyTorch user runs), same raw-frame wrapper as the export."""

    def __init__(self, model, spec, device):
        import torch

        from .onnx_export import RawClipModel

        self.torch, self.device = torch, device
        self.model = RawClipModel(model, spec).eval().to(device)
        self.name = f"pytorch {device}"

    def infer(self, x, output=None):
        with self.torch.inference_mode():
            y = self.model(self.torch.from_numpy(x).to(self.device))
        return y.float().cpu().numpy()

    def close(self):
        pass


def _backends(onnx_path, int8_path, engines, model, spec, present, log):
    """(label, precision, opener) for every backend present; openers build lazily."""
    from actionnet.engines.onnxruntime import OnnxRuntimeEngine
    from actionnet.engines.openvino import OpenVinoEngine

    out = [("onnxruntime CPU", "fp32", lambda: OnnxRuntimeEngine(onnx_path, providers=["CPUExecutionProvider"])),
           ("onnxruntime CPU", "int8", lambda: OnnxRuntimeEngine(int8_path, providers=["CPUExecutionProvider"]))]
    if present["onnxruntime CUDA provider"]:
        out.append(("onnxruntime CUDA", "fp32", lambda: OnnxRuntimeEngine(onnx_path, providers=["CUDAExecutionProvider"])))
    if present["onnxruntime TensorRT provider"]:
        for p, path in (("fp32", onnx_path), ("fp16", onnx_path), ("int8", int8_path)):
            out.append(("onnxruntime TensorRT", p, lambda path=path, p=p: OnnxRuntimeEngine(
                path, providers=["TensorrtExecutionProvider", "CUDAExecutionProvider"], precision=p)))
    if present["openvino"]:
        out.append(("openvino CPU", "fp32", lambda: OpenVinoEngine(onnx_path)))
        out.append(("openvino CPU", "int8", lambda: OpenVinoEngine(int8_path)))
    for p, path in engines.items():
        from actionnet.engines.tensorrt import TensorRtEngine

        out.append(("tensorrt", p, lambda path=path: TensorRtEngine(path, log=log)))
    out.append(("pytorch CPU", "fp32", lambda: _Torch(model, spec, "cpu")))
    if present["pytorch CUDA"]:
        out.append(("pytorch CUDA", "fp32", lambda: _Torch(model, spec, "cuda")))
    return out


def selfcheck(folder, clips_n=8, frames_n=64, size=112, clip_length=16, classes=400, build_tensorrt=True,
              log=None, width=64):
    from actionnet.engines.onnxruntime import OnnxRuntimeEngine

    log = log or sys.stderr  # looked up per call: sys.stderr may have been replaced since import

    from .agreement import compare
    from .onnx_export import sample_clips
    from .quantize import quantize

    os.makedirs(folder, exist_ok=True)
    report = {"machine": {"python": platform.python_version(), "platform": platform.platform(),
                          "processor": platform.processor() or platform.machine()},
              "libraries": inventory(), "models": {}, "engines": {}, "backends": []}
    present = {lib["name"]: lib["present"] for lib in report["libraries"]}
    for lib in report["libraries"]:
        state = f"{lib['version']} ({lib['detail']})" if lib["present"] else f"missing: {lib['detail']}"
        print(f"selfcheck: {lib['name']}: {state}", file=log)

    t0 = time.perf_counter()
    onnx_path, model, spec, parity = _export_model(folder, size, clip_length, classes, log, width)
    report["models"]["fp32"] = {"path": onnx_path, "parity": str(parity), "seconds": round(time.perf_counter() - t0, 2)}
    clips = [c[None] for c in sample_clips(spec, clips_n, seed=7)]
    calib = _write_clips(os.path.join(folder, "calib"), list(sample_clips(spec, 8, seed=3)))
    int8_path = os.path.join(folder, "resnet18-random-int8.onnx")
    t0 = time.perf_counter()
    q = quantize(onnx_path, calib, int8_path, skip_frames=0, holdout=0.25, force=True, log=log)
    report["models"]["int8"] = {"path": int8_path, "held_out": str(q), "seconds": round(time.perf_counter() - t0, 2),
                                "note": "random weights: agreement of INT8 with FP32 says little about a trained model"}

    engines = {}
    if present["tensorrt"] and build_tensorrt:
        from actionnet.engines.trt_build import build_engine

        for p, src in (("fp32", onnx_path), ("fp16", onnx_path), ("int8", int8_path)):
            path = os.path.join(folder, f"resnet18-random-{p}.engine")
            t0 = time.perf_counter()
            try:
                h = build_engine(src, path, precision=p, log=log)
                engines[p] = path
                report["engines"][p] = {"path": path, "built": True, "how": h.precision_from,
                                        "seconds": round(time.perf_counter() - t0, 2)}
            except Exception as e:  # noqa: BLE001 - a failed build is a finding, reported
                report["engines"][p] = {"built": False, "error": f"{type(e).__name__}: {e}"}
            print(f"selfcheck: TensorRT {p} engine: {report['engines'][p]}", file=log)
    else:
        report["engines"] = {"skipped": "TensorRT is not installed" if not present["tensorrt"] else "--skip-tensorrt-build"}

    with OnnxRuntimeEngine(onnx_path, providers=["CPUExecutionProvider"]) as ref:
        _, reference = _per_clip(ref, clips, spec.output_name)
    frames = _frames(frames_n, size)
    for label, precision, opener in _backends(onnx_path, int8_path, engines, model, spec, present, log):
        row = {"backend": label, "precision": precision}
        try:
            eng = opener()
            try:
                ms, outs = _per_clip(eng, clips, spec.output_name)
                agree = compare(reference, outs)
                row.update(ok=True, ms_per_clip=round(ms, 3), top1_agreement=agree.top1,
                           max_abs_diff=round(agree.max_abs_diff, 5), end_to_end=_end_to_end(eng, spec, frames))
            finally:
                eng.close()
        except Exception as e:  # noqa: BLE001
            row.update(ok=False, error=f"{type(e).__name__}: {e}".splitlines()[0][:300])
        report["backends"].append(row)
        print(f"selfcheck: {label} {precision}: " + (f"{row['ms_per_clip']} ms/clip, end to end "
              f"{row['end_to_end']['fps']} fps" if row["ok"] else row["error"]), file=log)
    return report


def table(report) -> str:
    lines = [f"{'library':<32} state"]
    for lib in report["libraries"]:
        lines.append(f"{lib['name']:<32} " + (f"{lib['version']}  {lib['detail']}" if lib["present"] else
                                              f"missing ({lib['detail']})"))
    lines += ["", f"{'backend':<22} {'prec':<5} {'ms/clip':>9} {'e2e fps':>8} {'top-1':>6} {'max|diff|':>10}"]
    for r in report["backends"]:
        if r["ok"]:
            lines.append(f"{r['backend']:<22} {r['precision']:<5} {r['ms_per_clip']:>9.2f} "
                         f"{r['end_to_end']['fps']:>8.1f} {100 * r['top1_agreement']:>5.0f}% {r['max_abs_diff']:>10.4g}")
        else:
            lines.append(f"{r['backend']:<22} {r['precision']:<5} failed: {r['error']}")
    return "\n".join(lines)


def run(args) -> int:
    from actionnet.errors import UsageError

    if min(args.clips, args.frames, args.size, args.clip_length, args.classes, args.width) < 1:
        raise UsageError("--clips, --frames, --size, --clip-length, --classes and --width must be >= 1")
    report = selfcheck(args.output, args.clips, args.frames, args.size, args.clip_length, args.classes,
                       build_tensorrt=not args.skip_tensorrt_build, width=args.width)
    path = args.json or os.path.join(args.output, "selfcheck.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(table(report))
    print(f"actionnet-export: wrote {path}", file=sys.stderr)
    failed = [r for r in report["backends"] if not r["ok"]]
    return 1 if failed else 0

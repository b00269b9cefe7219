"""``actionnet-export verify``: an engine (any backend) against its reference ONNX on ONNX
Runtime CPU, on the same clips; reports top-1 agreement and max |difference|.

The check to run after building an engine on a device: it catches a wrong precision, a bad
calibration or a broken build before the engine classifies a camera. Exit 1 below the
threshold.
"""

from __future__ import annotations

import sys

HELP = "compare an engine (TensorRT, OpenVINO, ONNX Runtime) with the reference ONNX on clips"


def add_arguments(p):
    p.add_argument("model", help="engine or ONNX model to check (.engine, .onnx)")
    p.add_argument("--against", required=True, help="reference ONNX model (FP32), run on ONNX Runtime CPU")
    p.add_argument("--clips", required=True, help="folder of videos, images or image folders")
    p.add_argument("--engine", default="auto", choices=("auto", "tensorrt", "onnxruntime", "openvino"),
                   help="backend that runs MODEL (default auto)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), help="precision for MODEL's backend")
    p.add_argument("--skip-frames", type=int, help="frames dropped between stored frames (default: the model's training stride, else 1)")
    p.add_argument("--max-clips", type=int, default=32, help="clips read (default 32)")
    p.add_argument("--min-agreement", type=float, default=0.97, help="top-1 agreement required (default 0.97)")


def verify(model: str, against: str, clips_dir: str, engine: str = "auto", precision=None, skip_frames=None,
           max_clips: int = 32, log=sys.stderr):
    from actionnet.engines import open_engine
    from actionnet.engines.onnxruntime import OnnxRuntimeEngine

    from .agreement import compare, outputs
    from .calibration import clips_from, spec_of

    spec = spec_of(against)
    clips = clips_from(clips_dir, spec, skip_frames, max_clips)
    with OnnxRuntimeEngine(against, providers=["CPUExecutionProvider"]) as ref:
        want = outputs(ref, clips, spec.output_name)
    with open_engine(model, engine, precision=precision, log=log) as eng:
        got = outputs(eng, clips, spec.output_name)
        name = eng.name
    return name, compare(want, got)


def run(args) -> int:
    name, report = verify(args.model, args.against, args.clips, args.engine, args.precision, args.skip_frames,
                          args.max_clips)
    ok = report.ok(args.min_agreement)
    print(f"actionnet-export: {args.model} ({name}) vs {args.against} (onnxruntime CPU): {report}: "
          f"{'OK' if ok else f'FAIL (< {100 * args.min_agreement:.0f}%)'}", file=sys.stderr)
    return 0 if ok else 1

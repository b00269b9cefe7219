"""``actionnet-export engine``: ONNX (FP32, FP16 or INT8 QDQ) -> TensorRT engine file with a header.

A thin command over :func:`actionnet.engines.trt_build.build_engine`, which the runtime also
uses to rebuild engines. Build on the device that runs the engine: engines are not portable
between GPUs or TensorRT versions, and the header makes the runtime refuse or rebuild them.
"""

from __future__ import annotations

HELP = "build a TensorRT engine (fp32, fp16, int8 from a QDQ model) from an ONNX model (TensorRT 8.5/8.6, 10.x, 11.x)"


def add_arguments(p):
    p.add_argument("model", help="ONNX model (action model, detector or custom)")
    p.add_argument("--output", required=True, help="engine file to write (.engine)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"),
                   help="fp32, fp16, or int8 (needs a QDQ model: actionnet-export quantize); default: int8 for a "
                        "QDQ model, else fp16. How each is built depends on the TensorRT version (docs/engines.md)")
    p.add_argument("--max-batch", type=int, default=1, help="largest batch the engine accepts (default 1)")
    p.add_argument("--opt-batch", type=int, help="batch TensorRT tunes for (default: about half of --max-batch)")
    p.add_argument("--workspace", type=int, default=1024, help="builder workspace limit in MiB (default 1024)")
    p.add_argument("--dla", type=int, metavar="CORE", help="Jetson DLA core (0 or 1), with GPU fallback")
    p.add_argument("--timing-cache", help="timing cache file (default $ACTIONNET_HOME/tensorrt/timing.cache)")


def run(args) -> int:
    import os
    import sys

    from actionnet.engines.trt_build import build_engine, default_precision

    precision = args.precision
    if precision is None and os.path.isfile(args.model):
        precision = "int8" if default_precision(args.model) == "int8" else "fp16"
    h = build_engine(args.model, args.output, precision=precision or "fp16", max_batch=args.max_batch,
                     opt_batch=args.opt_batch, workspace_mb=args.workspace, dla_core=args.dla,
                     timing_cache=args.timing_cache, log=sys.stderr)  # the stderr of now, not of import time
    print(f"actionnet-export: wrote {args.output} ({h.precision}, TensorRT {h.trt_version}, {h.gpu_name}, "
          f"compute {h.compute_capability}, max batch {h.max_batch}; {h.precision_from})", file=sys.stderr)
    return 0

"""``actionnet-export fp16``: an FP16 ONNX, for ONNX Runtime on GPUs and for TensorRT 11.

Weights and arithmetic in float16, inputs and outputs kept as they were (uint8 frames or
float32 clips in, float32 scores out), so the runtime feeds it exactly like the FP32 file.
Uses onnxconverter-common's converter, the one ONNX Runtime documents. TensorRT 11 builds
strongly typed networks only (no FP16 builder flag): ``actionnet-export engine --precision
fp16`` and ``actionnet --engine tensorrt --precision fp16`` convert with :func:`to_fp16` and
build from the copy; on TensorRT 10.x an FP16 file builds strongly typed as it is. ONNX
Runtime's CPU provider lacks FP16 kernels for most ops: this file is for GPUs.
"""

from __future__ import annotations

import os
import sys

HELP = "convert an ONNX model to FP16 (ONNX Runtime on GPUs, TensorRT), inputs and outputs unchanged"


def add_arguments(p):
    p.add_argument("model", help="FP32 ONNX model")
    p.add_argument("--output", required=True, help="FP16 ONNX to write")


def to_fp16(model: str, output: str) -> None:
    import onnx
    from onnxconverter_common import float16

    from actionnet.errors import ModelError, OutputError

    if not os.path.isfile(model):
        raise ModelError(f"model file not found: {model}")
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise OutputError(f"cannot write {output}: folder {folder} does not exist")
    try:
        m = onnx.load(model)
    except Exception as e:  # protobuf DecodeError and friends
        raise ModelError(f"{model} is not an ONNX model ({type(e).__name__})") from None
    # Cast stays FP32: raw-frame models cast uint8 frames to float first, and the converter
    # retypes a Cast's output without its "to" attribute (an invalid graph).
    h = float16.convert_float_to_float16(m, keep_io_types=True,
                                         op_block_list=list(float16.DEFAULT_OP_BLOCK_LIST) + ["Cast"])
    del h.metadata_props[:]
    for p in m.metadata_props:
        h.metadata_props.add(key=p.key, value=p.value)
    h.metadata_props.add(key="actionnet.precision", value="fp16")
    part = output + f".tmp{os.getpid()}"
    try:
        onnx.save(h, part)
        os.replace(part, output)
    except BaseException:  # nothing half-written
        if os.path.exists(part):
            os.remove(part)
        raise


def run(args) -> int:
    to_fp16(args.model, args.output)
    print(f"actionnet-export: wrote {args.output}", file=sys.stderr)
    return 0

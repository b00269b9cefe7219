"""``actionnet-export COMMAND ...``: one subcommand per module, each a small named step.

A command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``
and keeps its heavy imports (torch, onnx, tensorrt) inside ``run``, so ``--help`` is fast and a
missing library is a one-line error for the command that needs it, not for all of them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from actionnet.errors import ActionNetError, MissingLibraryError

# command -> module under actionnet.export
COMMANDS = {
    "action": "action",      # 3D ResNets and torchvision video models -> self-describing ONNX
    "image": "image",        # 2D image classifiers -> self-describing ONNX of clip length 1
    "onnx": "custom",        # a foreign ONNX + label file -> checked, annotated ONNX
    "engine": "engine",      # ONNX -> TensorRT engine file with an actionnet header
    "quantize": "quantize",  # FP32 ONNX -> INT8 QDQ ONNX, calibrated on clips
    "verify": "verify",      # an engine vs its reference ONNX on clips
    "fp16": "fp16",          # FP32 ONNX -> FP16 ONNX for ONNX Runtime on GPUs
    "yolo": "yolo",          # an ultralytics YOLO detector -> self-describing ONNX (per-person mode)
    "stream": "stream",      # a streaming model (MoViNet Stream, TSM online) -> ONNX with explicit state
    "selfcheck": "selfcheck",  # which GPU libraries are present; FP32/FP16/INT8 engines checked and timed
    "triton": "triton",      # models -> a Triton Inference Server model repository
    "xclip": "xclip",        # a Hugging Face X-CLIP model -> zero-shot ONNX (labels at run time)
}


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="actionnet-export", allow_abbrev=False,
                description="Turn checkpoints into self-describing ONNX files, and ONNX into engines.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, module in COMMANDS.items():
        mod = importlib.import_module(f"actionnet.export.{module}")
        sp = sub.add_parser(name, help=mod.HELP, description=mod.HELP, allow_abbrev=False)
        mod.add_arguments(sp)
        sp.set_defaults(_run=mod.run)
    return p


def _check_output(args) -> None:
    """A command that reads MODEL and writes --output never writes over MODEL (the FP32 model a
    quantized or FP16 copy, or an engine, is made from)."""
    import os

    from actionnet.errors import UsageError

    model, output = getattr(args, "model", None), getattr(args, "output", None)
    if model and output and os.path.abspath(model) == os.path.abspath(output):
        raise UsageError(f"--output would overwrite the model {model}; choose another output path")


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _check_output(args)
        return args._run(args)
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in ("torch", "torchvision", "onnx", "onnxscript", "ultralytics",
                                                 "tensorrt", "openvino", "pycuda", "onnxconverter_common",
                                                 "transformers"):
            err = MissingLibraryError(f"{e.name} is not installed: pip install 'actionnet[export]'")
            print(f"actionnet-export: error: {err}", file=sys.stderr)
            return err.exit_code
        raise
    except ActionNetError as e:
        print(f"actionnet-export: error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())

"""``actionnet-export COMMAND ...``: one subcommand per module, each a small named step.

A command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``
and keeps its heavy imports (torch, onnx, tensorrt) inside ``run``, so ``--help`` is fast and a
missing library is a one-line error for the command that needs it, not for all of them. A
module that cannot be imported at all without its library (``stream`` is PyTorch code through
and through) stays listed and says what to install when it is run: the runtime install (no
torch) keeps ``--help`` and the commands that need no torch.
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


_EXPORT = "pip install 'actionnet[export]'"
# A library that may be missing (top-level module) -> its name for people, and what installs it.
# ultralytics is not in the export extra: its requirements pull opencv-python over the runtime's
# opencv-python-headless, so it goes in with --no-deps (the extra has what it needs to run).
INSTALL = {
    "torch": ("PyTorch", _EXPORT), "torchvision": ("torchvision", _EXPORT), "onnx": ("onnx", _EXPORT),
    "onnxscript": ("onnxscript", _EXPORT), "onnxconverter_common": ("onnxconverter-common", _EXPORT),
    "transformers": ("transformers", _EXPORT), "yaml": ("PyYAML", _EXPORT), "requests": ("requests", _EXPORT),
    "ultralytics": ("ultralytics", "pip install --no-deps ultralytics (its requirements would replace "
                                   "opencv-python-headless with opencv-python)"),
    "tensorrt": ("TensorRT", "pip install 'actionnet[tensorrt]' (on a Jetson: JetPack's)"),
    "pycuda": ("pycuda", "pip install 'actionnet[tensorrt]'"),
    "openvino": ("OpenVINO", "pip install 'actionnet[openvino]'"),
}


def missing_library(command: str, error: ModuleNotFoundError) -> Optional[MissingLibraryError]:
    """The one-line error for ``command`` failing on an uninstalled library; None for a module
    that is not an optional library (a bug, whose traceback is worth seeing)."""
    top = (error.name or "").split(".")[0]
    if top not in INSTALL:
        return None
    what, how = INSTALL[top]
    return MissingLibraryError(f"`{command}` needs {what}: {how}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="actionnet-export", allow_abbrev=False,
                description="Turn checkpoints into self-describing ONNX files, and ONNX into engines.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, module in COMMANDS.items():
        try:
            mod = importlib.import_module(f"actionnet.export.{module}")
        except ModuleNotFoundError as e:
            err = missing_library(name, e)
            if err is None:
                raise
            sub.add_parser(name, help=str(err), description=str(err), allow_abbrev=False).set_defaults(_missing=err)
            continue
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
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    missing = getattr(args, "_missing", None)
    if unknown and missing is None:  # a command that cannot run has no arguments to check
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        if missing is not None:
            raise missing
        _check_output(args)
        return args._run(args)
    except ModuleNotFoundError as e:
        err = missing_library(args.command, e)
        if err is None:
            raise
        print(f"actionnet-export: error: {err}", file=sys.stderr)
        return err.exit_code
    except ActionNetError as e:
        print(f"actionnet-export: error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())

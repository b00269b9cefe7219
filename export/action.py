"""``actionnet-export action``: a PyTorch action checkpoint -> self-describing ONNX with a parity report.

Two families:

* ``resnet-18`` / ``resnet-34``: 3D-ResNets-PyTorch checkpoints (``r3d18_KM_200ep.pth``,
  Kinetics-700 + Moments in Time, 1039 classes). Their deployment preprocessing is the one
  jetson-inference ships for the same family: RGB, short side to 112 and centre crop, x/255
  minus the Kinetics mean, std 1, 16 frames. ``--mean/--std`` change it for checkpoints trained
  with std normalisation (3D-ResNets' default without ``--no_std_norm``).
* torchvision video models (:mod:`.torchvision_models`): spec from torchvision's weight metadata.
"""

from __future__ import annotations

import os
import sys

from actionnet.errors import ModelError
from actionnet.spec import JETSON_DEFAULTS, ModelSpec, read_labels

from .torchvision_models import ARCHS as TORCHVISION_ARCHS

RESNET3D_ARCHS = ("resnet-18", "resnet-34")
IG65M_ARCHS = ("r2plus1d_34",)  # ig65m-pytorch's R(2+1)D-34 (export/ig65m.py)
HELP = "export a 3D ResNet (3D-ResNets-PyTorch) or torchvision video model checkpoint to self-describing ONNX"


RANDOM_WARNING = ("actionnet-export: WARNING: --random: the weights are RANDOM, not trained; the model's labels "
                  "mean nothing. For trying the pipeline only (the ONNX says actionnet.weights=random)")


def add_arguments(p) -> None:
    from actionnet.config import floats as _floats

    p.add_argument("--arch", required=True, choices=RESNET3D_ARCHS + TORCHVISION_ARCHS + IG65M_ARCHS,
                   metavar="ARCH", help=f"architecture: {', '.join(RESNET3D_ARCHS + TORCHVISION_ARCHS + IG65M_ARCHS)}")
    w = p.add_mutually_exclusive_group(required=True)
    w.add_argument("--weights", help="checkpoint file (.pth)")
    w.add_argument("--random", action="store_true",
                   help="random weights instead of a checkpoint: to try the pipeline end to end before you have "
                        "one (the labels mean nothing; the ONNX is marked actionnet.weights=random)")
    p.add_argument("--output", required=True, help="ONNX file to write")
    p.add_argument("--labels", help="label file, one class per line (default: the checkpoint's own label set)")
    p.add_argument("--clip-length", type=int, help="frames per clip (default: the architecture's)")
    p.add_argument("--size", type=int, help="square input size (default: the architecture's)")
    p.add_argument("--mean", type=_floats(3), help="3D ResNets: per-channel mean after /255")
    p.add_argument("--std", type=_floats(3), help="3D ResNets: per-channel std")
    p.add_argument("--allow-pickle", action="store_true",
                   help="read checkpoints that hold more than tensors (only for files you trust)")
    p.add_argument("--no-parity", action="store_true", help="write even when ONNX Runtime and PyTorch disagree")


def run(args) -> int:
    weights = None if args.random else args.weights
    if args.random:
        print(RANDOM_WARNING, file=sys.stderr)
    if args.arch in RESNET3D_ARCHS:
        report = export_resnet3d(args.arch, weights, args.output, labels=args.labels,
                                 clip_length=args.clip_length, size=args.size, mean=args.mean, std=args.std,
                                 allow_pickle=args.allow_pickle, check_parity=not args.no_parity)
    elif args.arch in IG65M_ARCHS:
        if args.mean or args.std:
            raise ModelError(f"--mean/--std of {args.arch} are ig65m-pytorch's; they cannot be changed")
        from .ig65m import export_r2plus1d_34

        report = export_r2plus1d_34(weights, args.output, labels=args.labels, clip_length=args.clip_length,
                                    size=args.size, allow_pickle=args.allow_pickle, check_parity=not args.no_parity)
    else:
        if args.mean or args.std:
            raise ModelError(f"--mean/--std come from torchvision's metadata for {args.arch}; they cannot be changed")
        from .torchvision_models import export_torchvision

        report = export_torchvision(args.arch, weights, args.output, labels=args.labels,
                                    clip_length=args.clip_length, size=args.size, check_parity=not args.no_parity,
                                    allow_pickle=args.allow_pickle)
    print(f"actionnet-export: wrote {args.output}{' (RANDOM WEIGHTS)' if args.random else ''}", file=sys.stderr)
    return 0 if report.ok else 1


def weights_metadata(weights) -> dict:
    """``actionnet.weights=random`` for a model made without a checkpoint, so that a file passed on
    can never be mistaken for a trained one."""
    return {} if weights else {"actionnet.weights": "random"}


def read_checked(weights, arch: str, allow_pickle: bool, head_key: str, n_labels: int, labels, default_set: str):
    """The checkpoint's state dict, refused first when its body belongs to another architecture,
    then when its head does not match the labels; None for ``--random``."""
    from .checkpoints import check_arch, head_classes, read_state_dict

    if not weights:
        return None
    state = read_state_dict(weights, allow_pickle=allow_pickle)
    check_arch(state, arch, weights)
    n = head_classes(state, head_key)
    if n is not None and n != n_labels:
        raise ModelError(f"{weights} has {n} classes in its head ({head_key}), but "
                         f"{'the label file ' + labels + ' has' if labels else default_set + ' has'} {n_labels}; "
                         "pass --labels with one line per class")
    return state


def resnet3d_spec(arch: str, labels, clip_length=None, size=None, mean=None, std=None) -> ModelSpec:
    size = size or JETSON_DEFAULTS["height"]
    return ModelSpec(
        labels=tuple(labels), clip_length=clip_length or JETSON_DEFAULTS["clip_length"], height=size, width=size,
        input_name="frames", output_name="logits", layout="raw_nthwc", color_order="RGB",
        resize_mode="short_side", resize_size=(size,), value_scale=255.0,
        mean=tuple(mean or JETSON_DEFAULTS["mean"]), std=tuple(std or JETSON_DEFAULTS["std"]),
        arch=arch, output_kind="logits",
    )


def export_resnet3d(arch: str, weights, output: str, labels=None, clip_length=None, size=None, mean=None,
                    std=None, allow_pickle=False, check_parity=True, log=None):
    """``weights`` None: random weights (``--random``)."""
    from actionnet.models import LABELS

    from .checkpoints import load_strict
    from .onnx_export import export_clip_model
    from .resnet3d import resnet3d

    label_list = read_labels(labels or os.path.join(LABELS, "kinetics700_moments_1039.txt"))
    state = read_checked(weights, arch, allow_pickle, "fc.weight", len(label_list), labels, "Kinetics-700 + Moments")
    model = resnet3d(arch, num_classes=len(label_list))
    if state is not None:
        load_strict(model, state, weights, what=arch)
    spec = resnet3d_spec(arch, label_list, clip_length, size, mean, std)
    return export_clip_model(model, spec, output, log=log, check_parity=check_parity,
                             extra_metadata=weights_metadata(weights))

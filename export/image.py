"""``actionnet-export image --arch resnet50 --weights w.pth --labels l.txt --output m.onnx``:
a 2D image classifier as a clip model of length 1 (see :mod:`actionnet.export.image_models`)."""

from __future__ import annotations

import sys

HELP = "export a 2D image classifier (ResNet, MobileNetV3, EfficientNet) to self-describing ONNX (clip length 1)"
# Here, not in image_models (PyTorch code): the arguments are built without torch, so that
# --help works on the runtime install.
ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v3_large", "mobilenet_v3_small",
         "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3")
# timm-style and hyphenated spellings users type (the "mobilenetv3_large")
ALIASES = {"mobilenetv3_large": "mobilenet_v3_large", "mobilenetv3_large_100": "mobilenet_v3_large",
           "mobilenetv3_small": "mobilenet_v3_small", "mobilenetv3_small_100": "mobilenet_v3_small"}


def add_arguments(p) -> None:
    p.add_argument("--arch", required=True, choices=ARCHS + tuple(ALIASES), metavar="ARCH",
                   help=f"architecture: {', '.join(ARCHS)} (timm-style names such as mobilenetv3_large too)")
    p.add_argument("--weights", help="state dict (.pth: torchvision, or a timm ResNet); without it random weights "
                                     "(for trials and tests; the ImageNet head unless --labels)")
    p.add_argument("--output", required=True, help="ONNX file to write")
    p.add_argument("--labels", help="label file, one class per line (default: ImageNet's 1000 categories)")
    p.add_argument("--size", type=int, help="square input size (default: the architecture's, e.g. 224)")
    p.add_argument("--preset", metavar="WEIGHTS",
                   help="the torchvision weights whose preprocessing (resize, crop, mean, std) the checkpoint "
                        "was trained with (default: DEFAULT, torchvision's best: V2 for ResNet-50 and MobileNetV3, "
                        "short side 232); IMAGENET1K_V1 for a fine-tune of V1 weights (short side 256)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="read checkpoints that hold more than tensors (only for files you trust)")
    p.add_argument("--no-parity", action="store_true", help="write even when ONNX Runtime and PyTorch disagree")


def run(args) -> int:
    from .image_models import export_image

    if not args.weights:
        print("actionnet-export: no --weights: exporting random weights (scores mean nothing)", file=sys.stderr)
    export_image(args.arch, args.output, weights=args.weights, labels=args.labels, size=args.size,
                 preset=args.preset, check_parity=not args.no_parity, allow_pickle=args.allow_pickle)
    print(f"actionnet-export: wrote {args.output}", file=sys.stderr)
    return 0

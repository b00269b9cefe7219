"""2D image classifiers (torchvision ResNet, MobileNetV3, EfficientNet) -> self-describing ONNX.

An image model is a clip model of clip length 1. The ONNX input is ``[N, 1, H, W, 3]`` uint8
(layout ``raw_nthwc`` with T = 1), not ``[N, H, W, 3]``: the runtime's whole clip path (frame
buffer, per-person batching, engines, TensorRT headers, quantize/verify/fp16, the shape checks in
:mod:`actionnet.model`) then serves image models unchanged, and the extra axis costs nothing (a
reshape in the graph). The spec also records ``skip_frames=0``, so a video is classified on every
frame unless ``--skip-frames`` says otherwise.

Preprocessing is read from torchvision's weight metadata (``weights.transforms()``: resize
size, crop size, mean, std), as for the video models; a one-number resize is our
``short_side`` mode. torchvision resizes with antialiasing and EfficientNet with bicubic
interpolation; the runtime uses OpenCV's area/linear resize, so real-photo scores differ from
torchvision's reference by a little (parity below is measured on the exported graph itself).

Which weights' metadata: torchvision's ``DEFAULT`` unless ``--preset`` names others. DEFAULT is
V2 for ResNet-50 and MobileNetV3-Large (short side 232, a newer training recipe); a checkpoint
fine-tuned from V1 weights was trained at V1's 256, which nothing in the checkpoint records, so
its author says ``--preset IMAGENET1K_V1``.

timm checkpoints: timm's ResNets use torchvision's parameter names, so ``resnet50.a1_in1k``
weights load into ``--arch resnet50`` as they are; timm's MobileNetV3/EfficientNet name their
layers differently (``conv_stem``, ``blocks``) and are refused with the first key that does not fit.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from torch import nn

from actionnet.errors import ModelError, UsageError
from actionnet.spec import ModelSpec, read_labels

from .image import ALIASES, ARCHS

TINY = "tiny2d"  # the small synthetic-test network (tests and trials)
TINY_SIZE = 32


def canonical(arch: str) -> str:
    arch = ALIASES.get(arch, arch)
    if arch not in ARCHS and arch != TINY:
        raise ModelError(f"unknown image architecture {arch!r}; choose one of: {', '.join(ARCHS)}")
    return arch


class ImageAsClip(nn.Module):
    """A 2D classifier taking the clip layout [N, 3, 1, H, W]: the clip's single frame goes to ``net``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x[:, :, 0])


def head_key(arch: str) -> str:
    """The head's weight in the 2D network's own state dict."""
    arch = canonical(arch)
    if arch.startswith("resnet"):
        return "fc.weight"
    if arch.startswith("mobilenet_v3"):
        return "classifier.3.weight"
    if arch.startswith("efficientnet"):
        return "classifier.1.weight"
    return "4.weight"  # tiny2d


def last_stage(net: nn.Module, arch: str) -> tuple:
    """Parameter prefixes (in the 2D network) of its last stage."""
    if hasattr(net, "layer4"):
        return ("layer4.",)
    if hasattr(net, "features"):
        return (f"features.{len(net.features) - 1}.",)
    return ("2.",)


def tiny_net(num_classes: int):
    """Two convolutions and a linear head: enough to tell colours and shapes apart in seconds."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.AdaptiveAvgPool2d(1),
                         nn.Sequential(nn.Flatten(), nn.Linear(16, num_classes)))


def build_2d(arch: str, num_classes: int) -> nn.Module:
    arch = canonical(arch)
    if arch == TINY:
        return tiny_net(num_classes)
    import torchvision

    return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)


def build(arch: str, num_classes: int) -> ImageAsClip:
    return ImageAsClip(build_2d(arch, num_classes))


def weights_preset(arch: str, preset: Optional[str] = None):
    """torchvision's weights ``preset`` of ``arch`` (DEFAULT without one); a name it does not
    have for that architecture is refused with the names it has."""
    from torchvision.models import get_model_weights

    enum = get_model_weights(arch)
    name = (preset or "DEFAULT").upper()
    if name != "DEFAULT" and name not in enum.__members__:
        raise UsageError(f"--preset {preset}: torchvision's {arch} weights are "
                         f"{', '.join(w.name for w in enum)} (or DEFAULT, {enum.DEFAULT.name})")
    return enum[name]


def spec_from_weights(arch: str, labels: Optional[Sequence[str]] = None, size: Optional[int] = None,
                      preset: Optional[str] = None) -> ModelSpec:
    """The deployment spec of ``arch`` as torchvision's weights ``preset`` (DEFAULT without)
    measured it (ImageNet categories unless ``labels`` replace them)."""
    arch = canonical(arch)
    if arch == TINY and preset:
        raise UsageError(f"--preset: {TINY} has no torchvision weights")
    if arch == TINY:
        s = size or TINY_SIZE
        return ModelSpec(labels=tuple(labels or ("a", "b")), clip_length=1, height=s, width=s, input_name="frames",
                         output_name="logits", layout="raw_nthwc", color_order="RGB", resize_mode="squash",
                         resize_size=(s, s), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), skip_frames=0, arch=TINY)
    w = weights_preset(arch, preset)
    t = w.transforms()
    crop = tuple(int(v) for v in t.crop_size)
    crop = crop * 2 if len(crop) == 1 else crop
    resize = tuple(int(v) for v in t.resize_size)
    if size is not None and size != crop[0]:
        resize = tuple(int(round(r * size / crop[0])) for r in resize)
        crop = (size, size)
    return ModelSpec(
        labels=tuple(labels) if labels is not None else tuple(w.meta["categories"]),
        clip_length=1, height=crop[0], width=crop[1], input_name="frames", output_name="logits",
        layout="raw_nthwc", color_order="RGB", resize_mode="short_side" if len(resize) == 1 else "resize_crop",
        resize_size=resize, value_scale=255.0, mean=tuple(float(v) for v in t.mean),
        std=tuple(float(v) for v in t.std), skip_frames=0, arch=arch, output_kind="logits")


def load_weights(net: nn.Module, arch: str, weights: str, allow_pickle: bool = False, skip_head: bool = False):
    """A torchvision/timm-ResNet state dict into the 2D network, strictly."""
    from .checkpoints import load_strict, read_state_dict

    state = read_state_dict(weights, allow_pickle=allow_pickle)
    head = head_key(arch).rsplit(".", 1)[0] + "."
    load_strict(net, state, weights, what=canonical(arch), skip_prefix=head if skip_head else None)
    return state


def export_image(arch: str, output: str, weights: Optional[str] = None, labels: Optional[str] = None,
                 size: Optional[int] = None, log=None, check_parity: bool = True, allow_pickle: bool = False,
                 preset: Optional[str] = None):
    """Write ``arch`` (``weights`` loaded; random weights without) as a T=1 self-describing ONNX,
    preprocessed as torchvision's weights ``preset`` (DEFAULT without). The head size comes from
    the checkpoint, so a fine-tune (Stanford40's 40 classes) loads as is."""
    from .checkpoints import head_classes, read_state_dict
    from .onnx_export import export_clip_model

    arch = canonical(arch)
    label_list = read_labels(labels) if labels else None
    spec = spec_from_weights(arch, label_list, size, preset)
    if arch != TINY:  # V1 or V2 changes the resize: say which was taken, a fine-tune may need the other
        print(f"actionnet-export: preprocessing of torchvision's {arch} {weights_preset(arch, preset).name} weights "
              f"(short side {spec.resize_size[0]}, crop {spec.height}x{spec.width}); --preset names others",
              file=log or sys.stderr)
    state = read_state_dict(weights, allow_pickle=allow_pickle) if weights else None
    if state is not None:
        n = head_classes(state, head_key(arch))
        if n is not None and n != spec.num_classes:
            raise ModelError(f"{weights} has {n} classes in its head ({head_key(arch)}), but "
                             f"{'the label file ' + labels + ' has' if labels else 'ImageNet has'} "
                             f"{spec.num_classes}; pass --labels with one line per class")
    net = build_2d(arch, spec.num_classes)
    if weights:
        load_weights(net, arch, weights, allow_pickle)
    return export_clip_model(ImageAsClip(net), spec, output, log=log, check_parity=check_parity)

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

timm checkpoints: timm's ResNets use torchvision's parameter names, so ``resnet50.a1_in1k``
weights load into ``--arch resnet50`` as they are; timm's MobileNetV3/EfficientNet name their
layers differently (``conv_stem``, ``blocks``) and are refused with the first key that does not fit.
"""

from __future__ import annotations

from typing import Optional, Sequence

from torch import nn

from actionnet.errors import ModelError
from actionnet.spec import ModelSpec, read_labels

ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v3_large", "mobilenet_v3_small",
         "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3")
# timm-style and hyphenated spellings users type (the "mobilenetv3_large")
ALIASES = {"mobilenetv3_large": "mobilenet_v3_large", "mobilenetv3_large_100": "mobilenet_v3_large",
           "mobilenetv3_small": "mobilenet_v3_small", "mobilenetv3_small_100": "mobilenet_v3_small"}
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


def spec_from_weights(arch: str, labels: Optional[Sequence[str]] = None, size: Optional[int] = None) -> ModelSpec:
    """The deployment spec of ``arch`` as torchvision's default weights measured it (ImageNet
    categories unless ``labels`` replace them)."""
    arch = canonical(arch)
    if arch == TINY:
        s = size or TINY_SIZE
        return ModelSpec(labels=tuple(labels or ("a", "b")), clip_length=1, height=s, width=s, input_name="frames",
                         output_name="logits", layout="raw_nthwc", color_order="RGB", resize_mode="squash",
                         resize_size=(s, s), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), skip_frames=0, arch=TINY)
    from torchvision.models import get_model_weights

    w = get_model_weights(arch).DEFAULT
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
                 size: Optional[int] = None, log=None, check_parity: bool = True, allow_pickle: bool = False):
    """Write ``arch`` (``weights`` loaded; random weights without) as a T=1 self-describing ONNX.
    The head size comes from the checkpoint, so a fine-tune (Stanford40's 40 classes) loads as is."""
    from .checkpoints import head_classes, read_state_dict
    from .onnx_export import export_clip_model

    arch = canonical(arch)
    label_list = read_labels(labels) if labels else None
    state = read_state_dict(weights, allow_pickle=allow_pickle) if weights else None
    spec = spec_from_weights(arch, label_list, size)
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

"""torchvision video models -> self-describing ONNX, preprocessing read from the weights' own metadata.

Each torchvision weights enum records how its accuracy was measured: the transform (resize,
crop, mean, std) and, in prose, ``frame_rate`` and ``clip_len``. Those numbers are what the model
expects at deployment, so they are read from there rather than copied into a table here that
could drift from the library. Only the mapping of torchvision's resize to our resize modes is
ours: a two-number ``resize_size`` squashes to (h, w) then centre-crops (r3d/mc3/r2plus1d, s3d); a
one-number one scales the short side (MViT, Swin3D).

Export status (random weights, this machine, ``scripts/export_all.py``): all eight export with
the legacy TorchScript exporter at opset 17 and hold parity; MViT takes a fixed T x H x W
(positional embeddings are sized at construction), the others any size.
"""

from __future__ import annotations

import re
from typing import Optional, Sequence

from actionnet.errors import ModelError
from actionnet.spec import ModelSpec, read_labels

ARCHS = ("r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v1_b", "mvit_v2_s", "swin3d_t", "swin3d_s", "swin3d_b")
# architectures whose input size is fixed when the model is built
FIXED_SIZE = ("mvit_v1_b", "mvit_v2_s")


def weights_enum(arch: str):
    from torchvision.models import get_model_weights

    if arch not in ARCHS:
        raise ModelError(f"unknown torchvision video architecture {arch!r}; choose one of: {', '.join(ARCHS)}")
    return get_model_weights(arch)


def default_weights(arch: str, weights_file: Optional[str] = None):
    """The enum member that matches ``weights_file`` by name (``swin3d_b_22k-...``), else the default."""
    enum = weights_enum(arch)
    if weights_file:
        base = weights_file.replace("\\", "/").rsplit("/", 1)[-1]
        for w in enum:
            if w.url.rsplit("/", 1)[-1] == base:
                return w
    return enum.DEFAULT


def spec_from_weights(arch: str, weights=None, labels: Optional[Sequence[str]] = None,
                      clip_length: Optional[int] = None, size: Optional[int] = None) -> ModelSpec:
    """The deployment spec torchvision's weight metadata describes; ``labels`` replace the
    Kinetics-400 categories of a fine-tuned model."""
    w = weights or weights_enum(arch).DEFAULT
    t = w.transforms()
    docs = w.meta.get("_docs", "")
    clip = _doc_number(docs, "clip_len")
    fps = _doc_number(docs, "frame_rate")
    crop = tuple(int(v) for v in t.crop_size)
    resize = tuple(int(v) for v in t.resize_size)
    if size is not None and size != crop[0]:
        if arch in FIXED_SIZE:
            raise ModelError(f"{arch} takes a fixed {crop[0]}x{crop[1]} input; --size {size} is not possible")
        resize = tuple(int(round(r * size / crop[0])) for r in resize)
        crop = (size, size)
    if clip_length is not None:
        if arch in FIXED_SIZE and clip_length != int(clip):
            raise ModelError(f"{arch} takes a fixed clip of {int(clip)} frames; --clip-length {clip_length} is not possible")
        low = (w.meta.get("min_temporal_size") or 1)
        if clip_length < low:
            raise ModelError(f"{arch} needs clips of at least {low} frames, got --clip-length {clip_length}")
        clip = clip_length
    if clip is None:
        raise ModelError(f"cannot read the clip length of {arch} from torchvision's metadata; pass --clip-length")
    return ModelSpec(
        labels=tuple(labels) if labels is not None else tuple(w.meta["categories"]),
        clip_length=int(clip), height=crop[0], width=crop[1],
        input_name="frames", output_name="logits", layout="raw_nthwc", color_order="RGB",
        resize_mode="short_side" if len(resize) == 1 else "resize_crop", resize_size=resize,
        value_scale=255.0, mean=tuple(float(v) for v in t.mean), std=tuple(float(v) for v in t.std),
        sample_fps=float(fps) if fps else None, arch=arch, output_kind="logits",
    )


def _doc_number(docs: str, name: str) -> Optional[float]:
    m = re.search(rf"`{name}=([0-9.]+)`", docs)
    return float(m.group(1)) if m else None


def build(arch: str, num_classes: int):
    import torchvision

    return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)


def export_torchvision(arch: str, weights: Optional[str], output: str, labels: Optional[str] = None,
                       clip_length: Optional[int] = None, size: Optional[int] = None, log=None,
                       check_parity: bool = True, allow_pickle: bool = False):
    """Load a local torchvision weights file into ``arch`` and write a self-describing ONNX
    (``weights`` None: random weights). The head size comes from the checkpoint, so a fine-tune
    with its own labels loads as is."""
    from .action import read_checked, weights_metadata
    from .checkpoints import load_strict
    from .onnx_export import export_clip_model

    label_list = read_labels(labels) if labels else None
    spec = spec_from_weights(arch, default_weights(arch, weights), label_list, clip_length, size)
    state = read_checked(weights, arch, allow_pickle, _head_key(arch), spec.num_classes, labels, "Kinetics-400")
    model = build(arch, spec.num_classes)
    if state is not None:
        load_strict(model, state, weights, what=arch)
    return export_clip_model(model, spec, output, log=log, check_parity=check_parity,
                             extra_metadata=weights_metadata(weights))


def _head_key(arch: str) -> str:
    if arch.startswith(("r3d", "mc3", "r2plus1d")):
        return "fc.weight"
    if arch == "s3d":
        return "classifier.1.weight"
    return "head.1.weight" if arch.startswith("mvit") else "head.weight"

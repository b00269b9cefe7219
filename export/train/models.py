"""The network to fine-tune: every architecture the export stage knows, its deployment spec, a
head sized for the user's labels, and which parameters train.

Architectures: ``resnet-18``/``resnet-34`` (3D-ResNets-PyTorch checkpoints), torchvision's video
models (``r3d_18``, ``mc3_18``, ``r2plus1d_18``, ``s3d``, ``mvit_*``, ``swin3d_*``), ig65m-pytorch's
``r2plus1d_34``, ``tsm-mobilenetv2`` (trained on clips, deployed as a streaming model: TSM online),
``tiny3d`` (the small synthetic-test network, for tests and trials), and 2D image
classifiers (``resnet18``/``34``/``50``, ``mobilenet_v3_large``, ``efficientnet_b0``..., ``tiny2d``)
trained as clips of one frame on folders of images (or single frames of videos). The
spec (clip length, size, resize, mean, std) is the one the export stage writes for the same
architecture, so the trained model is deployed exactly as it was trained.

``--weights`` loads every backbone tensor strictly (the first key that does not fit is named)
and drops the checkpoint's head, whatever its size: the head is new, one output per label.

Modes: ``linear`` trains the head only (a linear probe: the backbone, BatchNorm statistics
included, stays frozen), ``last`` the last stage and the head, ``full`` everything.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from torch import nn

from actionnet.errors import ModelError, UsageError
from actionnet.spec import ModelSpec

from .. import image_models
from ..action import RESNET3D_ARCHS, resnet3d_spec
from ..torchvision_models import ARCHS as TORCHVISION_ARCHS

TINY = "tiny3d"
# 2D image classifiers train as clips of one frame (image_models.ImageAsClip)
IMAGE_ARCHS = image_models.ARCHS + tuple(image_models.ALIASES) + (image_models.TINY,)
STREAM_ARCHS = ("tsm-mobilenetv2",)  # trained on clips, exported as a streaming model (export/stream.py)
ARCHS = RESNET3D_ARCHS + TORCHVISION_ARCHS + ("r2plus1d_34",) + STREAM_ARCHS + (TINY,) + IMAGE_ARCHS
MODES = ("linear", "last", "full")


def head_prefix(arch: str) -> str:
    if arch in IMAGE_ARCHS:
        return "net." + image_models.head_key(arch).rsplit(".", 1)[0] + "."
    if arch in STREAM_ARCHS:
        return "classifier.1."
    from ..archs import head_prefix as prefix

    try:
        return prefix(arch)
    except ValueError:
        raise ModelError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHS)}") from None


def last_stage_prefixes(model: nn.Module, arch: str) -> Tuple[str, ...]:
    """Parameter name prefixes of the last stage (what ``--mode last`` trains besides the head)."""
    if arch in IMAGE_ARCHS:
        return tuple("net." + p for p in image_models.last_stage(model.net, arch))
    if hasattr(model, "layer4"):
        return ("layer4.",)
    if arch == TINY:
        return ("8.", "9.")
    for container in ("blocks", "features"):
        seq = getattr(model, container, None)
        if seq is not None:
            extra = ("norm.",) if hasattr(model, "norm") else ()
            return (f"{container}.{len(seq) - 1}.",) + extra
    raise ModelError(f"no last stage known for {arch}")


def build(arch: str, labels: Sequence[str], weights: Optional[str] = None, clip_length: Optional[int] = None,
          size: Optional[int] = None, allow_pickle: bool = False, log=None) -> Tuple[nn.Module, ModelSpec]:
    """The network (taking normalised [N, 3, T, H, W]) with a new head, and its deployment spec."""
    labels = tuple(labels)
    n = len(labels)
    if arch in RESNET3D_ARCHS:
        from ..resnet3d import resnet3d

        model, spec = resnet3d(arch, n), resnet3d_spec(arch, labels, clip_length, size)
    elif arch in TORCHVISION_ARCHS:
        from ..torchvision_models import build as tv_build, default_weights, spec_from_weights

        spec = spec_from_weights(arch, default_weights(arch, weights), labels, clip_length, size)
        model = tv_build(arch, n)
    elif arch == "r2plus1d_34":
        from .. import ig65m

        model = ig65m.r2plus1d_34(n)  # BatchNorm eps as published, PyTorch's momentum (see ig65m)
        spec = ig65m.spec(labels, clip_length or ig65m.clip_length_of(weights), size or 112)
    elif arch in IMAGE_ARCHS:
        if clip_length not in (None, 1):
            raise UsageError(f"{arch} is an image model: it takes one frame, not --clip-length {clip_length}")
        model, spec = image_models.build(arch, n), image_models.spec_from_weights(arch, labels, size)
    elif arch in STREAM_ARCHS:
        from ..stream import stream_spec
        from ..tsm import TRAIN_CLIP_LENGTH, TSMClip

        model = TSMClip(n)
        spec = stream_spec(arch, labels, size).replace(clip_length=clip_length or TRAIN_CLIP_LENGTH)
    elif arch == TINY:
        from ..synthetic import test_model_spec, tiny_net

        model, spec = tiny_net(n), test_model_spec(labels)
        if clip_length or size:
            spec = spec.replace(clip_length=clip_length or spec.clip_length, height=size or spec.height,
                                width=size or spec.width, resize_size=(size or spec.height,))
    else:
        raise UsageError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHS)}")
    if weights:
        load_backbone(model, arch, weights, allow_pickle)
        if log is not None:
            print(f"actionnet-train: backbone from {weights}; new head: {n} classes", file=log)
    return model, spec


def load_backbone(model: nn.Module, arch: str, weights: str, allow_pickle: bool = False) -> None:
    """Every non-head tensor of ``weights`` into ``model``, strictly; the head is left as built."""
    from ..checkpoints import load_strict, read_state_dict

    if arch in IMAGE_ARCHS:  # the checkpoint is the 2D network's own
        image_models.load_weights(model.net, arch, weights, allow_pickle, skip_head=True)
        return
    state = read_state_dict(weights, allow_pickle)
    if arch in STREAM_ARCHS:  # ImageNet MobileNetV2, a TSM checkpoint, or an earlier run's best.pt
        from ..tsm import remap_state_dict

        state = remap_state_dict(state, model)
    from ..archs import ALL

    load_strict(model, state, weights, what=arch, skip_prefix=head_prefix(arch), candidates=ALL)


class Trainable:
    """Which parameters train in a mode, and a ``train()`` that keeps frozen BatchNorms frozen."""

    def __init__(self, model: nn.Module, arch: str, mode: str):
        if mode not in MODES:
            raise UsageError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.model, self.mode = model, mode
        if mode == "full":
            prefixes: Tuple[str, ...] = ("",)
        elif mode == "last":
            prefixes = last_stage_prefixes(model, arch) + (head_prefix(arch),)
        else:
            prefixes = (head_prefix(arch),)
        self.names: List[str] = []
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(prefixes))
            if p.requires_grad:
                self.names.append(name)
        self._frozen_norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                              and not any(p.requires_grad for p in m.parameters(recurse=False))]

    def parameters(self) -> List[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def train(self) -> None:
        self.model.train()
        for m in self._frozen_norms:
            m.eval()

    def counts(self) -> Dict[str, int]:
        total = sum(p.numel() for p in self.model.parameters())
        return {"trainable": sum(p.numel() for p in self.parameters()), "total": total}

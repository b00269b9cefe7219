"""Every architecture the export stage and ``actionnet-train`` know, built by name, and which of
them a checkpoint belongs to.

The second question is what a user needs answered first when a checkpoint does not fit: a
torchvision ``r3d_18`` file passed as ``--arch resnet-18`` is not a label problem, and asking for
``--labels`` before saying so sends them the wrong way. Candidates are built on PyTorch's meta
device (shapes only, no memory, about a second for all of them), and only on that error path.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import torch
from torch import nn

RESNET3D = ("resnet-18", "resnet-34")
TORCHVISION = ("r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v1_b", "mvit_v2_s", "swin3d_t", "swin3d_s",
               "swin3d_b")
IG65M = ("r2plus1d_34",)
TINY = "tiny3d"  # the synthetic-test network (export/synthetic.py)
EXPORT = RESNET3D + TORCHVISION + IG65M  # actionnet-export action --arch
ALL = EXPORT + (TINY,)                     # actionnet-train --arch


def head_prefix(arch: str) -> str:
    """Parameter-name prefix of the classifier head: the part a new label set replaces."""
    if arch in RESNET3D or arch.startswith(("r3d", "mc3", "r2plus1d")):
        return "fc."
    if arch == "s3d":
        return "classifier.1."
    if arch.startswith("mvit"):
        return "head.1."
    if arch.startswith("swin3d"):
        return "head."
    if arch == TINY:
        return "13."
    raise ValueError(f"unknown architecture {arch!r}")


def builder(arch: str) -> Callable[[int], nn.Module]:
    """``num_classes -> model`` for ``arch``."""
    if arch in RESNET3D:
        from .resnet3d import resnet3d

        return lambda n: resnet3d(arch, n)
    if arch in TORCHVISION:
        from .torchvision_models import build

        return lambda n: build(arch, n)
    if arch in IG65M:
        from .ig65m import r2plus1d_34

        return r2plus1d_34
    if arch == TINY:
        from .synthetic import tiny_net

        return tiny_net
    raise ValueError(f"unknown architecture {arch!r}")


def shapes(arch: str) -> Dict[str, tuple]:
    """Name -> shape of every tensor of ``arch`` outside its head, without allocating it."""
    with torch.device("meta"):
        model = builder(arch)(2)
    skip = head_prefix(arch)
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith(skip)}


def parameters(arch: str) -> int:
    """How many numbers ``arch`` holds outside its head (known without building it for real)."""
    n = 0
    for s in shapes(arch).values():
        n += int(torch.Size(s).numel())
    return n


def guess(state: Dict[str, torch.Tensor], exclude: Optional[str] = None,
          candidates: Sequence[str] = EXPORT) -> Optional[str]:
    """The architecture among ``candidates`` whose body (every tensor outside the head) ``state``
    matches exactly, name for name and shape for shape; None when none does."""
    for arch in candidates:
        if arch == exclude:
            continue
        try:
            want = shapes(arch)
        except Exception:  # an architecture this torchvision lacks, or that meta cannot build
            continue
        skip = head_prefix(arch)
        body = {k: v for k, v in state.items() if not k.startswith(skip)}
        if len(body) == len(want) and all(k in body and tuple(body[k].shape) == s for k, s in want.items()):
            return arch
    return None

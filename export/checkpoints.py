"""Loading checkpoints into a model with messages that name the first key that does not fit."""

from __future__ import annotations

import os
import zipfile
from typing import Dict, Optional

import torch

from actionnet.errors import ModelError


def read_state_dict(path: str, allow_pickle: bool = False) -> Dict[str, torch.Tensor]:
    """The state dict in ``path``: a bare one, or the ``state_dict``/``model`` entry of a training
    checkpoint; a DataParallel ``module.`` prefix is removed."""
    if not os.path.isfile(path):
        raise ModelError(f"weights file not found: {path}")
    not_one = not_a_checkpoint(path)
    if not_one:
        raise ModelError(f"cannot read checkpoint {path}: {not_one}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as e:  # pickle, zip and torch errors alike
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = "" if allow_pickle else " (if it holds more than tensors and you trust it, pass --allow-pickle)"
        raise ModelError(f"cannot read checkpoint {path}: {first[:200]}{hint}") from None
    if isinstance(ckpt, dict):
        for key in ("state_dict", "model_state", "model"):
            if key in ckpt and isinstance(ckpt[key], dict):
                ckpt = ckpt[key]
                break
    if not isinstance(ckpt, dict) or not all(torch.is_tensor(v) for v in ckpt.values()):
        raise ModelError(f"{path} holds no state dict (a mapping of parameter names to tensors)")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in ckpt.items()}


def not_a_checkpoint(path: str) -> Optional[str]:
    """Why ``path`` cannot be a ``torch.save`` file, or None when it may be one.

    ``torch.save`` writes a zip archive (PyTorch >= 1.6) or, in the legacy format, a pickle
    (first byte 0x80, then the protocol) or a tar archive. Anything else would reach PyTorch's
    unpickler and come back as a paragraph about ``weights_only`` and then ``invalid load key``;
    a video passed as ``--weights`` deserves one plain sentence instead."""
    with open(path, "rb") as f:
        head = f.read(512)
    if zipfile.is_zipfile(path) or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5):
        return None
    if len(head) >= 262 and head[257:262] == b"ustar":
        return None
    kind = ""
    if head[4:8] == b"ftyp":
        kind = " (it is an MP4/MOV video)"
    elif head[:4] == b"\x1aE\xdf\xa3":
        kind = " (it is a Matroska/WebM video)"
    elif head[:4] == b"RIFF":
        kind = " (it is a RIFF file, e.g. an AVI video)"
    elif path.lower().endswith(".onnx"):
        kind = " (an ONNX model: annotate it with actionnet-export onnx, or run it with actionnet --model)"
    return f"not a PyTorch checkpoint{kind}; --weights takes a .pth/.pt file written by torch.save"


def first_mismatch(want: Dict[str, tuple], state: Dict[str, torch.Tensor]) -> Optional[str]:
    """The first difference between the shapes a model wants and a state dict, in words."""
    for k, shape in want.items():
        if k not in state:
            return f"missing key {k!r} (model shape {list(shape)})"
        if tuple(state[k].shape) != tuple(shape):
            return f"key {k!r} has shape {list(state[k].shape)}, the model wants {list(shape)}"
    extra = [k for k in state if k not in want]
    if extra:
        return f"unexpected key {extra[0]!r} (shape {list(state[extra[0]].shape)}), {len(extra)} unexpected in all"
    return None


def _refuse(source: str, arch: str, why: str, state: Dict[str, torch.Tensor], candidates=None) -> ModelError:
    """The error for a checkpoint that does not fit ``arch``, naming the architecture it does fit
    (among ``candidates``, default: those ``actionnet-export action`` takes)."""
    msg = f"checkpoint {source} does not fit {arch or 'the model'}: {why}"
    if arch:
        from .archs import EXPORT, guess

        other = guess(state, exclude=arch, candidates=candidates or EXPORT)
        if other:
            msg += f"; it is a {other} checkpoint: pass --arch {other}"
    return ModelError(msg)


def check_arch(state: Dict[str, torch.Tensor], arch: str, source: str) -> None:
    """Refuse a checkpoint whose body (every tensor outside the head) does not fit ``arch``.

    Runs before any question about the head or the labels: a checkpoint of another architecture
    is that, not a label-count problem."""
    from .archs import head_prefix, shapes

    skip = head_prefix(arch)
    why = first_mismatch(shapes(arch), {k: v for k, v in state.items() if not k.startswith(skip)})
    if why:
        raise _refuse(source, arch, why, state)


def load_strict(model: torch.nn.Module, state: Dict[str, torch.Tensor], source: str, what: str = "",
                skip_prefix: Optional[str] = None, candidates=None) -> None:
    """Load ``state`` into ``model``, refusing with the first mismatching key and its shapes.

    ``skip_prefix`` leaves those tensors out on both sides (a head about to be replaced);
    ``what`` names the architecture in the message (and lets it name the one that would fit)."""
    full = state
    if skip_prefix:
        state = {k: v for k, v in state.items() if not k.startswith(skip_prefix)}
    want = {k: tuple(v.shape) for k, v in model.state_dict().items() if not (skip_prefix and k.startswith(skip_prefix))}
    why = first_mismatch(want, state)
    if why:
        raise _refuse(source, what, why, full, candidates)
    model.load_state_dict(state, strict=not skip_prefix)


def head_classes(state: Dict[str, torch.Tensor], key: str):
    """Number of classes of the classifier weight ``key`` (its first dimension), None if absent."""
    w = state.get(key)
    return int(w.shape[0]) if w is not None else None

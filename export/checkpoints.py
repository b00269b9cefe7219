"""Loading checkpoints into a model with messages that name the first key that does not fit."""

from __future__ import annotations

import os
from typing import Dict, Optional

import torch

from actionnet.errors import ModelError


def read_state_dict(path: str, allow_pickle: bool = False) -> Dict[str, torch.Tensor]:
    """The state dict in ``path``: a bare one, or the ``state_dict``/``model`` entry of a training
    checkpoint; a DataParallel ``module.`` prefix is removed."""
    if not os.path.isfile(path):
        raise ModelError(f"weights file not found: {path}")
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


def load_strict(model: torch.nn.Module, state: Dict[str, torch.Tensor], source: str, what: str = "",
                skip_prefix: Optional[str] = None) -> None:
    """Load ``state`` into ``model``, refusing with the first mismatching key and its shapes.

    ``skip_prefix`` leaves those tensors out on both sides (a head about to be replaced);
    ``what`` names the architecture in the message."""
    if skip_prefix:
        state = {k: v for k, v in state.items() if not k.startswith(skip_prefix)}
    want = {k: v for k, v in model.state_dict().items() if not (skip_prefix and k.startswith(skip_prefix))}
    fit = f"checkpoint {source} does not fit{' ' + what if what else ''}"
    for k, v in want.items():
        if k not in state:
            raise ModelError(f"{fit}: missing key {k!r} (model shape {list(v.shape)})")
        if tuple(state[k].shape) != tuple(v.shape):
            raise ModelError(f"{fit}: key {k!r} has shape {list(state[k].shape)}, the model wants {list(v.shape)}")
    extra = [k for k in state if k not in want]
    if extra:
        raise ModelError(f"{fit}: unexpected key {extra[0]!r} (shape {list(state[extra[0]].shape)}), "
                         f"{len(extra)} unexpected in all")
    model.load_state_dict(state, strict=not skip_prefix)


def head_classes(state: Dict[str, torch.Tensor], key: str):
    """Number of classes of the classifier weight ``key`` (its first dimension), None if absent."""
    w = state.get(key)
    return int(w.shape[0]) if w is not None else None

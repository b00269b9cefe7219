"""TSM online: torchvision's MobileNetV2 with a one-way temporal shift, state passed in and out.

As in mit-han-lab/temporal-shift-module's online demo (``online_demo/mobilenet_v2_tsm.py``),
every residual inverted-residual block (features 3, 5, 6, 8, 9, 10, 12, 13, 15, 16 of
torchvision's layout) replaces the first eighth of its input channels with the same channels of
the previous frame before its convolutions, and hands the current frame's eighth on to the next
step. The shifted-out channels are the state: ``[C / 8, H, W]`` per block, zeros at the start.
The residual adds the unshifted input, as the demo does.

``forward(x, *states)`` takes ``x`` ``[N, T, 3, H, W]`` (normalised) and returns the logits of
every frame ``[N, T, K]`` and the new states: a whole clip is TSM's offline training mode with a
causal shift (training averages the frames' logits, TSN's consensus); one frame per call with the
states carried over is the online stream, and the two agree frame for frame.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import nn

from .movinet import Carry

ARCH = "tsm-mobilenetv2"
SHIFT_DIV = 8
HEAD_PREFIX = "classifier.1."


class TSMMobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 400, width_mult: float = 1.0):
        super().__init__()
        from torchvision.models import mobilenet_v2

        base = mobilenet_v2(num_classes=num_classes, width_mult=width_mult)
        self.features, self.classifier = base.features, base.classifier
        self.shift = [i for i, m in enumerate(self.features) if getattr(m, "use_res_connect", False)]
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor, *states: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        t, h, w = int(x.shape[1]), int(x.shape[3]), int(x.shape[4])
        carry = Carry(states)
        y = x.reshape(-1, 3, h, w)
        for i, block in enumerate(self.features):
            if i in self.shift:
                y = y + block.conv(self._shift(y, t, carry))
            else:
                y = block(y)
        y = self.classifier(y.mean((2, 3)))
        return y.reshape(-1, t, self.num_classes), carry.out

    @staticmethod
    def _shift(y: torch.Tensor, t: int, carry: Carry) -> torch.Tensor:
        c, h, w = int(y.shape[1]), int(y.shape[2]), int(y.shape[3])
        fold = c // SHIFT_DIV
        if t == 1:
            past = carry.take(lambda: y.new_zeros(y.shape[0], fold, h, w))
            carry.give(y[:, :fold])
            return torch.cat((past, y[:, fold:]), 1)
        v = y.reshape(-1, t, c, h, w)
        past = carry.take(lambda: v.new_zeros(v.shape[0], fold, h, w))
        carry.give(v[:, -1, :fold])
        moved = torch.cat((past.unsqueeze(1), v[:, :-1, :fold]), 1)
        return torch.cat((moved, v[:, :, fold:]), 2).reshape(-1, c, h, w)


def remap_state_dict(state: Dict[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
    """A checkpoint in another MobileNetV2 layout -> torchvision's names.

    TSM's own checkpoints prefix ``module.base_model.`` and call the head ``new_fc``; the online
    demo's MobileNetV2 names its layers differently but holds the same tensors in the same order.
    Names that fit are kept; otherwise, when every tensor fits torchvision's in order and shape,
    the tensors are taken by position."""
    out = {}
    for k, v in state.items():
        for p in ("module.", "base_model."):
            if k.startswith(p):
                k = k[len(p):]
        out[k.replace("new_fc.", "classifier.1.")] = v
    want = model.state_dict()
    if set(out) == set(want):
        return out
    a = [(k, v) for k, v in out.items() if not k.endswith("num_batches_tracked")]
    b = [(k, v) for k, v in want.items() if not k.endswith("num_batches_tracked")]
    if len(a) == len(b) and all(tuple(va.shape) == tuple(vb.shape) for (_, va), (_, vb) in zip(a, b)):
        out = {kb: va for (_, va), (kb, _) in zip(a, b)}
        out.update({k: v for k, v in want.items() if k.endswith("num_batches_tracked")})
    return out


class TSMClip(TSMMobileNetV2):
    """The same network for training on clips: normalised ``[N, 3, T, H, W]`` in, the mean of the
    frames' logits out (TSN's average consensus, as TSM trains). Its weights are the stream
    model's, key for key, so the trained network exports as the online stream unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x.transpose(1, 2))[0].mean(1)


TRAIN_CLIP_LENGTH = 8  # TSM's 8 segments

"""MoViNet-A0/A1/A2 Stream with explicit state, key for key with the public PyTorch port.

The PyTorch port (Atze00/MoViNet-pytorch, ``movinets/models.py``) keeps its stream buffers as
module attributes that are filled during ``forward``; an ONNX export would freeze them as
constants. This port has the same modules, names and arithmetic for the streaming configuration
its released ``*_stream_statedict_v3`` weights use (``causal=True``, ``conv_type="2plus1d"``,
``tf_like=True``: (2+1)D convolutions with BatchNorm2d and Hardswish, TF "same" padding, the SE
gate's 0.2x+0.5 hard sigmoid, ReZero ``alpha`` per block), but every piece of state is a tensor
passed in and returned:

* each (2+1)D convolution with a temporal kernel ``kt > 1`` keeps the last ``kt - 1`` frames of
  its spatial output: ``[C, kt - 1, H * W]``;
* each causal average (one per SE gate, one before the classifier) keeps its running sum
  ``[1, C]``; one shared frame counter ``[1]`` divides them.

``forward(x, *states)`` takes ``x`` ``[N, T, 3, H, W]`` (normalised) and returns the logits of
every frame ``[N, T, K]`` and the new states. A whole clip with zero states is the port's causal
clip mode; one frame at a time with the states carried over is the stream, and the two agree.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

# Per arch: conv1 width, blocks per stage as (out, expanded, temporal kernel, spatial kernel,
# stride), conv7 width, input size and training frame rate (the port's config.py; the sizes and
# rates of tensorflow/models' MoViNet README).
_A0 = (8, [[(8, 24, 1, 5, 2)],
           [(32, 80, 3, 3, 2), (32, 80, 3, 3, 1), (32, 80, 3, 3, 1)],
           [(56, 184, 5, 3, 2), (56, 112, 3, 3, 1), (56, 184, 3, 3, 1)],
           [(56, 184, 5, 3, 1), (56, 184, 3, 3, 1), (56, 184, 3, 3, 1), (56, 184, 3, 3, 1)],
           [(104, 384, 5, 3, 2), (104, 280, 1, 5, 1), (104, 280, 1, 5, 1), (104, 344, 1, 5, 1)]], 480, 172)
_A1 = (16, [[(16, 40, 1, 5, 2), (16, 40, 3, 3, 1)],
            [(40, 96, 3, 3, 2), (40, 120, 3, 3, 1), (40, 96, 3, 3, 1), (40, 96, 3, 3, 1)],
            [(64, 216, 5, 3, 2), (64, 128, 3, 3, 1), (64, 216, 3, 3, 1), (64, 168, 3, 3, 1), (64, 216, 3, 3, 1)],
            [(64, 216, 5, 3, 1), (64, 216, 3, 3, 1), (64, 216, 3, 3, 1), (64, 128, 3, 3, 1), (64, 128, 1, 5, 1),
             (64, 216, 3, 3, 1)],
            [(136, 456, 5, 3, 2), (136, 360, 1, 5, 1), (136, 360, 1, 5, 1), (136, 360, 1, 5, 1),
             (136, 456, 1, 5, 1), (136, 456, 3, 3, 1), (136, 544, 1, 3, 1)]], 600, 172)
_A2 = (16, [[(16, 40, 1, 5, 2), (16, 40, 3, 3, 1), (16, 64, 3, 3, 1)],
            [(40, 96, 3, 3, 2), (40, 120, 3, 3, 1), (40, 96, 3, 3, 1), (40, 96, 3, 3, 1), (40, 120, 3, 3, 1)],
            [(72, 240, 5, 3, 2), (72, 160, 3, 3, 1), (72, 240, 3, 3, 1), (72, 192, 3, 3, 1), (72, 240, 3, 3, 1)],
            [(72, 240, 5, 3, 1), (72, 240, 3, 3, 1), (72, 240, 3, 3, 1), (72, 240, 3, 3, 1), (72, 144, 1, 5, 1),
             (72, 240, 3, 3, 1)],
            [(144, 480, 5, 3, 2), (144, 384, 1, 5, 1), (144, 384, 1, 5, 1), (144, 480, 1, 5, 1),
             (144, 480, 1, 5, 1), (144, 480, 3, 3, 1), (144, 576, 1, 3, 1)]], 640, 224)
CONFIGS = {"movinet-a0": _A0, "movinet-a1": _A1, "movinet-a2": _A2}
ARCHS = tuple(CONFIGS)
HIDDEN = 2048
SAMPLE_FPS = 5.0  # Kinetics-600 clips of 50 frames at 5 fps


class Carry:
    """The state tensors of one forward pass, read and written in module order. Without input
    states (training, the clip mode) every state starts at zero."""

    def __init__(self, states: Optional[Sequence[torch.Tensor]]):
        self.inputs = list(states) if states else None
        self.i = 0
        self.out: List[torch.Tensor] = []

    def take(self, zeros):
        if self.inputs is None:
            return zeros()
        s = self.inputs[self.i]
        self.i += 1
        return s

    def give(self, s: torch.Tensor) -> None:
        self.out.append(s)


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _same_pad(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    """TensorFlow's "same" padding (more on the bottom/right when odd), as the port's tf_like."""
    def pads(n):
        p = max(k - (s if n % s == 0 else n % s), 0)
        return p // 2, p - p // 2

    top, bottom = pads(int(x.shape[-2]))
    left, right = pads(int(x.shape[-1]))
    return F.pad(x, (left, right, top, bottom)) if top or bottom or left or right else x


def cumulative_mean(s: torch.Tensor, carry: Carry, count: torch.Tensor) -> torch.Tensor:
    """``s`` [N, T, C] -> the mean over every frame so far, per frame (the port's
    TemporalCGAvgPool3D); the running sum is the state."""
    n, t, c = s.shape[0], int(s.shape[1]), int(s.shape[2])
    total = carry.take(lambda: s.new_zeros(n, 1, c))
    cs = s + total if t == 1 else torch.cumsum(s, 1) + total
    carry.give(cs[:, -1:])
    steps = count.view(-1, 1, 1) + (1.0 if t == 1 else torch.arange(1, t + 1, dtype=s.dtype).view(1, t, 1))
    return cs / steps


class ConvBN(nn.Sequential):
    """The port's Conv2dBNActivation: ``conv2d``, ``norm`` (eps 1e-3), ``act`` (Hardswish)."""

    def __init__(self, cin, cout, kernel, stride=1, groups=1, act=True, norm=True, bias=False):
        layers = OrderedDict(conv2d=nn.Conv2d(cin, cout, kernel, stride=stride, groups=groups, bias=bias))
        if norm:
            layers["norm"] = nn.BatchNorm2d(cout, eps=1e-3)
        if act:
            layers["act"] = nn.Hardswish()
        super().__init__(layers)


class CausalConv(nn.Module):
    """The port's ConvBlock3D in (2+1)D: a spatial conv on every frame (``conv_1``), then, for a
    temporal kernel ``kt > 1``, a causal depthwise conv over the last ``kt`` frames (``conv_2``)."""

    def __init__(self, cin, cout, kt=1, k=1, stride=1, groups=1, act=True, norm=True, bias=False):
        super().__init__()
        self.k, self.stride, self.kt = k, stride, kt
        self.conv_1 = ConvBN(cin, cout, k, stride, groups, act, norm, bias)
        self.conv_2 = ConvBN(cout, cout, (kt, 1), 1, groups, act, norm, bias) if kt > 1 else None

    def forward(self, x: torch.Tensor, t: int, carry: Carry) -> torch.Tensor:
        if self.k > 1:
            x = _same_pad(x, self.k, self.stride)
        x = self.conv_1(x)
        if self.conv_2 is None:
            return x
        c, h, w = int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
        y = x.reshape(-1, c, 1, h * w) if t == 1 else x.reshape(-1, t, c, h * w).transpose(1, 2)
        past = carry.take(lambda: y.new_zeros(y.shape[0], c, self.kt - 1, h * w))
        y = torch.cat((past, y), 2)
        carry.give(y[:, :, -(self.kt - 1):])
        y = self.conv_2(y)
        return y.reshape(-1, c, h, w) if t == 1 else y.transpose(1, 2).reshape(-1, c, h, w)


class TfAvgPool(nn.Module):
    """3x3 stride-2 average pool with "same" padding, padded cells not counted (tfAvgPool3D)."""

    def forward(self, x):
        if int(x.shape[-1]) % 2:
            return F.avg_pool2d(x, 3, 2, padding=1, count_include_pad=False)
        y = F.avg_pool2d(F.pad(x, (0, 1, 0, 1)), 3, 2)
        h, w = int(y.shape[-2]), int(y.shape[-1])
        factor = torch.ones(h, w, dtype=y.dtype)
        factor[-1, :] *= 1.5
        factor[:, -1] *= 1.5
        return y * factor


class SqueezeExcitation(nn.Module):
    """Causal SE: the gate sees the running mean of the frames so far beside the current one."""

    def __init__(self, c: int):
        super().__init__()
        sq = _make_divisible(c // 4 * 2, 8)
        self.fc1 = CausalConv(2 * c, sq, act=False, norm=False, bias=True)
        self.fc2 = CausalConv(sq, c, act=False, norm=False, bias=True)

    def forward(self, x, t: int, carry: Carry, count):
        c = int(x.shape[1])
        s = x.mean((2, 3)).reshape(-1, t, c)
        z = torch.cat((cumulative_mean(s, carry, count), s), 2).reshape(-1, 2 * c, 1, 1)
        z = self.fc2.conv_1(F.hardswish(self.fc1.conv_1(z)))
        return x * (0.2 * z + 0.5).clamp(0.0, 1.0)


class Bneck(nn.Module):
    def __init__(self, cin, cout, cexp, kt, k, stride):
        super().__init__()
        self.expand = CausalConv(cin, cexp)
        self.deep = CausalConv(cexp, cexp, kt, k, stride, groups=cexp)
        self.se = SqueezeExcitation(cexp)
        self.project = CausalConv(cexp, cout, act=False)
        self.res = None
        if stride != 1 or cin != cout:
            layers = ([TfAvgPool()] if stride != 1 else []) + [CausalConv(cin, cout, act=False)]
            self.res = nn.Sequential(*layers)
        self.alpha = nn.Parameter(torch.tensor(0.0))

    def forward(self, x, t: int, carry: Carry, count):
        r = x
        if self.res is not None:
            for m in self.res:
                r = m(r) if isinstance(m, TfAvgPool) else m(r, t, carry)
        y = self.deep(self.expand(x, t, carry), t, carry)
        y = self.project(self.se(y, t, carry, count), t, carry)
        return r + self.alpha * y


class MoViNetStream(nn.Module):
    def __init__(self, arch: str = "movinet-a0", num_classes: int = 600):
        super().__init__()
        if arch not in CONFIGS:
            raise ValueError(f"unknown MoViNet {arch!r}; choose one of {', '.join(ARCHS)}")
        c1, stages, c7, _ = CONFIGS[arch]
        self.conv1 = CausalConv(3, c1, 1, 3, 2)
        blocks, cin = OrderedDict(), c1
        for i, stage in enumerate(stages):
            for j, (cout, cexp, kt, k, s) in enumerate(stage):
                blocks[f"b{i}_l{j}"] = Bneck(cin, cout, cexp, kt, k, s)
                cin = cout
        self.blocks = nn.Sequential(blocks)
        self.conv7 = CausalConv(cin, c7)
        self.classifier = nn.Sequential(CausalConv(c7, HIDDEN, act=False, norm=False, bias=True), nn.SiLU(),
                                        nn.Dropout(0.2), CausalConv(HIDDEN, num_classes, act=False, norm=False, bias=True))
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor, *states: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        t, h, w = int(x.shape[1]), int(x.shape[3]), int(x.shape[4])
        carry = Carry(states)
        count = carry.take(lambda: x.new_zeros(x.shape[0], 1))
        carry.give(count + t)
        y = self.conv1(x.reshape(-1, 3, h, w), t, carry)
        for block in self.blocks:
            y = block(y, t, carry, count)
        y = self.conv7(y, t, carry)
        c7 = int(y.shape[1])
        f = cumulative_mean(y.mean((2, 3)).reshape(-1, t, c7), carry, count).reshape(-1, c7, 1, 1)
        z = self.classifier[1](self.classifier[0].conv_1(f))
        z = self.classifier[3].conv_1(self.classifier[2](z))
        return z.reshape(-1, t, self.num_classes), carry.out


def input_size(arch: str) -> int:
    return CONFIGS[arch][3]


HEAD_PREFIX = "classifier.3."

"""R(2+1)D-34 as published with IG-65M pretraining (moabitcoin/ig65m-pytorch, converted from
Facebook's VMZ Caffe2 models), so that its checkpoints load key for key:

* ``r2plus1d_34_clip8_ig65m_from_scratch-9bae36ae.pth``: 8x112x112, 487 IG-65M classes;
* ``r2plus1d_34_clip32_ig65m_from_scratch-449a7af9.pth``: 32x112x112, 359 IG-65M classes;
* ``r2plus1d_34_clip8_ft_kinetics_from_ig65m-0aa0550b.pth`` and
  ``r2plus1d_34_clip32_ft_kinetics_from_ig65m-ade133f1.pth``: their Kinetics-400 fine-tunes.

(Class counts as ig65m-pytorch's model functions assert them for the pretrained heads. No label map exists for
the IG-65M heads; the Kinetics fine-tunes use the 400 Kinetics classes.)

It is torchvision's VideoResNet with R(2+1)D blocks, [3, 4, 6, 3], with two differences from
what torchvision's ``r2plus1d_18`` formula would build, both of which change the numbers:

* the second (2+1)D convolution of the first block of layers 2-4 has 288, 576 and 1152 mid
  planes (Caffe2's count from the block's own width; torchvision's formula from the block's
  input gives 230, 460 and 921), see facebookresearch/VMZ#89 and pytorch/vision#1265;
* every BatchNorm has eps 1e-3 (Caffe2's), not 1e-5.

The first difference changes shapes, so a torchvision-style checkpoint is refused with the first
key that does not fit; the second does not, which is why this module builds the model itself
rather than letting a user load these weights into an ``r2plus1d_18``-style network.

Preprocessing (ig65m-pytorch's ``extract``): RGB, short side 128, centre crop 112, x/255 then
Kinetics mean (0.43216, 0.394666, 0.37645) and std (0.22803, 0.22145, 0.216989).
"""

from __future__ import annotations

import os
import re
from typing import Optional, Sequence

from actionnet.errors import ModelError
from actionnet.spec import ModelSpec, read_labels

ARCH = "r2plus1d_34"
MEAN = (0.43216, 0.394666, 0.37645)
STD = (0.22803, 0.22145, 0.216989)
BN_EPS = 1e-3
# ig65m-pytorch also sets BatchNorm momentum 0.9, Caffe2's number in PyTorch's opposite
# convention (running statistics would follow the last batch alone); it never matters at inference
# and is wrong for fine-tuning, so the model keeps PyTorch's 0.1.
FIRST_BLOCK_MIDPLANES = {"layer2": 288, "layer3": 576, "layer4": 1152}
CLIP_LENGTHS = (8, 32)


def r2plus1d_34(num_classes: int):
    from torch import nn
    from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, R2Plus1dStem, VideoResNet

    model = VideoResNet(block=BasicBlock, conv_makers=[Conv2Plus1D] * 4, layers=[3, 4, 6, 3], stem=R2Plus1dStem,
                        num_classes=num_classes)
    for name, mid in FIRST_BLOCK_MIDPLANES.items():
        width = {"layer2": 128, "layer3": 256, "layer4": 512}[name]
        getattr(model, name)[0].conv2[0] = Conv2Plus1D(width, width, mid)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.eps = BN_EPS
    return model


def clip_length_of(weights: Optional[str]) -> int:
    """8 or 32 from the published file name (``..._clip32_...``); 8 when the name says nothing."""
    m = re.search(r"clip(8|32)", os.path.basename(weights or ""))
    return int(m.group(1)) if m else 8


def spec(labels: Sequence[str], clip_length: int = 8, size: int = 112) -> ModelSpec:
    resize = int(round(128 * size / 112))
    return ModelSpec(labels=tuple(labels), clip_length=clip_length, height=size, width=size, input_name="frames",
                     output_name="logits", layout="raw_nthwc", color_order="RGB", resize_mode="short_side",
                     resize_size=(resize,), value_scale=255.0, mean=MEAN, std=STD, arch=ARCH, output_kind="logits")


def export_r2plus1d_34(weights: Optional[str], output: str, labels: Optional[str] = None,
                       clip_length: Optional[int] = None, size: Optional[int] = None, allow_pickle: bool = False,
                       check_parity: bool = True, log=None):
    """An ig65m-pytorch checkpoint (None: random weights) -> self-describing ONNX (parity report included)."""
    from actionnet.models import LABELS

    from .action import weights_metadata
    from .checkpoints import check_arch, head_classes, load_strict, read_state_dict
    from .onnx_export import export_clip_model

    state = n = None
    if weights:
        state = read_state_dict(weights, allow_pickle=allow_pickle)
        check_arch(state, ARCH, weights)
        n = head_classes(state, "fc.weight")
    if labels:
        label_list = read_labels(labels)
    elif n in (400, None):
        label_list = read_labels(os.path.join(LABELS, "kinetics400.txt"))
    else:
        raise ModelError(f"{weights} has {n} classes in its head and no label map is published for the IG-65M "
                         "heads; pass --labels with one line per class")
    if n is not None and n != len(label_list):
        raise ModelError(f"{weights} has {n} classes in its head (fc.weight), but the labels have {len(label_list)}; "
                         "pass --labels with one line per class")
    model = r2plus1d_34(len(label_list))
    if state is not None:
        load_strict(model, state, weights, what=ARCH)
    s = spec(label_list, clip_length or clip_length_of(weights), size or 112)
    return export_clip_model(model, s, output, log=log, check_parity=check_parity,
                             extra_metadata=weights_metadata(weights))

"""3D ResNet-18/34 as in kenshohara/3D-ResNets-PyTorch (``models/resnet.py``), so that its
checkpoints (``r3d18_KM_200ep.pth``, ``r3d34_KM_200ep.pth``: Kinetics-700 + Moments in Time,
1039 classes) load key for key: conv1 7x7x7 stride (1,2,2) padding 3, max-pool kept,
BasicBlocks, shortcut type B (1x1x1 conv + BN), global average pool, fc.
"""

from __future__ import annotations

import torch
from torch import nn

DEPTHS = {"resnet-18": [2, 2, 2, 2], "resnet-34": [3, 4, 6, 3]}


def _conv3(cin, cout, stride=1):
    return nn.Conv3d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = _conv3(cin, planes, stride)
        self.bn1 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3(planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet3D(nn.Module):
    def __init__(self, layers, num_classes=1039, widths=(64, 128, 256, 512), conv1_t_size=7, conv1_t_stride=1):
        super().__init__()
        self.in_planes = widths[0]
        self.conv1 = nn.Conv3d(3, widths[0], kernel_size=(conv1_t_size, 7, 7), stride=(conv1_t_stride, 2, 2),
                               padding=(conv1_t_size // 2, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(widths[0], layers[0], 1)
        self.layer2 = self._make_layer(widths[1], layers[1], 2)
        self.layer3 = self._make_layer(widths[2], layers[2], 2)
        self.layer4 = self._make_layer(widths[3], layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.in_planes != planes:
            downsample = nn.Sequential(nn.Conv3d(self.in_planes, planes, kernel_size=1, stride=stride, bias=False),
                                       nn.BatchNorm3d(planes))
        layers = [BasicBlock(self.in_planes, planes, stride, downsample)]
        self.in_planes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet3d(arch: str, num_classes: int = 1039) -> ResNet3D:
    if arch not in DEPTHS:
        raise ValueError(f"unknown 3D ResNet {arch!r}; choose one of {', '.join(DEPTHS)}")
    return ResNet3D(DEPTHS[arch], num_classes)

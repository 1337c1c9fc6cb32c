"""Xception (Chollet, CVPR 2017) in the layout FaceForensics++ and DeepfakeBench checkpoints use.

The parameter names are part of the file format: entry convolutions ``conv1``/``conv2`` with
``bn1``/``bn2``; twelve residual blocks whose separable convolutions sit in ``block{i}.rep.{j}``
(depthwise ``conv1``, then ``pointwise``) with an optional 1x1 ``skip``/``skipbn``; exit separable
convolutions ``conv3``/``conv4`` with ``bn3``/``bn4``; a linear head ``last_linear``. DeepfakeBench
also builds an ``adjust_channel`` branch and saves it with every checkpoint although its plain
Xception never runs it: it is kept so that strict loading accounts for every tensor.
"""

from __future__ import annotations

import torch
from torch import nn


class SeparableConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int = 3, padding: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cin, kernel, 1, padding, groups=cin, bias=False)  # depthwise
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.conv1(x))


class Block(nn.Module):
    """``reps`` x (ReLU, separable conv, BN), a strided max-pool when ``stride`` > 1, plus a
    shortcut (1x1 conv + BN when the shape changes). Indices in ``rep`` follow the published
    layout: with ``start_with_relu`` every unit is ReLU at 3k, conv at 3k+1, BN at 3k+2;
    without it the first ReLU is absent and everything shifts down by one."""

    def __init__(self, cin: int, cout: int, reps: int, stride: int = 1, start_with_relu: bool = True, grow_first: bool = True):
        super().__init__()
        if cout != cin or stride != 1:
            self.skip: nn.Module | None = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
            self.skipbn: nn.Module | None = nn.BatchNorm2d(cout)
        else:
            self.skip = self.skipbn = None
        widths = [(cin, cout)] + [(cout, cout)] * (reps - 1) if grow_first else [(cin, cin)] * (reps - 1) + [(cin, cout)]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(widths):
            # the first ReLU must not run in place: the shortcut still needs the block's input
            layers += [nn.ReLU(inplace=i > 0), SeparableConv2d(a, b), nn.BatchNorm2d(b)]
        if not start_with_relu:
            layers = layers[1:]
        if stride != 1:
            layers.append(nn.MaxPool2d(3, stride, 1))
        self.rep = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.skipbn(self.skip(x)) if self.skip is not None else x
        return self.rep(x) + shortcut


class Xception(nn.Module):
    """Input N x 3 x H x W (DeepfakeBench: 256 px, (x - 0.5) / 0.5); output N x ``num_classes`` logits."""

    def __init__(self, num_classes: int = 2):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, 2, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.block1 = Block(64, 128, 2, 2, start_with_relu=False)
        self.block2 = Block(128, 256, 2, 2)
        self.block3 = Block(256, 728, 2, 2)
        for i in range(4, 12):  # middle flow
            setattr(self, f"block{i}", Block(728, 728, 3, 1))
        self.block12 = Block(728, 1024, 2, 2, grow_first=False)
        self.conv3 = SeparableConv2d(1024, 1536)
        self.bn3 = nn.BatchNorm2d(1536)
        self.conv4 = SeparableConv2d(1536, 2048)
        self.bn4 = nn.BatchNorm2d(2048)
        self.last_linear = nn.Linear(2048, num_classes)
        self.adjust_channel = nn.Sequential(nn.Conv2d(2048, 512, 1, 1), nn.BatchNorm2d(512), nn.ReLU(inplace=True))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        for i in range(1, 13):
            x = getattr(self, f"block{i}")(x)
        x = self.relu(self.bn3(self.conv3(x)))
        return self.bn4(self.conv4(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.features(x))
        return self.last_linear(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

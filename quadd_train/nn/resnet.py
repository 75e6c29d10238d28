"""ResNet-18 with batch norm ("ResNet18BN"), as the dataset-distillation literature
evaluates transfer with it.

The network of the DC/DSA/DM reference code (VICO-UoE/DatasetCondensation, ``ResNet``
with ``BasicBlock`` and ``norm='batchnorm'``): a 3x3 stem of 64 channels (stride 1, no
max pool, the CIFAR form), four stages of two basic blocks (64, 128, 256, 512 channels;
stride 1, 2, 2, 2; 1x1 projection shortcuts), global average pooling and a linear
classifier over 512 features. The reference pools with a fixed 4x4 window, the size of
the last map at 28x28 and 32x32; an adaptive pool computes the same there and also
serves other sizes. Batch norm needs more than one value per channel in a training
batch, so the last map must be at least 2x2: images of at least 16x16 (8x8 digits are
refused).

>>> import torch
>>> net = ResNet18BN(3, 10, (32, 32))
>>> net.num_features, net(torch.zeros(2, 3, 32, 32)).shape
(512, torch.Size([2, 10]))
>>> ResNet18BN(1, 10, (8, 8))
Traceback (most recent call last):
...
ValueError: resnet18 needs images of at least 16x16, not 8x8
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BasicBlock", "ResNet18BN"]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity or 1x1 projection shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        # Not in place: DM and GM backpropagate into the input samples.
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18BN(nn.Module):
    """The reference ResNet-18 (batch norm) for ``channel`` x ``im_size`` images."""

    def __init__(self, channel: int, num_classes: int, im_size: tuple[int, int]) -> None:
        super().__init__()
        self.channel, self.num_classes = int(channel), int(num_classes)
        self.im_size = (int(im_size[0]), int(im_size[1]))
        if min(self.im_size) < 16:
            raise ValueError(f"resnet18 needs images of at least 16x16, not "
                             f"{self.im_size[0]}x{self.im_size[1]}")
        layers: list[nn.Module] = [
            nn.Conv2d(self.channel, 64, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(64), nn.ReLU()]
        c_in = 64
        for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1)]
            c_in = c_out
        layers.append(nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*layers)
        self.num_features = 512
        self.classifier = nn.Linear(self.num_features, self.num_classes)

    def embed(self, x: Tensor) -> Tensor:
        """Pooled features before the classifier, shape ``(B, 512)``."""
        return torch.flatten(self.features(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.embed(x))

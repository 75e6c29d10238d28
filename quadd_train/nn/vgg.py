"""VGG-11 with instance norm, as the dataset-distillation literature evaluates transfer.

The network of the DC/DSA/DM reference code (VICO-UoE/DatasetCondensation, ``VGG11``):
eight 3x3 convolutions (64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M; M a 2x2
max pool), each followed by instance norm (``GroupNorm(c, c)``, as the ConvNet) and
ReLU, then a linear classifier. One-channel inputs are padded by 3 in the first
convolution (28x28 MNIST then reaches the 32x32 layout). Five pools need at least 32
pixels per side after the first convolution: 32x32 images, or 28x28 with one channel;
smaller images (8x8 digits) are refused. Larger ones flatten the last map.

>>> import torch
>>> net = VGG11(3, 10, (32, 32))
>>> net.num_features, net(torch.zeros(2, 3, 32, 32)).shape
(512, torch.Size([2, 10]))
>>> VGG11(1, 10, (28, 28)).num_features
512
>>> VGG11(1, 10, (8, 8))
Traceback (most recent call last):
...
ValueError: vgg11 needs images of at least 32x32 (28x28 with one channel), not 8x8
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["VGG11"]

_CFG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG11(nn.Module):
    """The reference VGG-11 (instance norm) for ``channel`` x ``im_size`` images."""

    def __init__(self, channel: int, num_classes: int, im_size: tuple[int, int]) -> None:
        super().__init__()
        self.channel, self.num_classes = int(channel), int(num_classes)
        self.im_size = (int(im_size[0]), int(im_size[1]))
        pad = 3 if self.channel == 1 else 1
        h, w = (s + 2 * pad - 2 for s in self.im_size)
        if min(h, w) < 32:
            raise ValueError(f"vgg11 needs images of at least 32x32 (28x28 with one "
                             f"channel), not {self.im_size[0]}x{self.im_size[1]}")
        layers: list[nn.Module] = []
        c_in = self.channel
        for i, c in enumerate(_CFG):
            if c == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            assert isinstance(c, int)
            # Not in-place activations: DM and GM backpropagate into the input samples.
            layers += [nn.Conv2d(c_in, c, kernel_size=3, padding=pad if i == 0 else 1),
                       nn.GroupNorm(c, c, affine=True), nn.ReLU()]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.num_features = 512 * (h // 32) * (w // 32)
        self.classifier = nn.Linear(self.num_features, self.num_classes)

    def embed(self, x: Tensor) -> Tensor:
        """Flattened features before the classifier, shape ``(B, num_features)``."""
        return torch.flatten(self.features(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.embed(x))

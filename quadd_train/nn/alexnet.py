"""AlexNet as the dataset-distillation literature evaluates transfer with it.

The network of the DC/DSA/DM reference code (VICO-UoE/DatasetCondensation, ``AlexNet``):
five convolutions (128, 192, 256, 192, 192 channels; 5x5, 5x5, then 3x3) with ReLU and
three 2x2 max pools, then one linear classifier. One-channel inputs are padded by 4 in
the first convolution (28x28 MNIST then reaches the 32x32 layout, 192x4x4 features).
Other sizes work as long as three pools leave a feature map: the classifier is sized
from the map that results (8x8 digits: 192x1x1).

>>> import torch
>>> net = AlexNet(1, 10, (28, 28))
>>> net.num_features, net(torch.zeros(2, 1, 28, 28)).shape
(3072, torch.Size([2, 10]))
>>> AlexNet(3, 10, (32, 32)).num_features, AlexNet(1, 10, (8, 8)).num_features
(3072, 192)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["AlexNet"]


class AlexNet(nn.Module):
    """The reference AlexNet for ``channel`` x ``im_size`` images."""

    def __init__(self, channel: int, num_classes: int, im_size: tuple[int, int]) -> None:
        super().__init__()
        self.channel, self.num_classes = int(channel), int(num_classes)
        self.im_size = (int(im_size[0]), int(im_size[1]))
        pad = 4 if self.channel == 1 else 2
        h, w = (s + 2 * pad - 4 for s in self.im_size)  # after the first 5x5 convolution
        if min(h, w) // 8 < 1:
            raise ValueError(f"alexnet: images of {self.im_size[0]}x{self.im_size[1]} are "
                             "too small for its three 2x2 pools")
        # Not in-place activations: DM and GM backpropagate into the input samples.
        self.features = nn.Sequential(
            nn.Conv2d(self.channel, 128, kernel_size=5, padding=pad), nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(128, 192, kernel_size=5, padding=2), nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(192, 256, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 192, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(192, 192, kernel_size=3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2, 2),
        )
        self.num_features = 192 * (h // 8) * (w // 8)
        self.classifier = nn.Linear(self.num_features, self.num_classes)

    def embed(self, x: Tensor) -> Tensor:
        """Flattened features before the classifier, shape ``(B, num_features)``."""
        return torch.flatten(self.features(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.embed(x))

"""A multilayer perceptron for feature-vector samples (beam management and other tabular
data): ``depth`` blocks of linear -> layer norm -> ReLU, then a linear classifier.

Layer norm rather than batch norm, for the same reason the ConvNet uses instance norm:
it behaves identically on any batch size, including one synthetic sample per class.

>>> import torch
>>> net = MLP(8, 32, width=16, depth=2)
>>> net(torch.zeros(5, 8)).shape, net.embed(torch.zeros(5, 8)).shape
(torch.Size([5, 32]), torch.Size([5, 16]))
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["MLP"]


class MLP(nn.Module):
    """MLP-``depth`` over samples of any shape (flattened to ``in_features``)."""

    def __init__(self, in_features: int, num_classes: int, width: int = 128,
                 depth: int = 3) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self.in_features = int(in_features)
        self.num_classes = int(num_classes)
        layers: list[nn.Module] = []
        d_in = self.in_features
        for _ in range(depth):
            # Not in-place activations: DM and GM backpropagate into the input samples.
            layers += [nn.Linear(d_in, width), nn.LayerNorm(width), nn.ReLU()]
            d_in = width
        self.features = nn.Sequential(*layers)
        self.num_features = int(width)
        self.classifier = nn.Linear(self.num_features, self.num_classes)

    def embed(self, x: Tensor) -> Tensor:
        """Features before the classifier, shape ``(B, width)``."""
        return self.features(torch.flatten(x, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.embed(x))

"""The ConvNet used throughout the dataset-distillation literature.

Follows the ConvNet of the DC/DSA/DM reference code (VICO-UoE/DatasetCondensation,
convnet): ``depth`` blocks of conv3x3 -> norm -> activation -> 2x2 pooling, then a
linear classifier over the flattened feature map. "instancenorm" is
``GroupNorm(width, width)`` exactly as in the reference, so it behaves identically on
any batch size (including a single synthetic image).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ConvNet"]

_NORMS = ("instancenorm", "batchnorm", "layernorm", "groupnorm", "none")
_POOLINGS = ("avgpooling", "maxpooling", "none")
_ACTS = ("relu", "sigmoid", "leakyrelu")


def _make_norm(norm: str, shape: tuple[int, int, int]) -> nn.Module | None:
    channels = shape[0]
    if norm == "instancenorm":
        return nn.GroupNorm(channels, channels, affine=True)
    if norm == "batchnorm":
        return nn.BatchNorm2d(channels, affine=True)
    if norm == "layernorm":
        return nn.LayerNorm(list(shape), elementwise_affine=True)
    if norm == "groupnorm":
        return nn.GroupNorm(4, channels, affine=True)
    return None


def _make_act(act: str) -> nn.Module:
    if act == "relu":
        # Not in-place: DM backpropagates into the input images through this network.
        return nn.ReLU()
    if act == "sigmoid":
        return nn.Sigmoid()
    return nn.LeakyReLU(negative_slope=0.01)


class ConvNet(nn.Module):
    """ConvNet-``depth`` (default ConvNet-3, width 128, instance norm, average pooling).

    For 1-channel 28x28 inputs the first convolution pads by 3 (28 -> 32), as the
    reference does for MNIST, so MNIST features match the 32x32 layout (2048 features
    at depth 3). Other sizes pad by 1; 8x8 inputs end at a 1x1 map after three pools.
    """

    def __init__(
        self,
        channel: int,
        num_classes: int,
        im_size: tuple[int, int],
        width: int = 128,
        depth: int = 3,
        norm: str = "instancenorm",
        pooling: str = "avgpooling",
        act: str = "relu",
    ) -> None:
        super().__init__()
        if norm not in _NORMS:
            raise ValueError(f"unknown norm {norm!r}; expected one of {_NORMS}")
        if pooling not in _POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; expected one of {_POOLINGS}")
        if act not in _ACTS:
            raise ValueError(f"unknown activation {act!r}; expected one of {_ACTS}")
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self.channel = int(channel)
        self.num_classes = int(num_classes)
        self.im_size = (int(im_size[0]), int(im_size[1]))

        layers: list[nn.Module] = []
        in_ch = self.channel
        h, w = self.im_size
        for d in range(depth):
            pad = 3 if (d == 0 and self.channel == 1 and self.im_size == (28, 28)) else 1
            layers.append(nn.Conv2d(in_ch, width, kernel_size=3, padding=pad))
            h, w = h + 2 * pad - 2, w + 2 * pad - 2
            norm_layer = _make_norm(norm, (width, h, w))
            if norm_layer is not None:
                layers.append(norm_layer)
            layers.append(_make_act(act))
            in_ch = width
            if pooling != "none":
                if h < 2 or w < 2:
                    raise ValueError(
                        f"input {self.im_size} is too small for {depth} pooling blocks"
                    )
                layers.append(
                    nn.AvgPool2d(2, 2) if pooling == "avgpooling" else nn.MaxPool2d(2, 2)
                )
                h, w = h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.feature_shape = (width, h, w)
        self.num_features = width * h * w
        self.classifier = nn.Linear(self.num_features, self.num_classes)

    def embed(self, x: Tensor) -> Tensor:
        """Flattened features before the classifier, shape ``(B, num_features)``."""
        return torch.flatten(self.features(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.embed(x))

"""The networks a set is distilled with and evaluated on, by name.

:func:`build_model` is the one place the objectives and the evaluation protocol turn a
model name and a sample shape into a network; :func:`default_model` picks by the data:
the ConvNet for images ``(C, H, W)``, the MLP for anything else (feature vectors).
Every model has ``embed(x)`` (features before the classifier) and ``forward(x)``.

Cross-architecture evaluation adds the reference networks of the dataset-distillation
literature, for images only: ``alexnet`` (:mod:`.alexnet`), ``vgg11`` (instance norm,
:mod:`.vgg`) and ``resnet18`` (batch norm, :mod:`.resnet`). Their architecture is fixed:
``width`` and ``depth`` shape only the ConvNet and the MLP.

>>> default_model((3, 32, 32)), default_model((8,))
('convnet', 'mlp')
>>> build_model("mlp", (8,), 32, width=16, depth=1)(__import__("torch").zeros(2, 8)).shape
torch.Size([2, 32])
"""

from __future__ import annotations

import math

from torch import nn

from . import MODELS
from .alexnet import AlexNet
from .convnet import ConvNet
from .mlp import MLP
from .resnet import ResNet18BN
from .vgg import VGG11

__all__ = ["MODELS", "build_model", "default_model"]

_IMAGE_MODELS = {"alexnet": AlexNet, "vgg11": VGG11, "resnet18": ResNet18BN}


def default_model(sample_shape: tuple[int, ...]) -> str:
    """The model the data calls for: ``convnet`` for ``(C, H, W)`` images, else ``mlp``."""
    return "convnet" if len(sample_shape) == 3 else "mlp"


def build_model(name: str, sample_shape: tuple[int, ...], num_classes: int, *,
                width: int = 128, depth: int = 3) -> nn.Module:
    """A freshly initialised ``name`` network for samples of ``sample_shape``
    (from torch's global RNG: seed it first for a reproducible network)."""
    shape = tuple(int(s) for s in sample_shape)
    if name == "convnet":
        if len(shape) != 3:
            raise ValueError(f"the ConvNet needs image samples (C, H, W), not shape {shape}; "
                             "use --model mlp")
        return ConvNet(shape[0], num_classes, (shape[1], shape[2]), width=width, depth=depth)
    if name == "mlp":
        return MLP(math.prod(shape), num_classes, width=width, depth=depth)
    if name in _IMAGE_MODELS:
        if len(shape) != 3:
            raise ValueError(f"{name} needs image samples (C, H, W), not shape {shape}; "
                             "use --model mlp")
        return _IMAGE_MODELS[name](shape[0], num_classes, (shape[1], shape[2]))
    raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")

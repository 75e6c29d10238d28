"""The ``none`` quantizer: samples pass unchanged and are written as float32.

>>> import torch
>>> q = IdentityQuantizer(num_samples=1, num_channels=1)
>>> x = torch.tensor([[[0.25, -1.5]]])
>>> q(x) is x
True
>>> samples, levels = q.export()
>>> samples.tolist(), levels
([[[0.25, -1.5]]], None)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor, nn

from ..registry import check_options
from .base import Quantizer, register_quantizer

__all__ = ["IdentityQuantizer"]


@register_quantizer("none")
class IdentityQuantizer(Quantizer):
    """No quantization: the unquantized (32-bit float) baseline."""

    name = "none"

    def __init__(self, num_samples: int = 0, num_channels: int = 1) -> None:
        nn.Module.__init__(self)
        self.bits = 32
        self.group = "tensor"
        self.num_samples = int(num_samples)
        self.num_channels = int(num_channels)
        self.num_levels = 0
        self.num_groups = 0
        self._last_x: Tensor | None = None

    @classmethod
    def build(cls, bits: int, group: str, num_samples: int, num_channels: int,
              **options: Any) -> IdentityQuantizer:
        """Bits and group do not apply: the samples are written as they are."""
        check_options("quantizer", cls.name, cls.__init__, options, skip=3)
        return cls(num_samples, num_channels)

    def forward(self, x: Tensor) -> Tensor:
        self._last_x = x.detach().float().clone()
        return x

    def export(self, x: Tensor | None = None) -> tuple[np.ndarray, None]:  # type: ignore[override]
        """``(float32 samples, None)`` -- the codec's ``bits=32`` convention."""
        if x is not None:
            self._last_x = x.detach().float().clone()
        if self._last_x is None:
            raise RuntimeError("export() without samples needs a forward pass first")
        return self._last_x.cpu().numpy().astype(np.float32, copy=True), None


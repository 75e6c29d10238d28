"""Full-size pixels: the stored tensor is the samples themselves.

>>> import torch
>>> p = Pixels.from_real(torch.ones(2, 1, 4, 4))
>>> p.stored().shape
torch.Size([2, 1, 4, 4])
>>> p.decode(p.stored()) is p.stored()
True
>>> p.file_fields()
{'upsample': 1, 'upsample_filter': 'nearest'}
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from .base import Parameterization, register_parameterization

__all__ = ["Pixels"]


@register_parameterization("pixels")
class Pixels(Parameterization):
    """Samples stored as they are seen: nothing to decode, no header fields of its own."""

    name = "pixels"

    @classmethod
    def init_stored(cls, x: Tensor, **options: Any) -> Tensor:
        return x

    def decode(self, stored: Tensor) -> Tensor:
        return stored

    def file_fields(self) -> dict[str, Any]:
        return {"upsample": 1, "upsample_filter": "nearest"}

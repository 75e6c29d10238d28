"""Feature vectors: ``(N, F)`` samples stored as ``(N, F, 1)``, one channel per feature.

The file's channel count is ``shape[0]`` for samples of two or more dimensions
(FORMAT.md section 3), so the ``(F, 1)`` stored shape gives every feature its own
channel: its own denormalization (the dataset's per-feature statistics) and, with
``group="channel"``, its own codebook; ``group="tensor"`` shares one. The stored tensor
is exactly what the quantizer quantizes and the file holds; decoding drops the unit axis.
Vectors are never resized: ``upsample`` is for images.

>>> import torch
>>> v = Vectors.from_real(torch.arange(6.0).reshape(2, 3))
>>> v.stored().shape
torch.Size([2, 3, 1])
>>> v.decode(v.stored()).tolist()
[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
>>> v.file_fields()
{'upsample': 1, 'upsample_filter': 'nearest'}
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from .base import Parameterization, register_parameterization

__all__ = ["Vectors"]


@register_parameterization("vectors")
class Vectors(Parameterization):
    """``(N, F, 1)`` stored features, decoded to the ``(N, F)`` vectors the networks see."""

    name = "vectors"

    def __init__(self, stored: Tensor) -> None:
        if stored.dim() != 3 or stored.shape[-1] != 1:
            raise ValueError(f"stored feature vectors have shape (N, F, 1), got "
                             f"{tuple(stored.shape)}")
        super().__init__(stored)

    @classmethod
    def init_stored(cls, x: Tensor, **options: Any) -> Tensor:
        if x.dim() != 2:
            raise ValueError(f"feature vectors have shape (N, F), got {tuple(x.shape)}")
        return x.unsqueeze(-1)

    def decode(self, stored: Tensor) -> Tensor:
        return stored.squeeze(-1)

    def file_fields(self) -> dict[str, Any]:
        return {"upsample": 1, "upsample_filter": "nearest"}

"""Pixels stored at ``1/f`` size on each side and enlarged as a reader does (FORMAT.md 7).

A budget then holds about ``f**2`` as many samples. ``upsample_filter="nearest"`` repeats
every stored value into an ``f x f`` block (7a); ``"linear"`` is bilinear interpolation
built from the codec's own taps (7b), so the networks see the reader's float32 bits.

>>> import numpy as np, torch
>>> from quadd_codec import upsample
>>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
>>> r = Resized.from_real(x, upsample=2)
>>> r.stored().tolist()
[[[[2.5, 4.5], [10.5, 12.5]]]]
>>> r.decode(r.stored())[0, 0, 0].tolist()
[2.5, 2.5, 4.5, 4.5]
>>> lin = Resized.from_real(x, upsample=2, upsample_filter="linear")
>>> s = lin.stored().detach()
>>> lin.decode(s)[0, 0, 0].tolist()
[2.5, 3.0, 4.0, 4.5]
>>> np.array_equal(lin.decode(s).numpy(), upsample(s.numpy(), 2, "linear"))
True
>>> lin.file_fields()
{'upsample': 2, 'upsample_filter': 'linear'}
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from quadd_codec import UPSAMPLE_FILTERS, linear_taps

from .base import Parameterization, register_parameterization

__all__ = ["Resized"]


def _linear_axis(x: Tensor, index: Tensor, weight: Tensor, dim: int) -> Tensor:
    """FORMAT.md 7b along one axis: ``w0 * x[i0] + w1 * x[i1]`` with the codec's taps.

    Separate multiplies and an add, as the reader computes them, so an eager float32
    run gives the reader's bits (the taps are the same numbers).
    """
    shape = [1] * x.dim()
    shape[dim] = -1
    w0, w1 = (w.to(x.dtype).view(shape) for w in weight)
    return w0 * x.index_select(dim, index[0]) + w1 * x.index_select(dim, index[1])


@register_parameterization("resized")
class Resized(Parameterization):
    """``(N, C, H/f, W/f)`` stored pixels, decoded to ``(N, C, H, W)``."""

    name = "resized"

    def __init__(self, stored: Tensor, upsample: int = 2,
                 upsample_filter: str = "nearest") -> None:
        super().__init__(stored)
        if int(upsample) < 2:
            raise ValueError(f"resized pixels need an upsample factor of 2 or more, got "
                             f"{upsample}; full-size pixels are the 'pixels' parameterization")
        if upsample_filter not in UPSAMPLE_FILTERS:
            raise ValueError(f"unknown upsample filter {upsample_filter!r}")
        self.upsample = int(upsample)
        self.upsample_filter = upsample_filter
        if upsample_filter == "linear":
            # The taps depend only on the stored size: computed once here, not on every
            # decode, and moved with the module (not saved: they are derived).
            for axis, size in (("h", stored.shape[-2]), ("w", stored.shape[-1])):
                i0, i1, w0, w1 = (torch.from_numpy(a) for a in linear_taps(size, self.upsample))
                self.register_buffer(f"_index_{axis}", torch.stack([i0, i1]), persistent=False)
                self.register_buffer(f"_weight_{axis}", torch.stack([w0, w1]), persistent=False)

    @classmethod
    def init_stored(cls, x: Tensor, upsample: int = 2, **options: Any) -> Tensor:
        # The block average: the stored image whose block-repeated expansion is closest
        # to the real one in L2 (a good start for the linear filter too, which
        # distillation then adapts to).
        return F.avg_pool2d(x, int(upsample))

    def decode(self, stored: Tensor) -> Tensor:
        f = self.upsample
        if self.upsample_filter == "nearest":
            return stored.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1)
        x = _linear_axis(stored, self._index_h, self._weight_h, dim=-2)
        return _linear_axis(x, self._index_w, self._weight_w, dim=-1)

    def file_fields(self) -> dict[str, Any]:
        return {"upsample": self.upsample, "upsample_filter": self.upsample_filter}

"""The uniform quantizer: ``2**bits`` evenly spaced levels over a learnable range.

>>> import torch
>>> q = UniformQuantizer(2, "tensor", num_samples=1, num_channels=1)
>>> x = torch.tensor([[[0.0, 0.2, 0.7, 1.5]]])
>>> q.init_from(x)
>>> codes, levels = q.export(x)
>>> codes.tolist()
[[[0, 0, 1, 3]]]
>>> levels.tolist()
[[0.0, 0.5, 1.0, 1.5]]
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .affine import AffineGridQuantizer
from .base import _to_groups, register_quantizer
from .kernels import MIN_SCALE, UniformSTE

__all__ = ["UniformQuantizer"]


@register_quantizer("uniform")
class UniformQuantizer(AffineGridQuantizer):
    """``2**bits`` evenly spaced levels over a learnable per-group ``[lo, hi]``."""

    name = "uniform"

    def __init__(
        self,
        bits: int,
        group: str,
        num_samples: int,
        num_channels: int,
        soft_round_beta: float | None = None,
    ) -> None:
        super().__init__(bits, group, num_samples, num_channels)
        self.lo = nn.Parameter(torch.full((self.num_groups, 1), -1.0))
        self.hi = nn.Parameter(torch.full((self.num_groups, 1), 1.0))
        self.soft_round_beta = soft_round_beta
        self.register_buffer("grid", torch.arange(self.num_levels, dtype=torch.float32)[None])

    def _fused(self, x: Tensor, bshape: tuple[int, ...], dims: tuple[int, ...]
               ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        return UniformSTE.apply(x, self.lo.float(), self.hi.float(), bshape, dims,
                                 self.num_levels)

    def init_from(self, x: Tensor) -> None:
        xg = _to_groups(x.detach().float(), self.group)
        with torch.no_grad():
            self.lo.copy_(xg.min(dim=1, keepdim=True).values)
            self.hi.copy_(xg.max(dim=1, keepdim=True).values)

    def _affine_params(self) -> tuple[Tensor, Tensor, Tensor]:
        # Sorting the two ends keeps the table ascending even if the optimizer swaps them
        # (one sort: its backward is a single scatter, where minimum + maximum cost a
        # dozen small kernels on a GPU).
        lo, hi = torch.cat([self.lo, self.hi], dim=1).sort(dim=1).values.unbind(1)
        lo, hi = lo[:, None], hi[:, None]
        scale = ((hi - lo) / (self.num_levels - 1)).clamp_min(MIN_SCALE)
        return lo, scale, self.grid

    def _codes(self, xg: Tensor, table: Tensor) -> Tensor:
        offset, scale, _ = self._affine()
        u = ((xg.detach() - offset.detach()) / scale.detach()).round_()
        return u.clamp_(0, self.num_levels - 1).long()


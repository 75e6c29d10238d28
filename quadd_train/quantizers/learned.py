"""The learned quantizer: free per-group levels, initialized by Lloyd-Max.

>>> import torch
>>> q = LearnedQuantizer(1, "tensor", num_samples=1, num_channels=1)
>>> x = torch.tensor([[[0.0, 0.2, 0.9, 1.1]]])
>>> q.init_from(x)
>>> codes, levels = q.export(x)
>>> codes.tolist(), [round(v, 4) for v in levels[0].tolist()]
([[[0, 0, 1, 1]]], [0.1, 1.0])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Quantizer, _to_groups, register_quantizer

__all__ = ["LearnedQuantizer", "lloyd_max"]


@register_quantizer("learned")
class LearnedQuantizer(Quantizer):
    """Free per-group levels, initialized by Lloyd-Max (1-D k-means) on the samples.

    The table is the sorted parameter row, so it is ascending by construction; levels
    are trained through the gather of the nearest-level assignment (each level gets the
    summed gradient of the elements assigned to it).
    """

    name = "learned"

    def __init__(
        self,
        bits: int,
        group: str,
        num_samples: int,
        num_channels: int,
        lloyd_iters: int = 25,
    ) -> None:
        super().__init__(bits, group, num_samples, num_channels)
        self.lloyd_iters = lloyd_iters
        init = torch.linspace(-1.0, 1.0, self.num_levels).expand(self.num_groups, -1)
        self.levels = nn.Parameter(init.clone())

    def init_from(self, x: Tensor) -> None:
        xg = _to_groups(x.detach().float(), self.group).contiguous()
        levels = lloyd_max(xg, self.num_levels, self.lloyd_iters)
        with torch.no_grad():
            self.levels.copy_(levels)

    def table(self) -> Tensor:
        return torch.sort(self.levels, dim=1).values


def lloyd_max(xg: Tensor, num_levels: int, iters: int = 25) -> Tensor:
    """Per-row 1-D k-means: ``(G, M)`` samples -> ``(G, L)`` sorted levels.

    Not the codec's ``kmeans_levels`` (the ``--post-codebook kmeans`` fit), which gives
    other levels: that one works in float64, starts from the quantiles ``(i + 0.5) / L``,
    stops early once stable and subsamples large groups; this one keeps the samples'
    dtype and device, starts from ``i / (L + 1)`` and runs ``iters`` rounds.
    """
    # Quantile init spreads the levels over the mass.
    q = torch.linspace(0.0, 1.0, num_levels + 2, dtype=xg.dtype, device=xg.device)[1:-1]
    levels = torch.quantile(xg, q, dim=1).T.contiguous()
    g = xg.shape[0]
    for _ in range(iters):
        mids = ((levels[:, :-1] + levels[:, 1:]) * 0.5).contiguous()
        codes = torch.searchsorted(mids, xg)
        sums = torch.zeros(g, num_levels, dtype=xg.dtype, device=xg.device)
        counts = torch.zeros_like(sums)
        sums.scatter_add_(1, codes, xg)
        counts.scatter_add_(1, codes, torch.ones_like(xg))
        levels = torch.where(counts > 0, sums / counts.clamp_min(1), levels)
        levels = torch.sort(levels, dim=1).values
    return levels


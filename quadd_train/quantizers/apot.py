"""The APoT quantizer: additive powers-of-two levels around a learnable centre.

>>> import torch
>>> apot_grid(3).tolist()
[-1.0, -0.5, -0.25, -0.0, 0.0, 0.25, 0.5, 1.0]
>>> q = APoTQuantizer(3, "tensor", num_samples=1, num_channels=1)
>>> x = torch.tensor([[[-2.0, -0.4, 0.1, 2.0]]])
>>> q.init_from(x)
>>> codes, levels = q.export(x)
>>> codes.tolist()
[[[0, 2, 4, 7]]]
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .affine import AffineGridQuantizer
from .base import _to_groups, register_quantizer
from .kernels import MIN_SCALE, APoTSTE

__all__ = ["APoTQuantizer", "apot_grid"]


def _apot_magnitudes(m: int) -> list[float]:
    """``2**m`` distinct magnitudes in ``[0, 1]`` built as additive powers of two.

    APoT (Li et al., ICLR 2020) writes a level as a sum of ``n`` terms, each term
    either 0 or one power of two taken from its own interleaved set of exponents, so
    levels are dense near 0 yet without the empty tail of plain powers-of-two. The paper
    fixes 2 bits per term; we use ``ceil(m/2)`` terms of 2 bits (one 1-bit term when
    ``m`` is odd) and deal exponents out round-robin, which reproduces the reference
    ``build_power_value`` for m = 2, 4, 6 and extends it to every m.
    """
    if m == 0:
        return [0.0]
    n_terms = (m + 1) // 2
    term_bits = [2] * (m // 2) + ([1] if m % 2 else [])
    capacity = [2**k - 1 for k in term_bits]
    terms: list[list[float]] = [[0.0] for _ in range(n_terms)]
    exponent = 1
    while any(len(terms[i]) - 1 < capacity[i] for i in range(n_terms)):
        for i in range(n_terms):
            if len(terms[i]) - 1 < capacity[i]:
                terms[i].append(2.0**-exponent)
                exponent += 1
    values = {0.0}
    for term in terms:
        values = {v + t for v in values for t in term}
    out = sorted(values)
    assert len(out) == 2**m, (m, len(out))
    top = out[-1]
    return [v / top for v in out]


def apot_grid(bits: int) -> Tensor:
    """Sorted signed APoT grid in ``[-1, 1]`` with exactly ``2**bits`` entries.

    One bit is the sign and ``bits - 1`` bits the APoT magnitude, as in APoT's signed
    weight quantizer. +0 and -0 are the same value, so for ``bits >= 2`` the grid holds
    ``2**bits - 1`` distinct levels and 0 appears twice (a wasted code, the price of a
    symmetric grid with an exact zero). ``bits == 1`` is ``{-1, +1}``.
    """
    if not 1 <= bits <= 8:
        raise ValueError(f"APoT bits must be in 1..8, got {bits}")
    if bits == 1:
        return torch.tensor([-1.0, 1.0])
    mags = _apot_magnitudes(bits - 1)
    grid = sorted([-v for v in mags] + mags)
    return torch.tensor(grid, dtype=torch.float32)


@register_quantizer("apot")
class APoTQuantizer(AffineGridQuantizer):
    """Additive powers-of-two levels ``center + alpha * grid`` (APoT, Li et al. 2020).

    ``alpha`` is APoT's learnable clipping threshold (trained with the reparameterized
    clipping function gradient); ``center`` is a learnable per-group offset, needed
    because normalized pixels are not centred on 0 the way network weights are.
    """

    name = "apot"
    # On two CPU cores its fused step measured 0.8-0.9x the generic one on 160 CIFAR-sized
    # samples (the element-wise passes cost more than the ops saved; bench/quantizer_step).
    _fused_on_cpu = False

    def __init__(self, bits: int, group: str, num_samples: int, num_channels: int) -> None:
        super().__init__(bits, group, num_samples, num_channels)
        self.center = nn.Parameter(torch.zeros(self.num_groups, 1))
        self.alpha = nn.Parameter(torch.ones(self.num_groups, 1))
        self.register_buffer("grid", apot_grid(self.bits)[None])
        # The fused path's decision thresholds, in grid units (derived, not saved).
        self.register_buffer("mids", (self.grid[0, :-1] + self.grid[0, 1:]) * 0.5,
                             persistent=False)

    def _fused(self, x: Tensor, bshape: tuple[int, ...], dims: tuple[int, ...]
               ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        return APoTSTE.apply(x, self.center.float(), self.alpha.float(), self.grid[0],
                              self.mids, bshape, dims)

    def init_from(self, x: Tensor) -> None:
        # Center at the midrange, then pick the clipping threshold minimizing the
        # quantization MSE over a few candidates (APoT initializes alpha from the data
        # too; a bad alpha leaves most levels unused).
        xg = _to_groups(x.detach().float(), self.group)
        lo = xg.min(dim=1, keepdim=True).values
        hi = xg.max(dim=1, keepdim=True).values
        center = (lo + hi) / 2
        half = ((hi - lo) / 2).clamp_min(MIN_SCALE)
        grid = self.grid.to(xg)
        best_err = torch.full_like(center, float("inf"))
        best_alpha = half.clone()
        for frac in torch.linspace(0.3, 1.0, 15).tolist():
            alpha = half * frac
            table = center + alpha * grid
            mids = ((table[:, :-1] + table[:, 1:]) * 0.5).contiguous()
            codes = torch.searchsorted(mids, xg.contiguous())
            err = (torch.gather(table, 1, codes) - xg).pow(2).mean(dim=1, keepdim=True)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_alpha = torch.where(better, alpha, best_alpha)
        with torch.no_grad():
            self.center.copy_(center)
            self.alpha.copy_(best_alpha)

    def _affine_params(self) -> tuple[Tensor, Tensor, Tensor]:
        return self.center, self.alpha.abs().clamp_min(MIN_SCALE), self.grid


"""Quantizers whose levels are ``offset + scale * grid``: the shared base of uniform and APoT."""

from __future__ import annotations

import numpy as np
from torch import Tensor

from .base import Quantizer, _export_arrays, _group_broadcast, _refuse_nan
from .kernels import GatherSTE

__all__ = ["AffineGridQuantizer"]


class AffineGridQuantizer(Quantizer):
    """Levels ``offset + scale * grid`` with the LSQ/APoT reparameterized gradient.

    Two paths give the same values: the generic one (level table, codes and gather in
    the group layout, :class:`GatherSTE`) and a fused one per subclass (``_fused``: one
    autograd function in the samples' own layout, about half the operations, which is
    the quantizer's cost on a GPU where a fast DM step is bound by kernel launches).
    ``fused``: True or False forces a path; None (the default) takes the fused one where
    it measured faster (``_fused_on_cpu``, and always on a GPU). Soft rounding always
    takes the generic path.
    """

    soft_round_beta: float | None = None
    _in_forward: tuple[Tensor, Tensor, Tensor] | None = None
    grid: Tensor  # (1, L) buffer of the subclass
    _fused_on_cpu = True

    def __init__(self, bits: int, group: str, num_samples: int, num_channels: int) -> None:
        super().__init__(bits, group, num_samples, num_channels)
        self.fused: bool | None = None
        # The fused pass's codes, offset, scale and u (for export), in place of _last.
        self._last_fused: tuple[Tensor, Tensor, Tensor, Tensor] | None = None

    def _affine_params(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(offset (G,1), scale (G,1) > 0, grid (1|G, L))``."""
        raise NotImplementedError

    def _fused(self, x: Tensor, bshape: tuple[int, ...], dims: tuple[int, ...]
               ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``(q, codes, offset, scale, u)`` for float32 samples ``x``, in their layout."""
        raise NotImplementedError

    def _affine(self) -> tuple[Tensor, Tensor, Tensor]:
        return self._in_forward if self._in_forward is not None else self._affine_params()

    def uses_fused(self, x: Tensor) -> bool:
        """Whether a forward pass over ``x`` takes the fused path."""
        if self.soft_round_beta:
            return False
        if self.fused is not None:
            return self.fused
        return x.is_cuda or self._fused_on_cpu

    def forward(self, x: Tensor) -> Tensor:
        if self.uses_fused(x):
            self._check(x)
            bshape, dims = _group_broadcast(self.group, x.shape)
            # float32 throughout, as the generic path's table: the file stores float32.
            q, codes, offset, scale, u = self._fused(x.float(), bshape, dims)
            self._last, self._last_fused = None, (codes, offset, scale, u)
            return q
        self._last_fused = None
        # table, codes and the STE all need offset/scale: derive them once per pass. On
        # a GPU each small op is a kernel launch, and three derivations (with their
        # min/max backward graphs) were most of the quantizer's cost there.
        self._in_forward = self._affine_params()
        try:
            return super().forward(x)
        finally:
            self._in_forward = None

    def _export_last(self) -> tuple[np.ndarray, np.ndarray]:
        if self._last_fused is None:
            return super()._export_last()
        codes, offset, scale, u = self._last_fused
        _refuse_nan(u)  # the last pass's samples, when export() is called without them
        # The generic path's table, from the offset and scale of that forward pass.
        return _export_arrays(codes, offset + scale * self.grid + 0.0)

    def table(self) -> Tensor:
        offset, scale, grid = self._affine()
        return offset + scale * grid

    def _quantize(self, xg: Tensor, table: Tensor, codes: Tensor) -> Tensor:
        offset, scale, _ = self._affine()
        return GatherSTE.apply(xg, table, codes, offset, scale, self.soft_round_beta)


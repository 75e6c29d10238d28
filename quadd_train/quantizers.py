"""Differentiable quantizers for synthetic samples (the "quantizer" piece of QuADD).

Every quantizer owns a float32 level table of shape ``(G, 2**bits)`` (one sorted row per
group: ``"tensor"`` -> 1 row, ``"channel"`` -> one row per channel, ``"sample-channel"``
-> row ``k*C + c``; the codec's group conventions). The forward pass picks a code per
element and computes the output by *gathering from that very table* (a custom autograd
function supplies the surrogate gradient; the forward value is the plain gather). That
is what makes ``export()`` bit-exact: ``levels[g, codes]`` is literally the tensor the
objective saw.

Gradients:

* samples receive a straight-through gradient (not clipped, as APoT does for weights,
  which is what learnable samples are: clipping it would freeze pixels that leave the
  range while the range itself is still being learned);
* level parameters receive the gradient of the gathered value, plus for the affine
  quantizers (``uniform``, ``apot``) the reparameterized clipping term of APoT/LSQ:
  ``d q / d scale = Pi(u) - u`` inside the range and ``+-1`` (the end level) outside.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "GROUPS",
    "QUANTIZERS",
    "APoTQuantizer",
    "IdentityQuantizer",
    "LearnedQuantizer",
    "Quantizer",
    "UniformQuantizer",
    "apot_grid",
    "make_quantizer",
    "num_groups",
    "quantizer_optimizer",
]

GROUPS = ("tensor", "channel", "sample-channel")
QUANTIZERS = ("uniform", "apot", "learned", "none")

# Keeps a collapsed range (constant channel) from dividing by zero.
_MIN_SCALE = 1e-6


def num_groups(group: str, num_samples: int, num_channels: int) -> int:
    """Rows of the level table for ``group`` (the codec's conventions)."""
    if group == "tensor":
        return 1
    if group == "channel":
        return num_channels
    if group == "sample-channel":
        return num_samples * num_channels
    raise ValueError(f"unknown group {group!r}; expected one of {GROUPS}")


def _to_groups(x: Tensor, group: str) -> Tensor:
    """``(N, C, ...)`` -> ``(G, M)`` with row ``g`` holding every element of group ``g``."""
    n, c = x.shape[0], x.shape[1]
    if group == "tensor":
        return x.reshape(1, -1)
    if group == "channel":
        return x.transpose(0, 1).reshape(c, -1)
    if group == "sample-channel":
        return x.reshape(n * c, -1)
    raise ValueError(f"unknown group {group!r}; expected one of {GROUPS}")


def _from_groups(t: Tensor, group: str, shape: torch.Size | tuple[int, ...]) -> Tensor:
    """Inverse of :func:`_to_groups`."""
    if group == "channel":
        n, c = shape[0], shape[1]
        return t.reshape(c, n, *shape[2:]).transpose(0, 1).reshape(shape)
    return t.reshape(shape)


def _group_broadcast(group: str, shape: torch.Size | tuple[int, ...]
                     ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The groups of :func:`_to_groups` without moving data: the shape that views a
    ``(G,)`` vector against ``(N, C, ...)`` samples, and the dimensions summed per group."""
    nd, n, c = len(shape), shape[0], shape[1]
    rest = tuple(range(2, nd))
    if group == "channel":
        return (1, c) + (1,) * (nd - 2), (0, *rest)
    if group == "sample-channel":
        return (n, c) + (1,) * (nd - 2), rest
    if group == "tensor":
        return (1,) * nd, tuple(range(nd))
    raise ValueError(f"unknown group {group!r}; expected one of {GROUPS}")


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




class _GatherSTE(torch.autograd.Function):
    """``q = table[g, codes]`` with a straight-through gradient, in one fused step.

    Equivalent to ``gather(table, codes) + surrogate`` built from autograd primitives
    (the forward value is the plain gather, so export stays bit-exact), but the backward
    is one scatter-add plus a few reductions instead of a chain of elementwise graphs:
    the quantizer costs a few percent of a DM iteration instead of tens of percent.

    Affine quantizers (``offset``/``scale`` given) add the LSQ/APoT reparameterized
    clipping terms inside the range: ``d q/d offset = -s'(u)`` and
    ``d q/d scale = -u s'(u)`` on top of the gathered level's own dependence, with
    ``u = (x - offset) / scale`` and ``s'`` the surrogate slope (1, or soft rounding's).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        xg: Tensor,
        table: Tensor,
        codes: Tensor,
        offset: Tensor | None,
        scale: Tensor | None,
        beta: float | None,
    ) -> Tensor:
        ctx.affine = offset is not None
        ctx.beta = beta
        ctx.num_levels = table.shape[1]
        if ctx.affine:
            ctx.save_for_backward(xg, table, codes, offset, scale)
        else:
            ctx.save_for_backward(codes)
        return torch.gather(table, 1, codes)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        if not ctx.affine:
            (codes,) = ctx.saved_tensors
            g_table = torch.zeros(codes.shape[0], ctx.num_levels, dtype=grad.dtype,
                                  device=grad.device).scatter_add_(1, codes, grad)
            return grad, g_table, None, None, None, None
        xg, table, codes, offset, scale = ctx.saved_tensors
        g_table = torch.zeros_like(table).scatter_add_(1, codes, grad)
        inside = (xg >= table[:, :1]) & (xg <= table[:, -1:])
        u = (xg - offset) / scale
        if ctx.beta:
            r = u - torch.floor(u)
            t = torch.tanh(ctx.beta * (r - 0.5))
            slope = (0.5 * ctx.beta / math.tanh(ctx.beta / 2)) * (1 - t * t)
            g_in = grad * slope
            grad_x = torch.where(inside, g_in, grad)
        else:
            g_in = grad
            grad_x = grad
        g_in = g_in * inside
        g_offset = -g_in.sum(dim=1, keepdim=True)
        g_scale = -(g_in * u).sum(dim=1, keepdim=True)
        return grad_x, g_table, None, g_offset, g_scale, None


def _range_grads(grad: Tensor, x: Tensor, u: Tensor, level: Tensor, lo_end: Tensor,
                 hi_end: Tensor, dims: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Per-group ``(G, 1)`` gradients of ``q = offset + scale * level`` (straight-through
    inside the range) w.r.t. offset and scale, in the samples' own layout.

    Inside ``[lo_end, hi_end]`` (the end levels) the STE makes q follow x, so the range's
    own gradient is the LSQ/APoT term ``level - u`` for the scale and nothing for the
    offset; outside, q is an end level: d/d offset = 1, d/d scale = its grid value."""
    inside = (x >= lo_end) & (x <= hi_end)
    g_in = grad * inside
    g_off = grad - g_in
    g_scale = grad * level - g_in * u
    if dims:
        g_off, g_scale = g_off.sum(dims), g_scale.sum(dims)
    return g_off.reshape(-1, 1), g_scale.reshape(-1, 1)


class _UniformSTE(torch.autograd.Function):
    """The uniform quantizer without soft rounding, in the samples' own layout.

    The same values as the generic path (level table, gather, ``_GatherSTE``) and the
    same gradients up to summation order, but about 40 operations per forward and
    backward instead of about 70: no copies into the group layout and back, no gather, and the level
    parameters' gradient (table, range sort, clamp) written out instead of recorded
    by autograd. On a GPU, where a fast DM step is bound by kernel launches, that count
    is the quantizer's cost.

    ``lo_p``/``hi_p``: ``(G, 1)`` range ends (either order); ``bshape`` views a ``(G,)``
    vector against the samples, and ``dims`` are the sample dimensions summed per group.
    Returns ``q`` and, without gradients, the float codes, the sorted ``lo`` and
    ``scale`` that define the exported table, and ``u``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        lo_p: Tensor,
        hi_p: Tensor,
        bshape: tuple[int, ...],
        dims: tuple[int, ...],
        num_levels: int,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        ends, order = torch.cat([lo_p, hi_p], dim=1).sort(dim=1)
        lo, hi = ends[:, :1], ends[:, 1:]
        raw = (hi - lo) / (num_levels - 1)
        scale = raw.clamp_min(_MIN_SCALE)
        lo_b, scale_b = lo.reshape(bshape), scale.reshape(bshape)
        u = (x - lo_b) / scale_b
        codes = u.round().clamp_(0, num_levels - 1)
        # lo + scale * code: the table's own arithmetic (offset + scale * grid), so q is
        # the table entry bit for bit.
        q = lo_b + scale_b * codes
        ctx.save_for_backward(x, u, codes, lo_b, scale_b, raw, order)
        ctx.dims, ctx.num_levels = dims, num_levels
        ctx.mark_non_differentiable(codes, lo, scale, u)
        # Otherwise autograd fills a zero gradient for each of those outputs before the
        # backward (two of them full-size): kernels that only write zeros.
        ctx.set_materialize_grads(False)
        return q, codes, lo, scale, u

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad: Tensor, *_: Any
    ) -> tuple[Tensor | None, ...]:
        if grad is None:  # gradients are not materialized: q took no part in the loss
            return (None,) * 6
        x, u, codes, lo_b, scale_b, raw, order = ctx.saved_tensors
        top = ctx.num_levels - 1
        g_off, g_scale = _range_grads(grad, x, u, codes, lo_b, lo_b + scale_b * top, ctx.dims)
        # scale = clamp_min((hi - lo) / top), offset = lo; then undo the sort of the ends
        # (two columns: a swap where the sort swapped them).
        g_hi = g_scale * ((raw >= _MIN_SCALE) / top)
        g_lo = g_off - g_hi
        swapped = order[:, :1] == 1
        return (grad, torch.where(swapped, g_hi, g_lo), torch.where(swapped, g_lo, g_hi),
                None, None, None)


# Up to this many thresholds (4 bits), counting comparisons beats a binary search on the
# CPU (measured for nearest_codes and _grid_codes alike).
_MAX_COUNTED = 15


def _count_above(x: Tensor, thresholds: Any) -> Tensor:
    """Per element of ``x``, how many of ``thresholds`` (each broadcastable against it)
    lie strictly below it, as int64."""
    count = torch.zeros(x.shape, dtype=torch.uint8, device=x.device)
    for t in thresholds:
        count += x > t
    return count.long()


def _grid_codes(u: Tensor, mids: Tensor) -> Tensor:
    """Count of ``mids`` (sorted, 1-D) below each value: ``torch.bucketize(u, mids)``.

    On a GPU that is one kernel. On the CPU its per-element binary search measured
    1.7-2.2x slower than counting comparisons with up to 15 thresholds."""
    if u.is_cuda or mids.numel() > _MAX_COUNTED:
        return torch.bucketize(u, mids)
    return _count_above(u, mids.tolist())


class _APoTSTE(torch.autograd.Function):
    """The APoT quantizer in the samples' own layout, as :class:`_UniformSTE` is for the
    uniform one.

    Codes come from the normalized values ``u = (x - center) / scale`` against the
    midpoints of the shared grid (one 1-D threshold vector for all groups), where the
    generic path compares ``x`` with each group's table midpoints in the group layout.
    The two can pick different codes for a value within rounding of a midpoint (both
    are then nearest levels); export is exact either way, since it writes these codes
    and the levels ``center + scale * grid`` that ``q`` was computed from.

    ``center_p``/``alpha_p``: ``(G, 1)`` parameters; ``grid``: ``(L,)``; ``mids``:
    ``(L - 1,)``. Returns ``q`` and, without gradients, the codes, the offset and scale
    of the exported table, and ``u``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        center_p: Tensor,
        alpha_p: Tensor,
        grid: Tensor,
        mids: Tensor,
        bshape: tuple[int, ...],
        dims: tuple[int, ...],
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        # "+ 0.0": a -0.0 centre would make q = -0.0 where the exported level is +0.0.
        offset = center_p + 0.0
        scale = alpha_p.abs().clamp_min(_MIN_SCALE)
        off_b, scale_b = offset.reshape(bshape), scale.reshape(bshape)
        u = (x - off_b) / scale_b
        codes = _grid_codes(u, mids)
        level = grid[codes]
        # offset + scale * grid value: the table's own arithmetic, so q is its entry.
        q = off_b + scale_b * level
        ends = offset + scale * grid[:: grid.numel() - 1]  # the end levels (a view)
        ctx.save_for_backward(x, u, level, ends, alpha_p)
        ctx.bshape, ctx.dims = bshape, dims
        ctx.mark_non_differentiable(codes, offset, scale, u)
        ctx.set_materialize_grads(False)  # no zero gradients for those (see _UniformSTE)
        return q, codes, offset, scale, u

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad: Tensor, *_: Any
    ) -> tuple[Tensor | None, ...]:
        if grad is None:  # as in _UniformSTE
            return (None,) * 7
        x, u, level, ends, alpha_p = ctx.saved_tensors
        lo_end, hi_end = ends[:, :1].reshape(ctx.bshape), ends[:, 1:].reshape(ctx.bshape)
        g_off, g_scale = _range_grads(grad, x, u, level, lo_end, hi_end, ctx.dims)
        # scale = clamp_min(|alpha|): the sign of alpha, nothing below the minimum.
        g_alpha = g_scale * (alpha_p.sign() * (alpha_p.abs() >= _MIN_SCALE))
        return grad, g_off, g_alpha, None, None, None, None


class Quantizer(nn.Module):
    """Base class: level table + nearest-level codes + bit-exact export."""

    name = "base"

    def __init__(self, bits: int, group: str, num_samples: int, num_channels: int) -> None:
        super().__init__()
        if group not in GROUPS:
            raise ValueError(f"unknown group {group!r}; expected one of {GROUPS}")
        self.bits = int(bits)
        self.group = group
        self.num_samples = int(num_samples)
        self.num_channels = int(num_channels)
        self.num_levels = 2**self.bits
        self.num_groups = num_groups(group, num_samples, num_channels)
        self._last: tuple[Tensor, Tensor, torch.Size] | None = None

    # --- subclass hooks -------------------------------------------------------------
    def init_from(self, x: Tensor) -> None:
        """Data-dependent initialization from the initial samples ``(N, C, ...)``."""

    def table(self) -> Tensor:
        """Float32 ``(G, L)`` level table, rows non-decreasing, differentiable."""
        raise NotImplementedError

    def _codes(self, xg: Tensor, table: Tensor) -> Tensor:
        """Nearest level index per element of ``xg`` (``(G, M)``, int64)."""
        mids = ((table[:, :-1] + table[:, 1:]) * 0.5).detach()
        return nearest_codes(xg.detach(), mids, self.bits)

    def _quantize(self, xg: Tensor, table: Tensor, codes: Tensor) -> Tensor:
        """Gathered levels with the straight-through gradient."""
        return _GatherSTE.apply(xg, table, codes, None, None, None)

    # --- public -----------------------------------------------------------------------
    def _check(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected (N, C, ...) samples, got shape {tuple(x.shape)}")
        if x.shape[1] != self.num_channels:
            raise ValueError(f"expected {self.num_channels} channels, got {x.shape[1]}")
        if self.group == "sample-channel" and x.shape[0] != self.num_samples:
            raise ValueError(
                f"sample-channel quantizer built for {self.num_samples} samples, got {x.shape[0]}"
            )

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        xf = x.float()
        xg = _to_groups(xf, self.group)
        # "+ 0.0" turns -0.0 into +0.0, so the gathered value and the exported level
        # are the same bits even after the (zero) surrogate term is added.
        table = self.table().float() + 0.0
        codes = self._codes(xg, table).clamp_(0, self.num_levels - 1)
        q = self._quantize(xg, table, codes)
        self._last = (codes.detach(), table.detach(), x.shape)
        return _from_groups(q, self.group, x.shape)

    def export(self, x: Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(codes uint8 (N, C, ...), levels float32 (G, 2**bits))``.

        With ``x`` the current parameters quantize ``x``; without it, the result of the
        last forward pass is exported. Either way ``levels[g, codes]`` reproduces the
        quantized tensor bit for bit.
        """
        if x is not None:
            _refuse_nan(x)
            with torch.no_grad():
                self.forward(x)
        return self._export_last()

    def _export_last(self) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`export` of the last forward pass."""
        if self._last is None:
            raise RuntimeError("export() without samples needs a forward pass first")
        codes, table, shape = self._last
        return _export_arrays(_from_groups(codes, self.group, shape), table)


def _refuse_nan(x: Tensor) -> None:
    # A NaN sample has no nearest level: each path would file it under some code.
    if torch.isnan(x).any():
        raise ValueError("cannot export NaN samples: the distillation diverged")


def _export_arrays(codes: Tensor, table: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``(codes uint8 (N, C, ...), levels float32 (G, L))`` on the host."""
    codes_np = codes.to(torch.uint8).cpu().numpy()
    levels = table.cpu().numpy().astype(np.float32, copy=True)
    if np.any(np.diff(levels, axis=1) < 0):  # guaranteed by table(); cheap to assert
        raise AssertionError("quantizer produced an unsorted level table")
    return codes_np, levels


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


class _AffineGridQuantizer(Quantizer):
    """Levels ``offset + scale * grid`` with the LSQ/APoT reparameterized gradient.

    Two paths give the same values: the generic one (level table, codes and gather in
    the group layout, :class:`_GatherSTE`) and a fused one per subclass (``_fused``: one
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
        return _GatherSTE.apply(xg, table, codes, offset, scale, self.soft_round_beta)


class UniformQuantizer(_AffineGridQuantizer):
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
        return _UniformSTE.apply(x, self.lo.float(), self.hi.float(), bshape, dims,
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
        scale = ((hi - lo) / (self.num_levels - 1)).clamp_min(_MIN_SCALE)
        return lo, scale, self.grid

    def _codes(self, xg: Tensor, table: Tensor) -> Tensor:
        offset, scale, _ = self._affine()
        u = ((xg.detach() - offset.detach()) / scale.detach()).round_()
        return u.clamp_(0, self.num_levels - 1).long()


class APoTQuantizer(_AffineGridQuantizer):
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
        return _APoTSTE.apply(x, self.center.float(), self.alpha.float(), self.grid[0],
                              self.mids, bshape, dims)

    def init_from(self, x: Tensor) -> None:
        # Center at the midrange, then pick the clipping threshold minimizing the
        # quantization MSE over a few candidates (APoT initializes alpha from the data
        # too; a bad alpha leaves most levels unused).
        xg = _to_groups(x.detach().float(), self.group)
        lo = xg.min(dim=1, keepdim=True).values
        hi = xg.max(dim=1, keepdim=True).values
        center = (lo + hi) / 2
        half = ((hi - lo) / 2).clamp_min(_MIN_SCALE)
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
        return self.center, self.alpha.abs().clamp_min(_MIN_SCALE), self.grid


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


def nearest_codes(xg: Tensor, mids: Tensor, bits: int) -> Tensor:
    """Per-row count of decision thresholds below each value (the nearest level's index).

    ``mids``: ``(G, 2**bits - 1)`` sorted midpoints between levels. Same result as
    ``torch.searchsorted(mids, xg)``, which is what runs on a GPU; on the CPU it picks the
    fastest route (measured): counting comparisons for up to 15 thresholds, one 1-D
    ``bucketize`` per row for few rows.
    """
    mids = mids.contiguous()
    if xg.is_cuda:  # one kernel; the CPU routes below would be dozens of launches
        return torch.searchsorted(mids, xg.contiguous())
    if mids.shape[1] <= _MAX_COUNTED:
        return _count_above(xg, (mids[:, j : j + 1] for j in range(mids.shape[1])))
    if mids.shape[0] <= 16:
        rows = range(mids.shape[0])
        return torch.stack([torch.bucketize(xg[g].contiguous(), mids[g]) for g in rows])
    return torch.searchsorted(mids, xg.contiguous())


def lloyd_max(xg: Tensor, num_levels: int, iters: int = 25) -> Tensor:
    """Per-row 1-D k-means: ``(G, M)`` samples -> ``(G, L)`` sorted levels."""
    q = torch.linspace(0.0, 1.0, num_levels + 2, dtype=xg.dtype, device=xg.device)[1:-1]
    # Quantile init spreads levels over the mass; the endpoints pulled to min/max keep
    # the tails covered.
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


def make_quantizer(
    name: str,
    bits: int,
    group: str = "channel",
    num_samples: int = 0,
    num_channels: int = 1,
    soft_round_beta: float | None = None,
) -> Quantizer:
    """Build a quantizer by name (``uniform``, ``apot``, ``learned``, ``none``)."""
    if name == "none":
        return IdentityQuantizer(num_samples, num_channels)
    if not 1 <= int(bits) <= 8:
        raise ValueError(f"bits must be in 1..8 for quantizer {name!r}, got {bits}")
    if name == "uniform":
        return UniformQuantizer(bits, group, num_samples, num_channels, soft_round_beta)
    if name == "apot":
        return APoTQuantizer(bits, group, num_samples, num_channels)
    if name == "learned":
        return LearnedQuantizer(bits, group, num_samples, num_channels)
    raise ValueError(f"unknown quantizer {name!r}; expected one of {QUANTIZERS}")


def quantizer_optimizer(quant: Quantizer, lr: float) -> torch.optim.Optimizer | None:
    """Adam over the quantizer's trainable parameters (None when it has none).

    On a GPU the fused implementation updates every parameter in one kernel; the default
    one launches a dozen tiny kernels per step, a visible share of a fast DM iteration.
    """
    params = [p for p in quant.parameters() if p.requires_grad]
    if not params:
        return None
    fused = all(p.is_cuda for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused or None)

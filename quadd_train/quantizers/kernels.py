"""The autograd functions behind the quantizers: straight-through gathers and codes.

Each forward pass computes its value as the level table's own arithmetic (a gather, or
``offset + scale * grid value``), so what the objective sees is a table entry bit for bit;
the backward supplies the surrogate gradient:

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

import torch
from torch import Tensor

__all__ = ["MIN_SCALE", "APoTSTE", "GatherSTE", "UniformSTE", "grid_codes", "nearest_codes"]

# Keeps a collapsed range (constant channel) from dividing by zero.
MIN_SCALE = 1e-6


class GatherSTE(torch.autograd.Function):
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


class UniformSTE(torch.autograd.Function):
    """The uniform quantizer without soft rounding, in the samples' own layout.

    The same values as the generic path (level table, gather, ``GatherSTE``) and the
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
        scale = raw.clamp_min(MIN_SCALE)
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
        g_hi = g_scale * ((raw >= MIN_SCALE) / top)
        g_lo = g_off - g_hi
        swapped = order[:, :1] == 1
        return (grad, torch.where(swapped, g_hi, g_lo), torch.where(swapped, g_lo, g_hi),
                None, None, None)


# Up to this many thresholds (4 bits), counting comparisons beats a binary search on the
# CPU (measured for nearest_codes and grid_codes alike).
_MAX_COUNTED = 15


def _count_above(x: Tensor, thresholds: Any) -> Tensor:
    """Per element of ``x``, how many of ``thresholds`` (each broadcastable against it)
    lie strictly below it, as int64."""
    count = torch.zeros(x.shape, dtype=torch.uint8, device=x.device)
    for t in thresholds:
        count += x > t
    return count.long()


def grid_codes(u: Tensor, mids: Tensor) -> Tensor:
    """Count of ``mids`` (sorted, 1-D) below each value: ``torch.bucketize(u, mids)``.

    On a GPU that is one kernel. On the CPU its per-element binary search measured
    1.7-2.2x slower than counting comparisons with up to 15 thresholds."""
    if u.is_cuda or mids.numel() > _MAX_COUNTED:
        return torch.bucketize(u, mids)
    return _count_above(u, mids.tolist())


class APoTSTE(torch.autograd.Function):
    """The APoT quantizer in the samples' own layout, as :class:`UniformSTE` is for the
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
        scale = alpha_p.abs().clamp_min(MIN_SCALE)
        off_b, scale_b = offset.reshape(bshape), scale.reshape(bshape)
        u = (x - off_b) / scale_b
        codes = grid_codes(u, mids)
        level = grid[codes]
        # offset + scale * grid value: the table's own arithmetic, so q is its entry.
        q = off_b + scale_b * level
        ends = offset + scale * grid[:: grid.numel() - 1]  # the end levels (a view)
        ctx.save_for_backward(x, u, level, ends, alpha_p)
        ctx.bshape, ctx.dims = bshape, dims
        ctx.mark_non_differentiable(codes, offset, scale, u)
        ctx.set_materialize_grads(False)  # no zero gradients for those (see UniformSTE)
        return q, codes, offset, scale, u

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad: Tensor, *_: Any
    ) -> tuple[Tensor | None, ...]:
        if grad is None:  # as in UniformSTE
            return (None,) * 7
        x, u, level, ends, alpha_p = ctx.saved_tensors
        lo_end, hi_end = ends[:, :1].reshape(ctx.bshape), ends[:, 1:].reshape(ctx.bshape)
        g_off, g_scale = _range_grads(grad, x, u, level, lo_end, hi_end, ctx.dims)
        # scale = clamp_min(|alpha|): the sign of alpha, nothing below the minimum.
        g_alpha = g_scale * (alpha_p.sign() * (alpha_p.abs() >= MIN_SCALE))
        return grad, g_off, g_alpha, None, None, None, None


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


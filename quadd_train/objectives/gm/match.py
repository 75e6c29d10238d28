"""The gradient distance of DC/DSA (Zhao et al., ICLR 2021; the reference's ``match_loss``
with ``dis_metric="ours"``).

Each parameter's gradient is compared per output unit: a weight of shape ``(out, ...)``
is flattened to ``(out, rest)`` and every row contributes ``1 - cos`` between the real
and the synthetic gradient's row. One-dimensional parameters (biases, norm scales)
contribute nothing, as in the reference. The distance is shape-generic: it serves a
ConvNet's 4-D kernels and an MLP's 2-D weights alike.

>>> import torch
>>> g = [torch.ones(3, 2, 2, 2), torch.ones(4, 5), torch.ones(4)]
>>> round(float(gradient_distance(g, g)), 4)  # identical gradients
0.0
>>> flipped = [-t for t in g]
>>> round(float(gradient_distance(g, flipped)), 4)  # every row opposite: 2 per row
14.0
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["EPS", "gradient_distance", "layer_distance"]

EPS = 1e-6  # the reference's guard against a zero norm


def layer_distance(g_real: Tensor, g_syn: Tensor) -> Tensor:
    """``sum over output units of 1 - cos(g_real[unit], g_syn[unit])``; 0 for a 1-D
    parameter."""
    if g_real.dim() <= 1:
        return g_syn.new_zeros(())
    a = g_real.reshape(g_real.shape[0], -1)
    b = g_syn.reshape(g_syn.shape[0], -1)
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1) + EPS)
    return (1 - cos).sum()


def gradient_distance(g_real: Sequence[Tensor], g_syn: Sequence[Tensor]) -> Tensor:
    """The sum of :func:`layer_distance` over a network's parameters (same order)."""
    if len(g_real) != len(g_syn):
        raise ValueError(f"{len(g_real)} real gradients against {len(g_syn)} synthetic")
    total = g_syn[0].new_zeros(()) if g_syn else torch.zeros(())
    for a, b in zip(g_real, g_syn, strict=True):
        total = total + layer_distance(a, b)
    return total

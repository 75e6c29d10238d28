"""The Quantizer base class, its registry, and the group layout in torch.

Groups follow the codec (``quadd_codec.codebook``): ``"tensor"`` -> 1 level table,
``"channel"`` -> one per channel, ``"sample-channel"`` -> row ``k*C + c`` for channel
``c`` of sample ``k``. The helpers here move ``(N, C, ...)`` samples into and out of the
``(G, M)`` group layout with autograd intact; the codec's own are numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from quadd_codec import GROUPS
from quadd_codec.rules import group_count

from ..registry import Registry, check_options
from .kernels import GatherSTE, nearest_codes

__all__ = ["GROUPS", "QUANTIZER_REGISTRY", "Quantizer", "num_groups", "register_quantizer"]

#: Bits per code a quantizer with a level table supports (the codec's range).
MIN_BITS, MAX_BITS = 1, 8


def num_groups(group: str, num_samples: int, num_channels: int) -> int:
    """Rows of the level table for ``group`` (the codec's conventions)."""
    # The codec counts from the per-sample shape; any shape with C on axis 0 counts alike.
    return group_count(group, num_samples, (num_channels, 1))


def _to_groups(x: Tensor, group: str) -> Tensor:
    """``(N, C, ...)`` -> ``(G, M)`` with row ``g`` holding every element of group ``g``."""
    n, c = x.shape[0], x.shape[1]
    if group == "tensor":
        return x.reshape(1, -1)
    if group == "channel":
        return x.transpose(0, 1).reshape(c, -1)
    if group == "sample-channel":
        return x.reshape(n * c, -1)
    raise ValueError(f"unknown group {group!r}; expected one of {', '.join(GROUPS)}")


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
    raise ValueError(f"unknown group {group!r}; expected one of {', '.join(GROUPS)}")


class Quantizer(nn.Module):
    """Base class: a level table, nearest-level codes, and a bit-exact export.

    A subclass provides :meth:`table` (and :meth:`init_from` when its levels depend on the
    data); the base class picks the nearest level per element, gathers the output from
    that very table with a straight-through gradient (:class:`~.kernels.GatherSTE`), and
    exports the codes and the table of the last pass. Its constructor takes
    ``(bits, group, num_samples, num_channels, **options)``; :meth:`build` is what
    :func:`~quadd_train.quantizers.make_quantizer` calls.
    """

    name = "base"

    @classmethod
    def build(cls, bits: int, group: str, num_samples: int, num_channels: int,
              **options: Any) -> Quantizer:
        """An instance for these settings; ``options`` are the constructor's own keywords."""
        check_options("quantizer", cls.name, cls.__init__, options, skip=5)
        return cls(bits, group, num_samples, num_channels, **options)

    def __init__(self, bits: int, group: str, num_samples: int, num_channels: int) -> None:
        super().__init__()
        if group not in GROUPS:
            raise ValueError(f"unknown group {group!r}; expected one of {', '.join(GROUPS)}")
        if not MIN_BITS <= int(bits) <= MAX_BITS:
            raise ValueError(f"bits must be in {MIN_BITS}..{MAX_BITS} for quantizer "
                             f"{self.name!r}, got {bits}")
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
        return GatherSTE.apply(xg, table, codes, None, None, None)

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


#: Quantizers by name: the built-in ones, then those of the ``quadd.quantizers`` entry points.
QUANTIZER_REGISTRY: Registry[type[Quantizer]] = Registry(
    "quantizer", "quadd.quantizers", Quantizer)
register_quantizer = QUANTIZER_REGISTRY.register

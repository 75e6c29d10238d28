"""Codebooks: sorted level tables per group, how to fit them, and nearest-level quantization.

A *group* is the set of values that share one level table:
- ``tensor``: every value of every sample (G = 1);
- ``channel``: channel c of every sample (G = C, row c);
- ``sample-channel``: channel c of sample k (G = n * C, row k * C + c).
The channel axis is axis 0 of the per-sample shape; a 1-D sample is one channel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .errors import QddValueError

GROUPS = ("tensor", "channel", "sample-channel")
CODEBOOKS = ("uniform", "kmeans")

#: Values a k-means fit looks at per group; a strided subsample keeps big inputs fast
#: while staying deterministic.
KMEANS_MAX_SAMPLES = 1 << 20
KMEANS_ITERS = 30
#: Samples quantized per chunk, bounding the float64 temporaries.
_QUANT_CHUNK_VALUES = 1 << 24


def channels_of(sample_shape: Sequence[int]) -> int:
    """Number of channels of a per-sample shape (axis 0; a 1-D sample is one channel)."""
    return int(sample_shape[0]) if len(sample_shape) >= 2 else 1


def group_count(group: str, n: int, sample_shape: Sequence[int]) -> int:
    """How many level tables a file with `n` samples of `sample_shape` carries."""
    if group == "tensor":
        return 1
    if group == "channel":
        return channels_of(sample_shape)
    if group == "sample-channel":
        return n * channels_of(sample_shape)
    raise QddValueError(f"unknown group {group!r}; expected one of {', '.join(GROUPS)}")


def _grouped(x: np.ndarray, group: str) -> np.ndarray:
    """View (n, *shape) as (G, values_per_group) following the group convention."""
    n = x.shape[0]
    c = channels_of(x.shape[1:])
    per_sample = x.reshape(n, c, int(np.prod(x.shape[1:], dtype=np.int64)) // c)  # n may be 0
    if group == "tensor":
        return per_sample.reshape(1, -1)
    if group == "channel":
        return per_sample.transpose(1, 0, 2).reshape(c, -1)
    if group == "sample-channel":
        return per_sample.reshape(n * c, -1)
    raise QddValueError(f"unknown group {group!r}; expected one of {', '.join(GROUPS)}")


def uniform_levels(lo: np.ndarray, hi: np.ndarray, bits: int) -> np.ndarray:
    """2**bits evenly spaced levels from lo to hi (inclusive, no clipping), per row."""
    steps = np.arange(1 << bits, dtype=np.float64) / ((1 << bits) - 1)
    lo64 = np.asarray(lo, dtype=np.float64)[:, None]
    hi64 = np.asarray(hi, dtype=np.float64)[:, None]
    levels = (lo64 + (hi64 - lo64) * steps).astype(np.float32)
    # float32 rounding can't reorder an increasing ramp, but accumulate() makes it certain.
    return np.maximum.accumulate(levels, axis=1)


def kmeans_levels(values: np.ndarray, bits: int, iters: int = KMEANS_ITERS) -> np.ndarray:
    """Lloyd-Max levels fitted per row of `values` (G, m); returns (G, 2**bits) float32.

    Starts from the data's quantiles (deterministic), then alternates nearest-level
    assignment and centroid updates; a level that loses all its values keeps its place.
    """
    g, m = values.shape
    if m > KMEANS_MAX_SAMPLES:
        values = values[:, :: -(-m // KMEANS_MAX_SAMPLES)]
    v = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64))
    v, _ = torch.sort(v, dim=1)
    n_levels = 1 << bits
    q = (torch.arange(n_levels, dtype=torch.float64) + 0.5) / n_levels
    levels = torch.quantile(v, q, dim=1).T.contiguous()
    for _ in range(iters):
        idx = _nearest(v, levels)
        sums = torch.zeros_like(levels).scatter_add_(1, idx, v)
        counts = torch.zeros_like(levels).scatter_add_(1, idx, torch.ones_like(v))
        new = torch.where(counts > 0, sums / counts.clamp_min(1), levels)
        new, _ = torch.sort(new, dim=1)
        if torch.equal(new, levels):
            break
        levels = new
    out = levels.to(torch.float32).numpy()
    return np.sort(out, axis=1)


def _nearest(values: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Index of the nearest level (ties to the lower one) for (G, m) values, (G, L) levels."""
    levels = levels.to(torch.float64)
    mids = (levels[:, 1:] + levels[:, :-1]) / 2
    return torch.searchsorted(mids.contiguous(), values.to(torch.float64).contiguous())


def fit_levels(x: np.ndarray, bits: int, codebook: str = "uniform", group: str = "channel"):
    """Fit (G, 2**bits) float32 level tables to `x` (n, *sample_shape)."""
    if codebook not in CODEBOOKS:
        raise QddValueError(
            f"unknown codebook {codebook!r}; expected one of {', '.join(CODEBOOKS)}"
        )
    x = np.asarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise QddValueError("input holds NaN or infinite values; they cannot be quantized")
    if x.shape[0] == 0:
        if group == "sample-channel":  # zero samples own zero level tables
            return np.zeros((0, 1 << bits), dtype=np.float32)
        raise QddValueError(f"no samples to fit {group!r} levels to")
    grouped = _grouped(x, group)
    if codebook == "uniform":
        return uniform_levels(grouped.min(axis=1), grouped.max(axis=1), bits)
    return kmeans_levels(grouped, bits)


def quantize(x: np.ndarray, levels: np.ndarray, group: str) -> np.ndarray:
    """Nearest-level codes (uint8, same shape as `x`) given fitted `levels` (G, L)."""
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[0]
    c = channels_of(x.shape[1:])
    per_channel = int(np.prod(x.shape[1:], dtype=np.int64)) // c
    codes = np.empty(x.shape, dtype=np.uint8)
    flat_codes = codes.reshape(n, c, per_channel)
    flat_x = x.reshape(n, c, per_channel)
    lv = torch.from_numpy(np.ascontiguousarray(levels))
    chunk = max(1, _QUANT_CHUNK_VALUES // max(1, c * per_channel))
    for start in range(0, n, chunk):
        block = torch.from_numpy(np.ascontiguousarray(flat_x[start : start + chunk]))
        m = block.shape[0]
        if group == "tensor":
            idx = _nearest(block.reshape(1, -1), lv).reshape(m, c, -1)
        elif group == "channel":
            idx = _nearest(block.transpose(0, 1).reshape(c, -1), lv)
            idx = idx.reshape(c, m, -1).transpose(0, 1)
        else:
            rows = lv[start * c : (start + m) * c]
            idx = _nearest(block.reshape(m * c, -1), rows).reshape(m, c, -1)
        flat_codes[start : start + m] = idx.to(torch.uint8).numpy()
    return codes


def quantize_array(
    x: np.ndarray,
    bits: int,
    codebook: str = "uniform",
    group: str = "channel",
    codebook_dtype: str = "f4",
) -> tuple[np.ndarray, np.ndarray]:
    """Fit levels and quantize: returns (codes uint8 like `x`, levels (G, 2**bits) float32).

    With codebook_dtype "f2" the levels are rounded to float16 *before* quantizing, so
    the codes pick the nearest of the levels the file will really hold.
    """
    if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 8:
        raise QddValueError(f"bits must be in 1..8, got {bits!r}")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 2:
        raise QddValueError(f"expected an array of samples (n, ...), got shape {x.shape}")
    levels = fit_levels(x, bits, codebook, group)
    if codebook_dtype == "f2":
        levels = np.sort(levels.astype(np.float16).astype(np.float32), axis=1)
    elif codebook_dtype != "f4":
        raise QddValueError(f"codebook dtype must be 'f4' or 'f2', got {codebook_dtype!r}")
    return quantize(x, levels, group), levels

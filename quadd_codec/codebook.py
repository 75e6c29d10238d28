"""Codebooks: sorted level tables per group, how to fit them, and nearest-level quantization.

A *group* is the set of values that share one level table:
- ``tensor``: every value of every sample (G = 1);
- ``channel``: channel c of every sample (G = C, row c);
- ``sample-channel``: channel c of sample k (G = n * C, row k * C + c).
The channel axis is axis 0 of the per-sample shape; a 1-D sample is one channel.
"""

from __future__ import annotations

import numpy as np

from .errors import QddValueError
from .rules import (
    CODEBOOKS,
    GROUPS,
    channels_of,
    check_bits,
    check_codebook_dtype,
)

__all__ = ["KMEANS_ITERS", "KMEANS_MAX_SAMPLES", "fit_levels", "kmeans_levels", "quantize",
           "quantize_array", "uniform_levels"]

#: Values a k-means fit looks at per group; a strided subsample keeps big inputs fast
#: while staying deterministic.
KMEANS_MAX_SAMPLES = 1 << 20
KMEANS_ITERS = 30
#: Values quantized per step: its float64 and int64 temporaries take 16 bytes each.
_QUANT_CHUNK_VALUES = 1 << 20
#: Above this many level tables, `_nearest` searches all rows at once instead of one by one.
_ROWWISE_MAX_GROUPS = 64


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


def _quantiles(v: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Linear-interpolated quantiles `q` of each sorted row of `v`: (G, len(q)) float64.

    Position q * (m - 1), interpolated from the value below with the weight's small side:
    `a + w * (b - a)` for w < 0.5, else `b - (b - a) * (1 - w)`.
    """
    m = v.shape[1]
    ranks = q * (m - 1)
    below = ranks.astype(np.int64)
    weights = ranks - below
    above = np.ceil(ranks).astype(np.int64)
    a, b = v[:, below], v[:, above]
    diff = b - a
    return np.where(weights < 0.5, a + weights * diff, b - diff * (1 - weights))


def kmeans_levels(values: np.ndarray, bits: int, iters: int = KMEANS_ITERS) -> np.ndarray:
    """Lloyd-Max levels fitted per row of `values` (G, m); returns (G, 2**bits) float32.

    Starts from the data's quantiles (deterministic), then alternates nearest-level
    assignment and centroid updates; a level that loses all its values keeps its place.
    Sums run in float64 in value order, so a fit is the same on every machine.
    """
    g, m = values.shape
    if m > KMEANS_MAX_SAMPLES:
        values = values[:, :: -(-m // KMEANS_MAX_SAMPLES)]
    v = np.sort(np.asarray(values, dtype=np.float64), axis=1)
    m = v.shape[1]
    n_levels = 1 << bits
    q = (np.arange(n_levels, dtype=np.float64) + 0.5) / n_levels
    levels = _quantiles(v, q)
    offsets = (np.arange(g, dtype=np.int64) * n_levels)[:, None]
    flat_v = v.reshape(-1)
    for _ in range(iters):
        bins = (_nearest(v, levels) + offsets).reshape(-1)
        sums = np.bincount(bins, weights=flat_v, minlength=g * n_levels).reshape(g, n_levels)
        counts = np.bincount(bins, minlength=g * n_levels).reshape(g, n_levels)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), levels)
        new = np.sort(new, axis=1)
        if np.array_equal(new, levels):
            break
        levels = new
    return np.sort(levels.astype(np.float32), axis=1)


def _nearest(values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Index of the nearest level (ties to the lower one) for (G, m) values, (G, L) levels.

    The index is the number of midpoints between neighbouring levels (float64) that lie
    strictly below the value.
    """
    levels = np.asarray(levels, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    mids = (levels[:, 1:] + levels[:, :-1]) / 2
    g, n_levels = levels.shape
    if g <= _ROWWISE_MAX_GROUPS:
        out = np.empty(values.shape, dtype=np.int64)
        for row in range(g):
            out[row] = np.searchsorted(mids[row], values[row], side="left")
        return out
    # Many small rows: a binary search over every row at once (L - 1 = 2**bits - 1 mids).
    flat_mids = mids.reshape(-1)
    pos = np.repeat(np.arange(g, dtype=np.int64) * (n_levels - 1), values.shape[1])
    pos = pos.reshape(values.shape)
    start = pos.copy()
    step = n_levels // 2
    while step:
        pos += (flat_mids.take(pos + (step - 1)) < values) * step
        step //= 2
    return pos - start


def fit_levels(
    x: np.ndarray, bits: int, codebook: str = "uniform", group: str = "channel"
) -> np.ndarray:
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
    lv = np.asarray(levels)
    chunk = max(1, _QUANT_CHUNK_VALUES // max(1, c * per_channel))
    for start in range(0, n, chunk):
        block = flat_x[start : start + chunk]
        m = block.shape[0]
        if group == "tensor":
            idx = _nearest(block.reshape(1, -1), lv).reshape(m, c, -1)
        elif group == "channel":
            idx = _nearest(block.transpose(1, 0, 2).reshape(c, -1), lv)
            idx = idx.reshape(c, m, -1).transpose(1, 0, 2)
        else:
            rows = lv[start * c : (start + m) * c]
            idx = _nearest(block.reshape(m * c, -1), rows).reshape(m, c, -1)
        flat_codes[start : start + m] = idx
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
    bits = check_bits(bits)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 2:
        raise QddValueError(f"expected an array of samples (n, ...), got shape {x.shape}")
    levels = fit_levels(x, bits, codebook, group)
    if codebook_dtype == "f2":
        levels = np.sort(levels.astype(np.float16).astype(np.float32), axis=1)
    else:
        check_codebook_dtype(codebook_dtype)
    return quantize(x, levels, group), levels

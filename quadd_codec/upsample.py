"""Enlarging reduced-resolution samples: the two filters of FORMAT.md 7a and 7b.

`nearest` repeats each stored value into an f x f block. `linear` is half-pixel-centred
bilinear interpolation with the edge value held (what `torch.nn.functional.interpolate`
does with `align_corners=False`), defined exactly enough that every reader gets the same
float32 bits: `linear_taps` is the one place that computes its indices and weights, and
the trainer builds its in-loop enlargement from the same taps.
"""

from __future__ import annotations

import numpy as np

from .errors import QddValueError
from .layout import UPSAMPLE_FILTERS, upsample_nearest

__all__ = ["linear_taps", "upsample", "upsample_linear"]


def linear_taps(size: int, factor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices `i0`, `i1` and float32 weights `w0`, `w1` of each output position.

    Output position `i` of an axis enlarged from `size` to `size * factor` samples at
    source coordinate `(2i + 1 - f) / 2f`; a negative coordinate is clamped to 0 and
    `i1` is clamped to the last index, so the border values are held.
    """
    two_f = 2 * factor
    t = 2 * np.arange(size * factor, dtype=np.int64) + 1 - factor
    t = np.maximum(t, 0)
    i0 = t // two_f
    r = t % two_f
    i1 = np.minimum(i0 + 1, size - 1)
    # Each weight is the float32 nearest to an exact ratio of small integers. Going through
    # float64 cannot round twice the wrong way: with 2f <= 32 the ratio's binary expansion
    # repeats within 12 bits, never the 29-bit run of equal bits that would need.
    w1 = (r / two_f).astype(np.float32)
    w0 = ((two_f - r) / two_f).astype(np.float32)
    return i0, i1, w0, w1


def upsample_linear(x: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear enlargement of the last two axes of float32 `x` (FORMAT.md 7b).

    Height first, then width; along each axis `w0 * x[i0] + w1 * x[i1]`, every product
    and the sum rounded to float32.
    """
    if factor == 1:
        return x
    x = np.asarray(x, dtype=np.float32)
    i0, i1, w0, w1 = linear_taps(x.shape[-2], factor)
    col = (slice(None), None)
    x = w0[col] * x[..., i0, :] + w1[col] * x[..., i1, :]
    i0, i1, w0, w1 = linear_taps(x.shape[-1], factor)
    return w0 * x[..., i0] + w1 * x[..., i1]


def upsample(x: np.ndarray, factor: int, filter: str = "nearest") -> np.ndarray:
    """Enlarge the last two axes of `x` by `factor` with the named filter."""
    if filter == "nearest":
        return upsample_nearest(x, factor)
    if filter == "linear":
        return upsample_linear(x, factor)
    raise QddValueError(f"unknown upsample filter {filter!r}; expected one of "
                        f"{', '.join(UPSAMPLE_FILTERS)}")

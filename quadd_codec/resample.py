"""Pixel resampling: stored and decoded sample shapes, and the enlargement filters.

`nearest` (FORMAT.md 7a) repeats each stored value into an f x f block; the encoder's
side is `downsample_mean`, the least-squares choice for that decoder. `linear` (7b) is
half-pixel-centred bilinear interpolation with the edge value held (what
`torch.nn.functional.interpolate` does with `align_corners=False`), defined exactly
enough that every reader gets the same float32 bits: `linear_taps` is the one place that
computes its indices and weights, and the trainer builds its in-loop enlargement from
the same taps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import QddValueError
from .rules import MAX_UPSAMPLE, UPSAMPLE_FILTERS, upsample_problem

__all__ = ["downsample_mean", "linear_taps", "output_shape", "stored_shape", "upsample",
           "upsample_linear", "upsample_nearest"]


def output_shape(sample_shape: Sequence[int], upsample: int) -> tuple[int, ...]:
    """Decoded sample shape: the last two axes of the stored shape times `upsample`."""
    shape = tuple(int(d) for d in sample_shape)
    if upsample == 1:
        return shape
    return (*shape[:-2], shape[-2] * upsample, shape[-1] * upsample)


def upsample_nearest(x: np.ndarray, factor: int) -> np.ndarray:
    """Repeat every value of the last two axes into a `factor` x `factor` block."""
    if factor == 1:
        return x
    return np.repeat(np.repeat(x, factor, axis=-2), factor, axis=-1)


def stored_shape(sample_shape: Sequence[int], upsample: int) -> tuple[int, ...]:
    """The stored per-sample shape that decodes to `sample_shape` (inverse of `output_shape`).

    Raises `QddValueError` for a factor a file cannot carry, samples that are not images,
    or a factor that does not divide their height and width.
    """
    shape = tuple(int(d) for d in sample_shape)
    stored = shape
    if isinstance(upsample, int) and 1 < upsample <= MAX_UPSAMPLE and len(shape) >= 3:
        h, w = shape[-2:]
        if h % upsample or w % upsample:
            raise QddValueError(
                f"upsample {upsample} must divide the image size {h}x{w}; try a divisor of "
                f"{h if h == w else f'{h} and {w}'}")
        stored = (*shape[:-2], h // upsample, w // upsample)
    problem = upsample_problem(upsample, stored)
    if problem:
        raise QddValueError(problem)
    return stored


def downsample_mean(x: np.ndarray, factor: int) -> np.ndarray:
    """Average each `factor` x `factor` block of the last two axes of a batch `x`.

    The encoder's side of `upsample_nearest`: storing the block means and repeating them
    back is the least-squares choice for that decoder. Raises `QddValueError` as
    `stored_shape` does.
    """
    stored = stored_shape(x.shape[1:], factor)
    if factor == 1:
        return x
    blocks = x.reshape(*x.shape[:-2], stored[-2], factor, stored[-1], factor)
    # Accumulate in float64: float32 sums over large blocks drift.
    return blocks.mean(axis=(-3, -1), dtype=np.float64).astype(np.float32)


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

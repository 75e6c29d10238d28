"""Packed codes -> float32 values through the level tables (the hot path of every load).

For bit widths that divide 8 each byte maps to a fixed tuple of levels, so one gather
through a (256, 8 // b) float table per group decodes whole bytes at once. Other widths
unpack to indices first (bitpack) and then gather from the levels.
"""

from __future__ import annotations

import numpy as np

from .bitpack import _BYTE_LUTS, unpack_rows


def byte_tables(levels: np.ndarray, bits: int) -> np.ndarray | None:
    """(G, 256, 8 // bits) float32: the decoded values of every byte, per group."""
    if bits == 8:
        return levels[:, :, None]
    if bits in _BYTE_LUTS:
        return levels[:, _BYTE_LUTS[bits]]
    return None


def dequantize_rows(
    raw: np.ndarray,
    sample_ids: np.ndarray,
    bits: int,
    group: str,
    levels: np.ndarray,
    channels: int,
    values: int,
    tables: np.ndarray | None = None,
) -> np.ndarray:
    """Decode packed samples `raw` (m, nbytes) to float32 (m, values).

    `sample_ids` are the samples' indices in the file (only sample-channel groups need
    them); `tables` are `byte_tables(levels, bits)` when the caller has them cached.
    """
    m = raw.shape[0]
    per_channel = values // channels
    if group == "tensor" and tables is not None:
        out = np.take(tables[0], raw, axis=0, mode="clip").reshape(m, -1)
        return out if out.shape[1] == values else np.ascontiguousarray(out[:, :values])
    if group == "channel" and tables is not None and (per_channel * bits) % 8 == 0:
        # Each channel starts on a byte boundary: decode it with its own table, no indices.
        out = np.empty((m, channels, per_channel), dtype=np.float32)
        seg = raw.reshape(m, channels, -1)
        # A view of `out` by construction (reshape of a contiguous array), so take()
        # writes the result in place instead of into a temporary.
        dest = out.reshape(m, channels, seg.shape[2], 8 // bits)
        for c in range(channels):
            np.take(tables[c], seg[:, c], axis=0, mode="clip", out=dest[:, c])
        return out.reshape(m, values)
    idx = unpack_rows(raw, bits, values).reshape(m, channels, per_channel)
    n_levels = levels.shape[1]
    if group == "tensor":
        return np.take(levels[0], idx, mode="clip").reshape(m, values)
    if group == "channel":
        out = np.empty((m, channels, per_channel), dtype=np.float32)
        for c in range(channels):
            np.take(levels[c], idx[:, c], mode="clip", out=out[:, c])
        return out.reshape(m, values)
    rows = np.asarray(sample_ids, dtype=np.int64)[:, None] * channels + np.arange(channels)
    flat = rows[:, :, None] * n_levels + idx
    return np.take(levels.reshape(-1), flat, mode="clip").reshape(m, values)

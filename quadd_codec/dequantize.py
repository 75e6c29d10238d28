"""Packed codes -> float32 values through the level tables (the hot path of every load).

Fast path (tensor and channel groups, rows that split into whole *units*): the packed
bytes of a row are read as fixed-size units; each unit is cut into a few *parts*, each a
bit field of k consecutive codes read with one unaligned 16- or 32-bit load, a shift and
a mask. A part is then an index into a wide table of 2**(k*bits) rows of k float32
values, so one `np.take` decodes k codes at once and writes straight into the output.
Per bit width (unit bytes: parts x codes per part, table rows):

    1: 1 byte: 1 x 8 (256)        5: 5 bytes: 4 x 2 (1024)
    2: 1 byte: 1 x 4 (256)        6: 3 bytes: 2 x 2 (4096)
    3: 3 bytes: 2 x 4 (4096)      7: 7 bytes: 4 x 2 (16384)
    4: 2 bytes: 1 x 4 (65536)     8: 2 bytes: 1 x 2 (65536)

Work proceeds in chunks of rows sized to stay in cache, with uint16 indices where they
fit, so no full-size index temporary is ever made. Channel groups stack their tables and
add `channel * table_rows` to the indices. Tables are built on first use and cached per
level table. A per-channel affine map (de-normalization) can be folded into the tables
(a tensor group then decodes like a channel group): table entries are computed with the
same float32 multiply and add that would otherwise run on every output value, so the
result is bit-identical.

Everything else (sample-channel groups, rows whose channels do not start on a unit
boundary) unpacks indices first (bitpack) and gathers from the levels.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from .bitpack import _BYTE_LUTS, unpack_rows

#: bits -> (unit bytes, codes per part, load width, right shift of each part). Part p is
#: loaded (little-endian, unaligned) from byte p of its unit, shifted, and masked.
_PLANS: dict[int, tuple[int, int, int, tuple[int, ...]]] = {
    1: (1, 8, 1, (0,)),
    2: (1, 4, 1, (0,)),
    3: (3, 4, 2, (0, 4)),
    4: (2, 4, 2, (0,)),
    5: (5, 2, 2, (0, 2, 4, 6)),
    6: (3, 2, 2, (0, 4)),
    7: (7, 2, 4, (0, 6, 12, 18)),
    8: (2, 2, 2, (0,)),
}
_LOAD_DTYPES = {1: np.dtype("u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4")}
#: Output floats decoded per chunk: output, indices and table stay near the L2 cache.
_CHUNK_VALUES = 1 << 16
#: Wide tables are built for at most this many groups (channels); beyond, the slow path.
_MAX_WIDE_GROUPS = 16
#: Wide tables kept (least recently used dropped first), by total size.
_TABLE_CACHE_BYTES = 64 << 20
_TABLE_CACHE: OrderedDict[bytes, np.ndarray] = OrderedDict()
_TABLE_LOCK = threading.Lock()


def byte_tables(levels: np.ndarray, bits: int) -> np.ndarray | None:
    """(G, 256, 8 // bits) float32: the decoded values of every byte, per group."""
    if bits == 8:
        return levels[:, :, None]
    if bits in _BYTE_LUTS:
        return levels[:, _BYTE_LUTS[bits]]
    return None


def _wide_table(levels: np.ndarray, bits: int, channels: int,
                scale: np.ndarray | None, offset: np.ndarray | None) -> np.ndarray:
    """(G' * 2**(k*bits), k) float32: stacked per-group tables of k decoded codes."""
    key = b"".join((bytes([bits]), levels.shape[0].to_bytes(4, "little"), levels.tobytes(),
                    b"" if scale is None else scale.tobytes(),
                    b"" if offset is None else offset.tobytes()))
    with _TABLE_LOCK:
        table = _TABLE_CACHE.get(key)
        if table is not None:
            _TABLE_CACHE.move_to_end(key)
            return table
    lv = levels
    if scale is not None:
        # Same float32 ops, in the same order, as applying the map to decoded values.
        lv = np.broadcast_to(lv, (channels, lv.shape[1])) if lv.shape[0] == 1 else lv
        lv = np.multiply(lv, scale[:, None], dtype=np.float32)
        lv = np.add(lv, offset[:, None], dtype=np.float32)
    k = _PLANS[bits][1]
    rows = np.arange(1 << (k * bits), dtype=np.int64)[:, None]
    codes = (rows >> (np.arange(k, dtype=np.int64) * bits)) & ((1 << bits) - 1)
    table = np.ascontiguousarray(lv[:, codes].reshape(-1, k), dtype=np.float32)
    table.setflags(write=False)
    with _TABLE_LOCK:
        _TABLE_CACHE[key] = table
        total = sum(t.nbytes for t in _TABLE_CACHE.values())
        while total > _TABLE_CACHE_BYTES and len(_TABLE_CACHE) > 1:
            total -= _TABLE_CACHE.popitem(last=False)[1].nbytes
    return table


def _fast_ok(bits: int, group: str, levels: np.ndarray, channels: int, values: int,
             affine: bool) -> bool:
    if group not in ("tensor", "channel") or levels.shape[0] > _MAX_WIDE_GROUPS:
        return False
    unit_bits = 8 * _PLANS[bits][0]
    if group == "tensor" and not affine:
        return values * bits % unit_bits == 0
    return channels <= _MAX_WIDE_GROUPS and values % channels == 0 and \
        (values // channels) * bits % unit_bits == 0


def _decode_wide(raw: np.ndarray, bits: int, table: np.ndarray, groups: int,
                 values: int) -> np.ndarray:
    m, nbytes = raw.shape
    unit, k, width, shifts = _PLANS[bits]
    n_parts = len(shifts)
    idx_bits = k * bits
    mask = (1 << idx_bits) - 1
    load = _LOAD_DTYPES[width]
    out = np.empty((m, values), dtype=np.float32)
    if values == 0:
        return out
    raw = np.ascontiguousarray(raw)
    units_row = nbytes // unit
    whole = n_parts == 1 and idx_bits == 8 * width  # a unit is one index: no bit fiddling
    # Byte units (bits 1, 2) need no index temporary at all: take bigger steps.
    step = max(1, (_CHUNK_VALUES * (16 if whole and width == 1 else 1)) // values)
    # Indices stay small: uint16 whenever every stacked table row fits (np.take widens
    # them itself, in one contiguous pass, which is cheaper than int64 arithmetic here).
    idx_dtype = np.uint16 if groups << idx_bits <= 1 << 16 else np.uint32
    if not whole or groups > 1:
        idx_buf = np.empty(min(m, step) * units_row * n_parts, dtype=idx_dtype)
    if not whole:
        scratch = np.empty(min(m, step) * units_row, dtype=load)
    chan_off = None
    if groups > 1:
        chan_off = (np.arange(groups, dtype=idx_dtype) << idx_bits)[:, None]
    for r0 in range(0, m, step):
        r1 = min(m, r0 + step)
        n_units = (r1 - r0) * units_row
        if whole:
            # Units are the bytes themselves (bits 1, 2) or 16-bit words (bits 4, 8).
            flat = np.ndarray((n_units,), dtype=load, buffer=raw, offset=r0 * nbytes)
            if chan_off is not None:
                idx = idx_buf[:n_units]
                np.add(flat.reshape(r1 - r0, groups, -1), chan_off,
                       out=idx.reshape(r1 - r0, groups, -1), dtype=idx_dtype)
                flat = idx
        else:
            idx = idx_buf[: n_units * n_parts].reshape(n_units, n_parts)
            tmp = scratch[:n_units]
            for p, shift in enumerate(shifts):
                # Part p of every unit: an unaligned load from byte p of the unit.
                np.copyto(tmp, np.ndarray((n_units,), dtype=load, buffer=raw,
                                          offset=r0 * nbytes + p, strides=(unit,)))
                if shift:
                    np.right_shift(tmp, shift, out=tmp)
                np.bitwise_and(tmp, mask, out=idx[:, p], casting="unsafe")
            flat = idx.reshape(-1)
            if chan_off is not None:
                per_row = flat.reshape(r1 - r0, groups, -1)
                np.add(per_row, chan_off, out=per_row)
        np.take(table, flat, axis=0, out=out[r0:r1].reshape(-1, k), mode="clip")
    return out


def dequantize_rows(
    raw: np.ndarray,
    sample_ids: np.ndarray,
    bits: int,
    group: str,
    levels: np.ndarray,
    channels: int,
    values: int,
    tables: np.ndarray | None = None,
    scale: np.ndarray | None = None,
    offset: np.ndarray | None = None,
) -> np.ndarray:
    """Decode packed samples `raw` (m, nbytes) to float32 (m, values).

    `sample_ids` are the samples' indices in the file (only sample-channel groups need
    them); `tables` are `byte_tables(levels, bits)` when the caller has them cached.
    With per-channel `scale` and `offset`, returns `decoded * scale[c] + offset[c]`
    (float32 multiply, then float32 add: bit-identical to applying them afterwards).
    """
    m = raw.shape[0]
    if (scale is None) != (offset is None):
        raise ValueError("scale and offset go together")
    if scale is not None:
        scale = np.ascontiguousarray(scale, dtype=np.float32).reshape(channels)
        offset = np.ascontiguousarray(offset, dtype=np.float32).reshape(channels)
    if m == 0:
        return np.empty((0, values), dtype=np.float32)
    affine = scale is not None
    if _fast_ok(bits, group, levels, channels, values, affine):
        levels32 = np.ascontiguousarray(levels, dtype=np.float32)
        table = _wide_table(levels32, bits, channels, scale, offset)
        groups = channels if (group == "channel" or affine) else 1
        return _decode_wide(raw, bits, table, groups, values)
    out = _dequantize_slow(raw, sample_ids, bits, group, levels, channels, values, tables)
    if affine:
        per = out.reshape(m, channels, -1)
        np.multiply(per, scale[None, :, None], out=per)
        np.add(per, offset[None, :, None], out=per)
    return out


def _dequantize_slow(raw, sample_ids, bits, group, levels, channels, values, tables):
    m = raw.shape[0]
    per_channel = values // channels
    if group == "tensor" and tables is not None:
        out = np.take(tables[0], raw, axis=0, mode="clip").reshape(m, -1)
        return out if out.shape[1] == values else np.ascontiguousarray(out[:, :values])
    if group == "channel" and tables is not None and (per_channel * bits) % 8 == 0:
        # Each channel starts on a byte boundary: decode it with its own table, no indices.
        out = np.empty((m, channels, per_channel), dtype=np.float32)
        seg = raw.reshape(m, channels, -1)
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

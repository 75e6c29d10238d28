"""LSB-first bit packing of small unsigned integers, one byte-aligned bit stream per row.

Layout (FORMAT.md, "Bit layout"): value i of a row occupies bits [i*b, (i+1)*b) of the
row's stream; stream bit j is bit (j % 8) of byte j // 8; bit 0 of a value is its least
significant bit. Each row is padded with zero bits to a whole byte, so row k starts at
byte k * packed_nbytes(count, b).

Everything here is vectorized over whole rows: no Python loop runs per value.
"""

from __future__ import annotations

import numpy as np

from .errors import QddValueError

#: Rows packed per chunk, sized so the bit-plane temporaries stay near 24 MiB.
_PACK_CHUNK_BITS = 1 << 23


def packed_nbytes(count: int, bits: int) -> int:
    """Bytes of one row of `count` values at `bits` bits each (padded to a byte)."""
    return (count * bits + 7) // 8


def _check_bits(bits: int, max_bits: int) -> None:
    if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= max_bits:
        raise QddValueError(f"bit width must be an integer in 1..{max_bits}, got {bits!r}")


def pack_rows(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack a (rows, count) array of codes < 2**bits (bits 1..16) into (rows, nbytes) uint8."""
    _check_bits(bits, 16)
    values = np.asarray(values)
    if values.ndim != 2:
        raise QddValueError(f"pack_rows takes a 2-D (rows, count) array, got shape {values.shape}")
    if values.size and (int(values.min()) < 0 or int(values.max()) >> bits):
        raise QddValueError(
            f"a code does not fit in {bits} bits (min {int(values.min())}, max {int(values.max())})"
        )
    rows, count = values.shape
    nbytes = packed_nbytes(count, bits)
    out = np.empty((rows, nbytes), dtype=np.uint8)
    if bits == 8:
        out[...] = values
        return out
    chunk = max(1, _PACK_CHUNK_BITS // max(1, count * bits))
    shifts = np.arange(bits, dtype=np.uint16)
    for start in range(0, rows, chunk):
        block = values[start : start + chunk].astype(np.uint16, copy=False)
        # Bit planes in stream order: (rows, count, bits) -> (rows, count * bits).
        planes = ((block[:, :, None] >> shifts) & 1).astype(np.uint8)
        planes = planes.reshape(block.shape[0], count * bits)
        out[start : start + chunk] = np.packbits(planes, axis=1, bitorder="little")
    return out


def _byte_lut(bits: int) -> np.ndarray:
    """(256, 8 // bits) table: the codes held by each possible byte, for bits in {1, 2, 4}."""
    per = 8 // bits
    byte = np.arange(256, dtype=np.uint16)[:, None]
    shifts = (np.arange(per, dtype=np.uint16) * bits)[None, :]
    return ((byte >> shifts) & ((1 << bits) - 1)).astype(np.uint8)


_BYTE_LUTS = {b: _byte_lut(b) for b in (1, 2, 4)}


def unpack_rows(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of `pack_rows` for bits 1..8: (rows, nbytes) uint8 -> (rows, count) uint8."""
    _check_bits(bits, 8)
    packed = np.asarray(packed, dtype=np.uint8)
    if packed.ndim != 2:
        raise QddValueError(f"unpack_rows takes a 2-D (rows, nbytes) array, got {packed.shape}")
    rows, nbytes = packed.shape
    if nbytes != packed_nbytes(count, bits):
        raise QddValueError(
            f"{count} values at {bits} bits need {packed_nbytes(count, bits)} bytes a row, "
            f"got {nbytes}"
        )
    if bits == 8:
        return packed
    if bits in _BYTE_LUTS:
        return _BYTE_LUTS[bits][packed].reshape(rows, nbytes * (8 // bits))[:, :count]
    return _unpack_odd(packed, bits, count)


def _unpack_odd(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """bits in {3, 5, 6, 7}: every `bits` bytes hold exactly 8 codes, at fixed offsets."""
    rows, nbytes = packed.shape
    blocks = (count + 7) // 8
    if nbytes != blocks * bits:
        # Only the last block of a row can be short; zero-fill it to a whole block.
        padded = np.zeros((rows, blocks * bits), dtype=np.uint8)
        padded[:, :nbytes] = packed
        packed = padded
    # A code that straddles two bytes never straddles a block, so byte k+1 always exists.
    grid = packed.reshape(rows, blocks, bits)
    mask = (1 << bits) - 1
    out = np.empty((rows, blocks, 8), dtype=np.uint8)
    for j in range(8):
        bit = j * bits
        k, s = divmod(bit, 8)
        lo = grid[:, :, k]
        if s + bits <= 8:
            out[:, :, j] = (lo >> s) & mask
        else:
            hi = grid[:, :, k + 1]
            out[:, :, j] = ((lo >> s) | (hi << (8 - s))) & mask
    return out.reshape(rows, blocks * 8)[:, :count]


def pack_stream(values: np.ndarray, bits: int) -> bytes:
    """Pack a 1-D array as a single stream (labels): ceil(len * bits / 8) bytes."""
    values = np.asarray(values).reshape(1, -1)
    return pack_rows(values, bits).tobytes()


def unpack_stream(data: bytes | memoryview | np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of `pack_stream` for bits 1..16; returns int64 values."""
    _check_bits(bits, 16)
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    if buf.size != packed_nbytes(count, bits):
        need = packed_nbytes(count, bits)
        raise QddValueError(f"{count} values at {bits} bits need {need} bytes, got {buf.size}")
    if bits <= 8:
        return unpack_rows(buf.reshape(1, -1), bits, count)[0].astype(np.int64)
    planes = np.unpackbits(buf, bitorder="little")[: count * bits].reshape(count, bits)
    weights = np.left_shift(np.int64(1), np.arange(bits, dtype=np.int64))
    return planes.astype(np.int64) @ weights

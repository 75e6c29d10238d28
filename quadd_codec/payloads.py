"""The bytes of each section, built from arrays and checked the way the reader checks them."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from .bitpack import pack_rows, pack_stream
from .crc import crc32c
from .errors import QddValueError
from .layout import label_bits
from .rules import CODEBOOK_DTYPES, RAW_BITS, group_count

#: Samples packed per step; also the granularity of the progress callback.
PACK_CHUNK = 4096


def codebook_bytes(levels: np.ndarray | None, bits: int, group: str, n: int,
                   sample_shape: Sequence[int], codebook_dtype: str) -> bytes:
    """The codebooks section: (G, 2**bits) sorted, finite levels as little-endian floats."""
    if bits == RAW_BITS:
        if levels is not None:
            raise QddValueError("raw float32 files (bits=32) carry no codebook; pass levels=None")
        return b""
    if levels is None:
        raise QddValueError("quantized files need a codebook: levels of shape (G, 2**bits)")
    levels = np.asarray(levels)
    want = (group_count(group, n, sample_shape), 1 << bits)
    if levels.shape != want:
        raise QddValueError(
            f"levels must have shape {want} for group {group!r}, got {levels.shape}"
        )
    if not np.isfinite(levels).all():
        raise QddValueError("codebook levels must be finite")
    if (np.diff(levels.astype(np.float64), axis=1) < 0).any():
        raise QddValueError("codebook levels must be sorted ascending in every group")
    dtype = np.dtype("<f4") if codebook_dtype == "f4" else np.dtype("<f2")
    stored = levels.astype(dtype)
    if codebook_dtype == "f2" and not np.array_equal(stored.astype(np.float32),
                                                     levels.astype(np.float32)):
        # Silent rounding would decode to values the caller never saw.
        raise QddValueError("levels are not exactly representable in float16; use 'f4'")
    assert stored.nbytes == want[0] * want[1] * CODEBOOK_DTYPES[codebook_dtype]
    return stored.tobytes()


def code_chunks(codes: np.ndarray, bits: int, progress: Any = None) -> list[bytes | memoryview]:
    """The codes section in chunks of PACK_CHUNK samples (one chunk of float32 for raw files)."""
    n = codes.shape[0]
    flat = codes.reshape(n, int(np.prod(codes.shape[1:], dtype=np.int64)))  # n may be 0
    chunks: list[bytes | memoryview] = []
    if bits == RAW_BITS:
        if codes.dtype.kind != "f":
            raise QddValueError("bits=32 stores float samples; got integer codes")
        raw = np.ascontiguousarray(flat, dtype="<f4")
        if not np.isfinite(raw).all():
            raise QddValueError("samples hold NaN or infinite values")
        if progress:
            progress(n)
        # A uint8 view rather than memoryview.cast: cast refuses empty (n = 0) shapes.
        return [memoryview(raw.view(np.uint8).reshape(-1))]
    if codes.dtype.kind not in "ui":
        raise QddValueError(f"codes must be integers (level indices), got dtype {codes.dtype}")
    if flat.size and (flat.min() < 0 or flat.max() >= 1 << bits):
        raise QddValueError(f"codes must lie in 0..{(1 << bits) - 1} for {bits}-bit files")
    for start in range(0, n, PACK_CHUNK):
        block = flat[start : start + PACK_CHUNK].astype(np.uint8, copy=False)
        chunks.append(pack_rows(block, bits).tobytes())
        if progress:
            progress(block.shape[0])
    return chunks


def chunk_crc_bytes(codes: list[bytes | memoryview], chunk_bytes: int) -> bytes:
    """The `chunk_crcs` section: CRC32C of each `chunk_bytes` run of the codes section
    (the last may be shorter), as big-endian u32s, computed over its chunks as written."""
    crcs: list[int] = []
    crc, filled = 0, 0
    for part in codes:
        view = memoryview(part).cast("B")
        at = 0
        while at < len(view):
            take = min(chunk_bytes - filled, len(view) - at)
            crc = crc32c(view[at : at + take], crc)
            filled += take
            at += take
            if filled == chunk_bytes:
                crcs.append(crc)
                crc, filled = 0, 0
    if filled:
        crcs.append(crc)
    return struct.pack(f">{len(crcs)}I", *crcs)


def label_bytes(labels: np.ndarray | None, n: int, num_classes: int) -> bytes:
    """The labels section: class indices packed at `label_bits(num_classes)` bits each."""
    if num_classes == 0:
        if labels is not None and len(np.asarray(labels)):
            raise QddValueError("labels given but no class names: name the classes")
        return b""
    if labels is None:
        raise QddValueError("class names given but no labels")
    labels = np.asarray(labels)
    if labels.shape != (n,) or labels.dtype.kind not in "ui":
        raise QddValueError(f"labels must be {n} integers, got shape {labels.shape} {labels.dtype}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise QddValueError(f"labels must lie in 0..{num_classes - 1}")
    bits = label_bits(num_classes)
    return pack_stream(labels.astype(np.int64), bits) if bits else b""


def soft_label_bytes(soft: np.ndarray | None, n: int, num_classes: int) -> bytes | None:
    """The optional soft_labels section: (n, K) finite float32, or None without one."""
    if soft is None:
        return None
    soft = np.asarray(soft, dtype="<f4")
    if soft.shape != (n, num_classes) or not np.isfinite(soft).all():
        raise QddValueError(f"soft labels must be finite, of shape ({n}, {num_classes})")
    return soft.tobytes()

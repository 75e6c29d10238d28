"""Writing `.qdd` files: sections are built in memory, then written atomically."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .bitpack import pack_rows, pack_stream
from .codebook import group_count
from .crc import crc32c
from .errors import QddValueError
from .layout import (
    CODEBOOK_DTYPES,
    FEATURE_LINEAR,
    FEATURE_UPSAMPLE,
    LINEAR_MINOR,
    MINOR,
    PREFIX_SIZE,
    RAW_BITS,
    TRAILER_SIZE,
    UPSAMPLE_MINOR,
    Denorm,
    build_header,
    check_write_args,
    label_bits,
    pack_prefix,
    pack_trailer,
    provenance_bytes,
    section_plan,
)
from .paths import atomic_open

#: Samples packed per step; also the granularity of the progress callback.
PACK_CHUNK = 4096


def encode_qdd(
    codes: np.ndarray,
    levels: np.ndarray | None,
    labels: np.ndarray | None,
    bits: int,
    group: str,
    class_names: Sequence[str],
    denorm: Denorm | None = None,
    codebook_dtype: str = "f4",
    provenance: Mapping[str, Any] | None = None,
    soft_labels: np.ndarray | None = None,
    meta: Mapping[str, Any] | None = None,
    progress: Any = None,
    upsample: int = 1,
    upsample_filter: str = "nearest",
) -> list[bytes | memoryview]:
    """Build a whole `.qdd` file as a list of byte chunks (concatenated, they are the file).

    `codes` is uint8 (n, *sample_shape) with values < 2**bits, or for bits=32 the float32
    samples themselves (then `levels` is None). `levels` is (G, 2**bits), rows sorted.
    `progress`, if given, is called with the number of samples packed in each step.
    `upsample` > 1 marks the samples as stored at reduced resolution: readers decode
    each to `(C, H * upsample, W * upsample)`, by repeating values (FORMAT.md 7a) or,
    with `upsample_filter="linear"`, by bilinear interpolation (7b).
    """
    codes = np.asarray(codes)
    if codes.ndim < 2:
        raise QddValueError(f"codes must be (n, *sample_shape), got shape {codes.shape}")
    n, sample_shape = codes.shape[0], tuple(int(d) for d in codes.shape[1:])
    class_names = [str(c) for c in class_names]
    check_write_args(n, sample_shape, bits, group, codebook_dtype, class_names, denorm,
                     upsample, upsample_filter)

    codebook_bytes = _codebook_bytes(levels, bits, group, n, sample_shape, codebook_dtype)
    code_chunks = _code_chunks(codes, bits, progress)
    label_bytes = _label_bytes(labels, n, len(class_names))
    prov = provenance_bytes(provenance)
    soft = _soft_label_bytes(soft_labels, n, len(class_names))

    payloads: dict[str, list[bytes | memoryview]] = {
        "codebooks": [codebook_bytes],
        "codes": code_chunks,
        "labels": [label_bytes],
    }
    if soft is not None:
        payloads["soft_labels"] = [soft]
    if prov is not None:
        payloads["provenance"] = [prov]
    plan = section_plan(n, sample_shape, bits, group, codebook_dtype, class_names, prov,
                        soft is not None)
    for name, length in plan:
        got = sum(len(c) for c in payloads[name])
        if got != length:  # a bug here would write a file the reader rejects
            raise AssertionError(f"section {name}: built {got} bytes, planned {length}")
    return assemble_qdd(
        [(name, payloads[name]) for name, _ in plan], n=n, sample_shape=sample_shape,
        bits=bits, group=group, codebook_dtype=codebook_dtype, class_names=class_names,
        denorm=denorm, meta=meta, upsample=upsample, upsample_filter=upsample_filter,
    )


def assemble_qdd(
    sections: Sequence[tuple[str, Sequence[bytes | memoryview]]],
    *,
    n: int,
    sample_shape: Sequence[int],
    bits: int,
    group: str,
    codebook_dtype: str,
    class_names: Sequence[str],
    denorm: Denorm | None,
    meta: Mapping[str, Any] | None = None,
    minor: int = MINOR,
    upsample: int = 1,
    upsample_filter: str = "nearest",
) -> list[bytes | memoryview]:
    """Frame ready section payloads (name, byte chunks) with prefix, header and trailer.

    The one place that computes CRCs and lays out a file; `encode_qdd` and the zarr
    import both end here.
    """
    lengths = []
    crcs = {}
    for name, chunks in sections:
        crc = 0
        for chunk in chunks:
            crc = crc32c(chunk, crc)
        crcs[name] = crc
        lengths.append((name, sum(len(c) for c in chunks)))
    header = build_header(
        n=n, sample_shape=sample_shape, bits=bits, group=group, codebook_dtype=codebook_dtype,
        class_names=class_names, denorm=denorm, section_lengths=lengths, crcs=crcs, meta=meta,
        upsample=upsample, upsample_filter=upsample_filter,
    )
    total = PREFIX_SIZE + len(header) + sum(length for _, length in lengths) + TRAILER_SIZE
    # A file without the feature stays a 1.0 file, byte for byte what 1.0 writers made.
    required = FEATURE_UPSAMPLE if upsample != 1 else 0
    if required:
        minor = max(minor, UPSAMPLE_MINOR)
    if upsample_filter == "linear":
        required |= FEATURE_LINEAR
        minor = max(minor, LINEAR_MINOR)
    out: list[bytes | memoryview] = [pack_prefix(header, crc32c(header), minor, required),
                                     header]
    for _, chunks in sections:
        out.extend(chunks)
    out.append(pack_trailer(total))
    return out


def _codebook_bytes(levels, bits, group, n, sample_shape, codebook_dtype) -> bytes:
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


def _code_chunks(codes: np.ndarray, bits: int, progress) -> list[bytes | memoryview]:
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


def _label_bytes(labels, n: int, num_classes: int) -> bytes:
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


def _soft_label_bytes(soft, n: int, num_classes: int) -> bytes | None:
    if soft is None:
        return None
    soft = np.asarray(soft, dtype="<f4")
    if soft.shape != (n, num_classes) or not np.isfinite(soft).all():
        raise QddValueError(f"soft labels must be finite, of shape ({n}, {num_classes})")
    return soft.tobytes()


def write_qdd(path: str | os.PathLike, codes: np.ndarray, levels: np.ndarray | None,
              labels: np.ndarray | None, bits: int, group: str, class_names: Sequence[str],
              denorm: Denorm | None = None, codebook_dtype: str = "f4",
              provenance: Mapping[str, Any] | None = None,
              soft_labels: np.ndarray | None = None, meta: Mapping[str, Any] | None = None,
              progress: Any = None, upsample: int = 1,
              upsample_filter: str = "nearest") -> int:
    """Encode and write a `.qdd` file atomically; returns its size in bytes.

    The bytes go to a temporary file beside `path`, are flushed to disk, then renamed
    over `path`: a crash or an error leaves either the old file or none, never half a file.
    """
    chunks = encode_qdd(codes, levels, labels, bits, group, class_names, denorm,
                        codebook_dtype, provenance, soft_labels, meta, progress, upsample,
                        upsample_filter)
    return atomic_write(path, chunks)


def atomic_write(path: str | os.PathLike, chunks: Sequence[bytes | memoryview]) -> int:
    """Write chunks to `path` via temp file + fsync + rename; returns bytes written.

    Refuses `-`, a missing parent folder and an existing `path` that is not a regular
    file (see `paths.check_output_file`).
    """
    with atomic_open(path) as f:
        for chunk in chunks:
            f.write(chunk)
        return f.tell()

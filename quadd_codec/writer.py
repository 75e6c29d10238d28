"""`encode_qdd` and `write_qdd`: a `.qdd` file from arrays and keyword arguments.

Both are thin wrappers over `FileSpec` (quadd_codec.filespec), which holds the header
fields, checks them, and writes; use it directly to size and write several files alike.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import QddValueError
from .filespec import FileSpec
from .paths import atomic_write
from .rules import Denorm

__all__ = ["atomic_write", "encode_qdd", "write_qdd"]


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
    chunk: int = 0,
) -> list[bytes | memoryview]:
    """Build a whole `.qdd` file as a list of byte chunks (concatenated, they are the file).

    `codes` is uint8 (n, *sample_shape) with values < 2**bits, or for bits=32 the float32
    samples themselves (then `levels` is None). `levels` is (G, 2**bits), rows sorted.
    `progress`, if given, is called with the number of samples packed in each step.
    `upsample` > 1 marks the samples as stored at reduced resolution: readers decode
    each to `(C, H * upsample, W * upsample)`, by repeating values (FORMAT.md 7a) or,
    with `upsample_filter="linear"`, by bilinear interpolation (7b). `chunk` > 0 adds a
    CRC32C per `chunk` samples of codes (FORMAT.md 4a), checked as each is first read.
    """
    codes = np.asarray(codes)
    if codes.ndim < 2:
        raise QddValueError(f"codes must be (n, *sample_shape), got shape {codes.shape}")
    spec = FileSpec([str(c) for c in class_names], codes.shape[1:], bits, group,
                    codebook_dtype, denorm, provenance, upsample, upsample_filter, meta, chunk)
    return spec.encode(codes, levels, labels, soft_labels, progress)


def write_qdd(path: str | os.PathLike, codes: np.ndarray, levels: np.ndarray | None,
              labels: np.ndarray | None, bits: int, group: str, class_names: Sequence[str],
              denorm: Denorm | None = None, codebook_dtype: str = "f4",
              provenance: Mapping[str, Any] | None = None,
              soft_labels: np.ndarray | None = None, meta: Mapping[str, Any] | None = None,
              progress: Any = None, upsample: int = 1,
              upsample_filter: str = "nearest", chunk: int = 0) -> int:
    """Encode and write a `.qdd` file atomically; returns its size in bytes.

    The bytes go to a temporary file beside `path`, are flushed to disk, then renamed
    over `path`: a crash or an error leaves either the old file or none, never half a file.
    """
    chunks = encode_qdd(codes, levels, labels, bits, group, class_names, denorm,
                        codebook_dtype, provenance, soft_labels, meta, progress, upsample,
                        upsample_filter, chunk)
    return atomic_write(path, chunks)

"""`FileSpec`: every header field of a `.qdd` file but the sample count, as one value.

A spec is checked once, when it is made, against what the reader accepts. It then
answers how large a file of n samples is (`size`), how many samples per class fit a
byte budget (`max_samples_per_class`), and writes files (`encode`, `write`). Size and
writer build the very same header, so a planned size is exactly the written size.

>>> spec = FileSpec(["cat", "dog"], (3, 8, 8), bits=2)
>>> spec.size(10)
681
>>> spec.max_samples_per_class(681)
5
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .crc import crc32c
from .errors import QddValueError
from .header import build_header, pack_prefix, pack_trailer
from .layout import provenance_bytes, sample_nbytes, section_plan
from .paths import atomic_write
from .payloads import chunk_crc_bytes, code_chunks, codebook_bytes, label_bytes, soft_label_bytes
from .rules import (
    CHUNK_MINOR,
    FEATURE_LINEAR,
    FEATURE_UPSAMPLE,
    LINEAR_MINOR,
    MAX_COUNT,
    MAX_HEADER_BYTES,
    MAX_NDIM,
    MINOR,
    PREFIX_SIZE,
    TRAILER_SIZE,
    UPSAMPLE_MINOR,
    Denorm,
    channels_of,
    check_bits,
    check_class_names,
    check_codebook_dtype,
    check_group,
    meta_problem,
    upsample_problem,
)

Chunks = list[bytes | memoryview]


@dataclass(frozen=True)
class FileSpec:
    """The header fields of a `.qdd` file; `sample_shape` is the stored per-sample shape
    (before `upsample`). `bits` is 1..8, or 32 for raw float32 samples. `provenance` is
    written as its own section, `meta` into the header."""

    class_names: Sequence[str]
    sample_shape: Sequence[int]
    bits: int
    group: str = "channel"
    codebook_dtype: str = "f4"
    denorm: Denorm | None = None
    provenance: Mapping[str, Any] | None = None
    upsample: int = 1
    upsample_filter: str = "nearest"
    meta: Mapping[str, Any] | None = None
    chunk: int = 0  # samples per checksummed chunk of codes (FORMAT.md 4a); 0: none
    _provenance_bytes: bytes | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "class_names", tuple(self.class_names))
        set_(self, "sample_shape", tuple(int(d) for d in self.sample_shape))
        set_(self, "bits", check_bits(self.bits, raw=True))
        check_group(self.group)
        check_codebook_dtype(self.codebook_dtype)
        shape = self.sample_shape
        if not 1 <= len(shape) <= MAX_NDIM or any(d < 1 for d in shape):
            raise QddValueError(
                f"per-sample shape must have 1..{MAX_NDIM} positive dims, got {shape}")
        if math.prod(shape) > MAX_COUNT:
            raise QddValueError("sample count or sample size is out of range")
        check_class_names(self.class_names)
        if self.denorm is not None and len(self.denorm.scale) != channels_of(shape):
            raise QddValueError(
                f"denorm has {len(self.denorm.scale)} channels, samples have "
                f"{channels_of(shape)}")
        problem = upsample_problem(self.upsample, shape, self.upsample_filter)
        if problem:
            raise QddValueError(problem)
        if not isinstance(self.chunk, int) or isinstance(self.chunk, bool) or \
                not 0 <= self.chunk <= MAX_COUNT:
            raise QddValueError(f"chunk must be a sample count in 0..2^40, got {self.chunk!r}")
        if self.meta is not None:
            problem = meta_problem(dict(self.meta))
            if problem:
                raise QddValueError(problem)
        set_(self, "_provenance_bytes", provenance_bytes(self.provenance))

    # ------------------------------------------------------------------- sizes

    def sections(self, n: int, soft_labels: bool = False) -> list[tuple[str, int]]:
        """(name, length) of every section a file of `n` samples holds, in file order."""
        _check_count(n)
        return section_plan(n, self.sample_shape, self.bits, self.group, self.codebook_dtype,
                            self.class_names, self._provenance_bytes, soft_labels, self.chunk)

    def header(self, n: int, sections: Sequence[tuple[str, int]],
               crcs: Mapping[str, int] | None = None) -> bytes:
        """The msgpack header of a file of `n` samples with these sections; its length
        never depends on the CRCs."""
        header = build_header(
            n=n, sample_shape=self.sample_shape, bits=self.bits, group=self.group,
            codebook_dtype=self.codebook_dtype, class_names=self.class_names,
            denorm=self.denorm, section_lengths=sections, crcs=crcs, meta=self.meta,
            upsample=self.upsample, upsample_filter=self.upsample_filter, chunk=self.chunk,
        )
        if len(header) > MAX_HEADER_BYTES:  # every reader refuses it (FORMAT.md 3)
            raise QddValueError(
                f"the header would be {len(header):,} bytes, over the {MAX_HEADER_BYTES:,}-byte "
                f"cap: {len(self.class_names):,} class names (and meta) are too long")
        return header

    def size(self, n: int, soft_labels: bool = False) -> int:
        """Exact size in bytes of the file of `n` samples that `write` produces."""
        lengths = self.sections(n, soft_labels)
        return (PREFIX_SIZE + len(self.header(n, lengths))
                + sum(length for _, length in lengths) + TRAILER_SIZE)

    def max_samples_per_class(self, budget_bytes: int, soft_labels: bool = False) -> int:
        """Largest samples-per-class count whose file fits in `budget_bytes` (0: not even
        one sample per class fits)."""
        k = max(1, len(self.class_names))

        def size(ipc: int) -> int:
            return self.size(ipc * k, soft_labels)

        if size(1) > budget_bytes:
            return 0
        lo, hi = 1, 2
        while size(hi) <= budget_bytes:
            lo, hi = hi, hi * 2
        # Size grows monotonically with the count, so bisection finds the exact boundary.
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if size(mid) <= budget_bytes:
                lo = mid
            else:
                hi = mid
        return lo

    # ----------------------------------------------------------------- writing

    def encode(self, codes: np.ndarray, levels: np.ndarray | None, labels: np.ndarray | None,
               soft_labels: np.ndarray | None = None, progress: Any = None) -> Chunks:
        """The whole file as byte chunks (concatenated, they are the file).

        `codes` is uint8 (n, *sample_shape) with values < 2**bits, or for bits=32 the
        float32 samples themselves (then `levels` is None). `levels` is (G, 2**bits),
        rows sorted. `progress`, if given, is called with the samples packed per step.
        """
        codes = np.asarray(codes)
        if codes.ndim < 2 or tuple(codes.shape[1:]) != self.sample_shape:
            raise QddValueError(f"codes must be (n, *{self.sample_shape}), got shape "
                                f"{codes.shape}")
        n = codes.shape[0]
        _check_count(n)
        k = len(self.class_names)
        payloads: dict[str, Chunks] = {
            "codebooks": [codebook_bytes(levels, self.bits, self.group, n, self.sample_shape,
                                         self.codebook_dtype)],
            "codes": code_chunks(codes, self.bits, progress),
            "labels": [label_bytes(labels, n, k)],
        }
        if self.chunk:
            size = sample_nbytes(math.prod(self.sample_shape), self.bits)
            payloads["chunk_crcs"] = [chunk_crc_bytes(payloads["codes"], self.chunk * size)]
        soft = soft_label_bytes(soft_labels, n, k)
        if soft is not None:
            payloads["soft_labels"] = [soft]
        if self._provenance_bytes is not None:
            payloads["provenance"] = [self._provenance_bytes]
        plan = self.sections(n, soft is not None)
        for name, length in plan:
            got = sum(len(c) for c in payloads[name])
            if got != length:  # a bug here would write a file the reader rejects
                raise AssertionError(f"section {name}: built {got} bytes, planned {length}")
        return self.frame(n, [(name, payloads[name]) for name, _ in plan])

    def frame(self, n: int, sections: Sequence[tuple[str, Sequence[bytes | memoryview]]],
              minor: int = MINOR) -> Chunks:
        """Frame ready section payloads (name, byte chunks) with prefix, header, trailer.

        The one place that computes CRCs and lays out a file; `encode` and the zarr
        import both end here. `minor` is raised to what the features in use need.
        """
        lengths = []
        crcs = {}
        for name, chunks in sections:
            crc = 0
            for chunk in chunks:
                crc = crc32c(chunk, crc)
            crcs[name] = crc
            lengths.append((name, sum(len(c) for c in chunks)))
        header = self.header(n, lengths, crcs)
        total = PREFIX_SIZE + len(header) + sum(length for _, length in lengths) + TRAILER_SIZE
        # A file without the feature stays a 1.0 file, byte for byte what 1.0 writers made.
        required = FEATURE_UPSAMPLE if self.upsample != 1 else 0
        if required:
            minor = max(minor, UPSAMPLE_MINOR)
        if self.upsample_filter == "linear":
            required |= FEATURE_LINEAR
            minor = max(minor, LINEAR_MINOR)
        if self.chunk:
            minor = max(minor, CHUNK_MINOR)
        out: Chunks = [pack_prefix(header, crc32c(header), minor, required), header]
        for _, chunks in sections:
            out.extend(chunks)
        out.append(pack_trailer(total))
        return out

    def write(self, path: str | os.PathLike, codes: np.ndarray, levels: np.ndarray | None,
              labels: np.ndarray | None, soft_labels: np.ndarray | None = None,
              progress: Any = None) -> int:
        """Encode and write the file atomically (see `paths.atomic_write`); returns its
        size in bytes."""
        return atomic_write(path, self.encode(codes, levels, labels, soft_labels, progress))


def _check_count(n: int) -> None:
    if n < 0 or n > MAX_COUNT:
        raise QddValueError("sample count or sample size is out of range")


def encoded_size(
    n: int,
    sample_shape: Sequence[int],
    bits: int,
    group: str,
    class_names: Sequence[str],
    codebook_dtype: str = "f4",
    denorm: Denorm | None = None,
    provenance: Mapping[str, Any] | None = None,
    soft_labels: bool = False,
    meta: Mapping[str, Any] | None = None,
    upsample: int = 1,
    upsample_filter: str = "nearest",
) -> int:
    """Exact size in bytes of the `.qdd` file `write_qdd` produces for these arguments.

    `sample_shape` is the stored shape (before `upsample`)."""
    spec = FileSpec(class_names, sample_shape, bits, group, codebook_dtype, denorm, provenance,
                    upsample, upsample_filter, meta)
    return spec.size(n, soft_labels)


def max_samples_per_class(
    budget_bytes: int,
    sample_shape: Sequence[int],
    bits: int,
    class_names: Sequence[str],
    group: str = "channel",
    codebook_dtype: str = "f4",
    denorm: Denorm | None = None,
    provenance: Mapping[str, Any] | None = None,
    soft_labels: bool = False,
    meta: Mapping[str, Any] | None = None,
    upsample: int = 1,
    upsample_filter: str = "nearest",
) -> int:
    """Largest samples-per-class count whose file fits in `budget_bytes` (0 if none does)."""
    spec = FileSpec(class_names, sample_shape, bits, group, codebook_dtype, denorm, provenance,
                    upsample, upsample_filter, meta)
    return spec.max_samples_per_class(budget_bytes, soft_labels)

"""Where a `.qdd` file's bytes go: its sections, their exact lengths, the parsed `Layout`.

Sizes are computed here and nowhere else; `FileSpec` adds the header's length to them,
so a budget computed before training is exactly the size the writer produces.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from .bitpack import packed_nbytes
from .errors import QddLayoutError, QddValueError
from .resample import output_shape
from .rules import (
    CODEBOOK_DTYPES,
    PREFIX_SIZE,
    RAW_BITS,
    TRAILER_SIZE,
    Denorm,
    channels_of,
    group_count,
)

__all__ = ["EXTRA_SECTIONS", "REQUIRED_SECTIONS", "Layout", "Section", "check_section_lengths",
           "chunk_count", "extra_length", "label_bits", "provenance_bytes", "required_lengths",
           "sample_nbytes", "section_plan"]

REQUIRED_SECTIONS = ("codebooks", "codes", "labels")
EXTRA_SECTIONS = ("chunk_crcs", "soft_labels", "provenance")


@dataclass(frozen=True)
class Section:
    name: str
    offset: int  # relative to the first byte after the header
    length: int
    crc: int


@dataclass(frozen=True)
class Layout:
    """Everything the header says, validated, plus the derived sizes."""

    n: int
    sample_shape: tuple[int, ...]
    bits: int
    group: str
    codebook_dtype: str
    class_names: tuple[str, ...]
    denorm: Denorm | None
    sections: tuple[Section, ...]
    header_len: int
    minor: int
    meta: dict[str, Any] = field(default_factory=dict)
    upsample: int = 1  # integer factor on the last two axes; 1: stored at full size
    upsample_filter: str = "nearest"  # how that enlargement is computed (sections 7a, 7b)
    chunk: int = 0  # samples per checksummed chunk of the codes section; 0: none

    @property
    def chunks(self) -> int:
        """How many checksummed chunks the codes section has (0 without `chunk`)."""
        return chunk_count(self.n, self.chunk)

    @property
    def values_per_sample(self) -> int:
        return math.prod(self.sample_shape)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of one decoded sample: the stored shape, upsampled."""
        return output_shape(self.sample_shape, self.upsample)

    @property
    def channels(self) -> int:
        return channels_of(self.sample_shape)

    @property
    def num_levels(self) -> int:
        return 0 if self.bits == RAW_BITS else 1 << self.bits

    @property
    def groups(self) -> int:
        return 0 if self.bits == RAW_BITS else group_count(self.group, self.n, self.sample_shape)

    @property
    def sample_nbytes(self) -> int:
        return sample_nbytes(self.values_per_sample, self.bits)

    @property
    def label_bits(self) -> int:
        return label_bits(len(self.class_names))

    @property
    def data_start(self) -> int:
        return PREFIX_SIZE + self.header_len

    @property
    def file_size(self) -> int:
        return self.data_start + sum(s.length for s in self.sections) + TRAILER_SIZE

    def section(self, name: str) -> Section | None:
        for s in self.sections:
            if s.name == name:
                return s
        return None


def chunk_count(n: int, chunk: int) -> int:
    return -(-n // chunk) if chunk else 0


def label_bits(num_classes: int) -> int:
    """Bits per packed label: ceil(log2 K); 0 when K <= 1 (nothing to tell apart)."""
    return max(0, (num_classes - 1).bit_length())


def sample_nbytes(values_per_sample: int, bits: int) -> int:
    if bits == RAW_BITS:
        return 4 * values_per_sample
    return packed_nbytes(values_per_sample, bits)


def required_lengths(
    n: int,
    sample_shape: Sequence[int],
    bits: int,
    group: str,
    codebook_dtype: str,
    num_classes: int,
) -> dict[str, int]:
    """Exact byte lengths of the three required sections."""
    values = math.prod(sample_shape)
    if bits == RAW_BITS:
        codebooks = 0
    else:
        tables = group_count(group, n, sample_shape)
        codebooks = tables * (1 << bits) * CODEBOOK_DTYPES[codebook_dtype]
    return {
        "codebooks": codebooks,
        "codes": n * sample_nbytes(values, bits),
        "labels": packed_nbytes(n, label_bits(num_classes)) if num_classes > 1 else 0,
    }


def extra_length(name: str, n: int, num_classes: int, chunk: int = 0) -> int | None:
    """Fixed length of a known extra section, or None when its length is free-form."""
    if name == "soft_labels":
        return n * num_classes * 4
    if name == "chunk_crcs":
        return 4 * chunk_count(n, chunk)
    return None


def provenance_bytes(provenance: Mapping[str, Any] | None) -> bytes | None:
    if provenance is None:
        return None
    try:
        return msgpack.packb(dict(provenance), use_bin_type=True)
    except Exception as exc:
        raise QddValueError(f"provenance must be msgpack-serializable: {exc}") from None


def section_plan(
    n: int,
    sample_shape: Sequence[int],
    bits: int,
    group: str,
    codebook_dtype: str,
    class_names: Sequence[str],
    provenance: bytes | None,
    soft_labels: bool,
    chunk: int = 0,
) -> list[tuple[str, int]]:
    """(name, length) of every section the writer emits, in file order."""
    lengths = required_lengths(n, sample_shape, bits, group, codebook_dtype, len(class_names))
    plan = [(name, lengths[name]) for name in REQUIRED_SECTIONS]
    if chunk:
        plan.append(("chunk_crcs", 4 * chunk_count(n, chunk)))
    if soft_labels:
        plan.append(("soft_labels", n * len(class_names) * 4))
    if provenance is not None:
        plan.append(("provenance", len(provenance)))
    return plan


def check_section_lengths(layout: Layout) -> None:
    """Refuse a layout whose sections do not have the lengths its header implies."""
    want = required_lengths(
        layout.n, layout.sample_shape, layout.bits, layout.group, layout.codebook_dtype,
        len(layout.class_names),
    )
    for section in layout.sections:
        expected = want.get(section.name)
        if expected is None:
            expected = extra_length(section.name, layout.n, len(layout.class_names),
                                    layout.chunk)
        if expected is not None and section.length != expected:
            raise QddLayoutError(
                f"section {section.name!r} is {section.length} bytes; the header implies {expected}"
            )

"""The `.qdd` v1 container: signature, prefix, header, section table, trailer, sizes.

This module is the single source of truth for how many bytes a file takes: the writer
builds its header here and `encoded_size` builds the very same header, so a budget
computed before training is exactly the size the writer produces.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from .bitpack import packed_nbytes
from .codebook import GROUPS, channels_of, group_count
from .errors import (
    QddFeatureError,
    QddHeaderError,
    QddLayoutError,
    QddSignatureError,
    QddTruncatedError,
    QddValueError,
    QddVersionError,
)

SIGNATURE = b"\x89QDD\r\n\x1a\n"
MAJOR = 1
MINOR = 0
#: Minor version of files that use the `upsample` feature (section 7a of FORMAT.md).
UPSAMPLE_MINOR = 1
#: Minor version of files that enlarge by linear interpolation (section 7b).
LINEAR_MINOR = 2
#: Required-feature bit 0: samples are stored at reduced resolution (header `upsample`).
FEATURE_UPSAMPLE = 1
#: Required-feature bit 1: they are enlarged by linear interpolation (`upsample_filter`).
FEATURE_LINEAR = 2
#: Required-feature bits this reader implements.
KNOWN_REQUIRED_FEATURES = FEATURE_UPSAMPLE | FEATURE_LINEAR
#: Enlargement filters; the first is the default, left out of the header.
UPSAMPLE_FILTERS = ("nearest", "linear")
MAX_UPSAMPLE = 16
PREFIX = struct.Struct("<8sHHIII")  # signature, major, minor, required features, header len, crc
PREFIX_SIZE = PREFIX.size  # 24
TRAILER = struct.Struct("<Q4s")  # total file size, end magic
TRAILER_SIZE = TRAILER.size  # 12
END_MAGIC = b"QEND"
MAX_HEADER_BYTES = 1 << 20
MAX_CLASSES = 65536
MAX_CLASS_NAME_BYTES = 256
MAX_NDIM = 8
#: Cap on sample count and values per sample: keeps every size an exact Python int that
#: a hostile header can't push into absurd ranges before it is checked against the file.
MAX_COUNT = 1 << 40

REQUIRED_SECTIONS = ("codebooks", "codes", "labels")
EXTRA_SECTIONS = ("soft_labels", "provenance")
CODEBOOK_DTYPES = {"f4": 4, "f2": 2}
RAW_BITS = 32
_CRC_PLACEHOLDER = b"\x00\x00\x00\x00"


@dataclass(frozen=True)
class Denorm:
    """Per-channel affine map from stored values to the source value space.

    source = stored * scale[c] + offset[c]; e.g. data stored normalized by mean/std
    carries scale=std, offset=mean and decodes back to [0, 1] pixels.
    """

    scale: tuple[float, ...]
    offset: tuple[float, ...]

    def __init__(self, scale: Sequence[float], offset: Sequence[float]) -> None:
        # Stored as float32 in the header, so round here: what you build is what you read.
        object.__setattr__(self, "scale", tuple(float(np.float32(s)) for s in scale))
        object.__setattr__(self, "offset", tuple(float(np.float32(o)) for o in offset))
        if len(self.scale) != len(self.offset) or not self.scale:
            raise QddValueError("denorm scale and offset need one value per channel each")
        if not all(math.isfinite(v) for v in self.scale + self.offset):
            raise QddValueError("denorm scale and offset must be finite")


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
    problem = _upsample_problem(upsample, stored)
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


def extra_length(name: str, n: int, num_classes: int) -> int | None:
    """Fixed length of a known extra section, or None when its length is free-form."""
    if name == "soft_labels":
        return n * num_classes * 4
    return None


def build_header(
    *,
    n: int,
    sample_shape: Sequence[int],
    bits: int,
    group: str,
    codebook_dtype: str,
    class_names: Sequence[str],
    denorm: Denorm | None,
    section_lengths: Sequence[tuple[str, int]],
    crcs: Mapping[str, int] | None = None,
    meta: Mapping[str, Any] | None = None,
    upsample: int = 1,
    upsample_filter: str = "nearest",
) -> bytes:
    """msgpack header bytes. Sizes never depend on CRC values (always 4-byte bin)."""
    sections = []
    offset = 0
    for name, length in section_lengths:
        crc = _CRC_PLACEHOLDER if crcs is None else struct.pack(">I", crcs[name])
        sections.append([name, offset, length, crc])
        offset += length
    # Optional fields are left out at their defaults (cb_dtype "f4", no denorm): every
    # byte of header counts against a user's budget.
    header: dict[str, Any] = {
        "n": n,
        "shape": list(sample_shape),
        "bits": bits,
        "group": group,
        "classes": list(class_names),
        "sections": sections,
    }
    if codebook_dtype != "f4":
        header["cb_dtype"] = codebook_dtype
    if denorm is not None:
        header["denorm"] = [list(denorm.scale), list(denorm.offset)]
    if meta:
        header["meta"] = dict(meta)
    if upsample != 1:
        header["upsample"] = int(upsample)
    if upsample_filter != UPSAMPLE_FILTERS[0]:
        header["upsample_filter"] = upsample_filter
    # Single floats: the de-normalization constants are float32 values, and 5 bytes
    # each instead of 9 keeps the container overhead small.
    return msgpack.packb(header, use_bin_type=True, use_single_float=True)


def pack_prefix(header: bytes, header_crc: int, minor: int = MINOR, required: int = 0) -> bytes:
    return PREFIX.pack(SIGNATURE, MAJOR, minor, required, len(header), header_crc)


def pack_trailer(file_size: int) -> bytes:
    return TRAILER.pack(file_size, END_MAGIC)


def check_write_args(
    n: int,
    sample_shape: Sequence[int],
    bits: int,
    group: str,
    codebook_dtype: str,
    class_names: Sequence[str],
    denorm: Denorm | None,
    upsample: int = 1,
    upsample_filter: str = "nearest",
) -> None:
    """Reject what the reader would reject, before a single byte is written."""
    if bits != RAW_BITS and not (isinstance(bits, int) and 1 <= bits <= 8):
        raise QddValueError(f"bits must be 1..8 (or 32 for raw float32), got {bits!r}")
    if group not in GROUPS:
        raise QddValueError(f"unknown group {group!r}; expected one of {', '.join(GROUPS)}")
    if codebook_dtype not in CODEBOOK_DTYPES:
        raise QddValueError(f"codebook dtype must be 'f4' or 'f2', got {codebook_dtype!r}")
    if not 1 <= len(sample_shape) <= MAX_NDIM or any(int(d) < 1 for d in sample_shape):
        raise QddValueError(
            f"per-sample shape must have 1..{MAX_NDIM} positive dims, got {sample_shape}"
        )
    if n < 0 or n > MAX_COUNT or math.prod(sample_shape) > MAX_COUNT:
        raise QddValueError("sample count or sample size is out of range")
    if len(class_names) > MAX_CLASSES:
        raise QddValueError(f"at most {MAX_CLASSES} classes are supported")
    _check_class_names(class_names, QddValueError)
    if denorm is not None and len(denorm.scale) != channels_of(sample_shape):
        raise QddValueError(
            f"denorm has {len(denorm.scale)} channels, samples have {channels_of(sample_shape)}"
        )
    problem = _upsample_problem(upsample, sample_shape, upsample_filter)
    if problem:
        raise QddValueError(problem)


def _upsample_problem(upsample: Any, sample_shape: Sequence[int],
                      upsample_filter: Any = "nearest") -> str | None:
    if not isinstance(upsample, int) or isinstance(upsample, bool):
        return f"upsample must be an integer, got {upsample!r}"
    if not 1 <= upsample <= MAX_UPSAMPLE:
        return f"upsample must be 1..{MAX_UPSAMPLE}, got {upsample}"
    if upsample > 1 and len(sample_shape) < 3:
        return ("upsample needs samples of 3 or more dims (channels, height, width), "
                f"got shape {tuple(sample_shape)}")
    if math.prod(output_shape(sample_shape, upsample)) > MAX_COUNT:
        return "upsampled samples are too large"
    if not isinstance(upsample_filter, str) or upsample_filter not in UPSAMPLE_FILTERS:
        return (f"unknown upsample filter {upsample_filter!r}; expected one of "
                f"{', '.join(UPSAMPLE_FILTERS)}")
    if upsample_filter != UPSAMPLE_FILTERS[0] and upsample == 1:
        return f"upsample filter {upsample_filter!r} needs an upsample factor of 2 or more"
    return None


def _check_class_names(names: Sequence[Any], error: type[Exception]) -> None:
    seen = set()
    for name in names:
        if not isinstance(name, str):
            raise error(f"class names must be strings, got {type(name).__name__}")
        if len(name.encode("utf-8")) > MAX_CLASS_NAME_BYTES or "\x00" in name or not name:
            raise error(f"class name {name[:40]!r} is empty, too long or holds a NUL byte")
        if name in seen:
            raise error(f"class name {name!r} appears twice")
        seen.add(name)


# --------------------------------------------------------------------------- reading


def parse_prefix(prefix: bytes, file_size: int | None) -> tuple[int, int, int]:
    """Validate the 24-byte prefix; returns (minor, header_len, required features). The
    header CRC check is left to the caller. `file_size` is None for streams of unknown
    length."""
    if len(prefix) < len(SIGNATURE) or prefix[: len(SIGNATURE)] != SIGNATURE:
        if SIGNATURE.startswith(bytes(prefix[: len(SIGNATURE)])) and len(prefix) < len(SIGNATURE):
            raise QddTruncatedError(f"file is truncated: {len(prefix)} bytes, no full signature")
        raise QddSignatureError(_signature_hint(bytes(prefix[: len(SIGNATURE)])))
    if len(prefix) < PREFIX_SIZE:
        raise QddTruncatedError(f"file is truncated inside its {PREFIX_SIZE}-byte prefix")
    _, major, minor, required, header_len, _ = PREFIX.unpack(prefix[:PREFIX_SIZE])
    if major != MAJOR:
        raise QddVersionError(f"file is .qdd version {major}.{minor}; this reader reads {MAJOR}.x")
    unknown = required & ~KNOWN_REQUIRED_FEATURES
    if unknown:
        raise QddFeatureError(f"file needs required features 0x{unknown:08x} this reader lacks")
    if header_len > MAX_HEADER_BYTES:
        raise QddHeaderError(f"header claims {header_len} bytes, over the {MAX_HEADER_BYTES} cap")
    if file_size is not None and PREFIX_SIZE + header_len + TRAILER_SIZE > file_size:
        raise QddTruncatedError(
            f"file is truncated: header of {header_len} bytes doesn't fit in {file_size} bytes"
        )
    return minor, header_len, required


def _signature_hint(head: bytes) -> str:
    fixed = head.replace(b"\r\n", b"\n")
    if head.startswith(b"\x89QDD") or fixed != head:
        return "not a .qdd file: signature damaged (was it copied in text mode?)"
    return "not a .qdd file: wrong signature"


def header_crc(prefix: bytes) -> int:
    return PREFIX.unpack(prefix[:PREFIX_SIZE])[5]


def parse_trailer(trailer: bytes, file_size: int) -> None:
    size, magic = TRAILER.unpack(trailer)
    if magic != END_MAGIC or size != file_size:
        raise QddTruncatedError(
            f"file is truncated or has trailing bytes: trailer says {size} bytes, "
            f"file has {file_size}" if magic == END_MAGIC else
            "file is truncated or damaged: no end marker in its last 12 bytes"
        )


def parse_header(raw: bytes, minor: int, required: int = 0) -> Layout:
    """Decode and validate a header against the v1 schema and the layout rules.

    `required` is the prefix's required-feature word: a feature's header field and its
    bit must agree."""
    try:
        # unpackb caps every string, array and map length by len(raw): no blow-up.
        header = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises many unrelated types on garbage
        raise QddHeaderError(f"header is not valid msgpack: {exc}") from None
    if not isinstance(header, dict):
        raise QddHeaderError("header must be a msgpack map")

    def get(key: str, kind: type | tuple[type, ...]) -> Any:
        if key not in header:
            raise QddHeaderError(f"header lacks required field {key!r}")
        value = header[key]
        if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
            raise QddHeaderError(f"header field {key!r} has the wrong type")
        return value

    n = get("n", int)
    shape = get("shape", list)
    bits = get("bits", int)
    group = get("group", str)
    cb_dtype = header.get("cb_dtype", "f4")
    classes = get("classes", list)
    denorm_raw = header.get("denorm")
    sections_raw = get("sections", list)
    meta = header.get("meta", {})

    if not 0 <= n <= MAX_COUNT:
        raise QddHeaderError(f"sample count {n} is out of range")
    if not 1 <= len(shape) <= MAX_NDIM or not all(
        isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= MAX_COUNT for d in shape
    ):
        raise QddHeaderError(f"per-sample shape {shape!r} is invalid")
    if math.prod(shape) > MAX_COUNT:
        raise QddHeaderError("samples are too large")
    if not (1 <= bits <= 8 or bits == RAW_BITS):
        raise QddHeaderError(f"bit width {bits} is not 1..8 or 32")
    if group not in GROUPS:
        raise QddHeaderError(f"unknown group {group!r}")
    if not isinstance(cb_dtype, str) or cb_dtype not in CODEBOOK_DTYPES:
        raise QddHeaderError(f"unknown codebook dtype {cb_dtype!r}")
    if len(classes) > MAX_CLASSES:
        raise QddHeaderError("too many classes")
    _check_class_names(classes, QddHeaderError)
    if not isinstance(meta, dict):
        raise QddHeaderError("header field 'meta' must be a map")
    upsample = header.get("upsample", 1)
    if "upsample" in header and upsample == 1:
        raise QddHeaderError("header field 'upsample' must be left out when it is 1")
    upsample_filter = header.get("upsample_filter", UPSAMPLE_FILTERS[0])
    if "upsample_filter" in header and upsample_filter == UPSAMPLE_FILTERS[0]:
        raise QddHeaderError(
            f"header field 'upsample_filter' must be left out when it is {upsample_filter!r}")
    problem = _upsample_problem(upsample, shape, upsample_filter)
    if problem:
        raise QddHeaderError(problem)
    if (upsample != 1) != bool(required & FEATURE_UPSAMPLE):
        raise QddHeaderError(
            "header field 'upsample' and required-feature bit 0 disagree: the file is damaged"
        )
    if (upsample_filter == "linear") != bool(required & FEATURE_LINEAR):
        raise QddHeaderError("header field 'upsample_filter' and required-feature bit 1 "
                             "disagree: the file is damaged")

    denorm = None
    if denorm_raw is not None:
        c = channels_of(shape)
        if not (
            isinstance(denorm_raw, list) and len(denorm_raw) == 2
            and all(isinstance(part, list) and len(part) == c for part in denorm_raw)
            and all(isinstance(v, float) and math.isfinite(v) for part in denorm_raw for v in part)
        ):
            raise QddHeaderError(f"denorm must be [scale, offset], each {c} finite floats")
        scale, offset = denorm_raw
        denorm = Denorm(scale, offset)

    sections = _parse_sections(sections_raw)
    layout = Layout(
        n=n, sample_shape=tuple(shape), bits=bits, group=group, codebook_dtype=cb_dtype,
        class_names=tuple(classes), denorm=denorm, sections=sections, header_len=len(raw),
        minor=minor, meta=meta, upsample=upsample, upsample_filter=upsample_filter,
    )
    _check_section_lengths(layout)
    return layout


def _parse_sections(raw: list) -> tuple[Section, ...]:
    sections = []
    seen: set[str] = set()  # a set, not a scan: a 1 MiB header can list ~80k sections
    expected_offset = 0
    for i, entry in enumerate(raw):
        if not (
            isinstance(entry, list) and len(entry) == 4
            and isinstance(entry[0], str) and entry[0]
            and all(isinstance(v, int) and not isinstance(v, bool) for v in entry[1:3])
            and isinstance(entry[3], bytes) and len(entry[3]) == 4
        ):
            raise QddHeaderError(f"section entry {i} is malformed")
        name, offset, length, crc = entry
        if i < len(REQUIRED_SECTIONS) and name != REQUIRED_SECTIONS[i]:
            raise QddLayoutError(
                f"section {i} is {name!r}; sections must start with {', '.join(REQUIRED_SECTIONS)}"
            )
        if name in seen:
            raise QddLayoutError(f"section {name!r} appears twice")
        seen.add(name)
        if length < 0 or length > MAX_COUNT * 8:
            raise QddLayoutError(f"section {name!r} has an out-of-range length {length}")
        if offset != expected_offset:
            kind = "overlaps the previous one" if offset < expected_offset else "leaves a hole"
            raise QddLayoutError(f"section {name!r} at offset {offset} {kind}")
        expected_offset = offset + length
        sections.append(Section(name, offset, length, struct.unpack(">I", crc)[0]))
    if len(sections) < len(REQUIRED_SECTIONS):
        raise QddLayoutError(f"file lacks sections: needs {', '.join(REQUIRED_SECTIONS)}")
    return tuple(sections)


def _check_section_lengths(layout: Layout) -> None:
    want = required_lengths(
        layout.n, layout.sample_shape, layout.bits, layout.group, layout.codebook_dtype,
        len(layout.class_names),
    )
    for section in layout.sections:
        expected = want.get(section.name)
        if expected is None:
            expected = extra_length(section.name, layout.n, len(layout.class_names))
        if expected is not None and section.length != expected:
            raise QddLayoutError(
                f"section {section.name!r} is {section.length} bytes; the header implies {expected}"
            )


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
    sample_shape = tuple(int(d) for d in sample_shape)
    check_write_args(n, sample_shape, bits, group, codebook_dtype, class_names, denorm,
                     upsample, upsample_filter)
    lengths = section_plan(n, sample_shape, bits, group, codebook_dtype, class_names,
                           provenance_bytes(provenance), soft_labels)
    header = build_header(
        n=n, sample_shape=sample_shape, bits=bits, group=group, codebook_dtype=codebook_dtype,
        class_names=class_names, denorm=denorm, section_lengths=lengths, meta=meta,
        upsample=upsample, upsample_filter=upsample_filter,
    )
    return PREFIX_SIZE + len(header) + sum(length for _, length in lengths) + TRAILER_SIZE


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
) -> list[tuple[str, int]]:
    """(name, length) of every section the writer emits, in file order."""
    lengths = required_lengths(n, sample_shape, bits, group, codebook_dtype, len(class_names))
    plan = [(name, lengths[name]) for name in REQUIRED_SECTIONS]
    if soft_labels:
        plan.append(("soft_labels", extra_length("soft_labels", n, len(class_names))))
    if provenance is not None:
        plan.append(("provenance", len(provenance)))
    return plan


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
    k = max(1, len(class_names))

    def size(ipc: int) -> int:
        return encoded_size(ipc * k, sample_shape, bits, group, class_names, codebook_dtype,
                            denorm, provenance, soft_labels, meta, upsample, upsample_filter)

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

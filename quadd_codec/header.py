"""The `.qdd` v1 framing: the 24-byte prefix, the msgpack header and the 12-byte trailer.

Building and parsing only; section lengths come from `quadd_codec.layout` and the
rules every field obeys from `quadd_codec.rules`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

import msgpack

from .crc import crc32c
from .errors import (
    QddChecksumError,
    QddFeatureError,
    QddHeaderError,
    QddLayoutError,
    QddSignatureError,
    QddTruncatedError,
    QddVersionError,
)
from .layout import REQUIRED_SECTIONS, Layout, Section, check_section_lengths
from .rules import (
    CODEBOOK_DTYPES,
    END_MAGIC,
    FEATURE_LINEAR,
    FEATURE_UPSAMPLE,
    GROUPS,
    KNOWN_REQUIRED_FEATURES,
    MAJOR,
    MAX_BITS,
    MAX_CLASSES,
    MAX_COUNT,
    MAX_HEADER_BYTES,
    MAX_NDIM,
    MIN_BITS,
    MINOR,
    PREFIX,
    PREFIX_SIZE,
    RAW_BITS,
    SIGNATURE,
    TRAILER,
    TRAILER_SIZE,
    UPSAMPLE_FILTERS,
    Denorm,
    channels_of,
    check_class_names,
    upsample_problem,
)

_CRC_PLACEHOLDER = b"\x00\x00\x00\x00"
#: Largest finite float32: a header float beyond it would round to infinity.
_F32_MAX = 3.4028234663852886e38
#: Bytes read from a stream per call.
_STREAM_CHUNK = 1 << 20


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
    chunk: int = 0,
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
    if chunk:
        header["chunk"] = int(chunk)
    # Single floats: the de-normalization constants are float32 values, and 5 bytes
    # each instead of 9 keeps the container overhead small.
    return msgpack.packb(header, use_bin_type=True, use_single_float=True)


def pack_prefix(header: bytes, header_crc: int, minor: int = MINOR, required: int = 0) -> bytes:
    return PREFIX.pack(SIGNATURE, MAJOR, minor, required, len(header), header_crc)


def pack_trailer(file_size: int) -> bytes:
    return TRAILER.pack(file_size, END_MAGIC)


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
        header = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True,
                                 object_pairs_hook=_unique_map)
    except _DuplicateKey as exc:
        raise QddHeaderError(f"header map has the key {exc.args[0]!r:.60} twice") from None
    except msgpack.ExtraData:
        raise QddHeaderError("header has bytes after its msgpack map") from None
    except msgpack.StackError:
        raise QddHeaderError("header is not valid msgpack: nested too deep") from None
    except Exception as exc:  # msgpack raises many unrelated types on garbage
        why = str(exc) or type(exc).__name__
        raise QddHeaderError(f"header is not valid msgpack: {why}") from None
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
    if not (MIN_BITS <= bits <= MAX_BITS or bits == RAW_BITS):
        raise QddHeaderError(f"bit width {bits} is not 1..8 or 32")
    if group not in GROUPS:
        raise QddHeaderError(f"unknown group {group!r}")
    if not isinstance(cb_dtype, str) or cb_dtype not in CODEBOOK_DTYPES:
        raise QddHeaderError(f"unknown codebook dtype {cb_dtype!r}")
    if len(classes) > MAX_CLASSES:
        raise QddHeaderError("too many classes")
    check_class_names(classes, QddHeaderError)
    if not isinstance(meta, dict):
        raise QddHeaderError("header field 'meta' must be a map")
    upsample = header.get("upsample", 1)
    if "upsample" in header and upsample == 1:
        raise QddHeaderError("header field 'upsample' must be left out when it is 1")
    upsample_filter = header.get("upsample_filter", UPSAMPLE_FILTERS[0])
    if "upsample_filter" in header and upsample_filter == UPSAMPLE_FILTERS[0]:
        raise QddHeaderError(
            f"header field 'upsample_filter' must be left out when it is {upsample_filter!r}")
    problem = upsample_problem(upsample, shape, upsample_filter)
    if problem:
        raise QddHeaderError(problem)
    if (upsample != 1) != bool(required & FEATURE_UPSAMPLE):
        raise QddHeaderError(
            "header field 'upsample' and required-feature bit 0 disagree: the file is damaged"
        )
    if (upsample_filter == "linear") != bool(required & FEATURE_LINEAR):
        raise QddHeaderError("header field 'upsample_filter' and required-feature bit 1 "
                             "disagree: the file is damaged")

    chunk = header.get("chunk", 0)
    if "chunk" in header and (not isinstance(chunk, int) or isinstance(chunk, bool)
                              or not 1 <= chunk <= MAX_COUNT):
        raise QddHeaderError(f"header field 'chunk' must be an integer in 1..2^40, got {chunk!r}")

    denorm = None
    if denorm_raw is not None:
        c = channels_of(shape)
        if not (
            isinstance(denorm_raw, list) and len(denorm_raw) == 2
            and all(isinstance(part, list) and len(part) == c for part in denorm_raw)
            and all(isinstance(v, float) and math.isfinite(v) and abs(v) <= _F32_MAX
                    for part in denorm_raw for v in part)
        ):
            raise QddHeaderError(
                f"denorm must be [scale, offset], each {c} finite floats in float32 range")
        scale, offset = denorm_raw
        denorm = Denorm(scale, offset)

    sections = _parse_sections(sections_raw)
    layout = Layout(
        n=n, sample_shape=tuple(shape), bits=bits, group=group, codebook_dtype=cb_dtype,
        class_names=tuple(classes), denorm=denorm, sections=sections, header_len=len(raw),
        minor=minor, meta=meta, upsample=upsample, upsample_filter=upsample_filter,
        chunk=chunk,
    )
    if bool(chunk) != (layout.section("chunk_crcs") is not None):
        raise QddLayoutError("header field 'chunk' and section 'chunk_crcs' must come together")
    check_section_lengths(layout)
    return layout


class _DuplicateKey(Exception):
    pass


def _unique_map(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """A msgpack map as a dict, refusing a key that appears twice (FORMAT.md section 3):
    readers that keep the first and readers that keep the last would disagree."""
    out: dict[Any, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


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


# ------------------------------------------------------------------ streams


def _read_exact(stream: BinaryIO, size: int, what: str) -> bytes:
    parts = []
    remaining = size
    while remaining:
        chunk = stream.read(min(remaining, _STREAM_CHUNK))
        if not chunk:
            raise QddTruncatedError(f"stream ended inside the {what}")
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def read_stream(stream: BinaryIO, limit: int) -> bytes:
    """Read one `.qdd` from a non-seekable stream, validating sizes before reading on."""
    prefix = _read_prefix(stream)
    minor, header_len, required = parse_prefix(prefix, None)
    header = _read_exact(stream, header_len, "header")
    if crc32c(header) != header_crc(prefix):
        raise QddChecksumError("header checksum mismatch: the header is damaged")
    layout = parse_header(header, minor, required)
    if layout.file_size > limit:
        raise QddLayoutError(
            f"stream declares a {layout.file_size}-byte file, over the {limit}-byte limit"
        )
    rest = _read_exact(stream, layout.file_size - PREFIX_SIZE - header_len, "data")
    return prefix + header + rest


def _read_prefix(stream: BinaryIO) -> bytes:
    data = b""
    while len(data) < PREFIX_SIZE:
        chunk = stream.read(PREFIX_SIZE - len(data))
        if not chunk:
            break
        data += chunk
    if len(data) < PREFIX_SIZE:
        parse_prefix(data, None)  # raises the most specific error for a short prefix
        raise QddTruncatedError("stream ended inside the prefix")
    return data

"""What a `.qdd` v1 file may hold: the format's constants, limits and value checks.

Every other module takes its constants and checks from here, so a rule (the 1..8 bit
widths, the group names, the upsample factors) is written once. The checks raise the
error class they are given: `QddValueError` for a caller's arguments, `QddHeaderError`
for a file's header.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import QddValueError

SIGNATURE = b"\x89QDD\r\n\x1a\n"
MAJOR = 1
MINOR = 0
#: Minor version of files that use the `upsample` feature (section 7a of FORMAT.md).
UPSAMPLE_MINOR = 1
#: Minor version of files that enlarge by linear interpolation (section 7b).
LINEAR_MINOR = 2
#: Minor version of files with per-chunk checksums of their codes (header `chunk`);
#: an optional feature, so no required-feature bit: older readers ignore it.
CHUNK_MINOR = 3
#: Codes bytes per chunk that writers aim for when asked for chunk checksums.
CHUNK_TARGET_BYTES = 64 << 10
#: Required-feature bit 0: samples are stored at reduced resolution (header `upsample`).
FEATURE_UPSAMPLE = 1
#: Required-feature bit 1: they are enlarged by linear interpolation (`upsample_filter`).
FEATURE_LINEAR = 2
#: Required-feature bits this reader implements.
KNOWN_REQUIRED_FEATURES = FEATURE_UPSAMPLE | FEATURE_LINEAR
PREFIX = struct.Struct("<8sHHIII")  # signature, major, minor, required features, header len, crc
PREFIX_SIZE = PREFIX.size  # 24
TRAILER = struct.Struct("<Q4s")  # total file size, end magic
TRAILER_SIZE = TRAILER.size  # 12
END_MAGIC = b"QEND"
MAX_HEADER_BYTES = 1 << 20

#: Which values share one level table (see `quadd_codec.codebook`).
GROUPS = ("tensor", "channel", "sample-channel")
#: How level tables are fitted.
CODEBOOKS = ("uniform", "kmeans")
#: Enlargement filters; the first is the default, left out of the header.
UPSAMPLE_FILTERS = ("nearest", "linear")
MAX_UPSAMPLE = 16
MAX_CLASSES = 65536
MAX_CLASS_NAME_BYTES = 256
MAX_NDIM = 8
#: Cap on sample count and values per sample: keeps every size an exact Python int that
#: a hostile header can't push into absurd ranges before it is checked against the file.
MAX_COUNT = 1 << 40
CODEBOOK_DTYPES = {"f4": 4, "f2": 2}
#: The bit width of files that store raw float32 samples (no codebook).
RAW_BITS = 32
MIN_BITS = 1
MAX_BITS = 8


def check_bits(bits: Any, raw: bool = False, error: type[Exception] = QddValueError) -> int:
    """`bits` as an int when it is a quantized width (1..8), or 32 with `raw=True`.

    >>> check_bits(4)
    4
    >>> check_bits(32)
    Traceback (most recent call last):
    ...
    quadd_codec.errors.QddValueError: bits must be in 1..8, got 32
    """
    ok = isinstance(bits, (int, np.integer)) and not isinstance(bits, bool) and (
        MIN_BITS <= bits <= MAX_BITS or raw and bits == RAW_BITS)
    if not ok:
        if raw:
            raise error(f"bits must be 1..8 (or 32 for raw float32), got {bits!r}")
        raise error(f"bits must be in 1..8, got {bits!r}")
    return int(bits)


def check_group(group: Any, error: type[Exception] = QddValueError) -> str:
    if group not in GROUPS:
        raise error(f"unknown group {group!r}; expected one of {', '.join(GROUPS)}")
    return group


def check_codebook_dtype(codebook_dtype: Any, error: type[Exception] = QddValueError) -> str:
    if not isinstance(codebook_dtype, str) or codebook_dtype not in CODEBOOK_DTYPES:
        raise error(f"codebook dtype must be 'f4' or 'f2', got {codebook_dtype!r}")
    return codebook_dtype


def check_class_names(names: Sequence[Any], error: type[Exception] = QddValueError) -> None:
    """At most MAX_CLASSES distinct, non-empty strings without NUL of <= 256 UTF-8 bytes."""
    if len(names) > MAX_CLASSES:
        raise error(f"at most {MAX_CLASSES} classes are supported")
    seen = set()
    for name in names:
        if not isinstance(name, str):
            raise error(f"class names must be strings, got {type(name).__name__}")
        if len(name.encode("utf-8")) > MAX_CLASS_NAME_BYTES or "\x00" in name or not name:
            raise error(f"class name {name[:40]!r} is empty, too long or holds a NUL byte")
        if name in seen:
            raise error(f"class name {name!r} appears twice")
        seen.add(name)


def channels_of(sample_shape: Sequence[int]) -> int:
    """Number of channels of a per-sample shape (axis 0; a 1-D sample is one channel)."""
    return int(sample_shape[0]) if len(sample_shape) >= 2 else 1


def group_count(group: str, n: int, sample_shape: Sequence[int]) -> int:
    """How many level tables a file with `n` samples of `sample_shape` carries."""
    if group == "tensor":
        return 1
    if group == "channel":
        return channels_of(sample_shape)
    if group == "sample-channel":
        return n * channels_of(sample_shape)
    raise QddValueError(f"unknown group {group!r}; expected one of {', '.join(GROUPS)}")


def upsample_problem(upsample: Any, sample_shape: Sequence[int],
                     upsample_filter: Any = "nearest") -> str | None:
    """What is wrong with an upsample factor and filter for a stored shape, or None."""
    if not isinstance(upsample, int) or isinstance(upsample, bool):
        return f"upsample must be an integer, got {upsample!r}"
    if not 1 <= upsample <= MAX_UPSAMPLE:
        return f"upsample must be 1..{MAX_UPSAMPLE}, got {upsample}"
    if upsample > 1 and len(sample_shape) < 3:
        return ("upsample needs samples of 3 or more dims (channels, height, width), "
                f"got shape {tuple(sample_shape)}")
    if math.prod(int(d) for d in sample_shape) * upsample * upsample > MAX_COUNT:
        return "upsampled samples are too large"
    if not isinstance(upsample_filter, str) or upsample_filter not in UPSAMPLE_FILTERS:
        return (f"unknown upsample filter {upsample_filter!r}; expected one of "
                f"{', '.join(UPSAMPLE_FILTERS)}")
    if upsample_filter != UPSAMPLE_FILTERS[0] and upsample == 1:
        return f"upsample filter {upsample_filter!r} needs an upsample factor of 2 or more"
    return None


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


#: Deepest nesting of maps and arrays a writer puts in `meta` (FORMAT.md section 3).
MAX_META_DEPTH = 32
_META_SCALARS = (type(None), bool, int, float, str)


def meta_problem(meta: Any) -> str | None:
    """What keeps `meta` from being a header `meta` a writer may write, or None: a map
    with string keys at every level, at most MAX_META_DEPTH deep, holding only maps,
    arrays, strings, numbers, booleans and nil (so it converts to JSON and back).
    Checked without recursion, so any nesting is answered, never a RecursionError."""
    if not isinstance(meta, dict):
        return f"meta must be a map, got {type(meta).__name__}"
    stack: list[tuple[Any, int]] = [(meta, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, _META_SCALARS):
            if isinstance(value, float) and not math.isfinite(value):
                return "meta holds a non-finite number"
            continue
        if not isinstance(value, (dict, list, tuple)):
            return f"meta holds a value of type {type(value).__name__}"
        if depth > MAX_META_DEPTH:
            return f"meta is nested more than {MAX_META_DEPTH} deep"
        if isinstance(value, dict):
            for key in value:
                if not isinstance(key, str):
                    return f"meta has a key that is not a string: {key!r:.40}"
            stack.extend((v, depth + 1) for v in value.values())
        else:
            stack.extend((v, depth + 1) for v in value)
    return None

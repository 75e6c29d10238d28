"""Reading `.qdd` files: from a path (in memory, by positioned reads or mmap), a byte
stream or bytes.

Every declared size is checked against the real size of the file (or a stream limit)
before anything is allocated, so a hostile header can't make the reader allocate
terabytes; sample k is decoded from its own bytes without touching the others. How a
path's bytes are reached, and what happens when the file changes on disk while it is
read, is `quadd_codec.access`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import Any, BinaryIO

import msgpack
import numpy as np

from .access import READ_PIECE, Identity, Positioned, Source, changed, open_path
from .bitpack import unpack_stream
from .coderows import CodeRows
from .crc import crc32c
from .dequantize import byte_tables, dequantize_rows
from .errors import (
    QddChecksumError,
    QddError,
    QddFormatError,
    QddLayoutError,
    QddTruncatedError,
    QddValueError,
)
from .header import header_crc, parse_header, parse_prefix, parse_trailer, read_stream
from .layout import Layout, Section
from .resample import upsample
from .rules import PREFIX_SIZE, RAW_BITS, TRAILER_SIZE

#: Largest file read from a non-seekable stream unless the caller raises it.
DEFAULT_STREAM_LIMIT = 4 << 30
#: Decoded bytes per step of `read_all`, bounding its temporaries (an upsampled file
#: decodes to up to 256x its stored size).
_READ_CHUNK_BYTES = 8 << 20


class QddFile(CodeRows):
    """A validated `.qdd` file.

    `QddFile(path)` reads a file (`access`: "auto", "memory", "pread" or "mmap"; see
    `quadd_codec.access` for what each does when the file changes on disk);
    `QddFile(stream)` reads a binary stream (pipe, socket, BytesIO) to its trailer;
    `QddFile(bytes)` wraps bytes in memory. Opening checks the prefix, header, layout,
    trailer, codebooks and labels; the codes section's checksum is checked by `verify()`
    (or `verify=True`), which reads every byte.
    """

    def __init__(
        self,
        source: str | os.PathLike | BinaryIO | bytes | bytearray | memoryview,
        *,
        verify: bool = False,
        stream_limit: int = DEFAULT_STREAM_LIMIT,
        access: str = "auto",
    ) -> None:
        self.path: str | None = None
        self.access = access
        self._fd = -1
        self._identity: Identity | None = None
        self._src: Source | Positioned | None = None
        self._codes: np.ndarray | None = None
        try:
            if isinstance(source, (str, os.PathLike)):
                self.path = os.fspath(source)
                self._src, self._identity, self._fd = open_path(self.path, access)
            elif isinstance(source, (bytes, bytearray, memoryview)):
                self._src = Source(bytes(source) if not isinstance(source, bytes) else source)
            elif hasattr(source, "read"):
                self._src = Source(read_stream(source, stream_limit))
                verify = True  # the bytes are all in memory anyway
            else:
                raise QddValueError(f"cannot read a .qdd from {type(source).__name__}")
            self._setup(verify)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ opening

    def _read(self, offset: int, length: int) -> memoryview | bytes:
        assert self._src is not None
        return self._src.read(offset, length)

    def _setup(self, verify: bool) -> None:
        assert self._src is not None
        size = self._src.size
        prefix = bytes(self._read(0, min(PREFIX_SIZE, size)))
        minor, header_len, required = parse_prefix(prefix, size)
        header = self._read(PREFIX_SIZE, header_len)
        self._header_crc = header_crc(prefix)
        if crc32c(header) != self._header_crc:
            raise QddChecksumError("header checksum mismatch: the header is damaged")
        layout = parse_header(bytes(header), minor, required)
        if layout.file_size != size:
            raise QddTruncatedError(
                f"file is {size} bytes but its sections need {layout.file_size}: "
                + ("truncated" if size < layout.file_size else "trailing bytes after the end")
            )
        parse_trailer(bytes(self._read(size - TRAILER_SIZE, TRAILER_SIZE)), size)
        self.layout: Layout = layout
        self.levels = self._load_levels()
        self._tables = byte_tables(self.levels, layout.bits) if layout.bits != RAW_BITS else None
        self.labels = self._load_labels()
        if self._src.in_memory:
            self._codes = np.frombuffer(self._section_view("codes"), dtype=np.uint8)
        # Per-chunk checksums of the codes (FORMAT.md 4a): each chunk is checked when
        # first read, so damaged samples are never returned even without verify().
        self._chunk_crcs = (np.frombuffer(self._checked("chunk_crcs"), dtype=">u4")
                            if layout.chunk else np.empty(0, dtype=">u4"))
        self._chunk_ok = np.zeros(self._chunk_crcs.size, dtype=bool)
        if verify:
            self.verify()

    def _section_view(self, name: str, section: Section | None = None) -> memoryview | bytes:
        section = section or self.layout.section(name)
        assert section is not None
        return self._read(self.layout.data_start + section.offset, section.length)

    def _crc_of(self, section: Section) -> int:
        """CRC32C of a section, read in pieces when the file is not in memory."""
        assert self._src is not None
        if self._src.in_memory:
            return crc32c(self._section_view(section.name, section))
        start, crc = self.layout.data_start + section.offset, 0
        for at in range(0, section.length, READ_PIECE):
            crc = crc32c(self._read(start + at, min(READ_PIECE, section.length - at)), crc)
        return crc

    def _check_crc(self, section: Section) -> None:
        if self._crc_of(section) != section.crc:
            raise QddChecksumError(
                f"checksum mismatch in section {section.name!r}: the file is damaged")

    def _checked(self, name: str, section: Section | None = None) -> memoryview | bytes:
        section = section or self.layout.section(name)
        assert section is not None
        data = self._section_view(name, section)
        if crc32c(data) != section.crc:
            raise QddChecksumError(f"checksum mismatch in section {name!r}: the file is damaged")
        return data

    def _load_levels(self) -> np.ndarray:
        lay = self.layout
        data = self._checked("codebooks")
        if lay.bits == RAW_BITS:
            return np.zeros((0, 0), dtype=np.float32)
        dtype = "<f4" if lay.codebook_dtype == "f4" else "<f2"
        levels = np.frombuffer(data, dtype=dtype).astype(np.float32)
        levels = levels.reshape(lay.groups, lay.num_levels)  # groups may be 0
        if not np.isfinite(levels).all():
            raise QddLayoutError("codebook holds NaN or infinite levels")
        if (levels[:, 1:] < levels[:, :-1]).any():  # a comparison: no overflow at +-max
            raise QddLayoutError("codebook levels are not sorted ascending")
        return levels

    def _load_labels(self) -> np.ndarray | None:
        lay = self.layout
        data = self._checked("labels")
        k = len(lay.class_names)
        if k == 0:
            return None
        if lay.label_bits == 0:
            return np.zeros(lay.n, dtype=np.int64)
        labels = unpack_stream(data, lay.label_bits, lay.n)
        if lay.n and labels.max() >= k:
            raise QddLayoutError(f"a label is {int(labels.max())} but there are only {k} classes")
        return labels

    # --------------------------------------------------------- codes & pickle

    def __getstate__(self) -> dict[str, Any]:
        if self.path is None:
            assert self._src is not None
            return {"bytes": bytes(self._read(0, self._src.size))}
        return {"path": self.path, "access": self.access, "identity": self._identity,
                "header_crc": self._header_crc}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "bytes" in state:
            self.__init__(state["bytes"])
            return
        self.__init__(state["path"], access=state.get("access", "auto"))
        if (self._identity != state.get("identity")
                or self._header_crc != state["header_crc"]):
            path = self.path
            self.close()
            raise changed(path or "the file")

    def close(self) -> None:
        # Drop numpy views first: an mmap with live views refuses to close.
        self._codes = None
        if self._src is not None:
            self._src.close()
            self._src = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> QddFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------- properties

    @property
    def n(self) -> int:
        return self.layout.n

    def __len__(self) -> int:
        return self.layout.n

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one decoded sample (after upsampling, if the file uses it)."""
        return self.layout.output_shape

    @property
    def stored_shape(self) -> tuple[int, ...]:
        """Shape of one sample as stored: what the codes and codebooks describe."""
        return self.layout.sample_shape

    @property
    def upsample(self) -> int:
        """Integer factor by which stored samples are upsampled on decoding (1: none)."""
        return self.layout.upsample

    @property
    def upsample_filter(self) -> str:
        """How stored samples are enlarged: "nearest" (repetition) or "linear"."""
        return self.layout.upsample_filter

    @property
    def chunk(self) -> int:
        """Samples per checksummed chunk of the codes (0: the file has no chunk CRCs)."""
        return self.layout.chunk

    @property
    def bits(self) -> int:
        return self.layout.bits

    @property
    def group(self) -> str:
        return self.layout.group

    @property
    def class_names(self) -> list[str]:
        return list(self.layout.class_names)

    @property
    def num_classes(self) -> int:
        return len(self.layout.class_names)

    @property
    def denorm(self):
        return self.layout.denorm

    @property
    def file_size(self) -> int:
        return self.layout.file_size

    @property
    def soft_labels(self) -> np.ndarray | None:
        if self.layout.section("soft_labels") is None:
            return None
        data = self._checked("soft_labels")
        return np.frombuffer(data, dtype="<f4").reshape(self.n, self.num_classes).copy()

    @property
    def provenance(self) -> dict[str, Any] | None:
        if self.layout.section("provenance") is None:
            return None
        data = bytes(self._checked("provenance"))
        try:
            value = msgpack.unpackb(data, raw=False)
        except Exception as exc:
            raise QddFormatError(f"provenance section is not valid msgpack: {exc}") from None
        if not isinstance(value, dict):
            raise QddFormatError("provenance section must hold a msgpack map")
        return value

    # ------------------------------------------------------------------ reading

    def _ids(self, key: int | slice | Iterable[int] | np.ndarray) -> np.ndarray:
        n = self.layout.n
        if isinstance(key, slice):
            return np.arange(n, dtype=np.int64)[key]
        ids = np.asarray(key)
        if ids.dtype.kind not in "iu":
            raise QddValueError(f"sample indices must be integers, got {ids.dtype}")
        ids = ids.astype(np.int64, copy=False).reshape(-1)
        if ids.size and (ids.min() < -n or ids.max() >= n):
            raise IndexError(f"sample index out of range for a file of {n} samples")
        return np.where(ids < 0, ids + n, ids)

    def packed(self, k: int) -> np.ndarray:
        """The packed bytes of sample k (read-only)."""
        k = int(self._ids(k)[0])
        return self._rows(k, k + 1)[0]

    def indices(self, key: int | slice | Iterable[int] | np.ndarray) -> np.ndarray:
        """Level indices (uint8, shape (m, *stored_shape)) of the selected samples."""
        from .bitpack import unpack_rows

        lay = self.layout
        if lay.bits == RAW_BITS:
            raise QddValueError("a raw float32 file (bits=32) has no level indices")
        ids = self._ids(key)
        rows = unpack_rows(self._raw_rows(ids), lay.bits, lay.values_per_sample)
        return rows.reshape((ids.size, *lay.sample_shape))

    def read(self, key: int | slice | Iterable[int] | np.ndarray,
             denormalize: bool = False) -> np.ndarray:
        """Decoded float32 samples, shape (m, *sample_shape) (or one sample for an int key).

        With `denormalize`, values are mapped to the source value space with the file's
        per-channel scale and offset (float32 multiply, then float32 add). A file stored
        at reduced resolution is upsampled last, with its filter (FORMAT.md 7a, 7b).
        A value that overflows float32 is infinite, as IEEE 754 and FORMAT.md 7 say,
        without a RuntimeWarning line.
        """
        with np.errstate(over="ignore", invalid="ignore"):
            return self._decode(key, denormalize)

    def _decode(self, key: int | slice | Iterable[int] | np.ndarray,
                denormalize: bool) -> np.ndarray:
        lay = self.layout
        ids = self._ids(key)
        raw = self._raw_rows(ids)
        if lay.bits == RAW_BITS:
            out = np.frombuffer(raw.tobytes(), dtype="<f4").astype(np.float32)
            out = out.reshape(ids.size, lay.values_per_sample)
        else:
            # De-normalization folded into the level tables saves two passes per batch.
            fold = denormalize and lay.denorm is not None
            out = dequantize_rows(
                raw, ids, lay.bits, lay.group, self.levels, lay.channels,
                lay.values_per_sample, self._tables,
                np.asarray(lay.denorm.scale, np.float32) if fold else None,
                np.asarray(lay.denorm.offset, np.float32) if fold else None,
            )
            denormalize = denormalize and not fold
        if denormalize and lay.denorm is not None:
            out = self._denormalize(out)
        out = upsample(out.reshape((ids.size, *lay.sample_shape)), lay.upsample,
                       lay.upsample_filter)
        return out[0] if isinstance(key, (int, np.integer)) else out

    def _denormalize(self, out: np.ndarray) -> np.ndarray:
        lay = self.layout
        assert lay.denorm is not None
        scale = np.asarray(lay.denorm.scale, dtype=np.float32)[None, :, None]
        offset = np.asarray(lay.denorm.offset, dtype=np.float32)[None, :, None]
        per = out.reshape(out.shape[0], lay.channels, -1)
        np.multiply(per, scale, out=per)
        np.add(per, offset, out=per)
        return out

    def __getitem__(self, key: int | slice | Iterable[int] | np.ndarray) -> np.ndarray:
        return self.read(key)

    def read_all(self, denormalize: bool = False) -> np.ndarray:
        """Every sample decoded, in chunks so temporaries stay small."""
        lay = self.layout
        out = np.empty((lay.n, *lay.output_shape), dtype=np.float32)
        step = max(1, _READ_CHUNK_BYTES // max(1, 4 * math.prod(lay.output_shape)))
        for start in range(0, lay.n, step):
            stop = min(lay.n, start + step)
            out[start:stop] = self.read(slice(start, stop), denormalize)
        return out

    def packed_codes(self) -> np.ndarray:
        """All packed samples as a read-only (n, bytes per sample) uint8 array."""
        return self._rows(0, self.layout.n)

    def section_bytes(self, name: str) -> memoryview:
        """The bytes of section `name`, after checking its CRC32C; KeyError if absent."""
        section = self.layout.section(name)
        if section is None:
            raise KeyError(f"the file has no section {name!r}")
        return self._checked(name, section)

    def file_crc32c(self) -> int:
        """CRC32C of the whole file: a fingerprint that the zarr export records."""
        assert self._src is not None
        crc = 0
        for at in range(0, self._src.size, READ_PIECE):
            crc = crc32c(self._read(at, min(READ_PIECE, self._src.size - at)), crc)
        return crc

    # ------------------------------------------------------------------ checks

    def verify(self) -> None:
        """Check every section's checksum and every structural rule; raises QddFormatError."""
        for section in self.layout.sections:
            if section.name == "codes" and self._chunk_crcs.size:
                bad = self.damaged_chunks()
                if bad:
                    shown = ", ".join(map(str, bad[:20])) + (", ..." if len(bad) > 20 else "")
                    raise QddChecksumError(
                        f"checksum mismatch in {len(bad)} of {self._chunk_crcs.size} chunks of "
                        f"the codes ({shown}; {self.layout.chunk} samples each): the file is "
                        "damaged")
            self._check_crc(section)  # no lookup by name: a file may list 80k
        if self.layout.section("provenance") is not None:
            self.provenance  # noqa: B018 - decoding it is the check

    def byte_breakdown(self) -> dict[str, int]:
        """Bytes per part of the file; they add up to the file size."""
        lay = self.layout
        parts = {"prefix+header": lay.data_start}
        for section in lay.sections:
            parts[section.name] = section.length
        parts["trailer"] = TRAILER_SIZE
        return parts

    def __repr__(self) -> str:
        where = self.path or "<memory>"
        up = f", upsample={self.upsample}" if self.upsample != 1 else ""
        if self.upsample_filter != "nearest":
            up += f", upsample_filter={self.upsample_filter!r}"
        return (f"QddFile({where!r}, n={self.n}, shape={self.sample_shape}, bits={self.bits}, "
                f"group={self.group!r}, classes={self.num_classes}{up})")


def open_qdd(source: Any, **kwargs: Any) -> QddFile:
    """Open a `.qdd` file; any problem raises a `QddError` subclass."""
    try:
        return QddFile(source, **kwargs)
    except QddError:
        raise
    except (ValueError, OverflowError, MemoryError) as exc:
        raise QddFormatError(f"unreadable .qdd file: {exc}") from None

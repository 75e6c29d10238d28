"""Reading `.qdd` files: memory-mapped from a path, or buffered from a byte stream.

Every declared size is checked against the real size of the file (or a stream limit)
before anything is allocated, so a hostile header can't make the reader allocate
terabytes; sample k is decoded from its own bytes without touching the others.
"""

from __future__ import annotations

import mmap
import os
import stat
from collections.abc import Iterable
from typing import Any, BinaryIO

import msgpack
import numpy as np

from .bitpack import unpack_stream
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
from .paths import check_input_file, file_kind
from .resample import upsample
from .rules import PREFIX_SIZE, RAW_BITS, TRAILER_SIZE

#: Largest file read from a non-seekable stream unless the caller raises it.
DEFAULT_STREAM_LIMIT = 4 << 30
#: Samples decoded per step by `read_all`, bounding its temporaries.
_READ_CHUNK = 4096


class QddFile:
    """A validated `.qdd` file.

    `QddFile(path)` memory-maps the file; `QddFile(stream)` reads a binary stream (pipe,
    socket, BytesIO) to its trailer; `QddFile(bytes)` wraps bytes in memory. Opening checks
    the prefix, header, layout, trailer, codebooks and labels; the codes section's
    checksum is checked by `verify()` (or `verify=True`), which reads every byte.
    """

    def __init__(
        self,
        source: str | os.PathLike | BinaryIO | bytes | bytearray | memoryview,
        *,
        verify: bool = False,
        stream_limit: int = DEFAULT_STREAM_LIMIT,
    ) -> None:
        self.path: str | None = None
        self._fd: int | None = None
        self._mmap: mmap.mmap | None = None
        self._pid = os.getpid()
        try:
            if isinstance(source, (str, os.PathLike)):
                self.path = os.fspath(source)
                self._open_path()
                buf: Any = self._mmap
            elif isinstance(source, (bytes, bytearray, memoryview)):
                buf = bytes(source) if not isinstance(source, bytes) else source
            elif hasattr(source, "read"):
                buf = read_stream(source, stream_limit)
                verify = True  # the bytes are all in memory anyway
            else:
                raise QddValueError(f"cannot read a .qdd from {type(source).__name__}")
            self._buf = buf
            self._setup(buf, verify)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ opening

    def _open_path(self) -> None:
        assert self.path is not None
        check_input_file(self.path, "a .qdd file")
        try:
            # O_NONBLOCK: should the path be swapped for a FIFO after the check, opening
            # it must not wait for a writer (a no-op for a regular file).
            flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
            fd = os.open(self.path, flags)
        except OSError as exc:
            raise QddValueError(f"cannot open {self.path}: {exc.strerror}") from None
        self._fd = fd
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise QddValueError(f"{self.path} is {file_kind(st.st_mode)}, not a .qdd file")
        size = st.st_size
        if size == 0:
            raise QddTruncatedError(f"{self.path} is empty")
        self._mmap = mmap.mmap(fd, size, access=mmap.ACCESS_READ)

    def _setup(self, buf: Any, verify: bool) -> None:
        view = memoryview(buf)
        size = len(view)
        minor, header_len, required = parse_prefix(bytes(view[:PREFIX_SIZE]), size)
        header = view[PREFIX_SIZE : PREFIX_SIZE + header_len]
        if crc32c(header) != header_crc(bytes(view[:PREFIX_SIZE])):
            raise QddChecksumError("header checksum mismatch: the header is damaged")
        layout = parse_header(bytes(header), minor, required)
        if layout.file_size != size:
            raise QddTruncatedError(
                f"file is {size} bytes but its sections need {layout.file_size}: "
                + ("truncated" if size < layout.file_size else "trailing bytes after the end")
            )
        parse_trailer(bytes(view[size - TRAILER_SIZE :]), size)
        self.layout: Layout = layout
        self._view = view
        self.levels = self._load_levels()
        self._tables = byte_tables(self.levels, layout.bits) if layout.bits != RAW_BITS else None
        self.labels = self._load_labels()
        self._codes = self._section_array("codes")
        if verify:
            self.verify()

    def _section_view(self, name: str, section: Section | None = None) -> memoryview:
        section = section or self.layout.section(name)
        assert section is not None
        start = self.layout.data_start + section.offset
        return self._view[start : start + section.length]

    def _section_array(self, name: str) -> np.ndarray:
        return np.frombuffer(self._section_view(name), dtype=np.uint8)

    def _checked(self, name: str, section: Section | None = None) -> memoryview:
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
        if (np.diff(levels, axis=1) < 0).any():
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

    # ----------------------------------------------------------- fork & pickle

    def _codes_array(self) -> np.ndarray:
        if self._mmap is not None and os.getpid() != self._pid:
            # A forked DataLoader worker: map the inherited descriptor afresh so the
            # child owns its mapping (same inode, even if the path was replaced since).
            self._pid = os.getpid()
            assert self._fd is not None
            self._mmap = mmap.mmap(self._fd, len(self._view), access=mmap.ACCESS_READ)
            self._buf = self._mmap
            self._view = memoryview(self._mmap)
            self._codes = self._section_array("codes")
        return self._codes

    def __getstate__(self) -> dict[str, Any]:
        if self.path is None:
            return {"bytes": bytes(self._view)}
        return {"path": self.path, "header_crc": header_crc(bytes(self._view[:PREFIX_SIZE]))}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "bytes" in state:
            self.__init__(state["bytes"])
            return
        self.__init__(state["path"])
        if header_crc(bytes(self._view[:PREFIX_SIZE])) != state["header_crc"]:
            raise QddFormatError(f"{self.path} changed on disk since it was first opened")

    def close(self) -> None:
        # Drop numpy/memoryview exports first: an mmap with live views refuses to close.
        self._codes = np.empty(0, dtype=np.uint8)
        if hasattr(self, "_view"):
            self._view.release()
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:
                pass  # arrays the caller still holds keep the mapping alive
            self._mmap = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

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
        """The packed bytes of sample k (a read-only view into the file)."""
        k = int(self._ids(k)[0])
        size = self.layout.sample_nbytes
        return self._codes_array()[k * size : (k + 1) * size]

    def _raw_rows(self, ids: np.ndarray) -> np.ndarray:
        codes = self._codes_array().reshape(self.layout.n, self.layout.sample_nbytes)
        if ids.size and ids[-1] - ids[0] == ids.size - 1 and (np.diff(ids) == 1).all():
            return codes[ids[0] : ids[-1] + 1]  # a contiguous run: no gather copy
        return codes[ids]

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
        """
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
        for start in range(0, lay.n, _READ_CHUNK):
            stop = min(lay.n, start + _READ_CHUNK)
            out[start:stop] = self.read(slice(start, stop), denormalize)
        return out

    def packed_codes(self) -> np.ndarray:
        """All packed samples as a read-only (n, bytes per sample) uint8 view of the file."""
        return self._codes_array().reshape(self.layout.n, self.layout.sample_nbytes)

    def section_bytes(self, name: str) -> memoryview:
        """The bytes of section `name`, after checking its CRC32C; KeyError if absent."""
        section = self.layout.section(name)
        if section is None:
            raise KeyError(f"the file has no section {name!r}")
        return self._checked(name, section)

    def file_crc32c(self) -> int:
        """CRC32C of the whole file: a fingerprint that the zarr export records."""
        return crc32c(self._view)

    # ------------------------------------------------------------------ checks

    def verify(self) -> None:
        """Check every section's checksum and every structural rule; raises QddFormatError."""
        for section in self.layout.sections:
            self._checked(section.name, section)  # no lookup by name: a file may list 80k
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

"""How a `.qdd` reader gets at a file's bytes: in memory, by positioned reads, or mmap.

A file changed on disk while a reader uses it must never yield wrong samples or kill the
process, so the default never maps it:

- ``"memory"``: the whole file is read once (distilled sets are kilobytes to megabytes);
  later changes on disk cannot reach the snapshot, which is checked whole when read.
- ``"pread"``: samples are read with positioned reads (`os.pread`) when asked for; after
  each read the file's size and mtime are compared with those seen at opening, so a
  file rewritten in place (as `cp` does) raises `QddChangedError` instead of returning
  mixed data. An atomic replace (rename over the path) leaves the open inode readable.
- ``"mmap"``: opt-in, for large files read many times. **Risk:** if the file is
  truncated or rewritten in place while mapped, reads may see new bytes, and a read past
  a shortened end kills the process with SIGBUS (DataLoader then reports a dead worker).
  Use it only for files nothing rewrites in place.

``"auto"`` (the default) is "memory" up to `IN_MEMORY_MAX` bytes and "pread" above.
"""

from __future__ import annotations

import mmap
import os
import stat
from dataclasses import dataclass

from .errors import QddChangedError, QddTruncatedError, QddValueError
from .paths import check_input_file, file_kind

ACCESS_MODES = ("auto", "memory", "pread", "mmap")
#: Files up to this size are read whole into memory by "auto".
IN_MEMORY_MAX = 64 << 20
#: Bytes per positioned read when a large range (a checksum) is read.
READ_PIECE = 16 << 20


@dataclass(frozen=True)
class Identity:
    """What tells one version of a file from another: device, inode, size, mtime."""

    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Identity:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def changed(path: str) -> QddChangedError:
    return QddChangedError(
        f"{path} changed on disk while it was being read (its size, inode or modification "
        "time differ from when it was opened); reopen it"
    )


class Source:
    """Bytes of a file in memory (a bytes object, or an mmap)."""

    def __init__(self, data: bytes | memoryview | mmap.mmap) -> None:
        self._data = data
        self._view = memoryview(data)
        self.size = len(self._view)

    @property
    def in_memory(self) -> bool:
        return True

    def read(self, offset: int, length: int) -> memoryview:
        return self._view[offset : offset + length]

    def close(self) -> None:
        self._view.release()


class Mapped(Source):
    """A memory-mapped file; a forked child maps the inherited descriptor afresh."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._pid = os.getpid()
        super().__init__(mmap.mmap(fd, size, access=mmap.ACCESS_READ))

    def read(self, offset: int, length: int) -> memoryview:
        if os.getpid() != self._pid:
            # A forked DataLoader worker: its own mapping of the same inode.
            self._pid = os.getpid()
            self._data = mmap.mmap(self._fd, self.size, access=mmap.ACCESS_READ)
            self._view = memoryview(self._data)
        return super().read(offset, length)

    def close(self) -> None:
        super().close()
        try:
            self._data.close()  # type: ignore[union-attr]
        except BufferError:
            pass  # arrays the caller still holds keep the mapping alive


class Positioned:
    """A file read with `os.pread` on demand, checked unchanged after every read."""

    in_memory = False

    def __init__(self, fd: int, path: str, identity: Identity) -> None:
        self._fd, self._path, self._identity = fd, path, identity
        self.size = identity.size

    def read(self, offset: int, length: int) -> bytes:
        data = _pread(self._fd, offset, length)
        if len(data) != length or Identity.of(os.fstat(self._fd)) != self._identity:
            raise changed(self._path)
        return data

    def close(self) -> None:
        pass


def _pread(fd: int, offset: int, length: int) -> bytes:
    parts = []
    while length > 0:
        part = os.pread(fd, min(length, READ_PIECE), offset)
        if not part:
            break
        parts.append(part)
        offset += len(part)
        length -= len(part)
    return b"".join(parts)


def open_path(path: str, access: str = "auto") -> tuple[Source | Positioned, Identity, int]:
    """Open a `.qdd` path for reading: (the bytes' source, the file's identity, the
    descriptor to close with the reader, or -1 when none stays open)."""
    if access not in ACCESS_MODES:
        raise QddValueError(f"access must be one of {', '.join(ACCESS_MODES)}, got {access!r}")
    check_input_file(path, "a .qdd file")
    try:
        # O_NONBLOCK: should the path be swapped for a FIFO after the check, opening it
        # must not wait for a writer (a no-op for a regular file).
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags)
    except OSError as exc:
        raise QddValueError(f"cannot open {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise QddValueError(f"{path} is {file_kind(st.st_mode)}, not a .qdd file")
        identity = Identity.of(st)
        if identity.size == 0:
            raise QddTruncatedError(f"{path} is empty")
        if access == "auto":
            access = "memory" if identity.size <= IN_MEMORY_MAX else "pread"
        if access == "mmap":
            try:
                return Mapped(fd, identity.size), identity, fd
            except OSError as exc:  # e.g. ENODEV on a file system that cannot map
                raise QddValueError(f"cannot memory-map {path}: {exc.strerror or exc}; "
                                    "open it with access='pread'") from None
        if access == "pread":
            return Positioned(fd, path, identity), identity, fd
        data = _pread(fd, 0, identity.size)
        if len(data) != identity.size or Identity.of(os.fstat(fd)) != identity:
            raise changed(path)
        os.close(fd)
        return Source(data), identity, -1
    except BaseException:
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
        raise

"""Bounds on what reading a zarr store may cost, checked before any array is read.

A store's metadata can declare any shape and chunk shape, and zarr reads a missing
chunk as fill values: a few kilobytes of JSON can ask for gigabytes. Every size here is
therefore compared with what the store really holds on disk and with the free memory,
never with the store's own claims (its attributes, its `file_size`):

- no link anywhere in the store (a linked chunk would read a file outside it), and
  nothing but folders and regular files;
- a chunk is never larger than its array (plus a little), since zarr decodes whole
  chunks (a "chunk-shape bomb" declares huge chunks over a tiny array);
- missing chunks, read as fill values, may add at most `MAX_FILL_BYTES` and
  `MAX_MISSING_CHUNKS` chunks per array;
- an uncompressed array (`raw=True` demands one) holds on disk the bytes it declares;
- the declared sizes of all arrays read together fit in the free memory.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import QddFormatError
from .paths import file_kind

#: Bytes of fill values (missing chunks) an array may contribute; zarr writers leave out
#: chunks that hold only the fill value, so a few are normal.
MAX_FILL_BYTES = 16 << 20
#: Missing chunks an array may have: each costs a lookup even when tiny.
MAX_MISSING_CHUNKS = 4096
#: How much larger than its array one chunk may be (zarr decodes whole chunks).
CHUNK_SLACK = 1 << 20
_META_FILES = {"zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"}


def host_available_memory() -> int | None:
    """The host's MemAvailable in bytes on Linux; None where it cannot be told."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_tree(root: str | os.PathLike, error: type[Exception] = QddFormatError) -> None:
    """Refuse a store holding a link or anything but folders and regular files."""
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                raise error(f"{root}: {os.path.relpath(path, root)} is a symbolic link; "
                            "a store may hold only its own files")
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise error(f"{root}: {os.path.relpath(path, root)} is {file_kind(mode)}")


def _itemsize(node: Any) -> int:
    size = getattr(node.dtype, "itemsize", 0)
    # Variable-length strings report 0 or a pointer size; count them as 16 bytes each.
    return size if size and node.dtype.kind not in "OT" else 16


def declared_nbytes(node: Any) -> int:
    """Bytes the array declares: the product of its shape times its item size."""
    return math.prod(int(d) for d in node.shape) * _itemsize(node)


def _uncompressed(node: Any) -> bool:
    from zarr.codecs import BytesCodec

    if node.metadata.zarr_format == 2:
        return not node.compressors and not node.filters
    return (not node.compressors and not node.filters
            and isinstance(node.serializer, BytesCodec))


def _chunk_files(folder: Path) -> tuple[int, int]:
    """(count, total bytes) of the chunk files under an array's folder."""
    count = total = 0
    for dirpath, _, files in os.walk(folder, followlinks=False):
        for name in files:
            if dirpath == os.fspath(folder) and name in _META_FILES:
                continue
            count += 1
            total += os.lstat(os.path.join(dirpath, name)).st_size
    return count, total


def check_array(root: str | os.PathLike, name: str, node: Any, raw: bool = False,
                error: type[Exception] = QddFormatError) -> int:
    """Check one array of the store at `root` (see module docstring); returns its
    declared size in bytes. `raw` demands an uncompressed array."""
    where = os.fspath(root)
    label = name or "the array"
    declared = declared_nbytes(node)
    outer = tuple(int(d) for d in (node.shards or node.chunks))
    chunk_bytes = math.prod(outer) * _itemsize(node)
    if chunk_bytes > declared + CHUNK_SLACK:
        raise error(f"{where}: {label} declares chunks of {outer} ({chunk_bytes:,} bytes) "
                    f"for an array of {tuple(node.shape)}: the store is malformed")
    uncompressed = _uncompressed(node) and node.shards is None
    if raw and not uncompressed:
        raise error(f"{where}: {label} is compressed or sharded; quadd import reads the "
                    "uncompressed arrays that quadd decode writes")
    nchunks = math.prod(math.ceil(int(s) / c) for s, c in zip(node.shape, outer, strict=True))
    present, held = _chunk_files(Path(where) / node.path if node.path else Path(where))
    missing = max(0, nchunks - present)
    if missing > MAX_MISSING_CHUNKS or missing * chunk_bytes > MAX_FILL_BYTES or (
            uncompressed and declared > held + min(missing * chunk_bytes, MAX_FILL_BYTES)):
        raise error(f"{where}: {label} declares shape {tuple(node.shape)} ({declared:,} "
                    f"bytes) but the store holds {held:,} bytes of it in {present} of "
                    f"{nchunks} chunks: it was modified, truncated or is malformed")
    return declared


def check_fits(where: str, arrays: Mapping[str, Any], error: type[Exception],
               free: int | None = None) -> None:
    """Refuse arrays whose declared sizes together exceed the free memory."""
    free = host_available_memory() if free is None else free
    sizes = {name: declared_nbytes(a) for name, a in arrays.items()}
    if free is not None and sum(sizes.values()) > free:
        name = max(sizes, key=sizes.__getitem__)
        a = arrays[name]
        raise error(
            f"{where}: {name} declares shape {tuple(a.shape)} of {a.dtype} "
            f"({sizes[name] / 2**30:.1f} GiB), more than the {free / 2**30:.1f} GiB free"
        )


def check_store(root: str | os.PathLike, arrays: Mapping[str, Any], raw: bool = False,
                error: type[Exception] = QddFormatError) -> int:
    """Every check of the module docstring on the arrays about to be read; returns
    their total declared size in bytes."""
    check_tree(root, error)
    check_fits(os.fspath(root), arrays, error)
    return sum(check_array(root, name, node, raw, error) for name, node in arrays.items())

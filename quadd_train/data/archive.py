"""Dataset archives: safe extraction, and the decoded-image cache built once per archive.

An archive ``<name>-png.tar.gz`` (or ``-jpg``, ``.tar``...) is extracted into a private
temp folder under ``<cache>/extracted/``, its images decoded, and the arrays kept beside
it as an uncompressed ``<name>-<fingerprint>.npz``, so later loads take a fraction of a
second. The fingerprint covers the archive's path, size and mtime and the cache layout's
version: a changed archive gets a new cache entry.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path

from .bundle import DatasetBundle, DatasetNotFoundError, make_bundle
from .folders import decode_folder, find_split_root
from .npz import load_npz, write_npz

__all__ = ["UnsafeArchiveError", "load_archive", "safe_extract"]

# Bump when the decoded-cache layout changes so stale caches are rebuilt.
_CACHE_VERSION = 1


class UnsafeArchiveError(ValueError):
    """An archive member would land outside the extraction folder (or is a device/link)."""


#: The cache's subfolder of decoded archives.
EXTRACTED = "extracted"


def load_archive(canon: str, archive: Path, cache_dir: Path) -> DatasetBundle:
    """The dataset ``canon`` in ``archive``, through the cache in ``cache_dir``."""
    fp = _fingerprint(archive)
    base = cache_dir / EXTRACTED
    stem = f"{canon}-{fp}"
    npz = base / f"{stem}.npz"
    if npz.is_file():
        try:
            return load_npz(npz, name=canon)
        except Exception:  # a corrupt cache is rebuilt, not fatal
            npz.unlink(missing_ok=True)
    # An extracted folder of this archive left in the cache is decoded instead of
    # extracting the archive again.
    dest = base / stem
    # Extracting and decoding tens of thousands of images takes a minute or more, once.
    print(f"quadd: decoding {archive} into {npz} (once per archive)", file=sys.stderr,
          flush=True)
    base.mkdir(parents=True, exist_ok=True)
    # Each loader extracts into a private folder and removes it once the .npz holds the
    # images (236 MB of them for CIFAR-10): concurrent loaders (bench jobs on a fresh
    # cache) then never decode from a folder that another one is deleting.
    tmp = Path(tempfile.mkdtemp(dir=base, prefix=f".{stem}-"))
    try:
        if dest.is_dir():
            folder = dest
        else:
            safe_extract(archive, tmp)
            folder = tmp
        root = find_split_root(folder)
        if root is None:
            raise DatasetNotFoundError(
                f"archive {archive} does not contain train/<class>/ and test/<class>/ folders"
            )
        x_tr, y_tr, x_te, y_te, classes = decode_folder(root, canon)
        write_npz(npz, x_tr, y_tr, x_te, y_te, classes)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return make_bundle(canon, x_tr, y_tr, x_te, y_te, classes)


def _fingerprint(archive: Path) -> str:
    st = archive.stat()
    key = f"{archive.resolve()}|{st.st_size}|{st.st_mtime_ns}|{_CACHE_VERSION}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def safe_extract(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Extract a tar archive into ``dest``, refusing members that escape it.

    Absolute names, ``..`` components, links and device/FIFO members raise
    :class:`UnsafeArchiveError` before anything is written.
    """
    dest_path = Path(dest)
    dest_path.mkdir(parents=True, exist_ok=True)
    root = dest_path.resolve()
    try:
        return _extract(archive, root)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        # EOFError (a truncated gzip stream) would otherwise reach click as "Aborted!".
        raise ValueError(f"cannot extract archive {archive}: {exc or type(exc).__name__}"
                         ) from exc


def _extract(archive: str | os.PathLike[str], root: Path) -> Path:
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        for m in members:
            name = m.name
            if os.path.isabs(name) or name.startswith(("/", "\\")):
                raise UnsafeArchiveError(f"refusing absolute archive member {name!r}")
            if ".." in Path(name).parts or ".." in name.replace("\\", "/").split("/"):
                raise UnsafeArchiveError(f"refusing archive member with '..': {name!r}")
            if not (m.isfile() or m.isdir()):
                raise UnsafeArchiveError(f"refusing link or special archive member {name!r}")
            target = (root / name).resolve()
            if target != root and root not in target.parents:
                raise UnsafeArchiveError(f"archive member {name!r} escapes {root}")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(root, members=members, filter="data")
        else:  # pragma: no cover - Python < 3.11.4; members were vetted above
            tar.extractall(root, members=members)
    return root

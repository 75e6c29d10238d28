"""The on-disk cache: precomputed objective state (DM's pools) beside the decoded datasets.

Both live under the cache folder (``$QUADD_CACHE``, else ``~/.cache/quadd``): decoded
dataset archives in ``extracted/`` (:mod:`quadd_train.data.archive`), pools in
``pools/``. A pool entry is ``<name>.pt`` (``torch.save`` of tensors and plain values,
written atomically, read with ``weights_only``) and ``<name>.json`` (what it holds, for
``quadd cache ls``). The ``.pt`` file's modification time is when it was last used: a hit
touches it, and after every write the least recently used entries are removed until the
pools fit the cap (``$QUADD_POOL_CACHE_MAX``, a size such as ``500MiB``; default 2 GiB;
``0`` turns the pool cache off). A damaged entry is reported in one line, removed and
rebuilt. Downloaded archives (``$QUADD_DATA``, by default ``~/.cache/quadd/datasets``)
are never touched here.

What a key must cover is the caller's business (:mod:`quadd_train.objectives.dm.pool_cache`);
this module only stores, finds, lists and removes entries.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quadd_codec.paths import atomic_open

from .budget import parse_size
from .data.archive import EXTRACTED
from .data.named import default_cache_dir

__all__ = ["DEFAULT_POOL_CACHE_MAX", "CacheEntry", "clear_cache", "list_entries",
           "pool_cache_cap", "pools_dir", "read_pool_entry", "write_pool_entry"]

DEFAULT_POOL_CACHE_MAX = 2 << 30
_CAP_ENV = "QUADD_POOL_CACHE_MAX"


def pools_dir(root: Path | None = None) -> Path:
    return (default_cache_dir() if root is None else root) / "pools"


def datasets_dir(root: Path | None = None) -> Path:
    return (default_cache_dir() if root is None else root) / EXTRACTED


def pool_cache_cap() -> int:
    """Bytes the pool entries may take together (0: the pool cache is off)."""
    text = os.environ.get(_CAP_ENV, "").strip()
    if not text:
        return DEFAULT_POOL_CACHE_MAX
    if text.lower() in ("0", "off", "none"):
        return 0
    try:
        return parse_size(text)
    except ValueError as exc:
        raise ValueError(f"${_CAP_ENV}: {exc}") from None


def _warn(text: str) -> None:
    print(f"quadd: warning: {text}", file=sys.stderr, flush=True)


def read_pool_entry(name: str, root: Path | None = None) -> dict[str, Any] | None:
    """The state stored as ``name``, or None when there is none (or it is damaged: then
    it is removed, with a one-line warning). A hit marks the entry as just used."""
    import torch

    path = pools_dir(root) / f"{name}.pt"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - pickle, zip, torch and OS errors alike
        damaged(name, f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}", root)
        return None
    if not isinstance(state, dict):
        damaged(name, "not a pool entry", root)
        return None
    with contextlib.suppress(OSError):  # a read-only cache still serves hits
        os.utime(path)
    return state


def damaged(name: str, why: str, root: Path | None = None) -> None:
    """Report the entry ``name`` as damaged and remove it (it is then rebuilt)."""
    _warn(f"pool cache entry {pools_dir(root) / name}.pt is damaged ({why}); rebuilding it")
    _remove(pools_dir(root), name)


def write_pool_entry(name: str, state: dict[str, Any], meta: dict[str, Any], nbytes: int,
                     cap: int, root: Path | None = None) -> bool:
    """Store ``state`` (about ``nbytes``) as ``name`` and evict the least recently used
    entries beyond ``cap``. An entry larger than the cap alone is not stored. A cache that
    cannot be written is reported in one line, never fatal."""
    import torch

    if cap <= 0 or nbytes > cap:
        return False
    folder = pools_dir(root)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_open(folder / f"{name}.pt") as f:
            torch.save(state, f)
        with atomic_open(folder / f"{name}.json", "w") as f:
            json.dump({**meta, "created": time.time()}, f, indent=1, sort_keys=True)
    except (OSError, ValueError) as exc:
        _warn(f"cannot write the pool cache in {folder}: {exc}")
        _remove(folder, name)
        return False
    _evict(folder, cap, keep=name)
    return True


@dataclass(frozen=True)
class CacheEntry:
    """One cached thing: ``kind`` ``"pool"`` or ``"dataset"``."""

    kind: str
    name: str
    path: Path
    bytes: int
    last_used: float  # seconds since the epoch
    label: str


def list_entries(root: Path | None = None) -> list[CacheEntry]:
    """Every pool entry and decoded dataset in the cache, most recently used first."""
    out = [*_pool_entries(pools_dir(root)), *_dataset_entries(datasets_dir(root))]
    return sorted(out, key=lambda e: e.last_used, reverse=True)


def clear_cache(pools: bool = True, datasets: bool = True,
                root: Path | None = None) -> tuple[int, int]:
    """Remove the pool entries and/or the decoded datasets: ``(entries, bytes)`` removed.
    Only the cache's own files go: ``pools/`` and ``extracted/``, never the archives."""
    count = total = 0
    for entry in list_entries(root):
        if (entry.kind == "pool" and pools) or (entry.kind == "dataset" and datasets):
            if entry.kind == "pool":
                _remove(entry.path.parent, entry.name)
            elif entry.path.is_dir():
                import shutil

                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                entry.path.unlink(missing_ok=True)
            count += 1
            total += entry.bytes
    folders = ([pools_dir(root)] if pools else []) + ([datasets_dir(root)] if datasets else [])
    for folder in folders:  # what a killed writer left behind
        for stray in folder.glob(".*") if folder.is_dir() else []:
            if stray.is_dir():
                import shutil

                shutil.rmtree(stray, ignore_errors=True)
            else:
                stray.unlink(missing_ok=True)
    return count, total


def _pool_entries(folder: Path) -> list[CacheEntry]:
    entries = []
    for pt in folder.glob("*.pt") if folder.is_dir() else []:
        try:
            st = pt.stat()
        except OSError:  # removed by another process meanwhile
            continue
        meta: dict[str, Any] = {}
        side = pt.with_suffix(".json")
        with contextlib.suppress(OSError, ValueError):
            meta = json.loads(side.read_text())
        size = st.st_size + (side.stat().st_size if side.exists() else 0)
        entries.append(CacheEntry("pool", pt.stem, pt, size, st.st_mtime,
                                  str(meta.get("label", "(no description)"))))
    return entries


def _dataset_entries(folder: Path) -> list[CacheEntry]:
    entries = []
    for item in folder.iterdir() if folder.is_dir() else []:
        if item.name.startswith("."):
            continue
        try:
            st = item.stat()
            size = (sum(f.stat().st_size for f in item.rglob("*") if f.is_file())
                    if item.is_dir() else st.st_size)
        except OSError:
            continue
        label = ("decoded dataset" if item.suffix == ".npz"
                 else "extracted archive folder")
        entries.append(CacheEntry("dataset", item.name, item, size, st.st_mtime, label))
    return entries


def _evict(folder: Path, cap: int, keep: str) -> None:
    entries = sorted(_pool_entries(folder), key=lambda e: e.last_used)
    total = sum(e.bytes for e in entries)
    for entry in entries:
        if total <= cap:
            break
        if entry.name == keep:
            continue
        _remove(folder, entry.name)
        total -= entry.bytes


def _remove(folder: Path, name: str) -> None:
    for suffix in (".pt", ".json"):
        with contextlib.suppress(OSError):
            (folder / f"{name}{suffix}").unlink()

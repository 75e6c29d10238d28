"""Checks on the paths quadd reads and writes, and the atomic file writer.

Outputs are built in a hidden temp file or folder beside the target and renamed into
place, so an error from that machinery would name a path the user never typed; these
helpers check the target first and word every failure in terms of the user's path.
Inputs are checked with `stat` before they are opened: opening a FIFO blocks until a
writer appears, so `quadd inspect fifo` would hang instead of failing.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from .errors import QddValueError

#: What `-` means on the command line; as an output it would be a file literally named
#: "-", which readers then take for stdin.
STDIO = "-"

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def file_kind(mode: int) -> str:
    """"a regular file", "a directory", "a FIFO (named pipe)", ... for an `st_mode`."""
    if stat.S_ISREG(mode):
        return "a regular file"
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "not a regular file"


def check_input_file(path: str | os.PathLike, what: str = "an input file") -> os.stat_result:
    """Stat `path` and refuse anything but a regular file, without opening it."""
    shown = os.fspath(path)
    try:
        st = os.stat(shown)
    except OSError as exc:
        raise QddValueError(f"cannot open {shown}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise QddValueError(f"{shown} is {file_kind(st.st_mode)}, not {what}")
    return st


def _parent(shown: str) -> str:
    """The directory an output goes into, as the user would write it."""
    return os.path.dirname(shown) or "."


def _check_common(shown: str) -> None:
    if shown == "":
        raise QddValueError("the output path is empty")
    if shown == STDIO:
        raise QddValueError(
            "cannot write to '-': output goes to a named file or folder, not stdout"
        )
    parent = _parent(shown)
    if not os.path.isdir(parent):
        problem = (f"directory {parent} does not exist" if not os.path.lexists(parent)
                   else f"{parent} is not a directory")
        raise QddValueError(f"cannot write {shown}: {problem}")


def check_output_file(path: str | os.PathLike) -> str:
    """Refuse an output file that could not be, or must not be, replaced; returns its
    parent directory.

    Only a regular file is ever replaced: renaming over a device node, a FIFO or a
    directory would destroy something that is not a data file (or fail half way).
    """
    shown = os.fspath(path)
    _check_common(shown)
    if shown.endswith(("/", os.sep)):
        raise QddValueError(f"cannot write {shown}: the name ends with a path separator")
    try:
        st = os.stat(shown)
    except FileNotFoundError:
        return _parent(shown)
    except OSError as exc:
        raise QddValueError(f"cannot write {shown}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise QddValueError(f"cannot write {shown}: it exists and is {file_kind(st.st_mode)}"
                            + ("" if stat.S_ISDIR(st.st_mode) else
                               "; only a regular file is replaced"))
    return _parent(shown)


def check_output(path: str | os.PathLike, force: bool = False,
                 inputs: Iterable[str | os.PathLike] = ()) -> str:
    """The command-line rule for an output file, as in gzip: an existing one is refused
    without `force`, and it may never be one of `inputs`; returns its parent directory.

    Library writers replace silently (like `numpy.save`); commands call this first.
    """
    shown = os.fspath(path)
    directory = check_output_file(shown)
    for source in inputs:
        if os.path.lexists(source) and same_file(source, shown):
            raise QddValueError(f"cannot write {shown}: it is the input; write elsewhere")
        if (os.path.lexists(shown) and os.path.isdir(source)
                and Path(source).resolve() in Path(shown).resolve().parents):
            # A file of the input (a store's chunk, an image), which --force would replace.
            raise QddValueError(f"cannot write {shown}: it lies inside the input {source}; "
                                "write elsewhere")
    if os.path.lexists(shown) and not force:
        raise QddValueError(f"cannot write {shown}: it exists (use --force to replace it)")
    return directory


def _overlaps(output: Path, source: str | os.PathLike) -> bool:
    """Whether the folder `output` is `source`, lies inside it, or contains it."""
    out, src = output.resolve(), Path(source).resolve()
    return out == src or out in src.parents or src in out.parents


def _decode_wrote(folder: Path) -> bool:
    """Whether every entry of `folder` is one that `quadd decode` writes to a folder:
    PNGs (flat, or in one level of class folders), or a zarr store's metadata and chunk
    files. Links and anything else mean the folder holds what quadd did not write."""
    png_tree = zarr_tree = True
    top = True
    for root, dirs, files in os.walk(folder):
        depth = len(Path(root).relative_to(folder).parts)
        entries = [Path(root) / name for name in dirs + files]
        if any(p.is_symlink() for p in entries):
            return False
        if any(not p.is_file() for p in map(Path(root).joinpath, files)):
            return False
        png_tree &= (depth == 0 or not dirs) and all(f.lower().endswith(".png") for f in files)
        zarr_tree &= all(f == "zarr.json" or f.isdigit() for f in files)
        if top:
            zarr_tree &= "zarr.json" in files
            top = False
    return png_tree or zarr_tree


def check_output_dir(path: str | os.PathLike, replace: bool = False,
                     inputs: Iterable[str | os.PathLike] = ()) -> str:
    """Refuse an output folder that could not be, or must not be, created or replaced
    (a non-empty one only with `replace`); returns its parent directory.

    The current directory and its ancestors are refused: replacing them cannot work
    (the rename fails with "busy") and would pull the ground from under the caller.
    A folder that is, holds or lies inside one of `inputs` is refused, and `replace`
    replaces only a folder holding nothing but what a decode writes (the old tree is
    deleted after the swap, so anything else in it would be lost).
    """
    # "out/" names the folder out, whose parent is ".", not out itself.
    shown = os.fspath(path)
    shown = shown.rstrip("/" + os.sep) or shown
    _check_common(shown)
    target = Path(shown)
    resolved, cwd = target.resolve(), Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise QddValueError(
            f"cannot write {shown}: it is the current directory or contains it; "
            "name a new folder"
        )
    if os.path.lexists(shown) and not target.is_dir():
        raise QddValueError(f"cannot write {shown}: it exists and is not a directory")
    for source in inputs:
        if os.path.lexists(source) and _overlaps(target, source):
            raise QddValueError(
                f"cannot write {shown}: it is, holds or lies inside the input {source}; "
                "name a new folder"
            )
    if target.is_dir() and any(target.iterdir()):
        if not replace:
            raise QddValueError(
                f"cannot write {shown}: it exists and is not empty (use --force to replace it)"
            )
        if not _decode_wrote(target):
            raise QddValueError(
                f"cannot write {shown}: it holds files quadd decode did not write, which "
                "--force would delete; name a new folder"
            )
    return _parent(shown)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether `a` and `b` name one file: the same inode when both exist (links and
    relative spellings included), else the same resolved path."""
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def write_error(shown: str, exc: OSError) -> OSError:
    """`exc` reworded to name the output the user asked for, not a temp path."""
    return OSError(exc.errno, f"cannot write {shown}: {exc.strerror or exc}")


def is_about(exc: OSError, *paths: str | os.PathLike) -> bool:
    """Whether `exc` concerns one of `paths` (or a path inside one), or names no path."""
    if exc.filename is None:
        return True
    # Absolute on both sides: a library may report a relative temp path as absolute.
    name = os.path.abspath(os.fspath(exc.filename))
    roots = [os.path.abspath(os.fspath(p)) for p in paths]
    return any(name == root or name.startswith(root + os.sep) for root in roots)


def temp_prefix(shown: str) -> str:
    """The name prefix of a writer's temp file or folder beside `shown`: hidden, and
    holding the writer's process id so a later writer can tell a dead one's leftovers."""
    return f".{os.path.basename(shown.rstrip('/' + os.sep))}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process, or no such pid can exist
    return True


def clean_stale(shown: str) -> None:
    """Delete temp files and folders a killed writer of `shown` left beside it (named
    by `temp_prefix`, of a process that no longer runs); nothing else is touched."""
    directory = _parent(shown)
    base = os.path.basename(shown.rstrip("/" + os.sep))
    pattern = re.compile(rf"\.{re.escape(base)}\.(\d+)\.[A-Za-z0-9_]{{8}}\.(tmp|old)")
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if not match or int(match.group(1)) == os.getpid() or _alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)


def fsync_dir(directory: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where unsupported."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file beside `path`; on success fsync and rename it over `path`.

    On any error (or Ctrl-C) the temp file is deleted and `path` is left as it was;
    errors of the writing itself are reported against `path`.
    """
    shown = os.fspath(path)
    directory = check_output_file(shown)
    clean_stale(shown)
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(shown), suffix=".tmp", dir=directory)
    except OSError as exc:
        raise write_error(shown, exc) from None
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, shown)
        fsync_dir(directory)  # the rename itself survives a power cut
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and is_about(exc, tmp, shown):
            raise write_error(shown, exc) from None
        raise


def atomic_write(path: str | os.PathLike, chunks: Iterable[bytes | memoryview]) -> int:
    """Write chunks to `path` via temp file + fsync + rename; returns bytes written.

    Refuses `-`, a missing parent folder and an existing `path` that is not a regular
    file (see `check_output_file`).
    """
    with atomic_open(path) as f:
        for chunk in chunks:
            f.write(chunk)
        return f.tell()

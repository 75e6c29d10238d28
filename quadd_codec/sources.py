"""Loading encoder inputs: `.npz`, `.npy`, zarr stores and image folders -> float32 arrays.

Every input is validated here so the encoder sees clean data: problems raise
`QddValueError` with a message naming the input and what is wrong with it.
Layouts are kept as given (no NHWC/NCHW guessing) except image folders, which are NCHW.
uint8 arrays are pixels and are scaled to [0, 1].
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import QddValueError
from .paths import check_input_file
from .rules import MAX_CLASSES
from .zarr_guard import check_store, check_tree, host_available_memory

Source = tuple[np.ndarray, "np.ndarray | None", list[str]]


def source_kind(path: str | os.PathLike) -> str:
    """"npz", "npy", "zarr" or "images" for an input path (by content for directories)."""
    p = Path(path)
    if not p.exists():
        raise QddValueError(f"{p}: no such file or directory")
    if not p.is_dir():
        check_input_file(p, "a .npz, a .npy, a zarr store or an image folder")
    if p.is_dir():
        if any((p / marker).exists() for marker in ("zarr.json", ".zgroup", ".zarray")):
            return "zarr"
        return "images"
    suffix = p.suffix.lower()
    if suffix in (".npz", ".npy"):
        return suffix[1:]
    with open(p, "rb") as f:
        head = f.read(6)
    if head.startswith(b"PK"):
        return "npz"
    if head == b"\x93NUMPY":
        return "npy"
    raise QddValueError(
        f"{p}: unknown input kind; expected a .npz, a .npy, a zarr store or an image folder"
    )


def load_source(path: str | os.PathLike, progress: bool = False) -> Source:
    """Load an encoder input: (x float32 (N, ...), y int64 (N,) or None, class names).

    - `.npz`: array `x`, optional `y` and `classes` (strings); without `classes`, names
      are "0".."K-1" with K = max(y) + 1.
    - `.npy`: x only (an unlabeled set).
    - zarr store: a group with array `x`, optional `y` and attribute `classes`, or a
      single array (x only).
    - image folder `root/<class>/*.png|jpg|jpeg`: NCHW in [0, 1], classes = sorted folders.
    """
    kind = source_kind(path)
    if kind == "images":
        from .imagefolder import read_image_folder

        x, y, names = read_image_folder(path, progress=progress)
        return x, y, names
    if kind == "npz":
        x, y, classes = _load_npz(Path(path))
    elif kind == "npy":
        x, y, classes = _load_npy(Path(path)), None, None
    else:
        x, y, classes = _load_zarr(Path(path))
    return validate_source(x, y, classes, str(path))


def validate_source(
    x: Any, y: Any | None, classes: Any | None, where: str = "input"
) -> Source:
    """Check and normalize raw arrays the way `load_source` does (usable on in-memory data)."""
    x = _check_x(np.asarray(x), where)
    n = x.shape[0]
    labels = None if y is None else check_labels(y, n, where)
    names = _class_names(classes, labels, where)
    return x, labels, names


def _check_x(x: np.ndarray, where: str) -> np.ndarray:
    if x.dtype.kind not in "biuf":
        raise QddValueError(f"{where}: x has dtype {x.dtype}; expected numbers (uint8 or float)")
    if x.ndim < 2:
        raise QddValueError(
            f"{where}: x has shape {x.shape}; expected samples along axis 0, shape (N, ...)"
        )
    if x.size == 0:
        raise QddValueError(f"{where}: x is empty (shape {x.shape})")
    if x.dtype == np.uint8:
        # Pixels: the usual [0, 255] bytes become [0, 1] floats.
        out = x.astype(np.float32)
        out /= np.float32(255)  # in place: no second float32 copy
        return out
    with np.errstate(over="ignore", invalid="ignore"):
        out = x.astype(np.float32, copy=False)  # float32 input: no second copy
    if not np.isfinite(out).all():
        bad = "NaN or infinite" if x.dtype.kind == "f" and not np.isfinite(x).all() else \
            "out of float32 range"
        raise QddValueError(f"{where}: x holds {bad} values; they cannot be quantized")
    return out


def check_labels(y: Any, n: int | None = None, where: str | None = "input",
                 key: str = "y") -> np.ndarray:
    """Class indices as int64, checked before anything is sized by the largest label.

    `y` must be 1-D (with `n` given: of n labels) of integers, booleans or integral
    floats, none negative and all below MAX_CLASSES. Raises `QddValueError` (a
    `ValueError`) whose message names the array as `key`, after `where` when given.
    """
    at = f"{where}: {key}" if where else key
    y = np.asarray(y)
    if y.ndim != 1:
        raise QddValueError(f"{at} must be 1-D (one label per sample), got shape {y.shape}")
    if n is not None and y.shape[0] != n:
        raise QddValueError(f"{at} has {y.shape[0]} labels but x has {n} samples")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or (y != np.round(y)).any():
            raise QddValueError(f"{at} must hold integer class indices")
    elif y.dtype.kind not in "iub":
        raise QddValueError(f"{at} has dtype {y.dtype}; expected integer class indices")
    if y.size and y.min() < 0:
        raise QddValueError(f"{at} holds negative labels (min {y.min()})")
    # Default class names are "0".."max(y)", so a stray huge label would build a list
    # of that many strings before the class limit is ever checked.
    if y.size and y.max() >= MAX_CLASSES:
        raise QddValueError(
            f"{at} holds label {int(y.max())}; labels must be below {MAX_CLASSES} "
            f"(at most {MAX_CLASSES} classes)"
        )
    return y.astype(np.int64)


def _class_names(classes: Any | None, y: np.ndarray | None, where: str) -> list[str]:
    if y is None:
        if classes is not None and len(classes):
            raise QddValueError(f"{where}: class names are given but there are no labels (y)")
        return []
    k = int(y.max()) + 1 if y.size else 0
    if classes is None:
        return [str(i) for i in range(k)]
    arr = np.asarray(classes)
    if arr.ndim != 1 or arr.dtype.kind not in "US" and not (
        arr.dtype.kind == "O" and all(isinstance(c, str) for c in arr)
    ):
        raise QddValueError(f"{where}: classes must be a 1-D array of strings")
    names = [c.decode("utf-8") if isinstance(c, bytes) else str(c) for c in arr.tolist()]
    if len(names) < k:
        raise QddValueError(f"{where}: y has labels up to {k - 1} but only {len(names)} classes")
    if len(set(names)) != len(names):
        raise QddValueError(f"{where}: class names must be distinct")
    if any(not name for name in names):
        raise QddValueError(f"{where}: class names must not be empty")
    return names


# --------------------------------------------------------------------- per kind


def _npy_error(path: Path, key: str | None, exc: Exception) -> QddValueError:
    what = f"array {key!r} of {path}" if key else str(path)
    text = str(exc)
    if "max_header_size" in text:  # numpy's message also names allow_pickle
        return QddValueError(f"{what}: its .npy header is too large to be read safely "
                             "(a valid array's header is a few hundred bytes)")
    if "allow_pickle" in text or "pickle" in text.lower():
        return QddValueError(f"{what} holds Python objects (pickled); only plain numeric "
                             "or string arrays are loaded, never pickles")
    return QddValueError(f"{what}: cannot read: {text}")


def _check_magic(path: Path, magic: bytes, what: str) -> None:
    # np.load falls back to unpickling unknown bytes; say "not a .npz" instead of "pickle".
    with open(path, "rb") as f:
        if not f.read(len(magic)).startswith(magic):
            raise QddValueError(f"{path}: cannot read: not a {what} file")


def _check_npy_size(fp: IO[bytes], available: int, what: str) -> int:
    """Refuse an .npy stream whose header declares more data than `available` bytes, or
    more than the free memory holds once widened to float32; returns the declared bytes.

    np.load allocates the array the header declares before reading it, so a 1 KiB file
    claiming a billion samples would fail with "out of memory" instead of "truncated".
    `fp` is positioned at the start of the .npy bytes; `available` counts from there.
    """
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(fp)
        else:
            return 0  # np.load reports versions it does not know
    except (ValueError, OSError, EOFError):
        return 0  # np.load gives the precise message
    declared = math.prod(int(d) for d in shape) * dtype.itemsize
    held = available - fp.tell()
    if declared > held:
        raise QddValueError(
            f"{what} is truncated: its header declares shape {tuple(shape)} of {dtype} "
            f"({declared:,} bytes) but only {max(held, 0):,} bytes follow"
        )
    # The encoder holds the array and its float32 copy at once.
    need = declared + 4 * math.prod(int(d) for d in shape)
    free = host_available_memory()
    if free is not None and need > free:
        raise QddValueError(
            f"{what} declares shape {tuple(shape)} of {dtype} ({declared / 2**30:.2f} GiB, "
            f"{need / 2**30:.2f} GiB to encode), more than the {free / 2**30:.2f} GiB free"
        )
    return declared


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    _check_magic(path, b"PK", ".npz")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise _npy_error(path, None, exc) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise QddValueError(f"{path}: is a .npy array, not a .npz archive")
    with archive:
        keys = list(archive.keys())
        if "x" not in keys:
            raise QddValueError(
                f"{path}: no array 'x' (found: {', '.join(keys) or 'nothing'}); "
                "expected x (N, ...) and optional y (N,) and classes"
            )

        def get(key: str) -> np.ndarray | None:
            if key not in keys:
                return None
            try:
                names = archive.zip.namelist()
                info = archive.zip.getinfo(f"{key}.npy" if f"{key}.npy" in names else key)
                with archive.zip.open(info) as member:
                    _check_npy_size(member, info.file_size, f"array {key!r} of {path}")
                return archive[key]
            except QddValueError:
                raise
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                raise _npy_error(path, key, exc) from None

        return get("x"), get("y"), get("classes")  # type: ignore[return-value]


def _load_npy(path: Path) -> np.ndarray:
    _check_magic(path, b"\x93NUMPY", ".npy")
    with open(path, "rb") as fp:
        _check_npy_size(fp, os.fstat(fp.fileno()).st_size, str(path))
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise _npy_error(path, None, exc) from None
    if not isinstance(arr, np.ndarray):
        raise QddValueError(f"{path}: is a .npz archive, not a .npy array")
    return arr


def _load_zarr(path: Path) -> tuple[np.ndarray, np.ndarray | None, Any | None]:
    import zarr

    check_tree(path, QddValueError)  # before zarr opens anything: no link is followed
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:  # zarr raises many types for a broken store
        raise QddValueError(f"{path}: cannot open zarr store: {exc}") from None
    try:
        if isinstance(node, zarr.Array):
            check_store(path, {"": node}, error=QddValueError)
            return node[...], None, None
        arrays = set(node.array_keys())
        if "x" not in arrays:
            hint = (" (it is a quadd export: rebuild the .qdd with `quadd import`)"
                    if "quadd" in node.attrs else "")
            found = ", ".join(sorted(arrays)) or "none"
            raise QddValueError(f"{path}: zarr group has no array 'x' (arrays: {found}){hint}")
        present = {k: node[k] for k in ("x", "y", "classes") if k in arrays}
        check_store(path, present, error=QddValueError)
        y = node["y"][...] if "y" in arrays else None
        classes = node.attrs.get("classes")
        if classes is None and "classes" in arrays:
            classes = node["classes"][...]
        return node["x"][...], y, classes
    except QddValueError:
        raise
    except Exception as exc:
        raise QddValueError(f"{path}: cannot read zarr store: {exc}") from None


def input_nbytes(path: str | os.PathLike) -> int:
    """On-disk size of an input: the file's size, or the total of a directory's files."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    total = 0
    for dirpath, _, files in os.walk(p):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, name))
            except OSError:
                pass
    return total

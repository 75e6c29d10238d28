"""Image folders `root/<class>/<image>` <-> float32 (N, C, H, W) arrays in [0, 1].

Class folder names written here are *safe names*: every character outside
``[A-Za-z0-9._-]`` (and a leading dot, so no hidden files, `.` or `..`) is percent-encoded
as UTF-8 bytes, so no class name can make a path leave the root; reading decodes names
that are exactly in that canonical form, so a written folder reads back to the same
class names.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np

from .errors import QddValueError
from .paths import check_output_dir, clean_stale, fsync_dir, is_about, temp_prefix, write_error

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
#: Most pixels one image may declare; a PNG of a few kilobytes can declare billions.
MAX_IMAGE_PIXELS = 1 << 26
#: Pillow mode -> (mode decoded to, channels). Modes not listed are refused by name.
_MODES = {"1": ("L", 1), "L": ("L", 1), "LA": ("LA", 2), "RGB": ("RGB", 3),
          "RGBA": ("RGBA", 4), "P": ("RGB", 3), "PA": ("RGBA", 4)}
_CHANNEL_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
#: Longest folder name written; longer encodings are cut and suffixed with a hash, since
#: most file systems cap a name at 255 bytes.
_MAX_NAME = 200
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                     *(f"LPT{i}" for i in range(1, 10))}


def safe_name(name: str) -> str:
    """A file-system-safe, path-free folder name for a class name (see module docstring)."""
    # quote() keeps only ASCII letters, digits and "_.-~"; "/", "\\", "%", ":" etc. and
    # all non-ASCII characters become %XX of their UTF-8 bytes.
    encoded = quote(name, safe="", encoding="utf-8")
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    if encoded.split(".")[0].upper() in _WINDOWS_RESERVED:
        encoded = f"%{ord(encoded[0]):02X}" + encoded[1:]
    if not encoded:
        encoded = "%00"  # only an empty name gets here; the format forbids those anyway
    if len(encoded) > _MAX_NAME:
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]
        encoded = f"{encoded[:_MAX_NAME - 17]}~{digest}"
    return encoded


def class_name_from_folder(folder: str) -> str:
    """Inverse of `safe_name` for names in its canonical form; other names stay as they are."""
    if "%" not in folder:
        return folder
    try:
        decoded = unquote(folder, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        return folder
    return decoded if safe_name(decoded) == folder else folder


def _inside(root: Path, path: Path) -> Path:
    """`path` resolved, after checking it lies strictly inside `root` (defence in depth)."""
    resolved = path.resolve()
    if resolved == root or root not in resolved.parents:
        raise QddValueError(f"refusing to write {path}: it resolves outside {root}")
    return resolved


# ------------------------------------------------------------------------ reading


def list_image_folder(
    root: str | os.PathLike,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    folders: Sequence[str] | None = None,
) -> tuple[list[tuple[Path, int]], list[str]]:
    """(file, label) pairs in a stable order, and class names (sorted folder names).

    `folders` fixes the class folders and their order (label i = folders[i]); a listed
    folder that is missing simply has no images (a test split may lack a class).
    """
    root = Path(root)
    if not root.is_dir():
        raise QddValueError(f"{root} is not a directory")
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    if folders is None:
        folders = sorted(
            e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")
        )
    if not folders:
        raise QddValueError(
            f"{root} has no class folders; expected {root}/<class>/*"
            + "|".join(sorted(exts))
        )
    files: list[tuple[Path, int]] = []
    for label, folder in enumerate(folders):
        if not (root / folder).is_dir():
            continue
        names = sorted(
            e.name for e in os.scandir(root / folder)
            if e.is_file() and not e.name.startswith(".") and Path(e.name).suffix.lower() in exts
        )
        files.extend((root / folder / name, label) for name in names)
    if not files:
        raise QddValueError(f"no {'/'.join(sorted(exts))} images found under {root}/<class>/")
    return files, [class_name_from_folder(f) for f in folders]


def _decode_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        # The header alone gives the size: refuse a decompression bomb before decoding.
        width, height = img.size
        if width * height > MAX_IMAGE_PIXELS:
            raise QddValueError(f"{path}: image declares {width}x{height} pixels, over the "
                                f"{MAX_IMAGE_PIXELS:,}-pixel limit (a decompression bomb?)")
        if img.mode not in _MODES:
            raise QddValueError(
                f"{path}: unsupported image mode {img.mode!r}; use 8-bit L, LA, RGB, RGBA or P"
            )
        target = _MODES[img.mode][0]
        if img.mode == "P" and "transparency" in img.info:
            target = "RGBA"
        arr = np.asarray(img.convert(target) if img.mode != target else img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def read_image_folder(
    root: str | os.PathLike,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    progress: bool = False,
    folders: Sequence[str] | None = None,
    as_uint8: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode `root/<class>/*.png|jpg|jpeg` to (x float32 (N, C, H, W) in [0, 1], y int64,
    class names). Classes are the sorted folder names (or `folders`, in that order);
    images are read in sorted order. All images must share one size and channel layout.
    `as_uint8` keeps the raw 0..255 pixels (4x smaller, e.g. for a cache).
    """
    files, class_names = list_image_folder(root, extensions, folders)
    from tqdm import tqdm

    x: np.ndarray | None = None
    y = np.empty(len(files), dtype=np.int64)
    first: Path | None = None
    for i, (path, label) in enumerate(
        tqdm(files, desc="decoding images", unit="img", disable=not progress, leave=False)
    ):
        try:
            img = _decode_image(path)
        except (QddValueError, ModuleNotFoundError):  # a missing Pillow is named as such
            raise
        except Exception as exc:  # Pillow raises many types for a damaged file
            raise QddValueError(f"{path}: cannot decode image: {exc}") from None
        hwc = img.shape
        if x is None:
            first = path
            _check_fits(root, len(files), hwc, 1 if as_uint8 else 4)
            x = np.empty((len(files), hwc[2], hwc[0], hwc[1]),
                         dtype=np.uint8 if as_uint8 else np.float32)
        elif hwc != (x.shape[2], x.shape[3], x.shape[1]):
            raise QddValueError(
                f"{path}: image is {hwc[1]}x{hwc[0]} with {hwc[2]} channel(s), but {first} is "
                f"{x.shape[3]}x{x.shape[2]} with {x.shape[1]}; all images must match"
            )
        x[i] = img.transpose(2, 0, 1)
        y[i] = label
    assert x is not None
    if not as_uint8:
        x /= 255.0
    return x, y, class_names


def _check_fits(root: str | os.PathLike, count: int, hwc: tuple[int, ...],
                itemsize: int) -> None:
    """Refuse a folder whose images, all the size of the first, would not fit in the
    free memory: the array for all of them is allocated before the rest are read."""
    from .zarr_guard import host_available_memory

    need = count * math.prod(hwc) * itemsize
    free = host_available_memory()
    if free is not None and need > free:
        raise QddValueError(
            f"{root}: {count:,} images of {hwc[1]}x{hwc[0]}x{hwc[2]} need "
            f"{need / 2**30:.1f} GiB, more than the {free / 2**30:.1f} GiB free")


# ------------------------------------------------------------------------ writing


def to_uint8_images(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) float in [0, 1] -> (N, H, W, C) uint8 (clipped, rounded)."""
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[1] not in _CHANNEL_MODES:
        raise QddValueError(
            f"only samples shaped (C, H, W) with C in 1..4 can be written as images; "
            f"samples here are {tuple(x.shape[1:])}"
        )
    pixels = np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
    return pixels.transpose(0, 2, 3, 1)


def write_image_folder(
    x: np.ndarray,
    y: np.ndarray | None,
    class_names: Sequence[str],
    root: str | os.PathLike,
    progress: bool = False,
) -> int:
    """Write samples as PNGs `root/<safe class>/<index>.png` (flat in `root` when unlabeled).

    `x` is (N, C, H, W) in [0, 1] (C = 1 -> grayscale, 3 -> RGB, 2/4 with alpha); indices
    are zero-padded so sorted file names keep sample order. `root` must not exist yet or
    be an empty directory. Returns the number of images written.
    """
    from PIL import Image
    from tqdm import tqdm

    pixels = to_uint8_images(x)
    n = pixels.shape[0]
    if y is not None and len(class_names) == 0:
        y = None
    if y is not None:
        y = np.asarray(y)
        if y.shape != (n,) or (n and (y.min() < 0 or y.max() >= len(class_names))):
            raise QddValueError(f"labels must be {n} integers in 0..{len(class_names) - 1}")
    root_path = Path(root)
    root_path.mkdir(parents=True, exist_ok=True)
    if any(root_path.iterdir()):
        raise QddValueError(f"{root_path} is not empty")
    root_resolved = root_path.resolve()
    folders: list[Path] = []
    if y is not None:
        for name in class_names:
            folder = _inside(root_resolved, root_resolved / safe_name(name))
            try:
                folder.mkdir()
            except FileExistsError:
                # Only a case-insensitive file system can make two safe names collide.
                raise QddValueError(
                    f"class {name!r} collides with another class's folder {folder.name!r} "
                    "(case-insensitive file system?)"
                ) from None
            folders.append(folder)
    width = len(str(max(n - 1, 0)))
    mode = _CHANNEL_MODES[pixels.shape[3]]
    for i in tqdm(range(n), desc="writing images", unit="img", disable=not progress,
                  leave=False):
        folder = folders[int(y[i])] if y is not None else root_resolved
        target = _inside(root_resolved, folder / f"{i:0{width}d}.png")
        img = pixels[i, :, :, 0] if mode == "L" else pixels[i]
        Image.fromarray(img, mode=mode).save(target, format="PNG")
    return n


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """Build a directory in a temp dir beside `target`, then rename it into place.

    On any error the temp dir is removed and `target` is untouched. An existing empty
    `target` is replaced; a non-empty one only with `replace=True` (the old tree is moved
    aside first and deleted once the new one is in place). The parent folder must exist;
    `-`, the current directory and its ancestors are refused.
    """
    shown = os.fspath(target)
    parent = check_output_dir(shown, replace)
    target = Path(shown)
    clean_stale(shown)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(shown), suffix=".tmp", dir=parent))
    except OSError as exc:
        raise write_error(shown, exc) from None
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if not target.exists():
            os.replace(tmp, target)
        else:
            _swap_in(tmp, target, parent)
        fsync_dir(parent)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and is_about(exc, tmp, shown):
            raise write_error(shown, exc) from None
        raise


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where
    the system or file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(b))


def _swap_in(tmp: Path, target: Path, parent: str) -> None:
    """Replace the existing tree `target` by `tmp`. Where the system can, the two trade
    places atomically, so no moment leaves `target` missing; the old tree, now at `tmp`,
    is deleted after (or, if the process is killed first, by the next writer:
    `paths.clean_stale`). Elsewhere the old tree is moved aside, the new one renamed in."""
    if _exchange(tmp, target):
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = Path(tempfile.mkdtemp(prefix=temp_prefix(os.fspath(target)), suffix=".old",
                                dir=parent))
    try:
        os.replace(target, old / "tree")
    except BaseException:
        old.rmdir()  # nothing was moved into it
        raise
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old / "tree", target)  # put the previous tree back
        old.rmdir()
        raise
    shutil.rmtree(old, ignore_errors=True)

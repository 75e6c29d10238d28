"""Loading the real datasets that distillation starts from and evaluation tests on.

``load_dataset`` accepts

* ``"digits"`` -- scikit-learn's 8x8 digits, embedded, needs no files;
* ``"mnist"``, ``"fashion-mnist"``, ``"cifar10"`` -- looked up in a data directory
  (``data_dir`` argument, else ``$QUADD_DATA``, else ``~/.cache/quadd/datasets``), as an
  extracted folder ``<dir>/<name>/{train,test}/<class>/*`` or an archive
  ``<dir>/<name>-png.tar.gz`` / ``<name>-jpg.tar.gz``. Archives are extracted once into
  the cache (``$QUADD_CACHE``, else ``~/.cache/quadd``) and the decoded images are kept
  there as an uncompressed ``.npz`` so later loads take a fraction of a second;
* a path: a folder with ``train/<class>/*`` and ``test/<class>/*`` images, or an
  ``.npz`` holding ``x_train, y_train, x_test, y_test`` (optionally ``class_names``).

A name that is not one of the known datasets is treated as a path; write ``./mnist``
to load a local folder that happens to be called like a known dataset.

Values stay in the source value space (images: [0, 1]); normalization uses the
per-channel train statistics in ``DatasetBundle.mean`` / ``std``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "CIFAR10_CLASSES",
    "KNOWN_DATASETS",
    "DatasetBundle",
    "DatasetNotFoundError",
    "UnsafeArchiveError",
    "default_cache_dir",
    "default_data_dir",
    "load_dataset",
    "safe_extract",
]

CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]

# canonical name -> spellings accepted on the command line and in file names
_ALIASES: dict[str, tuple[str, ...]] = {
    "digits": ("digits",),
    "mnist": ("mnist",),
    "fashion-mnist": ("fashion-mnist", "fashion_mnist", "fashionmnist"),
    "cifar10": ("cifar10", "cifar-10", "cifar_10"),
}
KNOWN_DATASETS = tuple(_ALIASES)
_ARCHIVE_SUFFIXES = ("-png.tar.gz", "-jpg.tar.gz", ".tar.gz", ".tgz", ".tar")
# Bump when the decoded-cache layout changes so stale caches are rebuilt.
_CACHE_VERSION = 1


class DatasetNotFoundError(ValueError):
    """The requested dataset is not available locally; the message says how to fix it."""


class UnsafeArchiveError(ValueError):
    """An archive member would land outside the extraction folder (or is a device/link)."""


@dataclass
class DatasetBundle:
    """A labelled train/test split in source value space (N, C, ...) float32."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    class_names: list[str]
    mean: Tensor
    std: Tensor
    _stats_cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def im_size(self) -> tuple[int, int]:
        if self.x_train.dim() != 4:
            raise ValueError(f"{self.name} is not an image dataset (shape {self.sample_shape})")
        return int(self.x_train.shape[2]), int(self.x_train.shape[3])

    def _stats_like(self, x: Tensor) -> tuple[Tensor, Tensor]:
        # Channel axis is 1 for a batch (N, C, ...); broadcast over the remaining axes.
        view = (1, -1) + (1,) * (x.dim() - 2)
        # Cached per device: a fresh host-to-GPU copy per batch would stall the stream.
        key = (x.device, x.dtype)
        cache = self._stats_cache
        if key not in cache:
            cache[key] = (self.mean.to(device=x.device, dtype=x.dtype),
                          self.std.to(device=x.device, dtype=x.dtype))
        mean, std = cache[key]
        return mean.view(view), std.view(view)

    def normalize(self, x: Tensor) -> Tensor:
        """Source values -> zero-mean/unit-std per channel, for a batch ``(N, C, ...)``."""
        mean, std = self._stats_like(x)
        return (x - mean) / std

    def denormalize(self, x: Tensor) -> Tensor:
        """Inverse of :meth:`normalize`."""
        mean, std = self._stats_like(x)
        return x * std + mean


def default_data_dir() -> Path:
    env = os.environ.get("QUADD_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "quadd" / "datasets"


def default_cache_dir() -> Path:
    env = os.environ.get("QUADD_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "quadd"


def _canonical(name: str) -> str | None:
    low = name.strip().lower()
    for canon, spellings in _ALIASES.items():
        if low in spellings:
            return canon
    return None


def load_dataset(
    name_or_path: str,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> DatasetBundle:
    """Load a dataset by name (see module docstring) or from a folder / ``.npz`` path.

    Raises :class:`DatasetNotFoundError` (a ``ValueError``) when it cannot be found.
    """
    canon = _canonical(str(name_or_path))
    if canon == "digits":
        return _load_digits()
    if canon is not None:
        ddir = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
        cdir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        return _load_named(canon, ddir, cdir)
    path = Path(name_or_path).expanduser()
    if path.is_file() and path.suffix.lower() == ".npz":
        return _load_npz(path)
    if path.is_dir():
        root = _find_split_root(path)
        if root is None:
            raise DatasetNotFoundError(
                f"{path} is not a dataset folder: expected train/<class>/* and "
                "test/<class>/* image subfolders"
            )
        x_tr, y_tr, x_te, y_te, classes = _decode_folder(root, None)
        return _bundle(path.name, x_tr, y_tr, x_te, y_te, classes)
    if path.exists():
        raise DatasetNotFoundError(
            f"{path} is neither an .npz file nor a folder with train/ and test/ subfolders"
        )
    raise DatasetNotFoundError(
        f"unknown dataset {str(name_or_path)!r}: not one of {', '.join(KNOWN_DATASETS)}, "
        "and no such .npz file or dataset folder exists"
    )


# -- digits -------------------------------------------------------------------------


def _load_digits() -> DatasetBundle:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = d.target.astype(np.int64)
    # Fixed seed + stratification: the same 80/20 split on every machine.
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=0.2, random_state=0, stratify=y
    )
    classes = [str(i) for i in range(10)]
    return _bundle("digits", x_tr, y_tr, x_te, y_te, classes)


# -- named datasets in a data directory ---------------------------------------------


def _load_named(canon: str, data_dir: Path, cache_dir: Path) -> DatasetBundle:
    looked: list[str] = []
    for spelling in _ALIASES[canon]:
        folder = data_dir / spelling
        looked.append(f"{folder}/{{train,test}}/")
        root = _find_split_root(folder) if folder.is_dir() else None
        if root is not None:
            x_tr, y_tr, x_te, y_te, classes = _decode_folder(root, canon)
            return _bundle(canon, x_tr, y_tr, x_te, y_te, classes)
    for spelling in _ALIASES[canon]:
        for suffix in _ARCHIVE_SUFFIXES:
            archive = data_dir / f"{spelling}{suffix}"
            looked.append(str(archive))
            if archive.is_file():
                return _load_archive(canon, archive, cache_dir)
    raise DatasetNotFoundError(
        f"dataset {canon!r} not found; looked for " + ", ".join(looked[:4])
        + (" (and other spellings)" if len(looked) > 4 else "")
        + ". Pass --data-dir (or set QUADD_DATA) to the folder holding "
        f"{canon}-png.tar.gz / {canon}-jpg.tar.gz or an extracted {canon}/ folder."
    )


def _fingerprint(archive: Path) -> str:
    st = archive.stat()
    key = f"{archive.resolve()}|{st.st_size}|{st.st_mtime_ns}|{_CACHE_VERSION}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _load_archive(canon: str, archive: Path, cache_dir: Path) -> DatasetBundle:
    fp = _fingerprint(archive)
    base = cache_dir / "extracted"
    stem = f"{canon}-{fp}"
    npz = base / f"{stem}.npz"
    if npz.is_file():
        try:
            return _load_npz(npz, name=canon)
        except Exception:  # a corrupt cache is rebuilt, not fatal
            npz.unlink(missing_ok=True)
    dest = base / stem  # where versions before 2026-11-30 kept the extracted images
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
        root = _find_split_root(folder)
        if root is None:
            raise DatasetNotFoundError(
                f"archive {archive} does not contain train/<class>/ and test/<class>/ folders"
            )
        x_tr, y_tr, x_te, y_te, classes = _decode_folder(root, canon)
        _write_npz_atomic(npz, x_tr, y_tr, x_te, y_te, classes)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _bundle(canon, x_tr, y_tr, x_te, y_te, classes)


def _write_npz_atomic(path: Path, x_tr, y_tr, x_te, y_te, classes: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            # Uncompressed: loading speed matters more than disk here.
            np.savez(
                fh,
                x_train=x_tr,
                y_train=y_tr,
                x_test=x_te,
                y_test=y_te,
                class_names=np.array(classes),
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


# -- image folders ------------------------------------------------------------------


def _find_split_root(folder: Path) -> Path | None:
    """``folder`` itself or its single subfolder, whichever holds train/ and test/."""
    if not folder.is_dir():
        return None
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        return folder
    subs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(subs) == 1 and (subs[0] / "train").is_dir() and (subs[0] / "test").is_dir():
        return subs[0]
    return None


def _class_order(names: Sequence[str], canon: str | None) -> list[str]:
    if canon == "cifar10" and set(names) == set(CIFAR10_CLASSES):
        return list(CIFAR10_CLASSES)
    if names and all(n.isdigit() for n in names):
        return sorted(names, key=int)  # "10" after "9"
    return sorted(names)


def _decode_folder(root: Path, canon: str | None):
    train_classes = [p.name for p in (root / "train").iterdir() if p.is_dir()]
    test_classes = [p.name for p in (root / "test").iterdir() if p.is_dir()]
    if not train_classes:
        raise DatasetNotFoundError(f"{root / 'train'} has no class subfolders")
    extra = set(test_classes) - set(train_classes)
    if extra:
        raise ValueError(f"test split has classes missing from train: {sorted(extra)}")
    classes = _class_order(train_classes, canon)
    x_tr, y_tr = _decode_split(root / "train", classes)
    x_te, y_te = _decode_split(root / "test", classes)
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise ValueError(f"train images {x_tr.shape[1:]} and test {x_te.shape[1:]} differ")
    return x_tr, y_tr, x_te, y_te, classes


def _decode_split(split_dir: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    from quadd_codec.imagefolder import read_image_folder

    x, y, _ = read_image_folder(split_dir, folders=classes, as_uint8=True,
                                progress=sys.stderr.isatty())
    return x, y


# -- .npz ---------------------------------------------------------------------------


def _to_nchw(x: np.ndarray, key: str) -> np.ndarray:
    """Channel axis rule: (N, H, W) gains a channel axis; a 4-D array is channels-last
    when its last axis has 1, 3 or 4 entries and axis 1 does not, else channels-first.
    2-D (N, F) arrays are feature vectors and stay as they are."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        return x.transpose(0, 3, 1, 2)
    if x.ndim < 2:
        raise ValueError(f"{key} must have a sample axis and data axes, got shape {x.shape}")
    return x


def _load_npz(path: Path, name: str | None = None) -> DatasetBundle:
    with np.load(path, allow_pickle=False) as z:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(z.files)
        if missing:
            raise ValueError(f"{path} lacks arrays {sorted(missing)}")
        arrays = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}
        names = [str(c) for c in z["class_names"]] if "class_names" in z.files else None
    xs = {k: _to_nchw(arrays[k], k) for k in ("x_train", "x_test")}
    ys = {k: _labels(arrays[k], k) for k in ("y_train", "y_test")}
    if names is None:
        k = int(max(ys["y_train"].max(initial=-1), ys["y_test"].max(initial=-1))) + 1
        names = [str(i) for i in range(k)]
    return _bundle(
        name or path.stem, xs["x_train"], ys["y_train"], xs["x_test"], ys["y_test"], names
    )


def _labels(y: np.ndarray, key: str) -> np.ndarray:
    """Class indices as int64, refused before anything is sized by the largest: an
    integer array (or integral floats) of 0..MAX_CLASSES-1."""
    from quadd_codec.layout import MAX_CLASSES

    if not (y.dtype == np.bool_ or np.issubdtype(y.dtype, np.integer)
            or np.issubdtype(y.dtype, np.floating)):
        raise ValueError(f"{key} must hold integer class indices, got dtype {y.dtype}")
    flat = y.reshape(-1)
    if np.issubdtype(flat.dtype, np.floating):
        if not np.all(np.isfinite(flat)) or np.any(flat != np.floor(flat)):
            raise ValueError(f"{key} must hold integer class indices, got non-integral values")
    if flat.size and flat.min() < 0:
        raise ValueError(f"{key} has negative labels")
    if flat.size and flat.max() >= MAX_CLASSES:
        raise ValueError(f"{key} has labels up to {int(flat.max())}; at most {MAX_CLASSES} "
                         "classes are supported")
    return flat.astype(np.int64)


# -- assembling a bundle -------------------------------------------------------------


def _as_float(x: np.ndarray, key: str) -> np.ndarray:
    """uint8 (and other integer) pixels -> [0, 1]; floats are kept as they are."""
    if np.issubdtype(x.dtype, np.floating):
        # Checked in slices: a float copy of a whole large split is not needed for it.
        for start in range(0, len(x), 4096):
            if not np.all(np.isfinite(x[start:start + 4096])):
                raise ValueError(f"{key} holds NaN or infinite values")
        return x.astype(np.float32, copy=False)
    if np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_:
        if x.size and (x.min() < 0 or x.max() > 255):
            raise ValueError(f"integer {key} must hold 0..255 pixel values")
        return x.astype(np.float32) / np.float32(255.0)
    raise ValueError(f"{key} has unsupported dtype {x.dtype}")


def _channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (axis 1) mean and population std in the [0, 1]/float value space."""
    c = x.shape[1]
    mean = np.zeros(c)
    std = np.zeros(c)
    for ch in range(c):
        v = x[:, ch]
        if v.dtype == np.uint8:
            # Exact and memory-light: a 256-bin histogram instead of a float copy.
            hist = np.bincount(v.ravel(), minlength=256).astype(np.float64)
            vals = np.arange(256) / 255.0
            n = hist.sum()
            m = (hist * vals).sum() / n
            mean[ch], std[ch] = m, np.sqrt((hist * (vals - m) ** 2).sum() / n)
        else:
            vf = _as_float(v, "x_train").astype(np.float64).ravel()
            mean[ch], std[ch] = vf.mean(), vf.std()
    # A constant channel would divide by zero in normalize().
    return mean, np.maximum(std, 1e-8)


def check_every_class_has_samples(bundle: DatasetBundle) -> None:
    """Distilling (and planning it) needs real samples of every class to start from."""
    counts = np.bincount(bundle.y_train.numpy(), minlength=bundle.num_classes)
    if (counts == 0).any():
        empty = [str(bundle.class_names[i]) for i in np.flatnonzero(counts == 0)[:5]]
        raise ValueError(f"{bundle.name}: class(es) {', '.join(empty)} have no training "
                         "samples to distill from")


def _check_labels(y: np.ndarray, k: int, key: str) -> None:
    if y.size and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"{key} has labels outside 0..{k - 1}")


def _bundle(name, x_tr, y_tr, x_te, y_te, classes: list[str]) -> DatasetBundle:
    if len(x_tr) != len(y_tr) or len(x_te) != len(y_te):
        raise ValueError("x and y have different numbers of samples")
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise ValueError(f"train samples {x_tr.shape[1:]} and test {x_te.shape[1:]} differ")
    if len(x_tr) == 0:
        raise ValueError("the training split is empty")
    _check_labels(y_tr, len(classes), "y_train")
    _check_labels(y_te, len(classes), "y_test")
    # A feature vector (N, F) is one channel (FORMAT.md: C is 1 for 1-D samples).
    mean, std = _channel_stats(x_tr[:, None] if x_tr.ndim == 2 else x_tr)
    return DatasetBundle(
        name=str(name),
        x_train=torch.from_numpy(np.ascontiguousarray(_as_float(x_tr, "x_train"))),
        y_train=torch.from_numpy(np.asarray(y_tr, dtype=np.int64)),
        x_test=torch.from_numpy(np.ascontiguousarray(_as_float(x_te, "x_test"))),
        y_test=torch.from_numpy(np.asarray(y_te, dtype=np.int64)),
        class_names=list(classes),
        mean=torch.tensor(mean, dtype=torch.float32),
        std=torch.tensor(std, dtype=torch.float32),
    )

"""The known datasets: ``digits`` (embedded), ``beam`` (generated once into the cache) and
those looked up by name in a data directory, as an extracted folder or an archive."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .archive import load_archive
from .bundle import DatasetBundle, DatasetNotFoundError, make_bundle
from .folders import decode_folder, find_split_root

__all__ = [
    "KNOWN_DATASETS",
    "canonical",
    "default_cache_dir",
    "default_data_dir",
    "load_beam",
    "load_digits",
    "load_named",
]

# canonical name -> spellings accepted on the command line and in file names
_ALIASES: dict[str, tuple[str, ...]] = {
    "digits": ("digits",),
    "mnist": ("mnist",),
    "fashion-mnist": ("fashion-mnist", "fashion_mnist", "fashionmnist"),
    "cifar10": ("cifar10", "cifar-10", "cifar_10"),
    "beam": ("beam",),
}
KNOWN_DATASETS = tuple(_ALIASES)
_ARCHIVE_SUFFIXES = ("-png.tar.gz", "-jpg.tar.gz", ".tar.gz", ".tgz", ".tar")


def default_data_dir() -> Path:
    """Where named datasets are looked up: ``$QUADD_DATA``, else
    ``~/.cache/quadd/datasets``."""
    env = os.environ.get("QUADD_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "quadd" / "datasets"


def default_cache_dir() -> Path:
    """Where decoded archives are kept: ``$QUADD_CACHE``, else ``~/.cache/quadd``."""
    env = os.environ.get("QUADD_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "quadd"


def canonical(name: str) -> str | None:
    """The known dataset ``name`` spells, or None."""
    low = name.strip().lower()
    for canon, spellings in _ALIASES.items():
        if low in spellings:
            return canon
    return None


def load_digits() -> DatasetBundle:
    """scikit-learn's 8x8 digits in [0, 1], split 80/20 the same way on every machine."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    d = sklearn_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = d.target.astype(np.int64)
    # Fixed seed + stratification: the same 80/20 split on every machine.
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=0.2, random_state=0, stratify=y
    )
    classes = [str(i) for i in range(10)]
    return make_bundle("digits", x_tr, y_tr, x_te, y_te, classes)


def load_beam(cache_dir: Path) -> DatasetBundle:
    """The 3GPP beam-management dataset with the default generation parameters
    (:class:`quadd_train.data.beam.BeamConfig`: 20,000 drops, UMa, seed 0, 20% test),
    generated with Sionna on first use and cached in ``cache_dir``, then read like any
    ``.npz``. Without Sionna: a ``ValueError`` naming ``pip install 'quadd[beam]'``."""
    import sys

    from .beam import cached_beam_npz
    from .npz import load_npz

    path = cached_beam_npz(cache_dir, progress=sys.stderr.isatty())
    try:
        return load_npz(path, name="beam")
    except Exception:  # a damaged cache entry is generated again, not fatal
        path.unlink(missing_ok=True)
        return load_npz(cached_beam_npz(cache_dir, progress=sys.stderr.isatty()), name="beam")


def load_named(canon: str, data_dir: Path, cache_dir: Path) -> DatasetBundle:
    """The known dataset ``canon`` from ``data_dir``: an extracted folder under any of
    its spellings first, else an archive."""
    looked: list[str] = []
    for spelling in _ALIASES[canon]:
        folder = data_dir / spelling
        looked.append(f"{folder}/{{train,test}}/")
        root = find_split_root(folder) if folder.is_dir() else None
        if root is not None:
            x_tr, y_tr, x_te, y_te, classes = decode_folder(root, canon)
            return make_bundle(canon, x_tr, y_tr, x_te, y_te, classes)
    for spelling in _ALIASES[canon]:
        for suffix in _ARCHIVE_SUFFIXES:
            archive = data_dir / f"{spelling}{suffix}"
            looked.append(str(archive))
            if archive.is_file():
                return load_archive(canon, archive, cache_dir)
    raise DatasetNotFoundError(
        f"dataset {canon!r} not found; looked for " + ", ".join(looked[:4])
        + (" (and other spellings)" if len(looked) > 4 else "")
        + ". Pass --data-dir (or set QUADD_DATA) to the folder holding "
        f"{canon}-png.tar.gz / {canon}-jpg.tar.gz or an extracted {canon}/ folder."
    )

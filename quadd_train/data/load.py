""":func:`load_dataset`: a dataset by name or path, whichever way it is stored."""

from __future__ import annotations

import os
from pathlib import Path

from .bundle import DatasetBundle, DatasetNotFoundError, make_bundle
from .folders import decode_folder, find_split_root
from .named import (
    KNOWN_DATASETS,
    canonical,
    default_cache_dir,
    default_data_dir,
    load_beam,
    load_digits,
    load_named,
)
from .npz import load_npz

__all__ = ["load_dataset"]


def load_dataset(
    name_or_path: str,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> DatasetBundle:
    """Load a dataset by name (see :mod:`quadd_train.data`) or from a folder / ``.npz``
    path.

    Raises :class:`DatasetNotFoundError` (a ``ValueError``) when it cannot be found.
    """
    canon = canonical(str(name_or_path))
    if canon == "digits":
        return load_digits()
    if canon == "beam":
        cdir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        return load_beam(cdir)
    if canon is not None:
        ddir = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
        cdir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        return load_named(canon, ddir, cdir)
    path = Path(name_or_path).expanduser()
    if path.is_file() and path.suffix.lower() == ".npz":
        return load_npz(path)
    if path.is_dir():
        root = find_split_root(path)
        if root is None:
            raise DatasetNotFoundError(
                f"{path} is not a dataset folder: expected train/<class>/* and "
                "test/<class>/* image subfolders"
            )
        x_tr, y_tr, x_te, y_te, classes = decode_folder(root, None)
        return make_bundle(path.name, x_tr, y_tr, x_te, y_te, classes)
    if path.exists():
        raise DatasetNotFoundError(
            f"{path} is neither an .npz file nor a folder with train/ and test/ subfolders"
        )
    raise DatasetNotFoundError(
        f"unknown dataset {str(name_or_path)!r}: not one of {', '.join(KNOWN_DATASETS)}, "
        "and no such .npz file or dataset folder exists"
    )

"""Datasets as ``.npz`` files: the one reader (a user's file and the decoded-archive cache
alike) and the cache writer.

An ``.npz`` dataset holds ``x_train, y_train, x_test, y_test`` and optionally
``class_names`` (or ``classes``); without names the classes are ``"0".."K-1"``, K one
more than the largest label of either split. Samples are images (``(N, H, W)``, ``(N, C, H, W)`` or
channels-last) or feature vectors ``(N, F)``. An optional ``rsrp_test`` ``(N_test, K)``
holds each test sample's quality per class in dB (beam management: every beam's RSRP);
it becomes :attr:`DatasetBundle.test_rsrp`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .bundle import DatasetBundle, make_bundle
from .checks import check_labels

__all__ = ["load_npz", "write_npz"]

_SPLITS = ("x_train", "y_train", "x_test", "y_test")


def load_npz(path: Path, name: str | None = None) -> DatasetBundle:
    """The dataset in ``path``, called ``name`` (default: the file's stem)."""
    # np.load takes anything that is not a zip or .npy for a pickle and says so.
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not an .npz (zip) file")
    with np.load(path, allow_pickle=False) as z:
        missing = set(_SPLITS) - set(z.files)
        if missing:
            raise ValueError(f"{path} lacks arrays {sorted(missing)}")
        arrays = {k: z[k] for k in _SPLITS}
        key = next((k for k in ("class_names", "classes") if k in z.files), None)
        names = [str(c) for c in z[key]] if key else None
        rsrp = z["rsrp_test"] if "rsrp_test" in z.files else None
    xs = {k: _to_nchw(arrays[k], k) for k in ("x_train", "x_test")}
    ys = {k: check_labels(arrays[k], k) for k in ("y_train", "y_test")}
    if names is None:
        k = int(max(ys["y_train"].max(initial=-1), ys["y_test"].max(initial=-1))) + 1
        names = [str(i) for i in range(k)]
    return make_bundle(
        name or path.stem, xs["x_train"], ys["y_train"], xs["x_test"], ys["y_test"], names,
        test_rsrp=rsrp,
    )


def write_npz(path: Path, x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray,
              y_te: np.ndarray, classes: list[str]) -> None:
    """Write a dataset that :func:`load_npz` reads, atomically: a concurrent reader sees
    the old file or the whole new one."""
    from quadd_codec.paths import atomic_open

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as fh:
        # Uncompressed: loading speed matters more than disk here.
        np.savez(fh, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te,
                 class_names=np.array(classes))


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

"""The checks on labels and samples, in one place, for every way a dataset is loaded.

Each raises ``ValueError`` with a message that names the array (``key``: ``y_train``,
``x_test``...) and what is wrong with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .bundle import DatasetBundle

__all__ = [
    "check_every_class_has_samples",
    "check_label_range",
    "check_labels",
    "check_splits",
    "check_test_rsrp",
    "samples_as_float",
]


def check_labels(y: np.ndarray, key: str) -> np.ndarray:
    """Class indices as int64 (flattened), refused before anything is sized by the
    largest: the codec's rule (integer, bool or integral float labels of 0..65535)."""
    from quadd_codec import check_labels as codec_check_labels

    return codec_check_labels(np.asarray(y).reshape(-1), where=None, key=key)


def check_label_range(y: np.ndarray, k: int, key: str) -> None:
    """Labels of a set with ``k`` classes lie in 0..k-1."""
    if y.size and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"{key} has labels outside 0..{k - 1}")


def check_splits(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray,
                 y_te: np.ndarray, num_classes: int) -> None:
    """A train/test split: one label per sample, one sample shape, a non-empty train
    split and labels of its classes."""
    if len(x_tr) != len(y_tr) or len(x_te) != len(y_te):
        raise ValueError("x and y have different numbers of samples")
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise ValueError(f"train samples {x_tr.shape[1:]} and test {x_te.shape[1:]} differ")
    if len(x_tr) == 0:
        raise ValueError("the training split is empty")
    check_label_range(y_tr, num_classes, "y_train")
    check_label_range(y_te, num_classes, "y_test")


def check_test_rsrp(rsrp: np.ndarray, num_test: int, num_classes: int) -> np.ndarray:
    """``rsrp_test``: one finite float value per test sample and class, ``(N_test, K)``,
    as float32."""
    a = np.asarray(rsrp)
    if a.shape != (num_test, num_classes):
        raise ValueError(f"rsrp_test must have shape (test samples, classes) = "
                         f"({num_test}, {num_classes}), got {a.shape}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"rsrp_test must hold numbers, got dtype {a.dtype}")
    a = a.astype(np.float32)
    if not np.all(np.isfinite(a)):
        raise ValueError("rsrp_test holds NaN or infinite values")
    return a


def samples_as_float(x: np.ndarray, key: str) -> np.ndarray:
    """Samples as float32: uint8 (and other integer) pixels -> [0, 1]; floats are kept
    as they are, refused when NaN or infinite."""
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


def check_every_class_has_samples(bundle: DatasetBundle) -> None:
    """Distilling (and planning it) needs real samples of every class to start from."""
    counts = np.bincount(bundle.y_train.numpy(), minlength=bundle.num_classes)
    if (counts == 0).any():
        empty = [str(bundle.class_names[i]) for i in np.flatnonzero(counts == 0)[:5]]
        raise ValueError(f"{bundle.name}: class(es) {', '.join(empty)} have no training "
                         "samples to distill from")

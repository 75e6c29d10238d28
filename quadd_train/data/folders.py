"""Image-folder datasets: ``<root>/{train,test}/<class>/*`` decoded to uint8 arrays."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .bundle import DatasetNotFoundError

__all__ = ["CIFAR10_CLASSES", "decode_folder", "find_split_root"]

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

Splits = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]


def find_split_root(folder: Path) -> Path | None:
    """``folder`` itself or its single subfolder, whichever holds train/ and test/."""
    if not folder.is_dir():
        return None
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        return folder
    subs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(subs) == 1 and (subs[0] / "train").is_dir() and (subs[0] / "test").is_dir():
        return subs[0]
    return None


def decode_folder(root: Path, canon: str | None) -> Splits:
    """``(x_train, y_train, x_test, y_test, classes)`` of the images under ``root``;
    ``canon`` (a known dataset's name) picks its class order."""
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


def _class_order(names: Sequence[str], canon: str | None) -> list[str]:
    if canon == "cifar10" and set(names) == set(CIFAR10_CLASSES):
        return list(CIFAR10_CLASSES)
    if names and all(n.isdigit() for n in names):
        return sorted(names, key=int)  # "10" after "9"
    return sorted(names)


def _decode_split(split_dir: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    from quadd_codec.imagefolder import read_image_folder

    x, y, _ = read_image_folder(split_dir, folders=classes, as_uint8=True,
                                progress=sys.stderr.isatty())
    return x, y

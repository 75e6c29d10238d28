"""The entry points: evaluate a `.qdd` file or an in-memory set against a real dataset.

Before any training, the set is checked against the dataset it is tested on (classes,
sample shape, labels, and that the model takes its samples), so a mismatch is one clear
``ValueError`` instead of a network that trains on the wrong thing.

A file of feature vectors ``(F,)`` may store them as ``(F,)`` or as ``(F, 1)`` (one
channel per feature, what ``quadd distill`` and ``subset`` write); either is read as the
dataset's ``(F,)`` vectors.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..data import DatasetBundle
from .protocol import EvalConfig, check_eval_bundle
from .runs import run_protocol

__all__ = ["check_qdd_matches", "evaluate_qdd", "evaluate_tensors"]


def evaluate_qdd(
    path: str | os.PathLike[str],
    bundle: DatasetBundle,
    runs: int = 5,
    epochs: int = 1000,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 256,
    dsa: bool = True,
    progress: bool = True,
    jobs: int = 1,
    compile: bool | None = None,
    config: EvalConfig = EvalConfig(),  # noqa: B008 - a frozen value
) -> dict[str, Any]:
    """Evaluate a `.qdd` distilled set against ``bundle``'s real test split.

    Training reads the file through ``QddDataset`` + ``DataLoader`` every epoch. On the
    CPU, ``jobs`` > 1 trains that many runs at once in worker processes, splitting the
    torch threads between them; run ``r`` is seeded ``seed + r`` either way.
    ``compile`` as in :func:`~.protocol.train_and_test` (None: on the CPU for long runs);
    ``config``: the protocol's constants.
    Raises ``ValueError`` when the file's classes or sample shape do not match the
    bundle, and ``quadd_codec.QddError`` subclasses for a bad file.
    """
    from quadd_codec import QddDataset

    check_eval_bundle(bundle, config)
    path = os.fspath(path)
    ds = QddDataset(path, denormalize=True)
    check_qdd_matches(ds, bundle, path)
    if tuple(ds.sample_shape) != bundle.sample_shape:  # vectors stored as (F, 1)
        ds = _Reshaped(ds, bundle.sample_shape)
    result = run_protocol(ds, bundle, runs, epochs, seed, device, batch_size, dsa, progress,
                          jobs=jobs, compile=compile, config=config)
    result["file"] = path
    result["file_bytes"] = os.path.getsize(path)
    return result


def evaluate_tensors(
    x: Tensor,
    y: Tensor,
    bundle: DatasetBundle,
    runs: int = 5,
    epochs: int = 1000,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 256,
    dsa: bool = True,
    progress: bool = True,
    normalized: bool = False,
    jobs: int = 1,
    compile: bool | None = None,
    config: EvalConfig = EvalConfig(),  # noqa: B008 - a frozen value
) -> dict[str, Any]:
    """Evaluate an in-memory distilled set ``x`` (N, C, H, W), labels ``y`` (N,).

    ``x`` is in the bundle's source value space unless ``normalized=True``.
    Returns ``accuracy``/``std`` in percent, ``accuracies`` per run, ``runs``, ``epochs``.
    ``jobs``, ``compile`` and ``config`` as in :func:`evaluate_qdd`.
    """
    check_eval_bundle(bundle, config)
    x = torch.as_tensor(x, dtype=torch.float32).detach().cpu()
    y = torch.as_tensor(y, dtype=torch.long).cpu()
    if tuple(x.shape[1:]) != bundle.sample_shape:
        raise ValueError(
            f"samples have shape {tuple(x.shape[1:])}, {bundle.name} needs {bundle.sample_shape}"
        )
    if len(x) != len(y):
        raise ValueError(f"{len(x)} samples but {len(y)} labels")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= bundle.num_classes):
        raise ValueError(f"labels must lie in 0..{bundle.num_classes - 1}")
    return run_protocol(
        _TensorSet(x, y), bundle, runs, epochs, seed, device, batch_size, dsa, progress,
        normalized=normalized, jobs=jobs, compile=compile, config=config,
    )


def check_qdd_matches(ds: Any, bundle: DatasetBundle, path: str) -> None:
    """Refuse a set (a ``QddDataset`` or anything with its metadata attributes) whose
    classes, labels or sample shape do not fit ``bundle``; ``path`` names it."""
    names = list(getattr(ds, "class_names", None) or [])
    if names and names != list(bundle.class_names):
        raise ValueError(
            f"{path} has {_some(names)}, but dataset {bundle.name} has "
            f"{_some(list(bundle.class_names))}"
        )
    num = getattr(ds, "num_classes", None)
    if num is not None and int(num) != bundle.num_classes:
        raise ValueError(
            f"{path} has {num} classes, but dataset {bundle.name} has {bundle.num_classes}"
        )
    targets = getattr(ds, "targets", None)
    if targets is not None and len(targets) and int(torch.as_tensor(targets).min()) < 0:
        raise ValueError(f"{path} has no class labels; evaluation needs a labelled set")
    shape = tuple(int(s) for s in ds.sample_shape)
    vector = len(bundle.sample_shape) == 1 and shape == (*bundle.sample_shape, 1)
    if shape != bundle.sample_shape and not vector:
        raise ValueError(
            f"{path} holds samples of shape {shape}, but dataset {bundle.name} has "
            f"{bundle.sample_shape}"
        )


def _some(names: list[str], shown: int = 8) -> str:
    """A class list short enough for a one-line error."""
    if len(names) <= shown:
        return f"classes {names}"
    return f"{len(names)} classes [{', '.join(map(repr, names[:shown]))}, ...]"


class _Reshaped(Dataset):
    """A ``QddDataset`` whose samples are read in the dataset's sample shape (vectors
    stored as ``(F, 1)`` -> ``(F,)``); batched like the file's own reads."""

    def __init__(self, ds: Any, shape: tuple[int, ...]) -> None:
        self.ds = ds
        self.shape = tuple(shape)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        x, y = self.ds[i]
        return x.reshape(self.shape), y

    def __getitems__(self, idx: Sequence[int]) -> tuple[Tensor, Tensor]:
        items = self.ds.__getitems__(idx)
        x = torch.stack([x for x, _ in items]).reshape(len(items), *self.shape)
        return x, torch.as_tensor([y for _, y in items], dtype=torch.long)


class _TensorSet(Dataset):
    """An in-memory labelled set with batched access, mirroring QddDataset's interface."""

    def __init__(self, x: Tensor, y: Tensor) -> None:
        self.x = x
        self.y = y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.x[i], int(self.y[i])

    def __getitems__(self, idx: Sequence[int]) -> tuple[Tensor, Tensor]:
        ix = torch.as_tensor(list(idx), dtype=torch.long)
        return self.x[ix], self.y[ix]

"""`QddDataset`: a torch Dataset that dequantizes `.qdd` samples on the fly, and
`qdd_collate`, the DataLoader collate function that takes its batches without a copy."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from collections.abc import Sequence as SequenceABC
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torch.utils.data._utils.collate import default_collate

from .errors import QddError
from .reader import QddFile


class QddBatch(SequenceABC):
    """A batch from `QddDataset.__getitems__`: a sequence of (sample, label) pairs, as
    DataLoader's default collate expects, that also holds the whole batch as two tensors
    (`x`, `y`), which `qdd_collate` returns as they are instead of stacking copies."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return self.x.shape[0]

    def __iter__(self):  # type: ignore[override]
        return zip(self.x.unbind(0), self.y.tolist(), strict=True)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        return self.x[i], int(self.y[i])


def qdd_collate(batch: Any) -> Any:
    """DataLoader `collate_fn` for `QddDataset`: its batches as (x, y) tensors with no
    copy; anything else goes to torch's default collate."""
    if isinstance(batch, QddBatch):
        return batch.x, batch.y
    return default_collate(batch)


class QddDataset(Dataset):
    """Samples of a `.qdd` file as `(float32 tensor of the sample shape, int label)`.

    Only the packed codes of the requested samples are read and decoded, so memory stays
    at the file's compressed size. `DataLoader` uses `__getitems__` to decode a whole batch
    in one vectorized call. With `denormalize` (the default) values are in the source
    value space (e.g. [0, 1] pixels) using the file's stored scale and offset; without it,
    they are the stored values (e.g. the normalized space a distilled set was trained in).
    Files without labels give label -1. Safe with DataLoader workers (fork or spawn)
    and any sampler, `DistributedSampler` included. `access` says how the file is read
    (`quadd_codec.access`: small files are read into memory, large ones with positioned
    reads; "mmap" is an opt-in with a risk). A file changed on disk while it is in use
    raises `QddChangedError`, from a worker too: a spawned worker that finds the file
    changed raises it at its first batch, so DataLoader reports it instead of a dead
    worker.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        denormalize: bool = True,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        verify: bool = False,
        access: str = "auto",
    ) -> None:
        self.path = os.fspath(path)
        self.file = QddFile(self.path, verify=verify, access=access)
        self._error: BaseException | None = None
        self.denormalize = denormalize
        self.transform = transform
        self.targets = self._targets()

    def _targets(self) -> torch.Tensor:
        labels = self.file.labels
        if labels is None:  # an unlabeled file: -1, which no class index can be
            return torch.full((len(self.file),), -1, dtype=torch.int64)
        return torch.from_numpy(labels)

    @property
    def num_classes(self) -> int:
        return self.file.num_classes

    @property
    def class_names(self) -> list[str]:
        return self.file.class_names

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.file.sample_shape

    def __len__(self) -> int:
        self._raise_deferred()
        return len(self.file)

    def _raise_deferred(self) -> None:
        if self._error is not None:
            raise self._error

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        self._raise_deferred()
        x = torch.from_numpy(self.file.read([index], self.denormalize)[0])
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.targets[index])

    def __getitems__(self, indices: Sequence[int]) -> QddBatch | list[tuple[torch.Tensor, int]]:
        """The samples at `indices`, decoded in one call: a `QddBatch` (pass
        `collate_fn=qdd_collate` to DataLoader to take it without a copy)."""
        self._raise_deferred()
        batch = torch.from_numpy(self.file.read(np.asarray(indices, dtype=np.int64),
                                                self.denormalize))
        labels = self.targets[torch.as_tensor(indices, dtype=torch.int64)]
        if self.transform is not None:
            return [(self.transform(x), y) for x, y in zip(batch, labels.tolist(), strict=True)]
        return QddBatch(batch, labels)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole set decoded at once: (float32 (n, *shape), int64 labels)."""
        return torch.from_numpy(self.file.read_all(self.denormalize)), self.targets.clone()

    def __getstate__(self) -> dict[str, Any]:
        # The file's own state, not the file: reopening it may fail (the file changed),
        # and a failure while a spawned worker unpickles its dataset kills the worker
        # before DataLoader can report why.
        return {"path": self.path, "denormalize": self.denormalize,
                "transform": self.transform, "file_state": self.file.__getstate__()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        file_state = state.pop("file_state")
        self.__dict__.update(state)
        self._error = None
        self.file = QddFile.__new__(QddFile)
        try:
            self.file.__setstate__(file_state)
        except QddError as exc:
            self._error = exc  # raised at the first use, where DataLoader reports it
            self.targets = torch.empty(0, dtype=torch.int64)
            return
        self.targets = self._targets()

"""The learnable synthetic set (the "samples" piece of QuADD).

Samples live in the dataset's *normalized* space (what the networks see); the writer
stores them there and records ``Denorm(scale=std, offset=mean)`` so decoding recovers
``[0, 1]`` pixels.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["SyntheticSet", "sample_real_indices"]


def sample_real_indices(
    labels: np.ndarray, num_classes: int, per_class: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """``per_class`` random indices of each class, without replacement while possible.

    A budget at few bits can afford more samples per class than the class has; then the
    class is cycled through fresh permutations (every real sample used before any is
    repeated). Duplicates still diverge during distillation because augmentation and
    the quantizer's rounding treat them differently over time.
    """
    out = []
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        if idx.size == 0:
            raise ValueError(f"class {c} has no training samples")
        chunks, need = [], per_class
        while need > 0:
            perm = rng.permutation(idx)[:need]
            chunks.append(perm)
            need -= perm.size
        out.append(np.concatenate(chunks) if chunks else np.empty(0, dtype=np.int64))
    return out


class SyntheticSet(nn.Module):
    """``ipc`` learnable samples per class, class-major (labels ``0,0,..,1,1,..``)."""

    def __init__(self, data: Tensor, labels: Tensor, num_classes: int) -> None:
        super().__init__()
        self.data = nn.Parameter(data.detach().float().clone())
        self.register_buffer("labels", labels.detach().long().clone())
        self.num_classes = int(num_classes)

    @classmethod
    def from_real(
        cls, x_norm: Tensor, y: Tensor, num_classes: int, ipc: int, seed: int
    ) -> SyntheticSet:
        """Initialize from random real samples (``x_norm`` already normalized)."""
        if ipc < 1:
            raise ValueError(f"ipc must be >= 1, got {ipc}")
        rng = np.random.default_rng([int(seed), 0x5EED])
        idx = sample_real_indices(y.cpu().numpy(), num_classes, ipc, rng)
        flat = torch.from_numpy(np.concatenate(idx)).long()
        labels = torch.arange(num_classes).repeat_interleave(ipc)
        return cls(x_norm[flat], labels, num_classes)

    @property
    def ipc(self) -> int:
        return self.data.shape[0] // self.num_classes

    def forward(self) -> Tensor:
        return self.data

"""The learnable synthetic set (the "samples" piece of QuADD).

Samples live in the dataset's *normalized* space (what the networks see); the writer
stores them there and records ``Denorm(scale=std, offset=mean)`` so decoding recovers
``[0, 1]`` pixels.

With ``upsample = f > 1`` the parameters are images ``f`` times smaller on each side;
``expand`` enlarges them exactly as a reader does for a file with the ``upsample``
feature, so a budget holds about ``f**2`` as many samples: by repeating every value into
an ``f x f`` block, or with ``upsample_filter="linear"`` by bilinear interpolation built
from the codec's own taps (FORMAT.md 7b).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from quadd_codec import linear_taps
from quadd_codec.layout import UPSAMPLE_FILTERS

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


def _linear_axis(x: Tensor, index: Tensor, weight: Tensor, dim: int) -> Tensor:
    """FORMAT.md 7b along one axis: ``w0 * x[i0] + w1 * x[i1]`` with the codec's taps.

    Separate multiplies and an add, as the reader computes them, so an eager float32
    run gives the reader's bits (the taps are the same numbers).
    """
    shape = [1] * x.dim()
    shape[dim] = -1
    w0, w1 = (w.to(x.dtype).view(shape) for w in weight)
    return w0 * x.index_select(dim, index[0]) + w1 * x.index_select(dim, index[1])


class SyntheticSet(nn.Module):
    """``ipc`` learnable samples per class, class-major (labels ``0,0,..,1,1,..``)."""

    def __init__(
        self, data: Tensor, labels: Tensor, num_classes: int, upsample: int = 1,
        upsample_filter: str = "nearest",
    ) -> None:
        super().__init__()
        self.data = nn.Parameter(data.detach().float().clone())
        self.register_buffer("labels", labels.detach().long().clone())
        self.num_classes = int(num_classes)
        self.upsample = int(upsample)
        if upsample_filter not in UPSAMPLE_FILTERS:
            raise ValueError(f"unknown upsample filter {upsample_filter!r}")
        self.upsample_filter = upsample_filter
        if self.upsample > 1 and upsample_filter == "linear":
            # The taps depend only on the stored size: computed once here, not on every
            # iteration's expand, and moved with the module (not saved: they are derived).
            for axis, size in (("h", data.shape[-2]), ("w", data.shape[-1])):
                i0, i1, w0, w1 = (torch.from_numpy(a) for a in linear_taps(size, self.upsample))
                self.register_buffer(f"_index_{axis}", torch.stack([i0, i1]), persistent=False)
                self.register_buffer(f"_weight_{axis}", torch.stack([w0, w1]), persistent=False)

    @classmethod
    def from_real(
        cls, x_norm: Tensor, y: Tensor, num_classes: int, ipc: int, seed: int,
        upsample: int = 1, upsample_filter: str = "nearest",
    ) -> SyntheticSet:
        """Initialize from random real samples (``x_norm`` already normalized).

        With ``upsample > 1`` each sample starts as the block average of a real one:
        the stored image whose block-repeated expansion is closest to it in L2 (a
        good start for the linear filter too, which distillation then adapts to).
        """
        if ipc < 1:
            raise ValueError(f"ipc must be >= 1, got {ipc}")
        rng = np.random.default_rng([int(seed), 0x5EED])
        idx = sample_real_indices(y.cpu().numpy(), num_classes, ipc, rng)
        flat = torch.from_numpy(np.concatenate(idx)).long()
        labels = torch.arange(num_classes).repeat_interleave(ipc)
        x = x_norm[flat].float()
        if upsample > 1:
            x = F.avg_pool2d(x, upsample)
        return cls(x, labels, num_classes, upsample, upsample_filter)

    def expand(self, x: Tensor) -> Tensor:
        """Samples as the networks see them: stored-size ``x`` enlarged as readers do."""
        if self.upsample == 1:
            return x
        f = self.upsample
        if self.upsample_filter == "nearest":
            return x.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1)
        x = _linear_axis(x, self._index_h, self._weight_h, dim=-2)
        return _linear_axis(x, self._index_w, self._weight_w, dim=-1)

    @property
    def ipc(self) -> int:
        return self.data.shape[0] // self.num_classes

    def forward(self) -> Tensor:
        return self.data

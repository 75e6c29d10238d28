"""The loaded dataset: :class:`DatasetBundle`, a labelled train/test split, and how one
is assembled from decoded arrays (checks, float conversion, per-channel statistics).

Images ``(N, C, H, W)`` are normalized per channel; feature vectors ``(N, F)`` per
feature (every feature is a channel of its own), so features in different units or
ranges all reach the networks at unit scale and a shared codebook spends its levels
alike on each. Files store vectors as ``(F, 1)`` samples, whose ``F`` channels carry
exactly these per-feature statistics in their denormalization (FORMAT.md section 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from .checks import check_splits, check_test_rsrp, samples_as_float

__all__ = ["DatasetBundle", "DatasetNotFoundError", "make_bundle"]


class DatasetNotFoundError(ValueError):
    """The requested dataset is not available locally; the message says how to fix it."""


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
    #: Optional per-test-sample quality of every class (N_test, K) float32, in dB: for
    #: beam management, the RSRP of every beam; evaluation then reports how often the
    #: predicted class is within 1 dB of the best.
    test_rsrp: Tensor | None = None
    _stats_cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # A split replaced without its rsrp (dataclasses.replace) would score the wrong
        # samples: refuse it here rather than mis-measure later.
        rsrp = self.test_rsrp
        if rsrp is not None and tuple(rsrp.shape) != (len(self.y_test), self.num_classes):
            raise ValueError(f"test_rsrp has shape {tuple(rsrp.shape)}, the test split needs "
                             f"({len(self.y_test)}, {self.num_classes})")

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
        """Source values -> zero-mean/unit-std per channel, for a batch ``(N, C, ...)``
        (a batch of vectors ``(N, F)``: per feature)."""
        mean, std = self._stats_like(x)
        return (x - mean) / std

    def denormalize(self, x: Tensor) -> Tensor:
        """Inverse of :meth:`normalize`."""
        mean, std = self._stats_like(x)
        return x * std + mean


def make_bundle(name: str, x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray,
                y_te: np.ndarray, classes: list[str],
                test_rsrp: np.ndarray | None = None) -> DatasetBundle:
    """A checked bundle from decoded arrays: samples (uint8 pixels or floats) and int
    labels; statistics are taken over the train split (per channel; per feature for
    vectors). ``test_rsrp``: optional ``(N_test, K)`` per-class quality of each test
    sample in dB (see :attr:`DatasetBundle.test_rsrp`)."""
    check_splits(x_tr, y_tr, x_te, y_te, len(classes))
    rsrp = None if test_rsrp is None else check_test_rsrp(test_rsrp, len(y_te), len(classes))
    mean, std = _channel_stats(x_tr)
    return DatasetBundle(
        name=str(name),
        x_train=torch.from_numpy(np.ascontiguousarray(samples_as_float(x_tr, "x_train"))),
        y_train=torch.from_numpy(np.asarray(y_tr, dtype=np.int64)),
        x_test=torch.from_numpy(np.ascontiguousarray(samples_as_float(x_te, "x_test"))),
        y_test=torch.from_numpy(np.asarray(y_te, dtype=np.int64)),
        class_names=list(classes),
        mean=torch.tensor(mean, dtype=torch.float32),
        std=torch.tensor(std, dtype=torch.float32),
        test_rsrp=None if rsrp is None else torch.from_numpy(rsrp),
    )


def _channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (axis 1: a vector's features) mean and population std in the
    [0, 1]/float value space."""
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
            vf = samples_as_float(v, "x_train").astype(np.float64).ravel()
            mean[ch], std[ch] = vf.mean(), vf.std()
    # A constant channel would divide by zero in normalize().
    return mean, np.maximum(std, 1e-8)

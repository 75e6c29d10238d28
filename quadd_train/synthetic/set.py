"""The synthetic set the training loop learns: a parameterization plus class labels."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from quadd_codec import UPSAMPLE_FILTERS

from .base import PARAMETERIZATION_REGISTRY, Parameterization
from .pixels import Pixels
from .resized import Resized
from .vectors import Vectors

__all__ = ["SyntheticSet", "make_parameterization", "sample_real_indices"]

# The parameterization is a child module, but its state is saved under the set's own
# names ("data", not "parameterization.data"), the names checkpoints hold.
_CHILD = "parameterization"


def make_parameterization(name: str, x: Tensor, **options: Any) -> Parameterization:
    """The parameterization registered as ``name`` (``pixels``, ``resized``, or a
    plugin's), its stored tensor initialized from real samples ``x`` (normalized, full
    size, one per synthetic sample). ``options`` are its own keywords."""
    return PARAMETERIZATION_REGISTRY.get(name).from_real(x, **options)


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


def _upsample_choice(upsample: int, upsample_filter: str,
                     vectors: bool = False) -> tuple[str, dict[str, Any]]:
    """The parameterization the codec's ``upsample`` fields describe for images (or
    feature vectors, which are never resized), and its options."""
    if upsample_filter not in UPSAMPLE_FILTERS:
        raise ValueError(f"unknown upsample filter {upsample_filter!r}")
    if vectors:
        if int(upsample) != 1:
            raise ValueError(f"upsample needs image samples (C, H, W); feature vectors "
                             f"are stored as they are (got upsample {upsample})")
        return "vectors", {}
    if int(upsample) == 1:
        return "pixels", {}
    return "resized", {"upsample": int(upsample), "upsample_filter": upsample_filter}


class SyntheticSet(nn.Module):
    """``ipc`` learnable samples per class, class-major (labels ``0,0,..,1,1,..``).

    ``data``: the parameterization's stored tensor (what is quantized and written);
    ``expand(x)``: the samples the networks see from it; ``file_fields()``: the header
    fields the writer needs. ``data`` may also be a :class:`Parameterization` (then the
    ``upsample`` arguments are not used); a tensor is stored as full-size pixels, or
    with ``upsample > 1`` as pixels at ``1/upsample`` size; a ``(N, F, 1)`` tensor with
    ``vectors=True`` as feature vectors.
    """

    def __init__(
        self, data: Tensor | Parameterization, labels: Tensor, num_classes: int,
        upsample: int = 1, upsample_filter: str = "nearest", vectors: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(data, Parameterization):
            name, options = _upsample_choice(upsample, upsample_filter, vectors)
            kind = {"pixels": Pixels, "resized": Resized, "vectors": Vectors}[name]
            data = kind(data, **options)
        self.parameterization = data
        self.register_buffer("labels", labels.detach().long().clone())
        self.num_classes = int(num_classes)
        self._register_state_dict_hook(_flatten_keys)
        self.register_load_state_dict_pre_hook(_nest_keys)

    @classmethod
    def from_real(
        cls, x_norm: Tensor, y: Tensor, num_classes: int, ipc: int, seed: int,
        upsample: int = 1, upsample_filter: str = "nearest",
        parameterization: str | None = None, **options: Any,
    ) -> SyntheticSet:
        """Initialize from random real samples (``x_norm`` already normalized).

        The stored tensor is ``parameterization`` (a registered name, with its
        ``options``) or, by default, what ``upsample`` and ``upsample_filter`` describe:
        full-size pixels, or pixels at ``1/upsample`` size starting as each real
        sample's block average; feature vectors ``(N, F)`` as ``vectors``.
        """
        if ipc < 1:
            raise ValueError(f"ipc must be >= 1, got {ipc}")
        if parameterization is None:
            parameterization, options = _upsample_choice(upsample, upsample_filter,
                                                          vectors=x_norm.dim() == 2)
        rng = np.random.default_rng([int(seed), 0x5EED])
        idx = sample_real_indices(y.cpu().numpy(), num_classes, ipc, rng)
        flat = torch.from_numpy(np.concatenate(idx)).long()
        labels = torch.arange(num_classes).repeat_interleave(ipc)
        x = x_norm[flat].float()
        return cls(make_parameterization(parameterization, x, **options), labels, num_classes)

    @property
    def data(self) -> nn.Parameter:
        """The learnable stored tensor."""
        return self.parameterization.data

    @property
    def upsample(self) -> int:
        return int(self.file_fields()["upsample"])

    @property
    def upsample_filter(self) -> str:
        return str(self.file_fields()["upsample_filter"])

    @property
    def ipc(self) -> int:
        return self.data.shape[0] // self.num_classes

    def file_fields(self) -> dict[str, Any]:
        """The codec header fields the parameterization needs (writer keywords)."""
        return self.parameterization.file_fields()

    def expand(self, x: Tensor) -> Tensor:
        """Samples as the networks see them: ``x`` (the stored tensor or its quantized
        version) decoded as readers decode the file."""
        return self.parameterization.decode(x)

    def forward(self) -> Tensor:
        return self.data


def _flatten_keys(module: nn.Module, state: OrderedDict, prefix: str, meta: Any) -> None:
    nested = prefix + _CHILD + "."
    for key in [k for k in state if k.startswith(nested)]:
        state[prefix + key[len(nested):]] = state.pop(key)
    for name in module._buffers:  # the set's own state after the stored tensor's
        if prefix + name in state:
            state.move_to_end(prefix + name)


def _nest_keys(module: nn.Module, state: dict, prefix: str, *_: Any) -> None:
    own = {prefix + name for name in module._buffers}
    nested = prefix + _CHILD + "."
    for key in [k for k in state if k.startswith(prefix)]:
        if key not in own and not key.startswith(nested):
            state[nested + key[len(prefix):]] = state.pop(key)

"""The random-real-subset baseline: real samples per class, quantized, as many as fit."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from quadd_codec import FileSpec, check_bits, downsample_mean, quantize_array
from quadd_codec.rules import check_group

from .config import SubsetResult
from .plan import (
    check_dir,
    check_written,
    denorm_of,
    plan_ipc,
    provenance,
    stored_shape,
)

__all__ = ["subset", "subset_layout"]


def subset(
    bundle: Any,
    budget_bytes: int,
    bits: int,
    seed: int,
    out_path: str | os.PathLike[str],
    codebook: str = "uniform",
    group: str = "channel",
    codebook_dtype: str = "f4",
    upsample: int = 1,
) -> SubsetResult:
    """Random-real-subset baseline: the most samples per class that fit at ``bits``.

    With ``upsample > 1`` each real sample is stored block-averaged, ``upsample`` times
    smaller per side (the same storage as ``distill --upsample``).

    ``bits=32`` stores raw float32. A class smaller than the affordable count
    contributes all its samples (no duplicates: a real subset has nothing to gain
    from them), so the file may then be below the budget.
    """
    out_path = os.fspath(out_path)
    check_dir(out_path)
    bits = check_bits(bits, raw=True, error=ValueError)
    check_group(group, error=ValueError)
    layout = subset_layout(bundle, bits, seed, codebook, group, codebook_dtype, upsample)
    num_classes = len(layout.class_names)
    ipc = plan_ipc(budget_bytes, layout)
    labels_np = bundle.y_train.cpu().numpy()
    rng = np.random.default_rng([int(seed), 2])
    picks = [rng.permutation(np.flatnonzero(labels_np == c))[:ipc] for c in range(num_classes)]
    idx = np.concatenate(picks).astype(np.int64)
    labels = labels_np[idx].astype(np.int64)
    x = bundle.normalize(bundle.x_train[torch.from_numpy(idx)].float())
    x = downsample_mean(np.ascontiguousarray(x.cpu().numpy(), dtype=np.float32), upsample)
    # Feature vectors (N, F) are stored as (N, F, 1): one channel per feature.
    x = x.reshape(len(x), *layout.sample_shape)
    if bits == 32:
        codes, levels = x, None
    else:
        codes, levels = quantize_array(x, bits, codebook, group)
    layout.write(out_path, codes, levels, labels)
    size = check_written(out_path, budget_bytes, layout.size(len(idx)))
    # A class smaller than the affordable count gave all it has.
    taken = max(len(p) for p in picks)
    return SubsetResult(out_path, taken, len(idx), bits, size, budget_bytes)


def subset_layout(
    bundle: Any,
    bits: int,
    seed: int,
    codebook: str = "uniform",
    group: str = "channel",
    codebook_dtype: str = "f4",
    upsample: int = 1,
) -> FileSpec:
    """The layout :func:`subset` writes with these arguments (provenance included), so a
    caller can ask what fits a budget before writing anything."""
    bits = check_bits(bits, raw=True, error=ValueError)
    return FileSpec(
        class_names=list(bundle.class_names),
        sample_shape=stored_shape(tuple(int(d) for d in bundle.x_train.shape[1:]), upsample),
        bits=bits,
        group=group,
        codebook_dtype=codebook_dtype,
        denorm=denorm_of(bundle),
        provenance=provenance("subset", dataset=bundle.name, bits=bits, group=group,
                              seed=seed, codebook=codebook if bits != 32 else None,
                              upsample=upsample if upsample != 1 else None),
        upsample=upsample,
    )

"""What a run writes and whether it can: the file layout, samples per class from the
budget, the plan ``quadd plan`` shows, and the checks made before any training.

Every size comes from ``quadd_codec``, so the budget check and the written file cannot
disagree.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from quadd_codec import Denorm, FileSpec
from quadd_codec import stored_shape as codec_stored_shape
from quadd_codec.paths import check_output_file

from .config import DistillConfig
from .runtime import available_memory

__all__ = ["Plan", "check_dir", "default_group", "check_memory", "check_written", "denorm_of",
           "file_layout", "plan", "plan_ipc", "provenance", "stored_shape"]


def denorm_of(bundle: Any) -> Denorm:
    """The dataset's normalization, undone by readers."""
    return Denorm(scale=[float(s) for s in bundle.std], offset=[float(m) for m in bundle.mean])


def provenance(kind: str, **items: Any) -> dict[str, Any]:
    """The provenance block: deterministic content only (no timings), since its size is
    part of the budget and the same arguments must give the same size before and after
    the run. ``None`` items are left out."""
    return {"tool": f"quadd {kind}", **{k: v for k, v in items.items() if v is not None}}


def stored_shape(sample_shape: tuple[int, ...], upsample: int) -> tuple[int, ...]:
    """The per-sample shape a file stores when readers upsample it by ``upsample``.

    Feature vectors ``(F,)`` are stored as ``(F, 1)``: ``F`` channels (FORMAT.md: ``C``
    is ``shape[0]`` for two or more dimensions), each with the feature's own statistics
    in the denormalization, and with ``group="channel"`` its own codebook.

    >>> stored_shape((8,), 1), stored_shape((1, 8, 8), 2)
    ((8, 1), (1, 4, 4))
    """
    if len(sample_shape) == 1:
        if upsample != 1:
            raise ValueError(f"upsample needs image samples (C, H, W); feature vectors "
                             f"of shape {tuple(sample_shape)} are stored as they are")
        return (int(sample_shape[0]), 1)
    # The codec owns the factor's range and divisibility rules; the trainer's networks
    # additionally need exactly (C, H, W).
    if upsample != 1 and len(sample_shape) != 3:
        raise ValueError(f"upsample needs image samples (C, H, W), got shape {sample_shape}")
    return codec_stored_shape(sample_shape, upsample)


def default_group(sample_shape: tuple[int, ...]) -> str:
    """The codebook group the command line uses when none is given: ``channel`` for
    images (one codebook per colour channel), ``tensor`` for feature vectors, where a
    codebook per feature would cost ``F`` tables (8 KiB at 8 bits for 8 features) for
    features that per-feature normalization has already put on one scale.

    >>> default_group((3, 32, 32)), default_group((8,))
    ('channel', 'tensor')
    """
    return "channel" if len(sample_shape) != 1 else "tensor"


def plan_ipc(budget_bytes: int, layout: FileSpec) -> int:
    """Samples per class that fit the budget, from the codec; a clear error if none."""
    ipc = layout.max_samples_per_class(budget_bytes)
    if ipc < 1:
        need = layout.size(len(layout.class_names))
        raise ValueError(
            f"budget of {budget_bytes} B is too small: one sample per class at "
            f"{layout.bits} bits needs {need} B"
        )
    return ipc


def file_layout(config: DistillConfig, bundle: Any) -> FileSpec:
    """The layout ``distill(config, bundle, ...)`` writes, provenance block included."""
    prov = provenance(
        "distill",
        dataset=bundle.name,
        method=config.method,
        quantizer=config.quantizer,
        post_quantize=config.post_quantize or None,
        bits=config.file_bits,
        group=config.group,
        iterations=config.iterations,
        seed=config.seed,
        upsample=config.upsample if config.upsample != 1 else None,
        upsample_filter=None if config.upsample_filter == "nearest" else config.upsample_filter,
        auto=config.auto,
    )
    # Post-quantization keeps QuADD's sample count (that is the baseline's point): the
    # count comes from the *file* bit width, which for it is `bits`, not 32.
    return FileSpec(
        class_names=list(bundle.class_names),
        sample_shape=stored_shape(tuple(int(d) for d in bundle.x_train.shape[1:]),
                                  config.upsample),
        bits=config.file_bits,
        group=config.group,
        codebook_dtype=config.codebook_dtype,
        denorm=denorm_of(bundle),
        provenance=prov,
        upsample=config.upsample,
        upsample_filter=config.upsample_filter,
    )


@dataclass
class Plan:
    """What ``distill`` would write for a configuration, before any optimization."""

    bits: int
    ipc: int  # samples per class that fit (0: none)
    n: int
    file_bytes: int  # exact size of that file (0 when nothing fits)
    budget_bytes: int
    one_per_class_bytes: int  # size with one sample per class: the smallest budget


def plan(config: DistillConfig, bundle: Any) -> Plan:
    """How many samples per class ``config`` fits into its budget, and the exact file
    size, from the codec (the same numbers ``distill`` uses)."""
    from .data import check_every_class_has_samples

    check_every_class_has_samples(bundle)
    layout = file_layout(config, bundle)
    k = len(layout.class_names)
    ipc = layout.max_samples_per_class(config.budget_bytes)
    return Plan(
        bits=layout.bits,
        ipc=ipc,
        n=ipc * k,
        file_bytes=layout.size(ipc * k) if ipc else 0,
        budget_bytes=config.budget_bytes,
        one_per_class_bytes=layout.size(k),
    )


def check_written(path: str, budget: int, expected: int) -> int:
    """The written file's size, checked against the budget and the codec's prediction."""
    size = os.path.getsize(path)
    if size > budget:
        raise RuntimeError(f"wrote {size} B to {path}, over the {budget} B budget")
    if size != expected:
        raise RuntimeError(f"wrote {size} B but the codec predicted {expected} B")
    return size


def check_dir(path: str) -> None:
    """Refuse, before any training, what the writer will refuse (-, a missing folder, a
    device), and a folder it could not create its temp file in."""
    directory = check_output_file(path)
    if not os.access(directory, os.W_OK):
        raise ValueError(f"cannot write {path}: directory {directory} is not writable")


# Copies of the synthetic set a training step holds at once, each at full (enlarged)
# size in float32: the samples, their gradient and momentum, the quantized and the
# enlarged samples, and the augmented batch the network sees.
_SYN_COPIES = 6


def check_memory(n: int, sample_shape: tuple[int, ...], upsample: int, ipc: int,
                 device: Any) -> None:
    """Refuse a synthetic set that could not be trained in the device's free memory (a
    large budget at few bits on a small dataset affords millions of samples), before
    allocating any of it."""
    free = available_memory(device)
    values = math.prod(sample_shape) * upsample**2
    need = n * values * 4 * _SYN_COPIES
    if free is not None and need > free:
        raise ValueError(
            f"the budget affords {ipc:,} samples per class ({n:,} in all), which would take "
            f"about {need / 2**30:.1f} GiB to train; {free / 2**30:.1f} GiB is free on "
            f"{device.type}. Pass a smaller --ipc or --budget"
        )

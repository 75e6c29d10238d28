"""DM's options and the defaults it resolves for a device and a run's length.

Torch-free, so the command line can build DM's flags without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["CPU_ITERATIONS_PER_ENTRY", "DEFAULT_ITERATIONS", "DEFAULT_REAL", "DMOptions",
           "DM_MODES", "MAX_DEFAULT_POOL", "POOL_ORDERS", "default_mode", "default_pool"]

POOL_ORDERS = ("shuffle", "random")
DM_MODES = ("auto", "fast", "plain")

# The default pool (see default_pool): entries of the plain loop's 256 real images per
# class, one per iteration on a GPU and one per CPU_ITERATIONS_PER_ENTRY on a CPU.
CPU_ITERATIONS_PER_ENTRY = 4
DEFAULT_REAL = 256
MAX_DEFAULT_POOL = {"cpu": 2048, "cuda": 4096}
DEFAULT_ITERATIONS = 1000  # sizes the default pool when the run's length is not given


def _opt(default: Any, help: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class DMOptions:
    """DM knobs. Every speed trick is a flag so it can be ablated."""

    mode: str = _opt(
        "auto",
        "fast: pool of random networks with precomputed real embeddings; plain: the "
        "reference loop (a fresh network and real batch every iteration); auto: plain on a "
        "GPU (a pool that reuses nothing computes the same samples there at the same cost) "
        "unless --pool-size, --real-per-class, --pool-train-steps or --pool-order random "
        "asks for a pool; fast elsewhere.",
        flag="--dm-mode", choices=DM_MODES)
    # fast: pool entries (random network + per-class DSA seeds) and the real images
    # behind each per-class mean. None: the defaults for the device and run length.
    pool_size: int | None = _opt(
        None,
        "Random networks (each with its own DSA draws) in the fast-mode pool. A pool "
        "smaller than --iterations is reused, and reuse costs accuracy at equal "
        "iterations; a larger one costs a longer set-up (docs/results.md).  [default: on "
        "a GPU one per iteration (at most 4096), on a CPU one per 4 iterations (at most "
        "2048)]",
        flag="--pool-size", min=1)
    real_per_class: int | None = _opt(
        None,
        "Real images per class behind each precomputed mean (fast mode).  [default: 256, "
        "the plain loop's batch]",
        flag="--real-per-class", min=1)
    pool_order: str = _opt(
        "shuffle",
        "Fast mode: draw the pool's entries in passes (each once per pass; the first pass "
        "of an untrained pool in index order, later ones shuffled; with a pool of at least "
        "--iterations none is reused) or independently at random (with replacement).",
        flag="--pool-order", choices=POOL_ORDERS)
    # fast: train pool network p for round(p * pool_train_steps / (pool_size - 1)) SGD
    # steps on real batches before its means are taken (IDM's trained-model queue,
    # precomputed); costs pool_size * pool_train_steps / 2 training steps once.
    pool_train_steps: int = _opt(
        0,
        "Fast mode: train the pool's networks on real batches first, network p for "
        "p/(pool size - 1) of this many SGD steps, so the pool spans random to partly "
        "trained embeddings (IDM). 0: random networks, as DM.",
        flag="--pool-train-steps", min=0)
    pool_train_batch: int = _opt(256, "Real images per pool training step.",
                                 flag="--pool-train-batch", min=1)
    dsa: bool = _opt(True, "Disable differentiable Siamese augmentation.", flag="--no-dsa")
    batch_real: int = _opt(256, "Plain mode: real images per class per iteration.",
                           flag=None, min=1)
    dsa_strategy: str = _opt("color_crop_cutout_flip_scale_rotate",
                             "DSA transforms, joined by _.", flag=None)
    width: int = _opt(128, "ConvNet width.", flag=None, min=1)
    depth: int = _opt(3, "ConvNet depth.", flag=None, min=1)
    norm: str = _opt("instancenorm", "ConvNet normalization.", flag=None)
    pooling: str = _opt("avgpooling", "ConvNet pooling.", flag=None)
    # Real images per embedding call (no gradient: any size works).
    embed_chunk: int = _opt(512, "Real images per embedding call.", flag=None, min=1)
    # Synthetic images per embedding call. Their activations are kept for the backward
    # pass (about 2 MiB per 32x32 image at width 128, fp32), so a large set is embedded
    # in pieces whose activations are recomputed in the backward pass. None: as many as
    # fit in SYN_ACTIVATION_BYTES on a CPU, a quarter of the free memory on a GPU.
    syn_chunk: int | None = _opt(None, "Synthetic images per embedding call.", flag=None,
                                 min=1)
    # SGD, momentum 0.9, weight decay 5e-4 (IDM's net_decay).
    pool_train_lr: float = _opt(0.01, "Learning rate of pool training.", flag=None)
    # The pool's set-up depends on neither bits, samples per class nor budget: keep it
    # on disk (quadd_train.objectives.dm.pool_cache). Not in the fingerprint: a pool from
    # the cache is the pool a recomputation builds.
    pool_cache: bool = _opt(
        True,
        "Fast mode: neither read nor write the on-disk pool cache (the pool's set-up is "
        "then recomputed and not kept; `quadd cache ls` lists what is kept).",
        flag="--no-pool-cache")

    def check(self) -> None:
        """Refuse values DM cannot run, naming the option."""
        if self.mode not in DM_MODES:
            raise ValueError(f"DM mode must be one of {DM_MODES}, got {self.mode!r}")
        if self.pool_order not in POOL_ORDERS:
            raise ValueError(f"pool_order must be one of {POOL_ORDERS}, got {self.pool_order!r}")
        for name in ("pool_size", "real_per_class", "syn_chunk"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("pool_train_batch", "batch_real", "embed_chunk", "width", "depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.pool_train_steps < 0:
            raise ValueError("pool_train_steps must be >= 0")
        if self.pool_train_steps and self.mode == "plain":
            raise ValueError("pool_train_steps needs the fast DM mode (a network pool)")

    def asks_pool(self) -> bool:
        """Whether a setting only the fast loop uses was given."""
        return (self.pool_size is not None or self.real_per_class is not None
                or self.pool_train_steps > 0 or self.pool_order != "shuffle")


def _device_type(device: Any) -> str:
    if isinstance(device, str):
        return device.split(":")[0]
    return str(device.type)


def default_mode(
    device: Any,
    pool_size: int | None = None,
    real_per_class: int | None = None,
    pool_train_steps: int = 0,
    pool_order: str = "shuffle",
) -> str:
    """The DM loop ``mode="auto"`` runs: ``"plain"`` on a GPU unless a pool setting asks
    for the fast loop, ``"fast"`` elsewhere.

    On a GPU the default pool would reuse nothing and hold the plain loop's real batches,
    which computes exactly what the plain loop computes (see the package docstring) with
    the same real embeddings, only up front, its means held in memory and checkpoints
    (one entry per iteration, classes x 2048 floats each). The plain loop does the same
    work without that wait or memory. On a CPU the real embeddings are the cost, so the
    fast loop with a smaller pool (``default_pool``) is the default there."""
    if _device_type(device) != "cuda":
        return "fast"
    asks = DMOptions(pool_size=pool_size, real_per_class=real_per_class,
                     pool_train_steps=pool_train_steps, pool_order=pool_order).asks_pool()
    return "fast" if asks else "plain"


def default_pool(
    device: Any,
    iterations: int | None = None,
    pool_size: int | None = None,
    real_per_class: int | None = None,
) -> tuple[int, int]:
    """``(pool_size, real_per_class)`` of the fast loop where either is not given.

    On a GPU: one entry per iteration (at most 4096), 256 real images per class each.
    No entry is reused, and iteration t uses plain iteration t's network, transforms and
    real batch, so the result is the plain loop's; embedding the pool takes seconds to
    minutes there.

    On a CPU the set-up is the cost: 1000 entries x 256 images would embed as many real
    images as the plain loop does. There the default is one entry per 4 iterations (at
    most 2048), so the set-up embeds a quarter of the plain loop's real images. On
    CIFAR-10 at IPC 16 and 1000 iterations it ended level with the plain loop
    (docs/results.md, "A quarter of the plain loop's real embeddings"), where entries of
    128 images at half that cost ended 0.4 points below it: the real mean's noise grows
    as the images behind it shrink (40% of the plain loop's gradient variance late in a
    CIFAR-10 run at 256 images), and reused entries fit their own networks.

    >>> default_pool("cpu", 1000), default_pool("cuda", 1000), default_pool("cpu", 10, 3)
    ((250, 256), (1000, 256), (3, 256))
    """
    kind = _device_type(device)
    cap = MAX_DEFAULT_POOL.get(kind, MAX_DEFAULT_POOL["cpu"])
    n = DEFAULT_ITERATIONS if iterations is None else max(int(iterations), 1)
    per_entry = 1 if kind == "cuda" else CPU_ITERATIONS_PER_ENTRY
    pool = min(-(-n // per_entry), cap) if pool_size is None else int(pool_size)
    return pool, DEFAULT_REAL if real_per_class is None else int(real_per_class)

"""Distribution matching (DM; Zhao & Bilen, WACV 2023) with DSA.

Reference protocol (VICO-UoE/DatasetCondensation, ``main_DM.py``): every iteration a
freshly initialized ConvNet embeds, per class, a random batch of 256 real images and the
class's synthetic images, both augmented by DSA with the *same* seed; the loss is
``sum_c || mean emb(real_c) - mean emb(syn_c) ||^2``; SGD with momentum 0.5 and
``lr_img = 1.0`` updates the images.

``mode="plain"`` runs exactly that. It spends almost all its time embedding real images
that do not depend on the synthetic set, so ``mode="fast"`` precomputes them (``"auto"``,
the default, picks a mode per device: ``default_mode``). The fast loop holds a pool of
``pool_size`` random networks, each with its own per-class DSA seeds, and for every
(network, class) the mean real embedding over ``real_per_class`` images under that
class's transform. Because a seeded DSA call applies *one* transform to the whole batch,
that mean estimates the same expectation as the reference's 256 images. Each iteration
then draws a pool entry and only pushes the synthetic images through its network. The
approximation is the finite pool: ``pool_size`` networks instead of a fresh one per
iteration.

Entry ``p`` is made by the same draw as the plain loop's iteration ``p`` (network seed,
per-class DSA seeds, real images), from a generator of its own (``_entry``). Entries are
drawn in passes (``pool_order="shuffle"``): every entry once before any is drawn again,
the first pass in index order (the entries are independent draws already) and each later
one in a fresh random order (every pass of a trained pool, which is ordered by training
length). Reuse is then spread evenly, and with ``pool_size >= iterations`` no entry is
drawn twice. With ``real_per_class == batch_real`` as well (both 256 by default; on a
GPU the default pool is such a pool up to 4096 iterations) the fast loop *is* the plain
loop: iteration ``t`` uses the network, transforms and real images of plain iteration
``t``, only with the real embeddings computed up front, and gives the same synthetic set
bit for bit on a CPU (``tests/test_train_distill.py``; GPU kernels need not be
deterministic). Other pools give the same expected gradient (the loss is quadratic in the
real mean); only its noise differs. On a CPU, where the set-up is the cost, the default
pool (``default_pool``) is a quarter as many entries, each drawn 4 times.
``pool_order="random"`` draws independently (with replacement).

``pool_train_steps > 0`` departs from DM on purpose: the pool's networks are first
trained on real batches for 0 to ``pool_train_steps`` steps, as in IDM (Zhao et al.,
CVPR 2023), whose queue of partly trained networks gives more discriminative embeddings
than random ones. Here that queue is precomputed once, like the means.

The loop and pool a run resolves are what its checkpoint records (``fingerprint``), and
a resumed run keeps them whatever its device now.

The pool's set-up depends on neither the bits, the samples per class nor the budget, so
it is kept in the on-disk cache (``pools/`` in the cache folder; :mod:`.pool_cache`
says what its key covers) and a second run with the same data, seed, pool and runtime
settings reads it instead (``pool_cache=False``, ``--no-pool-cache``: not).

>>> import torch
>>> from quadd_train.objectives import make_objective
>>> dm = make_objective("dm", {"pool_size": 2, "real_per_class": 4})
>>> x = torch.randn(20, 1, 8, 8)
>>> dm.prepare(x, torch.arange(20) % 2, 2, 1, "cpu", seed=0, iterations=10)
>>> dm.report()
{'dm_mode': 'fast', 'pool_size': 2, 'real_per_class': 4, 'pool_from_cache': False}
>>> dm.summary(0.4)
'DM pool 2 x 4 real/class, set up in 0.4 s'
"""

from __future__ import annotations

import importlib
from typing import Any

from .options import (
    CPU_ITERATIONS_PER_ENTRY,
    DEFAULT_REAL,
    DM_MODES,
    MAX_DEFAULT_POOL,
    POOL_ORDERS,
    DMOptions,
    default_mode,
    default_pool,
)

__all__ = ["CPU_ITERATIONS_PER_ENTRY", "CPU_RESIDENT_NET_BYTES", "DEFAULT_REAL", "DM_MODES",
           "MAX_DEFAULT_POOL", "POOL_ORDERS", "SYN_ACTIVATION_BYTES", "DMObjective",
           "DMOptions", "default_mode", "default_pool", "default_syn_chunk"]

# Imported on first use: the options (and so the command line's flags) need no torch.
_LAZY = {"DMObjective": "objective", "SYN_ACTIVATION_BYTES": "objective",
         "default_syn_chunk": "objective", "CPU_RESIDENT_NET_BYTES": "pool"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)

"""DM's pools through the on-disk cache (:mod:`quadd_train.cache`): the key, and what an
entry holds.

The fast loop's set-up (the real means of every (network, class), and the networks'
training with ``pool_train_steps``) depends neither on the bits, the samples per class
nor the budget, so a sweep or a repeated ``distill`` computes it once. An entry holds
what ``prepare`` computes: the networks' seeds, the per-class DSA seeds, the means and
the trained weights. Its key covers everything that changes those numbers bit for bit:

* the real training set the objective receives (SHA-256 of the normalized images' bytes
  and of the labels, with their shape, dtype and the number of classes: 0.34 s for
  CIFAR-10's 50,000 images on one core);
* the seed, the resolved pool size and real images per class, and every option the
  pool's construction reads (the network, DSA, ``embed_chunk``, which sets how the sums
  are split, and pool training's steps, batch and learning rate when it trains);
* how it is computed: device type (and GPU model, CUDA/cuDNN versions, TF32 switches),
  bf16, compile, channels_last, CPU threads and model, torch's version, and this
  module's format version.

``pool_order`` is not in it (the draw order is not precomputed) and neither are
``syn_chunk`` or ``batch_real`` (never read by the pool). A hit then gives the samples a
recomputed pool gives, byte for byte (``tests/test_pool_cache.py``). A pool built while
a requested compile failed (and the run fell back to eager mid-build) is not stored.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ...cache import damaged, pool_cache_cap, read_pool_entry, write_pool_entry
from ...distributed import all_agree, context
from ...runtime import cpu_model

if TYPE_CHECKING:
    from .objective import DMObjective

__all__ = ["POOL_CACHE_VERSION", "PoolCacheEntry", "open_pool_cache"]

POOL_CACHE_VERSION = 1

# Options the pool's construction never reads; pool training's own only when it trains.
_NOT_IN_POOL = {"mode", "pool_size", "real_per_class", "pool_order", "syn_chunk",
                "batch_real", "pool_cache"}
_TRAINING = {"pool_train_lr", "pool_train_batch"}


def open_pool_cache(obj: DMObjective, x_real: Tensor, y_real: Tensor) -> PoolCacheEntry | None:
    """The cache entry of the pool ``obj`` (resolved, not yet built) is about to build,
    or None when the cache is off (``pool_cache=False`` or a cap of 0)."""
    if not obj.options.pool_cache:
        return None
    cap = pool_cache_cap()
    if cap <= 0:
        return None
    return PoolCacheEntry(obj, pool_key(obj, x_real, y_real), cap)


def pool_key(obj: DMObjective, x_real: Tensor, y_real: Tensor) -> dict[str, Any]:
    """Everything the numbers of ``obj``'s pool depend on (see the module docstring)."""
    opts = {k: v for k, v in asdict(obj.options).items() if k not in _NOT_IN_POOL}
    if not obj.options.pool_train_steps:
        opts = {k: v for k, v in opts.items() if k not in _TRAINING}
    return {
        "format": POOL_CACHE_VERSION,
        "objective": "dm",
        "data": {"x": _digest(x_real), "shape": list(x_real.shape),
                 "dtype": str(x_real.dtype), "y": _digest(y_real.cpu().long()),
                 "classes": obj.num_classes},
        "seed": obj._seed,
        "pool": {"pool_size": obj.pool_size, "real_per_class": obj.real_per_class, **opts},
        "runtime": _numerics(obj),
    }


class PoolCacheEntry:
    """One pool's place in the cache: ``load`` it into the objective, or ``save`` it."""

    def __init__(self, obj: DMObjective, key: dict[str, Any], cap: int) -> None:
        self.obj = obj
        self.key = key
        self.cap = cap
        text = json.dumps(key, sort_keys=True)
        self.name = "dm-" + hashlib.sha256(text.encode()).hexdigest()[:32]
        self._text = text

    def load(self) -> bool:
        """Adopt the stored pool; False on a miss (a damaged entry is removed). In a
        distributed run every rank reads it, and all adopt it or none does (a rank that
        cannot see the cache builds with the others)."""
        hit = self._load()
        ctx = context()
        if ctx.active and not all_agree(hit):
            if hit:
                obj = self.obj
                obj._net_seeds = obj._pool_seeds = obj._pool_means = None
                obj._net_states = None
            return False
        return hit

    def _load(self) -> bool:
        state = read_pool_entry(self.name)
        if state is None:
            return False
        problem = self._check(state)
        if problem:
            damaged(self.name, problem)
            return False
        obj = self.obj
        obj._net_seeds = state["net_seeds"].numpy().astype(np.int64)
        obj._pool_seeds = state["pool_seeds"].numpy().astype(np.int64)
        obj._pool_means = state["means"]
        obj._net_states = state.get("net_states")
        return True

    def save(self) -> None:
        """Store the pool just built, unless a failed compile changed how it was built
        (a distributed run's rank 0 stores it, for every rank)."""
        obj = self.obj
        if not context().is_main:
            return
        if obj.runtime is not None and obj.runtime.compile and not obj._compiled:
            return
        assert obj._pool_means is not None and obj._net_seeds is not None
        assert obj._pool_seeds is not None
        state: dict[str, Any] = {
            "version": POOL_CACHE_VERSION,
            "key": self._text,
            "means": obj._pool_means.detach().cpu(),
            "net_seeds": torch.from_numpy(np.asarray(obj._net_seeds, dtype=np.int64)),
            "pool_seeds": torch.from_numpy(np.asarray(obj._pool_seeds, dtype=np.int64)),
        }
        nbytes = state["means"].numel() * 4
        if obj._net_states is not None:
            state["net_states"] = obj._net_states
            nbytes += sum(t.numel() * t.element_size() for s in obj._net_states
                          for t in s.values())
        write_pool_entry(self.name, state, {"label": self.label(), "key": self.key},
                         nbytes, self.cap)

    def label(self) -> str:
        """What ``quadd cache ls`` shows for the entry."""
        obj, k = self.obj, self.key
        n, *sample = k["data"]["shape"]
        rt = k["runtime"]
        how = [rt["device"]] + [w for w in ("bf16", "compile", "channels_last") if rt[w]]
        trained = (f", trained {obj.options.pool_train_steps} steps"
                   if obj.options.pool_train_steps else "")
        name = obj.data_name or "data"
        return (f"{name} ({n} x {'x'.join(map(str, sample))}, {k['data']['classes']} "
                f"classes), seed {k['seed']}: DM pool {obj.pool_size} x "
                f"{obj.real_per_class} real/class{trained}, {'+'.join(how)}")

    def _check(self, state: dict[str, Any]) -> str:
        """Why ``state`` is not this pool's entry ("" when it is)."""
        if state.get("version") != POOL_CACHE_VERSION or state.get("key") != self._text:
            return "it was stored for another pool"
        obj = self.obj
        p, k = obj.pool_size, obj.num_classes
        means, nets, dsa = state.get("means"), state.get("net_seeds"), state.get("pool_seeds")
        if not (isinstance(means, Tensor) and means.dtype == torch.float32
                and means.dim() == 3 and tuple(means.shape[:2]) == (p, k)):
            return "its means have the wrong shape"
        if not (isinstance(nets, Tensor) and tuple(nets.shape) == (p,)
                and isinstance(dsa, Tensor) and tuple(dsa.shape) == (p, k)):
            return "its seeds have the wrong shape"
        states = state.get("net_states")
        if bool(obj.options.pool_train_steps) != (states is not None):
            return "its trained networks are missing or unexpected"
        if states is not None and not (isinstance(states, list) and len(states) == p
                                       and all(isinstance(s, dict) for s in states)):
            return "its trained networks are incomplete"
        return ""


def _digest(t: Tensor) -> str:
    flat = t.detach().cpu().contiguous().reshape(-1)
    raw = flat.view(torch.uint8).numpy() if flat.numel() else np.zeros(0, np.uint8)
    return hashlib.sha256(memoryview(raw)).hexdigest()


def _numerics(obj: DMObjective) -> dict[str, Any]:
    """How the pool is computed: what changes its rounding."""
    dev = obj.device
    out: dict[str, Any] = {
        "device": dev.type, "bf16": bool(obj.bf16), "channels_last": bool(obj.channels_last),
        "compile": bool(obj._compiled), "torch": torch.__version__,
        "machine": platform.machine(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "matmul_precision": torch.get_float32_matmul_precision(),
        "mkldnn": bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
    }
    if dev.type == "cuda":
        out.update(gpu=torch.cuda.get_device_name(dev),
                   capability=list(torch.cuda.get_device_capability(dev)),
                   cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                   cudnn_tf32=bool(torch.backends.cudnn.allow_tf32),
                   matmul_tf32=bool(torch.backends.cuda.matmul.allow_tf32),
                   cudnn_deterministic=bool(torch.backends.cudnn.deterministic),
                   cudnn_benchmark=bool(torch.backends.cudnn.benchmark))
    else:
        # CPU kernels split their sums by thread, and the instruction set picks them.
        out.update(threads=torch.get_num_threads(), cpu=cpu_model())
    return out

"""The DM objective: networks, embedding, the loss, and checkpointed state.

See the package docstring for the method; the pool lives in :mod:`.pool`, the options
and defaults in :mod:`.options`.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ...nn.augment import diff_augment
from ...nn.convnet import ConvNet
from ...nn.models import build_model
from ...runtime import Runtime, as_runtime, available_memory, to_device
from .. import Objective, register_objective
from .options import DEFAULT_REAL, DMOptions, default_mode, default_pool
from .pool import PoolMixin
from .pool_cache import open_pool_cache

__all__ = ["SYN_ACTIVATION_BYTES", "DMObjective", "default_syn_chunk"]

# Activations of the synthetic images' embedding kept for one backward pass on a CPU
# (syn_chunk=None); a larger set is embedded in checkpointed pieces, at about one more
# forward pass of the synthetic images per iteration.
SYN_ACTIVATION_BYTES = 2 << 30


@register_objective("dm")
class DMObjective(PoolMixin, Objective):
    """Distribution matching loss; see the package docstring."""

    Options = DMOptions
    options: DMOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.options.check()
        self._pool_means: Tensor | None = None  # (P, K, F) float32
        self._pool_seeds: np.ndarray | None = None  # (P, K) DSA seeds
        self._net_seeds: np.ndarray | None = None  # (P,)
        self._nets: list[ConvNet] = []  # every pool network, or [] when rebuilt per draw
        self._saved_real: int | None = None  # real_per_class of a restored pool
        self._net_states: list[dict[str, Tensor]] | None = None  # trained pool weights
        # shuffle: the current pass's order and how much of it is drawn (checkpointed,
        # so a resumed run draws what the uninterrupted one would have).
        self._order: np.ndarray | None = None
        self._cursor = 0
        self._step = 0  # plain: iterations drawn so far (checkpointed)
        self._seed = 0
        self._compiled: dict[str, Any] = {}
        # Set when compiling failed on a CPU under the default layout: NHWC pays only
        # compiled there, so the next iteration goes back to NCHW (see _settle_layout).
        self._drop_channels_last = False
        self.runtime: Runtime | None = None
        self.bf16 = False
        self.channels_last = False
        # What runs: "auto" and unset pool numbers resolve in prepare for the device and
        # the run's length, or are adopted from a restored state (a run keeps its loop).
        self.mode = self.options.mode
        self.pool_size: int | None = self.options.pool_size
        self.real_per_class: int | None = self.options.real_per_class
        self.pool_from_cache = False  # prepare took the pool from the on-disk cache
        # The classes whose loss this process computes (None: all); a distributed run's
        # share, see split_classes.
        self._classes: range | None = None

    # ------------------------------------------------------------------ set-up
    def _new_net(self) -> ConvNet:
        o = self.options
        if len(self.sample_shape) == 3:
            net = ConvNet(self.channel, self.num_classes, self.im_size, width=o.width,
                          depth=o.depth, norm=o.norm, pooling=o.pooling).to(self.device)
        else:  # feature vectors: random layer-norm MLPs of the same width and depth
            net = build_model("mlp", self.sample_shape, self.num_classes, width=o.width,
                              depth=o.depth).to(self.device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        net.train()  # as the reference; ConvNet's instance norm has no train/eval split
        for p in net.parameters():
            p.requires_grad_(False)
        return net

    def _seeded_net(self, seed: int) -> ConvNet:
        # manual_seed reseeds the GPU's generators too: fork them as well, so building a
        # network (every plain iteration) leaves every random stream as it was.
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(int(seed))
            return self._new_net()

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _embed(self, net: ConvNet, x: Tensor, kind: str = "syn",
               checkpointed: bool = False) -> Tensor:
        """``net``'s embedding of ``x``, compiled when asked for (eager from the first
        failure on); ``checkpointed``: its activations recomputed in the backward pass
        instead of kept."""
        if self.channels_last:
            # DSA returns contiguous NCHW; NHWC convolutions are faster with compile/cuDNN.
            x = x.contiguous(memory_format=torch.channels_last)

        def attempt() -> Tensor:
            # The function is chosen before the call, so a checkpoint's recomputation runs
            # what its forward ran: the fallback below never sees the recomputation (nor
            # the exception that ends one early).
            run = self._runner(kind)
            if not checkpointed:
                return run(net, x)
            from torch.utils.checkpoint import checkpoint

            return checkpoint(run, net, x, use_reentrant=False)

        try:
            return attempt()
        except Exception as exc:  # noqa: BLE001 - no compiler, unsupported op...
            if not self._compiled:
                raise
            warnings.warn(
                f"torch.compile failed ({type(exc).__name__}: {exc}); running eager",
                RuntimeWarning,
                stacklevel=2,
            )
            self._compiled.clear()
            if (self.device.type == "cpu" and self.runtime is not None
                    and self.runtime.channels_last_default):
                self._drop_channels_last = True
            return attempt()

    def _settle_layout(self) -> None:
        """Back to NCHW after a failed compile on a CPU (eager NHWC steps took twice as
        long there). Called only between embeddings whose backward has run or never
        will, because a checkpointed piece's recomputation must see the layout its
        forward saw."""
        if not self._drop_channels_last:
            return
        self._drop_channels_last = False
        self.channels_last = False
        for net in self._nets:
            net.to(memory_format=torch.contiguous_format)

    def _runner(self, kind: str) -> Any:
        fn = self._compiled.get(kind) or _embed_syn
        autocast = self._autocast

        def run(net: ConvNet, x: Tensor) -> Tensor:
            with autocast():
                return fn(net, x).float()

        return run

    def _gather(self, idx: np.ndarray) -> Tensor:
        """Real images ``idx`` on the objective's device."""
        return to_device(self.x_real[to_device(torch.from_numpy(idx), self.x_real.device)],
                         self.device)

    def _augment(self, x: Tensor, seed: int) -> Tensor:
        if not self.options.dsa or x.dim() != 4:  # DSA transforms images only
            return x
        return diff_augment(x, self.options.dsa_strategy, seed=int(seed))

    def prepare(
        self,
        x_real: Tensor,
        y_real: Tensor,
        num_classes: int,
        ipc: int,
        runtime: Runtime | torch.device | str,
        seed: int,
        progress: bool = False,
        iterations: int | None = None,
    ) -> None:
        """Resolve the loop and pool for the runtime and run length (a restored state
        keeps its own), build the pool in the fast loop. ``runtime`` may be a device:
        its default settings then."""
        self.runtime = rt = as_runtime(runtime)
        o = self.options
        self.device = rt.device
        self.num_classes = int(num_classes)
        self.ipc = int(ipc)
        self.sample_shape = tuple(int(d) for d in x_real.shape[1:])
        if x_real.dim() == 4:
            self.channel = int(x_real.shape[1])
            self.im_size = (int(x_real.shape[2]), int(x_real.shape[3]))
        self.x_real = _resident(x_real, self.device)
        y_np = y_real.cpu().numpy()
        self.y_real = torch.as_tensor(y_np, dtype=torch.long)
        self.class_idx = [np.flatnonzero(y_np == c) for c in range(self.num_classes)]
        self.bf16 = rt.bf16
        if self.mode == "auto":
            self.mode = default_mode(self.device, o.pool_size, o.real_per_class,
                                     o.pool_train_steps, o.pool_order)
        if self.mode == "fast":
            if self._net_seeds is not None:  # restored from a checkpoint
                self.pool_size = len(self._net_seeds)
                self.real_per_class = int(self._saved_real or self.real_per_class
                                          or DEFAULT_REAL)
            else:
                self.pool_size, self.real_per_class = default_pool(
                    self.device, iterations, self.pool_size, self.real_per_class)
        self.channels_last = rt.channels_last and x_real.dim() == 4  # an image layout
        if rt.compile:
            # Two code objects, two compile caches: the synthetic batch has one fixed
            # shape (static is fastest); real chunks vary in size (a class's last chunk).
            self._compiled = {
                "syn": torch.compile(_embed_syn, dynamic=False),
                "real": torch.compile(_embed_real, dynamic=None),
            }
        # Once per run: a piece size that changed between iterations would recompile.
        self.syn_chunk = o.syn_chunk or default_syn_chunk(
            self.device, self._seeded_net(0), self.bf16, self.sample_shape)
        self._seed = int(seed)
        self.pool_from_cache = False
        if self.mode == "fast":
            # A pool restored from a checkpoint is the run's own; otherwise the cache's.
            entry = (open_pool_cache(self, x_real, y_real) if self._net_seeds is None
                     else None)
            self.pool_from_cache = entry is not None and entry.load()
            self._build_pool(progress)
            if entry is not None and not self.pool_from_cache:
                entry.save()

    # ------------------------------------------------------------------ loss
    def loss(self, syn: Tensor, labels: Tensor, rng: np.random.Generator) -> Tensor:
        self._settle_layout()
        if self.mode == "fast":
            return self.entry_loss(syn, self._draw(rng))
        return self._loss_plain(syn, rng)

    def split_classes(self, classes: range) -> bool:
        """Compute only the loss of ``classes`` from now on: ``loss`` then takes their
        samples alone (class-major) and returns the sum of their terms. Each class's
        term and its gradient are what the whole set's loss gives them, so a
        distributed run gathers the gradients (:mod:`quadd_train.distributed`). False
        (nothing changed) where the classes do not separate: a batch-norm network
        mixes every sample of the batch."""
        if self.options.norm == "batchnorm":
            return False
        self._classes = range(classes.start, classes.stop)
        return True

    def _local_classes(self) -> range:
        return self._classes if self._classes is not None else range(self.num_classes)

    def entry_loss(self, syn: Tensor, p: int) -> Tensor:
        """The DM loss of ``syn`` (class-major, ``ipc`` per class) under pool entry ``p``."""
        assert self._pool_means is not None and self._pool_seeds is not None
        cls = self._local_classes()
        return self._match(syn, self._net(p), self._pool_seeds[p],
                           self._pool_means[p][cls.start:cls.stop])

    def _match(self, syn: Tensor, net: ConvNet, dsa_seeds: np.ndarray, real_means: Tensor
               ) -> Tensor:
        """``sum_c || real_means[c] - mean emb(syn_c) ||^2`` over this process's classes
        (``real_means`` and ``syn``: theirs), each class's synthetic images under that
        class's transform (the one its real mean was taken under)."""
        cls, ipc = self._local_classes(), self.ipc
        k = len(cls)
        if k == 0:  # a rank with no classes: nothing to embed
            return syn.sum() * 0.0
        chunks = syn.reshape(k, ipc, *syn.shape[1:])
        aug = torch.cat([self._augment(chunks[i], int(dsa_seeds[c]))
                         for i, c in enumerate(cls)])
        if not self.channels_last:
            aug = _nchw(aug)
        # The whole set's size decides, so every share embeds as one process does.
        if self.num_classes * ipc <= self.syn_chunk:
            syn_means = self._embed(net, aug).reshape(k, ipc, -1).mean(dim=1)
        else:
            syn_means = self._embed_in_pieces(net, aug, cls.start * ipc) / ipc
        return ((real_means - syn_means) ** 2).sum()

    def _embed_in_pieces(self, net: ConvNet, aug: Tensor, first: int = 0) -> Tensor:
        """Per-class sums ``(K, F)`` of the embeddings of ``aug`` (class-major, ``ipc``
        per class; its row 0 is row ``first`` of the whole set), embedded in pieces of
        at most ``syn_chunk`` images whose activations are recomputed in the backward
        pass, so only one piece's are kept at a time. The pieces are the whole set's,
        cut to these rows."""
        total = self.num_classes * self.ipc
        pieces = -(-total // self.syn_chunk)
        # Even pieces (n // pieces or one more images): at most two shapes to compile.
        bounds = [i * total // pieces for i in range(pieces + 1)]
        n = aug.shape[0]
        rows = torch.arange(n, device=aug.device) // self.ipc
        sums = torch.zeros(n // self.ipc, net.num_features, device=aug.device)
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            start, stop = max(start - first, 0), min(stop - first, n)
            if start >= stop:
                continue
            emb = self._embed(net, aug[start:stop], checkpointed=True)
            sums = sums.index_add(0, rows[start:stop], emb)
        return sums

    def _loss_plain(self, syn: Tensor, rng: np.random.Generator) -> Tensor:
        # The reference loop: a fresh network, transforms and real batch every iteration,
        # made here by the draw a pool entry would be made by (see _entry).
        net_seed, dsa_seeds, draw = self._entry(self._step)
        self._step += 1
        net = self._seeded_net(net_seed)
        real_means = self._real_means(net, dsa_seeds, draw, self.options.batch_real,
                                      self._local_classes())
        return self._match(syn, net, dsa_seeds, real_means)

    # ------------------------------------------------------------------ what ran
    def fingerprint(self) -> dict[str, Any]:
        """The loop and pool that run (as resolved or restored) and every option that
        changes the samples; the plain loop draws no pool, so its order is left out."""
        skip = {"mode", "pool_size", "real_per_class", "embed_chunk", "syn_chunk",
                "pool_cache"}
        fp = {"dm_mode": self.mode, "pool_size": self.pool_size,
              "real_per_class": self.real_per_class,
              **{k: v for k, v in asdict(self.options).items() if k not in skip}}
        if self.mode == "plain":
            del fp["pool_order"]
        return fp

    def report(self) -> dict[str, Any]:
        fast = self.mode == "fast"
        return {"dm_mode": self.mode, "pool_size": self.pool_size if fast else None,
                "real_per_class": self.real_per_class if fast else None,
                "pool_from_cache": self.pool_from_cache if fast else None}

    def summary(self, prepare_seconds: float) -> str:
        # The default pool depends on the device and --iterations: say which was used.
        if self.mode == "fast":
            how = "from cache" if self.pool_from_cache else "set up"
            return (f"DM pool {self.pool_size} x {self.real_per_class} real/class, {how} "
                    f"in {prepare_seconds:.{0 if prepare_seconds >= 10 else 1}f} s")
        return "plain DM loop"

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        # What was built, not the request: None resolves per device and run length.
        cfg = {**asdict(self.options), "mode": self.mode, "pool_size": self.pool_size,
               "real_per_class": self.real_per_class}
        if self.mode != "fast" or self._pool_means is None:
            return {"cfg": cfg, "step": self._step}
        state: dict[str, Any] = {
            "cfg": cfg,
            "pool_means": self._pool_means.cpu(),
            "pool_seeds": self._pool_seeds,
            "net_seeds": self._net_seeds,
        }
        if self._order is not None:
            state["pool_order"] = {"order": self._order, "cursor": self._cursor}
        if self._net_states is not None:
            # Retraining on resume would cost the whole pool training again.
            state["net_states"] = self._net_states
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Adopt the saved loop (for ``mode="auto"``) and pool numbers (where not
        given); reuse the saved pool when it was built with these settings."""
        self._step = int(state.get("step", 0))
        saved = state.get("cfg", {})
        if self.options.mode == "auto" and saved.get("mode") in ("fast", "plain"):
            self.mode = saved["mode"]
        if self.options.pool_size is None:
            self.pool_size = saved.get("pool_size")
        if self.options.real_per_class is None:
            self.real_per_class = saved.get("real_per_class")
        mine = {**asdict(self.options), "mode": self.mode, "pool_size": self.pool_size,
                "real_per_class": self.real_per_class}
        if _pool_key(saved) != _pool_key(mine):
            return  # different settings: recompute rather than reuse a stale pool
        if "pool_means" in state:
            self._pool_means = state["pool_means"]
            self._pool_seeds = np.asarray(state["pool_seeds"])
            self._net_seeds = np.asarray(state["net_seeds"])
            self._net_states = state.get("net_states")
            self._saved_real = saved.get("real_per_class")
            order = state.get("pool_order")  # absent: a fresh pass starts
            if order is not None and self.options.pool_order == "shuffle":
                self._order = np.asarray(order["order"])
                self._cursor = int(order["cursor"])


def _pool_key(cfg: dict[str, Any]) -> dict[str, Any]:
    # Execution-only switches do not change what the pool holds. A knob the state
    # predates had its default then, so its pool stays valid.
    full = {**asdict(DMOptions()), **cfg}
    skip = {"embed_chunk", "syn_chunk", "batch_real", "pool_order", "pool_cache"}
    if not full["pool_train_steps"]:
        skip |= {"pool_train_lr", "pool_train_batch"}  # nothing was trained with them
    return {k: v for k, v in full.items() if k not in skip}


def _nchw(x: Tensor) -> Tensor:
    """``x`` with NCHW strides. A one-channel batch's channel stride is free (any value
    is contiguous), and DSA's affine transforms return it as 1, which the convolutions
    read as NHWC and round differently: the result would depend on which classes share
    a batch (``torch.cat`` keeps the strides when all its inputs have them)."""
    want = torch.empty(x.shape, device="meta").stride()
    return x if x.stride() == want else x.clone(memory_format=torch.contiguous_format)


def _embed_syn(net: ConvNet, x: Tensor) -> Tensor:
    return net.embed(x)


def _embed_real(net: ConvNet, x: Tensor) -> Tensor:
    return net.embed(x)


def _resident(x: Tensor, device: torch.device) -> Tensor:
    """Keep the real images on the GPU when they take under a quarter of its free memory:
    gathering batches there avoids a host copy per class and iteration."""
    if device.type != "cuda" or x.device == device:
        return x
    free = int(available_memory(device) or 0)
    return x.to(device) if x.numel() * x.element_size() < free // 4 else x


def default_syn_chunk(device: torch.device, net: ConvNet, bf16: bool,
                      sample_shape: tuple[int, ...] | None = None) -> int:
    """Synthetic samples per embedding call whose kept activations fit
    SYN_ACTIVATION_BYTES on a CPU, a quarter of the free memory on a GPU
    (``sample_shape``: default the ConvNet's image shape)."""
    if device.type == "cuda":
        budget = int(available_memory(device) or 0) // 4
    else:
        budget = SYN_ACTIVATION_BYTES
    # What backward keeps is about every layer's output (2.05 MiB per 32x32 image at width
    # 128 measured, 2.1 counted). bf16 autocast halves it on a CPU; a GPU's autocast runs
    # the norms in fp32, so there it is counted at 4 bytes.
    values = 0
    shape = sample_shape or (net.channel, *net.im_size)
    x = torch.zeros(1, *shape, device=next(net.parameters()).device)
    with torch.no_grad():
        for layer in net.features:
            x = layer(x)
            values += x.numel()
    per_image = values * (2 if bf16 and device.type == "cpu" else 4)
    return max(1, budget // per_image)

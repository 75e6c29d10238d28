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
``pool_order="random"`` draws independently (with replacement), as the loop did until
2026-11-29 (the GPU results of that day used it).

``pool_train_steps > 0`` departs from DM on purpose: the pool's networks are first
trained on real batches for 0 to ``pool_train_steps`` steps, as in IDM (Zhao et al.,
CVPR 2023), whose queue of partly trained networks gives more discriminative embeddings
than random ones. Here that queue is precomputed once, like the means.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..nn.augment import DEFAULT_STRATEGY, diff_augment
from ..nn.convnet import ConvNet
from ..runtime import available_memory, native_bf16, to_device
from . import Objective

__all__ = ["DM_MODES", "POOL_ORDERS", "DMConfig", "DMObjective", "default_mode", "default_pool",
           "default_syn_chunk"]

POOL_ORDERS = ("shuffle", "random")
DM_MODES = ("auto", "fast", "plain")

# The default pool (see default_pool): entries of the plain loop's 256 real images per
# class, one per iteration on a GPU and one per CPU_ITERATIONS_PER_ENTRY on a CPU.
CPU_ITERATIONS_PER_ENTRY = 4
DEFAULT_REAL = 256
MAX_DEFAULT_POOL = {"cpu": 2048, "cuda": 4096}
DEFAULT_ITERATIONS = 1000  # sizes the default pool when the run's length is not given
# Pool networks stay in memory up to this many bytes of weights on a CPU (on a GPU: a
# quarter of its free memory); a larger pool rebuilds each drawn network from its seed,
# which costs about 2 ms on a CPU (a CIFAR-10 iteration at IPC 16 takes 100s of ms).
CPU_RESIDENT_NET_BYTES = 1 << 30
# Activations of the synthetic images' embedding kept for one backward pass on a CPU
# (syn_chunk=None); a larger set is embedded in checkpointed pieces, at about one more
# forward pass of the synthetic images per iteration.
SYN_ACTIVATION_BYTES = 2 << 30


@dataclass
class DMConfig:
    """DM knobs. Every speed trick is a flag so it can be ablated."""

    # "fast" (precomputed network pool) | "plain" (reference loop) | "auto" (default_mode)
    mode: str = "auto"
    # fast: pool entries (random network + per-class DSA seeds) and the real images
    # behind each per-class mean (the reference uses 256 per iteration). None: the
    # defaults for the device and run length (default_pool).
    pool_size: int | None = None
    real_per_class: int | None = None
    iterations: int | None = None  # the run's length; sizes the default pool only
    # fast: "shuffle" (each entry once per pass: the first pass of an untrained pool in
    # index order, later passes in fresh random orders) or "random" (independent draws
    # with replacement).
    pool_order: str = "shuffle"
    batch_real: int = 256  # plain: real images per class per iteration
    dsa: bool = True
    dsa_strategy: str = DEFAULT_STRATEGY
    # NHWC activations; None = on CUDA, and on a CPU when compiled: there compiled NHWC
    # steps measured 4-12% faster than NCHW, eager ones twice as slow (docs/results.md).
    channels_last: bool | None = None
    # bfloat16 autocast of the embedding network; None = when the hardware has native
    # bf16 (CPU with AMX/AVX512-BF16, or a bf16-capable GPU).
    bf16: bool | None = None
    compile: bool = False  # torch.compile the embedding (falls back to eager on failure)
    width: int = 128
    depth: int = 3
    norm: str = "instancenorm"
    pooling: str = "avgpooling"
    embed_chunk: int = 512  # real images per embedding call (no gradient: any size works)
    # Synthetic images per embedding call. Their activations are kept for the backward
    # pass (about 2 MiB per 32x32 image at width 128, fp32), so a large set (thousands of
    # 1-bit images under a large budget) is embedded in pieces whose activations are
    # recomputed in the backward pass instead of kept. None: as many as fit in
    # SYN_ACTIVATION_BYTES (on a GPU: a quarter of its free memory).
    syn_chunk: int | None = None
    # fast: train pool network p for round(p * pool_train_steps / (pool_size - 1)) SGD
    # steps on real batches before its means are taken, so the pool spans random to
    # partly trained embeddings (IDM's trained-model queue, precomputed); 0 = DM's
    # random networks. Costs pool_size * pool_train_steps / 2 training steps once.
    pool_train_steps: int = 0
    pool_train_lr: float = 0.01  # SGD, momentum 0.9, weight decay 5e-4 (IDM's net_decay)
    pool_train_batch: int = 256


class DMObjective(Objective):
    """Distribution matching loss; see the module docstring."""

    name = "dm"

    def __init__(self, **kwargs: Any) -> None:
        unknown = set(kwargs) - set(DMConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown DM option(s): {sorted(unknown)}")
        self.cfg = DMConfig(**kwargs)
        if self.cfg.mode not in DM_MODES:
            raise ValueError(f"DM mode must be one of {DM_MODES}, got {self.cfg.mode!r}")
        if self.cfg.pool_order not in POOL_ORDERS:
            raise ValueError(f"pool_order must be one of {POOL_ORDERS}, "
                             f"got {self.cfg.pool_order!r}")
        if self.cfg.pool_size is not None and self.cfg.pool_size < 1:
            raise ValueError("pool_size must be >= 1")
        if self.cfg.real_per_class is not None and self.cfg.real_per_class < 1:
            raise ValueError("real_per_class must be >= 1")
        if self.cfg.iterations is not None and self.cfg.iterations < 0:
            raise ValueError("iterations must be >= 0")
        if self.cfg.pool_train_steps < 0:
            raise ValueError("pool_train_steps must be >= 0")
        if self.cfg.pool_train_batch < 1:
            raise ValueError("pool_train_batch must be >= 1")
        if self.cfg.syn_chunk is not None and self.cfg.syn_chunk < 1:
            raise ValueError("syn_chunk must be >= 1")
        if self.cfg.pool_train_steps and self.cfg.mode == "plain":
            raise ValueError("pool_train_steps needs the fast DM mode (a network pool)")
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
        self.bf16 = bool(self.cfg.bf16)
        self.channels_last = bool(self.cfg.channels_last)
        self.mode = self.cfg.mode  # "auto" resolves in prepare, for the device
        self._saved_mode: str | None = None  # the mode of a restored state

    # ------------------------------------------------------------------ set-up
    def _new_net(self) -> ConvNet:
        net = ConvNet(
            self.channel,
            self.num_classes,
            self.im_size,
            width=self.cfg.width,
            depth=self.cfg.depth,
            norm=self.cfg.norm,
            pooling=self.cfg.pooling,
        ).to(self.device)
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
            if self.device.type == "cpu" and self.cfg.channels_last is None:
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
        if not self.cfg.dsa:
            return x
        return diff_augment(x, self.cfg.dsa_strategy, seed=int(seed))

    def prepare(
        self,
        x_real: Tensor,
        y_real: Tensor,
        num_classes: int,
        ipc: int,
        device: torch.device,
        seed: int,
        progress: bool = False,
    ) -> None:
        self.device = torch.device(device)
        self.num_classes = int(num_classes)
        self.ipc = int(ipc)
        self.channel = int(x_real.shape[1])
        self.im_size = (int(x_real.shape[2]), int(x_real.shape[3]))
        self.x_real = _resident(x_real, self.device)
        y_np = y_real.cpu().numpy()
        self.y_real = torch.as_tensor(y_np, dtype=torch.long)
        self.class_idx = [np.flatnonzero(y_np == c) for c in range(self.num_classes)]
        self.bf16 = native_bf16(self.device) if self.cfg.bf16 is None else self.cfg.bf16
        if self.cfg.mode != "auto":
            self.mode = self.cfg.mode
        else:  # a resumed run keeps its loop
            self.mode = self._saved_mode or default_mode(
                self.device, self.cfg.pool_size, self.cfg.real_per_class,
                self.cfg.pool_train_steps, self.cfg.pool_order)
        if self._net_seeds is not None:  # restored from a checkpoint
            self.pool_size = len(self._net_seeds)
            self.real_per_class = int(self._saved_real or self.cfg.real_per_class or DEFAULT_REAL)
        else:
            self.pool_size, self.real_per_class = default_pool(
                self.device, self.cfg.iterations, self.cfg.pool_size, self.cfg.real_per_class)
        cl = self.cfg.channels_last
        self.channels_last = (self.device.type == "cuda" or bool(self.cfg.compile)
                              if cl is None else cl)
        if self.cfg.compile:
            # Two code objects, two compile caches: the synthetic batch has one fixed
            # shape (static is fastest); real chunks vary in size (a class's last chunk).
            self._compiled = {
                "syn": torch.compile(_embed_syn, dynamic=False),
                "real": torch.compile(_embed_real, dynamic=None),
            }
        # Once per run: a piece size that changed between iterations would recompile.
        self.syn_chunk = self.cfg.syn_chunk or default_syn_chunk(
            self.device, self._seeded_net(0), self.bf16)
        self._seed = int(seed)
        if self.mode == "fast":
            self._build_pool(progress)

    def _entry(self, p: int) -> tuple[int, np.ndarray, np.random.Generator]:
        """What draw ``p`` takes: its network's seed, its per-class DSA seeds, and the
        generator, now positioned, that orders each class's real images.

        Pool entry ``p`` and the plain loop's iteration ``p`` are the same draw, from a
        generator of their own, so an unreused pool of the plain loop's real batch size
        computes what the plain loop computes."""
        rng = np.random.default_rng([self._seed, 0xD1A, int(p)])
        net_seed = int(rng.integers(0, 2**31 - 1))
        dsa_seeds = rng.integers(0, 100_000, size=self.num_classes)
        return net_seed, dsa_seeds, rng

    def _real_means(self, net: ConvNet, dsa_seeds: np.ndarray, rng: np.random.Generator,
                    n_real: int) -> Tensor:
        """Per-class mean embeddings ``(K, F)`` of ``n_real`` real images per class (all
        of a smaller class), drawn without replacement as the reference does, each class
        under its own DSA transform."""
        per_class = []
        with torch.no_grad():
            for c in range(self.num_classes):
                idx = self.class_idx[c]
                take = rng.permutation(idx)[: min(n_real, idx.size)]
                total: Tensor | None = None
                for start in range(0, take.size, self.cfg.embed_chunk):
                    xb = self._augment(self._gather(take[start : start + self.cfg.embed_chunk]),
                                       int(dsa_seeds[c]))
                    s = self._embed(net, xb, kind="real").double().sum(0)
                    total = s if total is None else total + s
                assert total is not None
                per_class.append((total / take.size).float())
        return torch.stack(per_class)

    def _build_pool(self, progress: bool = False) -> None:
        cfg = self.cfg
        if self._net_seeds is None:
            draws = [self._entry(p)[:2] for p in range(self.pool_size)]
            self._net_seeds = np.array([d[0] for d in draws], dtype=np.int64)
            self._pool_seeds = np.stack([d[1] for d in draws])
        if cfg.pool_train_steps:
            self._nets = [self._seeded_net(int(s)) for s in self._net_seeds]
            if self._net_states is None:
                self._net_states = self._train_pool(self._seed, progress)
            for net, state in zip(self._nets, self._net_states, strict=True):
                net.load_state_dict(state)
        else:
            first = self._seeded_net(int(self._net_seeds[0]))
            size = sum(t.numel() * t.element_size() for t in first.state_dict().values())
            if size * self.pool_size <= self._resident_bytes():
                self._nets = [first] + [self._seeded_net(int(s)) for s in self._net_seeds[1:]]
            else:
                self._nets = []
        if self._pool_means is not None:  # restored from a checkpoint
            self._pool_means = self._pool_means.to(self.device)
            return
        assert self._pool_seeds is not None
        from tqdm import tqdm

        # On a CPU a large pool takes minutes (pool_size x real_per_class x classes
        # forward passes) before the first iteration; say so rather than sit silent.
        bar = tqdm(
            range(self.pool_size),
            desc=f"DM pool: embedding {self.real_per_class} real/class",
            unit="net",
            file=sys.stderr,
            disable=not progress,
            dynamic_ncols=True,
        )
        means = []
        if self._compiled:
            bar.set_postfix_str("compiling on the first network", refresh=True)
        with contextlib.closing(bar):
            for p in bar:
                self._settle_layout()
                _net_seed, _dsa, rng = self._entry(p)
                means.append(self._real_means(self._net(p), self._pool_seeds[p], rng,
                                              self.real_per_class))
                if p == 0 and self._compiled:
                    bar.set_postfix_str("", refresh=False)
        self._pool_means = torch.stack(means)

    def _resident_bytes(self) -> int:
        if self.device.type == "cuda":
            return int(available_memory(self.device) or 0) // 4
        return CPU_RESIDENT_NET_BYTES

    def _net(self, p: int) -> ConvNet:
        """Pool network ``p``: kept, or rebuilt from its seed (the same weights)."""
        if self._nets:
            return self._nets[p]
        assert self._net_seeds is not None
        return self._seeded_net(int(self._net_seeds[p]))

    def _train_pool(self, seed: int, progress: bool) -> list[dict[str, Tensor]]:
        """Weights of each pool network after its share of training on real batches.

        Network p trains for ``round(p * S / (P - 1))`` steps from its own seeded
        initialization, on batches drawn from its own generator, so the result does not
        depend on the order networks are trained in."""
        from tqdm import tqdm

        cfg = self.cfg
        n = len(self._nets)
        steps = [round(p * cfg.pool_train_steps / max(n - 1, 1)) for p in range(n)]
        bar = tqdm(
            total=sum(steps),
            desc="DM pool: training networks",
            unit="step",
            file=sys.stderr,
            disable=not progress,
            dynamic_ncols=True,
        )
        states = []
        n_real = self.y_real.numel()
        with contextlib.closing(bar):
            for p, net in enumerate(self._nets):
                rng = np.random.default_rng([int(seed), 0x7A1, p])
                params = list(net.parameters())
                for q in params:
                    q.requires_grad_(True)
                opt = torch.optim.SGD(params, lr=cfg.pool_train_lr, momentum=0.9,
                                      weight_decay=5e-4)
                for _ in range(steps[p]):
                    idx = rng.choice(n_real, size=min(cfg.pool_train_batch, n_real),
                                     replace=False)
                    xb = self._gather(idx)
                    yb = to_device(self.y_real[torch.from_numpy(idx)], self.device)
                    with self._autocast():
                        logits = net(xb).float()
                    loss = torch.nn.functional.cross_entropy(logits, yb)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    bar.update(1)
                for q in params:
                    q.requires_grad_(False)
                states.append({k: v.detach().cpu().clone() for k, v in net.state_dict().items()})
        return states

    # ------------------------------------------------------------------ loss
    def loss(self, syn: Tensor, labels: Tensor, rng: np.random.Generator) -> Tensor:
        self._settle_layout()
        if self.mode == "fast":
            return self._loss_fast(syn, rng)
        return self._loss_plain(syn, rng)

    def _loss_fast(self, syn: Tensor, rng: np.random.Generator) -> Tensor:
        return self.entry_loss(syn, self._draw(rng))

    def entry_loss(self, syn: Tensor, p: int) -> Tensor:
        """The DM loss of ``syn`` (class-major, ``ipc`` per class) under pool entry ``p``."""
        assert self._pool_means is not None and self._pool_seeds is not None
        return self._match(syn, self._net(p), self._pool_seeds[p], self._pool_means[p])

    def _match(self, syn: Tensor, net: ConvNet, dsa_seeds: np.ndarray, real_means: Tensor
               ) -> Tensor:
        """``sum_c || real_means[c] - mean emb(syn_c) ||^2``, each class's synthetic
        images under that class's transform (the one its real mean was taken under)."""
        k, ipc = self.num_classes, self.ipc
        chunks = syn.reshape(k, ipc, *syn.shape[1:])
        aug = torch.cat([self._augment(chunks[c], int(dsa_seeds[c])) for c in range(k)])
        if aug.shape[0] <= self.syn_chunk:
            syn_means = self._embed(net, aug).reshape(k, ipc, -1).mean(dim=1)
        else:
            syn_means = self._embed_in_pieces(net, aug) / ipc
        return ((real_means - syn_means) ** 2).sum()

    def _embed_in_pieces(self, net: ConvNet, aug: Tensor) -> Tensor:
        """Per-class sums ``(K, F)`` of the embeddings of ``aug`` (class-major, ``ipc``
        per class), embedded in pieces of at most ``syn_chunk`` images whose activations
        are recomputed in the backward pass, so only one piece's are kept at a time."""
        n = aug.shape[0]
        pieces = -(-n // self.syn_chunk)
        # Even pieces (n // pieces or one more images): at most two shapes to compile.
        bounds = [i * n // pieces for i in range(pieces + 1)]
        rows = torch.arange(n, device=aug.device) // self.ipc
        sums = torch.zeros(self.num_classes, net.num_features, device=aug.device)
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            emb = self._embed(net, aug[start:stop], checkpointed=True)
            sums = sums.index_add(0, rows[start:stop], emb)
        return sums

    def _draw(self, rng: np.random.Generator) -> int:
        """Index of the pool entry this iteration uses."""
        n = self.pool_size
        if self.cfg.pool_order == "random":
            return int(rng.integers(n))
        if self._order is None or self._cursor >= len(self._order):
            # The entries of an untrained pool are independent draws already, so the
            # first pass takes them in index order: iteration t then draws entry t, the
            # plain loop's iteration-t draw. A trained pool is ordered by training
            # length, so every pass of it is shuffled.
            first = self._order is None and not self.cfg.pool_train_steps
            self._order = np.arange(n) if first else rng.permutation(n)
            self._cursor = 0
        p = int(self._order[self._cursor])
        self._cursor += 1
        return p

    def _loss_plain(self, syn: Tensor, rng: np.random.Generator) -> Tensor:
        # The reference loop: a fresh network, transforms and real batch every iteration,
        # made here by the draw a pool entry would be made by (see _entry).
        net_seed, dsa_seeds, draw = self._entry(self._step)
        self._step += 1
        net = self._seeded_net(net_seed)
        real_means = self._real_means(net, dsa_seeds, draw, self.cfg.batch_real)
        return self._match(syn, net, dsa_seeds, real_means)

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        if self.mode != "fast" or self._pool_means is None:
            return {"cfg": {**asdict(self.cfg), "mode": self.mode}, "step": self._step}
        state = {
            # What was built, not the request: None resolves per device and run length.
            "cfg": {**asdict(self.cfg), "mode": self.mode, "pool_size": self.pool_size,
                    "real_per_class": self.real_per_class},
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
        self._step = int(state.get("step", 0))
        saved, mine = state.get("cfg", {}), asdict(self.cfg)
        if mine["mode"] == "auto" and saved.get("mode") in ("fast", "plain"):
            mine["mode"] = self._saved_mode = saved["mode"]
        # What was not asked for, the saved pool's will do (before real_per_class could
        # be None, it was always saved as a number).
        if mine["pool_size"] is None:
            mine["pool_size"] = saved.get("pool_size")
        if mine["real_per_class"] is None:
            mine["real_per_class"] = saved.get("real_per_class")
        if _pool_key(saved) != _pool_key(mine):
            return  # different settings: recompute rather than reuse a stale pool
        if "pool_means" in state:
            self._pool_means = state["pool_means"]
            self._pool_seeds = np.asarray(state["pool_seeds"])
            self._net_seeds = np.asarray(state["net_seeds"])
            self._net_states = state.get("net_states")
            self._saved_real = saved.get("real_per_class")
            order = state.get("pool_order")  # absent: from before shuffled passes
            if order is not None and self.cfg.pool_order == "shuffle":
                self._order = np.asarray(order["order"])
                self._cursor = int(order["cursor"])


def _pool_key(cfg: dict[str, Any]) -> dict[str, Any]:
    # Execution-only switches do not change what the pool holds. A knob the checkpoint
    # predates had its default then, so its pool stays valid.
    full = {**asdict(DMConfig()), **cfg}
    skip = {"compile", "embed_chunk", "syn_chunk", "batch_real", "pool_order", "iterations"}
    if not full["pool_train_steps"]:
        skip |= {"pool_train_lr", "pool_train_batch"}  # nothing was trained with them
    return {k: v for k, v in full.items() if k not in skip}


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


def default_syn_chunk(device: torch.device, net: ConvNet, bf16: bool) -> int:
    """Synthetic images per embedding call whose kept activations fit
    SYN_ACTIVATION_BYTES on a CPU, a quarter of the free memory on a GPU."""
    if device.type == "cuda":
        budget = int(available_memory(device) or 0) // 4
    else:
        budget = SYN_ACTIVATION_BYTES
    # What backward keeps is about every layer's output (2.05 MiB per 32x32 image at width
    # 128 measured, 2.1 counted). bf16 autocast halves it on a CPU; a GPU's autocast runs
    # the norms in fp32, so there it is counted at 4 bytes.
    values = 0
    x = torch.zeros(1, net.channel, *net.im_size, device=next(net.parameters()).device)
    with torch.no_grad():
        for layer in net.features:
            x = layer(x)
            values += x.numel()
    per_image = values * (2 if bf16 and device.type == "cpu" else 4)
    return max(1, budget // per_image)


def default_mode(
    device: torch.device | str,
    pool_size: int | None = None,
    real_per_class: int | None = None,
    pool_train_steps: int = 0,
    pool_order: str = "shuffle",
) -> str:
    """The DM loop ``mode="auto"`` runs: ``"plain"`` on a GPU unless a pool setting asks
    for the fast loop, ``"fast"`` elsewhere.

    On a GPU the default pool would reuse nothing and hold the plain loop's real batches,
    which computes exactly what the plain loop computes (see the module docstring) with
    the same real embeddings, only up front, its means held in memory and checkpoints
    (one entry per iteration, classes x 2048 floats each). The plain loop does the same
    work without that wait or memory. On a CPU the real embeddings are the cost, so the
    fast loop with a smaller pool (``default_pool``) is the default there."""
    if torch.device(device).type != "cuda":
        return "fast"
    asks_pool = (pool_size is not None or real_per_class is not None
                 or pool_train_steps > 0 or pool_order != "shuffle")
    return "fast" if asks_pool else "plain"


def default_pool(
    device: torch.device | str,
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
    """
    kind = torch.device(device).type
    cap = MAX_DEFAULT_POOL.get(kind, MAX_DEFAULT_POOL["cpu"])
    n = DEFAULT_ITERATIONS if iterations is None else max(int(iterations), 1)
    per_entry = 1 if kind == "cuda" else CPU_ITERATIONS_PER_ENTRY
    pool = min(-(-n // per_entry), cap) if pool_size is None else int(pool_size)
    return pool, DEFAULT_REAL if real_per_class is None else int(real_per_class)

"""Fast DM's network pool: its entries, their real means, training, and the draw order.

A mixin of :class:`~quadd_train.objectives.dm.objective.DMObjective`: it uses the
objective's networks, augmentation and embedding, and keeps its state on the objective
(checkpointed by ``DMObjective.state_dict``).
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ...distributed import context, gather_objects, gather_rows
from ...nn.convnet import ConvNet
from ...runtime import available_memory, to_device

if TYPE_CHECKING:
    from .options import DMOptions

__all__ = ["CPU_RESIDENT_NET_BYTES", "PoolMixin"]

# Pool networks stay in memory up to this many bytes of weights on a CPU (on a GPU: a
# quarter of its free memory); a larger pool rebuilds each drawn network from its seed,
# which costs about 2 ms on a CPU (a CIFAR-10 iteration at IPC 16 takes 100s of ms).
CPU_RESIDENT_NET_BYTES = 1 << 30


class PoolMixin:
    """Pool state and its construction; see the package docstring."""

    options: DMOptions
    device: torch.device
    num_classes: int
    class_idx: list[np.ndarray]
    y_real: Tensor
    pool_size: int
    real_per_class: int
    _seed: int
    _compiled: dict[str, Any]
    _pool_means: Tensor | None
    _pool_seeds: np.ndarray | None
    _net_seeds: np.ndarray | None
    _nets: list[ConvNet]
    _net_states: list[dict[str, Tensor]] | None
    _order: np.ndarray | None
    _cursor: int

    # Provided by the objective.
    def _seeded_net(self, seed: int) -> ConvNet: ...  # pragma: no cover
    def _augment(self, x: Tensor, seed: int) -> Tensor: ...  # pragma: no cover
    def _gather(self, idx: np.ndarray) -> Tensor: ...  # pragma: no cover
    def _embed(self, net: ConvNet, x: Tensor, kind: str = "syn",
               checkpointed: bool = False) -> Tensor: ...  # pragma: no cover
    def _settle_layout(self) -> None: ...  # pragma: no cover
    def _autocast(self) -> contextlib.AbstractContextManager[Any]: ...  # pragma: no cover

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
                    n_real: int, classes: range | None = None) -> Tensor:
        """Per-class mean embeddings ``(K, F)`` of ``n_real`` real images per class (all
        of a smaller class), drawn without replacement as the reference does, each class
        under its own DSA transform. ``classes``: only these rows (every class's images
        are still drawn, so each class takes the images it takes in a whole-set call)."""
        per_class = []
        chunk = self.options.embed_chunk
        wanted = range(self.num_classes) if classes is None else classes
        with torch.no_grad():
            for c in range(self.num_classes):
                idx = self.class_idx[c]
                take = rng.permutation(idx)[: min(n_real, idx.size)]
                if c not in wanted:
                    continue
                total: Tensor | None = None
                for start in range(0, take.size, chunk):
                    xb = self._augment(self._gather(take[start : start + chunk]),
                                       int(dsa_seeds[c]))
                    s = self._embed(net, xb, kind="real").double().sum(0)
                    total = s if total is None else total + s
                assert total is not None
                per_class.append((total / take.size).float())
        if not per_class:
            return torch.zeros(0, net.num_features, device=self.device)
        return torch.stack(per_class)

    def _build_pool(self, progress: bool = False) -> None:
        # A distributed run's ranks each build a block of the networks (Context.share)
        # and gather the rest: the same numbers, computed once each.
        ctx = context()
        mine = ctx.share(self.pool_size)
        if self._net_seeds is None:
            draws = [self._entry(p)[:2] for p in range(self.pool_size)]
            self._net_seeds = np.array([d[0] for d in draws], dtype=np.int64)
            self._pool_seeds = np.stack([d[1] for d in draws])
        if self.options.pool_train_steps:
            self._nets = [self._seeded_net(int(s)) for s in self._net_seeds]
            if self._net_states is None:
                self._net_states = self._train_pool(self._seed, progress)
                if ctx.active:
                    # Each network trained on one rank; every rank takes them all.
                    self._net_states = [s for part in gather_objects(self._net_states)
                                        for s in part]
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
            mine,
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
                if p == mine.start and self._compiled:
                    bar.set_postfix_str("", refresh=False)
        k = self.num_classes
        local = torch.stack(means) if means else torch.zeros(0, k, 0, device=self.device)
        if ctx.active:
            # The feature width from a rank that embedded something (a rank may have none).
            width = max(gather_objects(int(local.shape[-1]) if means else 0))
            if not means:
                local = torch.zeros(0, k, width, device=self.device)
            counts = [len(ctx.share(self.pool_size, r)) for r in range(ctx.world)]
            local = gather_rows(local, counts)
        self._pool_means = local

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
        """Weights of each pool network (of this rank's block in a distributed run)
        after its share of training on real batches.

        Network p trains for ``round(p * S / (P - 1))`` steps from its own seeded
        initialization, on batches drawn from its own generator, so the result does not
        depend on the order networks are trained in."""
        from tqdm import tqdm

        opts = self.options
        n = len(self._nets)
        steps = [round(p * opts.pool_train_steps / max(n - 1, 1)) for p in range(n)]
        mine = context().share(n)  # a distributed run gathers the others' (_build_pool)
        bar = tqdm(
            total=sum(steps[p] for p in mine),
            desc="DM pool: training networks",
            unit="step",
            file=sys.stderr,
            disable=not progress,
            dynamic_ncols=True,
        )
        states = []
        n_real = self.y_real.numel()
        with contextlib.closing(bar):
            for p in mine:
                net = self._nets[p]
                rng = np.random.default_rng([int(seed), 0x7A1, p])
                params = list(net.parameters())
                for q in params:
                    q.requires_grad_(True)
                opt = torch.optim.SGD(params, lr=opts.pool_train_lr, momentum=0.9,
                                      weight_decay=5e-4)
                for _ in range(steps[p]):
                    idx = rng.choice(n_real, size=min(opts.pool_train_batch, n_real),
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

    def _draw(self, rng: np.random.Generator) -> int:
        """Index of the pool entry this iteration uses."""
        n = self.pool_size
        if self.options.pool_order == "random":
            return int(rng.integers(n))
        if self._order is None or self._cursor >= len(self._order):
            # The entries of an untrained pool are independent draws already, so the
            # first pass takes them in index order: iteration t then draws entry t, the
            # plain loop's iteration-t draw. A trained pool is ordered by training
            # length, so every pass of it is shuffled.
            first = self._order is None and not self.options.pool_train_steps
            self._order = np.arange(n) if first else rng.permutation(n)
            self._cursor = 0
        p = int(self._order[self._cursor])
        self._cursor += 1
        return p

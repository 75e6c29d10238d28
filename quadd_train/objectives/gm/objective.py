"""The GM objective: the network it matches on, its training between steps, the loss,
and the checkpointed state.

See the package docstring for the method; the distance lives in :mod:`.match`, the
options and loop lengths in :mod:`.options`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...nn.augment import diff_augment
from ...nn.models import MODELS, build_model, default_model
from ...runtime import Runtime, as_runtime, to_device
from .. import Objective, register_objective
from .match import gradient_distance
from .options import GMOptions, default_loops

__all__ = ["BN_REAL_PER_CLASS", "GMObjective"]

# Real samples per class that set a batch-normalized network's statistics before each
# step (the reference's BNSizePC): a class's few synthetic samples cannot.
BN_REAL_PER_CLASS = 16


@register_objective("gm")
class GMObjective(Objective):
    """Per-class gradient matching with DSA; see the package docstring."""

    Options = GMOptions
    options: GMOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.options.check()
        if self.options.model is not None and self.options.model not in MODELS:
            raise ValueError(f"unknown model {self.options.model!r}; expected one of "
                             f"{', '.join(MODELS)}")
        # Resolved in prepare from the samples per class, or adopted from a checkpoint.
        self.outer_loop: int | None = self.options.outer_loop
        self.inner_loop: int | None = self.options.inner_loop
        self.device = torch.device("cpu")
        self.model = self.options.model or ""
        self._net: nn.Module | None = None
        self._net_opt: torch.optim.SGD | None = None
        self._step = 0  # steps taken on the current network (checkpointed)
        self._nets_built = 0
        self._saved_net: dict[str, Any] | None = None  # a checkpoint's network, until prepare

    # ------------------------------------------------------------------ set-up
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
        """Keep the real set per class, resolve the loop lengths from ``ipc`` (a
        restored state keeps its own) and rebuild a checkpoint's network. ``runtime`` may
        be a device: its default settings then."""
        rt = as_runtime(runtime)
        self.device = rt.device
        self.num_classes = int(num_classes)
        self.ipc = int(ipc)
        self.sample_shape = tuple(int(s) for s in x_real.shape[1:])
        self.model = self.options.model or default_model(self.sample_shape)
        # On a GPU the real set stays there: every step gathers a batch of each class.
        self.x_real = x_real.to(self.device) if self.device.type == "cuda" else x_real
        y_np = y_real.cpu().numpy()
        self.class_idx = [np.flatnonzero(y_np == c) for c in range(self.num_classes)]
        outer, inner = default_loops(self.ipc)
        self.outer_loop = self.outer_loop or outer
        self.inner_loop = inner if self.inner_loop is None else self.inner_loop
        saved, self._saved_net = self._saved_net, None
        if saved is not None and self._step > 0:
            self._net, self._net_opt = self._build_net(0)
            self._net.load_state_dict(saved["net"])
            self._net_opt.load_state_dict(saved["net_opt"])

    def _build_net(self, seed: int) -> tuple[nn.Module, torch.optim.SGD]:
        """A fresh network from ``seed`` (every global random stream left as it was) and
        the SGD that trains it between steps."""
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(int(seed))
            net = build_model(self.model, self.sample_shape, self.num_classes,
                              width=self.options.width, depth=self.options.depth)
        net = net.to(self.device).train()
        opt = torch.optim.SGD(net.parameters(), lr=self.options.lr_net,
                              momentum=self.options.net_momentum)
        return net, opt

    # ------------------------------------------------------------------ loss
    def loss(self, syn: Tensor, labels: Tensor, rng: np.random.Generator) -> Tensor:
        """One step of the reference's outer loop: a fresh network at its first step,
        otherwise the network after ``inner_loop`` epochs on ``syn`` (the synthetic set
        the previous step left), then the per-class gradient distance."""
        assert self.outer_loop is not None and self.inner_loop is not None
        if self._step == 0 or self._net is None:
            self._net, self._net_opt = self._build_net(int(rng.integers(2**62)))
            self._nets_built += 1
        else:
            self._train_net(syn.detach(), labels, rng)
        net = self._net
        for p in net.parameters():
            p.grad = None  # the previous loss's backward reached the network as well
        self._freeze_batch_norm(net, rng)
        total = self.match(net, syn, rng)
        self._step = (self._step + 1) % self.outer_loop
        return total * self.options.loss_scale

    def match(self, net: nn.Module, syn: Tensor, rng: np.random.Generator) -> Tensor:
        """``sum_c distance(grad CE(net(real_c)), grad CE(net(syn_c)))`` over the classes,
        each class's real batch and synthetic samples under one DSA transform (images)."""
        params = [p for p in net.parameters() if p.requires_grad]
        k = self.num_classes
        chunks = syn.reshape(k, -1, *syn.shape[1:])
        total = syn.new_zeros(())
        for c in range(k):
            idx = self.class_idx[c]
            take = rng.permutation(idx)[: self.options.batch_real]
            real = to_device(self.x_real[torch.from_numpy(take)], self.device)
            fake = chunks[c]
            if self._augments(fake):
                seed = int(rng.integers(2**31))
                real = diff_augment(real, self.options.dsa_strategy, seed=seed)
                fake = diff_augment(fake, self.options.dsa_strategy, seed=seed)
            target = torch.full((real.shape[0],), c, dtype=torch.long, device=self.device)
            g_real = torch.autograd.grad(F.cross_entropy(net(real), target), params)
            g_real = [g.detach() for g in g_real]
            target = torch.full((fake.shape[0],), c, dtype=torch.long, device=self.device)
            g_syn = torch.autograd.grad(F.cross_entropy(net(fake), target), params,
                                        create_graph=True)
            total = total + gradient_distance(g_real, g_syn)
        return total

    def _augments(self, x: Tensor) -> bool:
        # DSA is defined on images (N, C, H, W); feature vectors are left as they are.
        return self.options.dsa and x.dim() == 4

    def _train_net(self, syn: Tensor, labels: Tensor, rng: np.random.Generator) -> None:
        """``inner_loop`` epochs of SGD on the synthetic set, shuffled by ``rng``, each
        batch under per-sample DSA (drawn from the global torch RNG) as the reference."""
        assert self._net is not None and self._net_opt is not None
        net, opt = self._net, self._net_opt
        net.train()
        n, bt = syn.shape[0], self.options.batch_train
        for _ in range(int(self.inner_loop or 0)):
            order = torch.from_numpy(rng.permutation(n)).to(syn.device)
            for start in range(0, n, bt):
                pick = order[start:start + bt]
                x = syn[pick]
                if self._augments(x):
                    x = diff_augment(x, self.options.dsa_strategy, seed=None)
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(net(x), labels[pick]).backward()
                opt.step()

    def _freeze_batch_norm(self, net: nn.Module, rng: np.random.Generator) -> None:
        """A batch-normalized network takes its statistics from a real batch of every
        class, then holds them for the step (the reference's BatchNorm handling)."""
        norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        take = np.concatenate([rng.permutation(idx)[:BN_REAL_PER_CLASS]
                               for idx in self.class_idx])
        net.train()
        with torch.no_grad():
            net(to_device(self.x_real[torch.from_numpy(take)], self.device))
        for m in norms:
            m.eval()

    # ------------------------------------------------------------------ what ran
    def fingerprint(self) -> dict[str, Any]:
        """Every option, with the loop lengths as resolved (or restored)."""
        return {**asdict(self.options), "outer_loop": self.outer_loop,
                "inner_loop": self.inner_loop}

    def report(self) -> dict[str, Any]:
        return {"gm_outer_loop": self.outer_loop, "gm_inner_loop": self.inner_loop,
                "gm_model": self.model, "gm_networks": self._nets_built}

    def summary(self, prepare_seconds: float) -> str:
        return (f"GM on {self.model}, {self.outer_loop} steps per network, "
                f"{self.inner_loop} epochs between")

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"outer_loop": self.outer_loop, "inner_loop": self.inner_loop,
                                 "step": self._step, "nets_built": self._nets_built}
        if self._step > 0 and self._net is not None and self._net_opt is not None:
            # Mid-network: the next step trains and matches on this very network.
            state["net"] = {k: v.detach().cpu().clone()
                            for k, v in self._net.state_dict().items()}
            state["net_opt"] = _cpu(self._net_opt.state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Adopt the saved loop lengths (where not given) and the network mid-way."""
        if self.options.outer_loop is None:
            self.outer_loop = state.get("outer_loop")
        if self.options.inner_loop is None:
            self.inner_loop = state.get("inner_loop")
        self._step = int(state.get("step", 0))
        self._nets_built = int(state.get("nets_built", 0))
        if "net" in state:
            self._saved_net = {"net": state["net"], "net_opt": state["net_opt"]}


def _cpu(value: Any) -> Any:
    """``value`` with every tensor moved to the CPU (an optimizer's state, for a
    checkpoint)."""
    if isinstance(value, Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: _cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_cpu(v) for v in value)
    return value

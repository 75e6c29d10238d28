"""Distillation objectives (the "objective" piece of QuADD).

QuADD wraps any dataset-distillation method: the synthetic set and the quantizer are
method-agnostic, and a method only has to turn the *quantized* synthetic batch into a
differentiable loss. New methods (gradient matching, trajectory matching) subclass
:class:`Objective` and register themselves in :data:`OBJECTIVES`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["OBJECTIVES", "Objective", "make_objective", "register_objective"]


class Objective(ABC):
    """A distillation loss over the quantized synthetic set.

    Life cycle: ``prepare`` once (precompute anything that does not depend on the
    synthetic samples), then ``loss`` every iteration. All randomness an objective uses
    per iteration comes from the ``rng`` it is handed, the global torch RNG (both
    checkpointed by the distiller) or state the objective saves in its own
    ``state_dict`` (DM's draw counter), so a resumed run continues the same random stream.
    """

    name: str = "objective"

    @abstractmethod
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
        """Receive the normalized real training set (``(N, C, H, W)``, labels).

        ``progress``: show a progress bar on stderr for precomputation long enough to
        need one."""

    @abstractmethod
    def loss(self, syn: Tensor, labels: Tensor, rng: np.random.Generator) -> Tensor:
        """Scalar loss for the quantized synthetic batch ``syn`` (class-major)."""

    def state_dict(self) -> dict[str, Any]:
        """Precomputed state worth checkpointing (saves recomputation on resume)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore :meth:`state_dict` output. Called *before* :meth:`prepare` on resume,
        so ``prepare`` can skip precomputation that was restored."""


OBJECTIVES: dict[str, Callable[..., Objective]] = {}


def register_objective(name: str, factory: Callable[..., Objective]) -> None:
    OBJECTIVES[name] = factory


def make_objective(name: str, **kwargs: Any) -> Objective:
    """Instantiate a registered objective by name (``"dm"``)."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown method {name!r}; available: {sorted(OBJECTIVES)}")
    return OBJECTIVES[name](**kwargs)


def _register_builtin() -> None:
    from .dm import DMObjective

    register_objective("dm", DMObjective)


_register_builtin()

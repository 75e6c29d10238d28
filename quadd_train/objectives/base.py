"""The :class:`Objective` base class; its contract is the docstring of
:mod:`quadd_train.objectives`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .options import build_options

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor

    from ..runtime import Runtime

__all__ = ["Objective"]


class Objective(ABC):
    """A distillation loss over the quantized synthetic set (see the module docstring)."""

    name: ClassVar[str] = "objective"
    #: The real data's name (a run sets it to the dataset's before ``prepare``), for
    #: messages and cache listings; "" when not known.
    data_name: str = ""

    @dataclass
    class Options:
        """No options."""

    def __init__(self, **options: Any) -> None:
        self.options = build_options(type(self).Options, options, self.name)

    @abstractmethod
    def prepare(
        self,
        x_real: Tensor,
        y_real: Tensor,
        num_classes: int,
        ipc: int,
        runtime: Runtime,
        seed: int,
        progress: bool = False,
        iterations: int | None = None,
    ) -> None:
        """Receive the normalized real training set and the run's settings.

        ``progress``: show a progress bar on stderr for precomputation long enough to
        need one."""

    @abstractmethod
    def loss(self, syn: Tensor, labels: Tensor, rng: np.random.Generator) -> Tensor:
        """Scalar loss for the quantized synthetic batch ``syn`` (class-major)."""

    def parameters(self) -> list[Any]:
        """Learnables the objective owns (tensors or parameter groups)."""
        return []

    def fingerprint(self) -> dict[str, Any]:
        """Settings a checkpoint must match: by default every option."""
        from dataclasses import asdict

        return asdict(self.options)

    def state_dict(self) -> dict[str, Any]:
        """Precomputed state worth checkpointing (saves recomputation on resume)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore :meth:`state_dict` output. Called *before* :meth:`prepare` on resume."""

    def report(self) -> dict[str, Any]:
        """What ran, as JSON-safe values for the run's result."""
        return {}

    def summary(self, prepare_seconds: float) -> str:
        """A short phrase on what ran for the command's summary line ("": none)."""
        return ""

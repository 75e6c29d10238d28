"""The Parameterization base class and its registry."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from quadd_train.registry import Registry, check_options

__all__ = ["PARAMETERIZATION_REGISTRY", "Parameterization", "register_parameterization"]


class Parameterization(nn.Module):
    """The learnable stored tensor (``data``) and how it becomes the networks' samples.

    A subclass is built from the stored tensor and its own keyword options
    (``cls(stored, **options)``), provides :meth:`decode` and :meth:`file_fields`, and
    :meth:`init_stored`, the stored tensor that best starts from given real samples.
    Derived tensors it keeps (interpolation taps) are non-persistent buffers: the state
    is the stored tensor.
    """

    name = "base"

    def __init__(self, stored: Tensor) -> None:
        super().__init__()
        self.data = nn.Parameter(stored.detach().float().clone())

    @classmethod
    def init_stored(cls, x: Tensor, **options: Any) -> Tensor:
        """The stored tensor to start from, given real samples ``x`` as the networks see
        them (normalized, full size, one per synthetic sample)."""
        raise NotImplementedError

    @classmethod
    def from_real(cls, x: Tensor, **options: Any) -> Parameterization:
        """An instance whose stored tensor starts from real samples ``x``."""
        check_options("parameterization", cls.name, cls.__init__, options, skip=2)
        return cls(cls.init_stored(x, **options), **options)

    def stored(self) -> Tensor:
        """The learnable tensor that is quantized and written to the file."""
        return self.data

    def decode(self, stored: Tensor) -> Tensor:
        """Samples as the networks see them, from ``stored`` (this tensor, or its quantized
        version), exactly as a reader decodes the file; differentiable."""
        raise NotImplementedError

    def file_fields(self) -> dict[str, Any]:
        """The codec's header fields this parameterization needs: ``upsample`` and
        ``upsample_filter`` (the writer's keyword arguments of the same names)."""
        raise NotImplementedError

    def forward(self) -> Tensor:
        return self.decode(self.data)


#: Parameterizations by name: the built-in ones, then those of the
#: ``quadd.parameterizations`` entry points.
PARAMETERIZATION_REGISTRY: Registry[type[Parameterization]] = Registry(
    "parameterization", "quadd.parameterizations", Parameterization)
register_parameterization = PARAMETERIZATION_REGISTRY.register

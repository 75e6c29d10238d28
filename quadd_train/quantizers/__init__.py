"""Differentiable quantizers for synthetic samples: the trainer's ``Quantizer`` plug point.

A quantizer turns the learnable samples into what the ``.qdd`` file will hold, inside the
training loop, so the objective sees the written values and its gradient reaches both
the samples and the quantizer's own learnables.

The contract
------------
A quantizer is a :class:`Quantizer` (a ``torch.nn.Module``) built as
``cls(bits, group, num_samples, num_channels, **options)`` through :meth:`Quantizer.build`:

``bits``
    Bits per code, 1..8 (the codec's range); the table has ``L = 2**bits`` levels.
``group``
    Which values share one level table, the codec's conventions (:data:`GROUPS`):
    ``"tensor"`` -> 1 table, ``"channel"`` -> one per channel, ``"sample-channel"`` ->
    row ``k*C + c`` for channel ``c`` of sample ``k``. ``num_groups(group, N, C)`` is ``G``.
``init_from(x)``
    Fit the levels to samples ``x`` of shape ``(N, C, ...)`` (the stored tensor) before
    training, and again when quantization switches on after a warm-up.
``forward(x)``
    The differentiable quantize-dequantize of ``x``: the value is exactly
    ``levels[g, codes]`` (float32), the gradient a surrogate (straight-through for the
    samples). It must not change the samples' shape.
``export(x=None) -> (codes, levels)``
    Exactly what the codec writes: ``codes`` uint8 shaped like ``x``, ``levels`` float32
    ``(G, L)`` with ascending rows, such that ``levels[g, codes]`` equals the tensor
    ``forward`` returned bit for bit. With ``x`` the current parameters quantize it;
    without it, the last forward pass is exported. NaN samples are refused.
    (``none``, the float baseline, returns ``(float32 samples, None)``: ``bits = 32``.)
learnables
    Whatever ``parameters()`` yields is trained by :func:`quantizer_optimizer`; buffers
    and parameters are saved in checkpoints through ``state_dict``.

The base class does the nearest-level codes, the gather and the export; an
implementation provides ``table()`` (``(G, L)`` float32, rows non-decreasing,
differentiable) and usually ``init_from``. Levels of the form ``offset + scale * grid``
derive from :class:`~.affine.AffineGridQuantizer`, which adds the LSQ/APoT clipping
gradient and a fused path.

Adding one
----------
One file with a registered class, and a test::

    @register_quantizer("mine")
    class MyQuantizer(Quantizer):
        name = "mine"
        def table(self) -> Tensor: ...

A separate package registers it with an entry point in group ``quadd.quantizers``
(``mine = "my_package.quant:MyQuantizer"``); :func:`make_quantizer` finds it by name.

Built in: ``uniform`` (:mod:`.uniform`), ``apot`` (:mod:`.apot`), ``learned``
(:mod:`.learned`), ``none`` (:mod:`.identity`).
"""

from __future__ import annotations

from typing import Any

import torch

from ..registry import PluginError
from .affine import AffineGridQuantizer
from .apot import APoTQuantizer, apot_grid
from .base import GROUPS, QUANTIZER_REGISTRY, Quantizer, num_groups, register_quantizer
from .identity import IdentityQuantizer
from .kernels import nearest_codes
from .learned import LearnedQuantizer, lloyd_max
from .uniform import UniformQuantizer

__all__ = [
    "GROUPS",
    "QUANTIZERS",
    "QUANTIZER_REGISTRY",
    "APoTQuantizer",
    "AffineGridQuantizer",
    "IdentityQuantizer",
    "LearnedQuantizer",
    "PluginError",
    "Quantizer",
    "UniformQuantizer",
    "apot_grid",
    "lloyd_max",
    "make_quantizer",
    "nearest_codes",
    "num_groups",
    "quantizer_names",
    "quantizer_optimizer",
    "register_quantizer",
]

#: The built-in quantizers, in the order the CLI lists them.
QUANTIZERS: tuple[str, ...] = ("uniform", "apot", "learned", "none")


def quantizer_names() -> tuple[str, ...]:
    """Every quantizer name: the built-in ones (:data:`QUANTIZERS`), then the others
    registered or named by an installed plugin's entry point."""
    return (*QUANTIZERS, *(n for n in QUANTIZER_REGISTRY.names() if n not in QUANTIZERS))


def make_quantizer(
    name: str,
    bits: int,
    group: str = "channel",
    num_samples: int = 0,
    num_channels: int = 1,
    **options: Any,
) -> Quantizer:
    """Build the quantizer registered as ``name`` (``uniform``, ``apot``, ``learned``,
    ``none``, or a plugin's).

    ``options`` are the quantizer's own keywords (``soft_round_beta`` for ``uniform``);
    one set to None is left out, so a caller may pass its defaults to every quantizer.
    An option the quantizer does not take is an error that lists the ones it does.
    """
    cls = QUANTIZER_REGISTRY.get(name)
    given = {k: v for k, v in options.items() if v is not None}
    return cls.build(bits, group, num_samples, num_channels, **given)


def quantizer_optimizer(quant: Quantizer, lr: float) -> torch.optim.Optimizer | None:
    """Adam over the quantizer's trainable parameters (None when it has none).

    On a GPU the fused implementation updates every parameter in one kernel; the default
    one launches a dozen tiny kernels per step, a visible share of a fast DM iteration.
    """
    params = [p for p in quant.parameters() if p.requires_grad]
    if not params:
        return None
    fused = all(p.is_cuda for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused or None)

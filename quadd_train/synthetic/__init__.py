"""The learnable synthetic samples: the trainer's ``Parameterization`` plug point.

Samples live in the dataset's *normalized* space (what the networks see); the writer
stores them there and records ``Denorm(scale=std, offset=mean)`` so decoding recovers
``[0, 1]`` pixels. How they are stored is the parameterization's business.

The contract
------------
A parameterization is a :class:`Parameterization` (a ``torch.nn.Module``) that holds the
learnable stored tensor as its parameter ``data``, built as ``cls(stored, **options)``:

``stored()``
    The learnable tensor: what the quantizer quantizes and the file stores, ``(N, C, ...)``.
``decode(stored)``
    The samples as the networks see them, from ``stored`` or its quantized version:
    exactly what a reader decodes from the file, and differentiable.
``file_fields() -> {"upsample": f, "upsample_filter": ...}``
    The codec header fields the file needs to be decoded that way (the writer's keyword
    arguments of the same names; full-size pixels: ``1`` and ``"nearest"``).
``init_stored(x, **options)`` / ``from_real(x, **options)``
    The initializer: the stored tensor that starts from real samples ``x`` (normalized,
    full size, one per synthetic sample), and an instance built from it.
state
    ``state_dict`` holds the stored tensor (``data``); derived tensors are
    non-persistent buffers.

:class:`SyntheticSet` is what the training loop uses: a parameterization plus the class
labels, chosen from random real samples (:meth:`SyntheticSet.from_real`).

Adding one
----------
One file with a registered class, and a test::

    @register_parameterization("mine")
    class Mine(Parameterization):
        name = "mine"
        ...

A separate package registers it with an entry point in group ``quadd.parameterizations``;
:func:`make_parameterization` finds it by name. A parameterization must be one a reader
can decode from the header fields it names: ``file_fields`` is all the file records.

Built in: ``pixels`` (:mod:`.pixels`), ``resized`` (:mod:`.resized`: pixels at ``1/f``
size enlarged by nearest repetition or bilinear interpolation, FORMAT.md 7a/7b), and
``vectors`` (:mod:`.vectors`: feature vectors ``(F,)`` stored as ``(F, 1)``, one channel
per feature).
"""

from __future__ import annotations

from .base import PARAMETERIZATION_REGISTRY, Parameterization, register_parameterization
from .pixels import Pixels
from .resized import Resized
from .set import SyntheticSet, make_parameterization, sample_real_indices
from .vectors import Vectors

__all__ = [
    "PARAMETERIZATIONS",
    "PARAMETERIZATION_REGISTRY",
    "Parameterization",
    "Pixels",
    "Resized",
    "SyntheticSet",
    "Vectors",
    "make_parameterization",
    "parameterization_names",
    "register_parameterization",
    "sample_real_indices",
]

#: The built-in parameterizations.
PARAMETERIZATIONS: tuple[str, ...] = ("pixels", "resized", "vectors")


def parameterization_names() -> tuple[str, ...]:
    """Every parameterization name: the built-in ones, then the others registered or
    named by an installed plugin's entry point."""
    others = (n for n in PARAMETERIZATION_REGISTRY.names() if n not in PARAMETERIZATIONS)
    return (*PARAMETERIZATIONS, *others)

"""quadd_train: quantization-aware dataset distillation (QuADD) on top of quadd_codec.

The main entry points are re-exported lazily (importing the package stays cheap, and
submodules such as ``quadd_train.data`` can be imported on their own):

* :func:`distill`, :class:`DistillConfig`, :class:`DistillResult`, :func:`subset`
* :func:`make_quantizer` and the quantizer classes
* :class:`SyntheticSet`, :func:`make_objective`, :func:`parse_size`
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DistillConfig": "distill",
    "DistillResult": "distill",
    "SubsetResult": "distill",
    "distill": "distill",
    "subset": "distill",
    "make_quantizer": "quantizers",
    "Quantizer": "quantizers",
    "UniformQuantizer": "quantizers",
    "APoTQuantizer": "quantizers",
    "LearnedQuantizer": "quantizers",
    "IdentityQuantizer": "quantizers",
    "SyntheticSet": "synthetic",
    "Objective": "methods",
    "make_objective": "methods",
    "parse_size": "budget",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'quadd_train' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)

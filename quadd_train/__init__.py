"""quadd_train: quantization-aware dataset distillation (QuADD) on top of quadd_codec.

The main entry points are re-exported lazily (importing the package stays cheap, and
submodules such as ``quadd_train.data`` can be imported on their own):

* :func:`distill`, :class:`DistillConfig`, :class:`DistillResult`, :func:`subset`,
  :func:`load_checkpoint`; ``plan`` is the module :mod:`quadd_train.plan` (its function
  :func:`quadd_train.plan.plan` says what a configuration fits)
* :func:`make_quantizer` and the quantizer classes
* :class:`SyntheticSet`, :class:`Objective`, :func:`make_objective`,
  :func:`register_objective`, :func:`parse_size`

Modules: ``config`` (DistillConfig and results), ``plan`` (file layout, samples per
class, pre-run checks), ``loop`` (distill), ``checkpoint``, ``baselines`` (subset),
``objectives`` (the objective plug point and DM), ``runtime`` (device and numerics).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DistillConfig": "config",
    "DistillResult": "config",
    "SubsetResult": "config",
    "distill": "loop",
    "subset": "baselines",
    "Plan": "plan",
    "FileLayout": "plan",
    "load_checkpoint": "checkpoint",
    "make_quantizer": "quantizers",
    "Quantizer": "quantizers",
    "UniformQuantizer": "quantizers",
    "APoTQuantizer": "quantizers",
    "LearnedQuantizer": "quantizers",
    "IdentityQuantizer": "quantizers",
    "SyntheticSet": "synthetic",
    "Objective": "objectives",
    "make_objective": "objectives",
    "register_objective": "objectives",
    "objective_names": "objectives",
    "parse_size": "budget",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'quadd_train' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)

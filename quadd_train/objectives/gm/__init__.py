"""Gradient matching (DC, Zhao et al., ICLR 2021) with differentiable Siamese
augmentation (DSA, Zhao & Bilen, ICML 2021).

Reference protocol (VICO-UoE/DatasetCondensation, ``main.py``): for each of a series of
freshly initialized networks, ``outer_loop`` times: per class, the gradient of the
cross-entropy of 256 real samples with respect to the network's parameters is compared
with that of the class's synthetic samples (both under one DSA transform, drawn anew per
class and step); the distance, summed over classes, is ``sum over output units of
1 - cos`` (:mod:`.match`); an SGD step (lr 0.1, momentum 0.5) moves the samples; then,
except after the last of the ``outer_loop`` steps, the network trains ``inner_loop``
epochs on the synthetic set (SGD, lr 0.01, momentum 0.5, batches of 256, per-sample
DSA). ``(outer_loop, inner_loop)`` comes from the samples per class: (1, 1) at 1,
(10, 50) at 10, (50, 10) at 50 (:func:`.options.default_loops` fills in the rest).

In this loop an iteration is one synthetic-set step, so ``--iterations`` counts the
reference's outer steps: its 1000 iterations at 10 per class are 10,000 here. The
network's training between two steps happens at the start of the next ``loss`` call,
on the batch that call receives: the quantized, decoded synthetic set as the previous
step left it, which is the set the reference trains on at that point (and here the one
the file stores). So GM needs no hook beyond the objective contract. The network, its
optimizer and the position in the outer loop are the objective's ``state_dict``, so a
resumed run continues mid-network exactly. All randomness comes from the loop's ``rng``
(networks, real batches, DSA seeds, shuffles) and the global torch RNG (per-sample DSA
while the network trains), both checkpointed.

The network is ``quadd_train.nn.models.build_model(model, sample_shape, ...)``, by
default ``default_model(sample_shape)``: the ConvNet for images, the MLP for feature
vectors, which DSA leaves unaugmented. A batch-normalized network (``--gm-model``)
takes its statistics from 16 real samples per class before each step, as the reference.

The image step: the run's ``--lr-img`` defaults to DM's 1.0, and the loss is scaled by
``loss_scale`` (0.1), which with SGD is the reference's step at lr 0.1.

>>> import torch
>>> from quadd_train.objectives import make_objective
>>> gm = make_objective("gm", {"batch_real": 8, "width": 8, "depth": 1})
>>> x = torch.randn(20, 6)  # feature vectors: an MLP, no augmentation
>>> gm.prepare(x, torch.arange(20) % 2, 2, 3, "cpu", seed=0)
>>> gm.report()
{'gm_outer_loop': 3, 'gm_inner_loop': 12, 'gm_model': 'mlp', 'gm_networks': 0}
>>> syn = torch.randn(6, 6, requires_grad=True)
>>> loss = gm.loss(syn, torch.arange(6) // 3, __import__("numpy").random.default_rng(0))
>>> loss.backward(); syn.grad.shape
torch.Size([6, 6])
"""

from __future__ import annotations

import importlib
from typing import Any

from .options import DEFAULT_LOSS_SCALE, REFERENCE_LOOPS, GMOptions, default_loops

__all__ = ["DEFAULT_LOSS_SCALE", "REFERENCE_LOOPS", "GMObjective", "GMOptions",
           "default_loops"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the options (and so the command line's flags) need no torch.
    if name == "GMObjective":
        return importlib.import_module(".objective", __name__).GMObjective
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

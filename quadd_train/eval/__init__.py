"""The standard dataset-distillation evaluation protocol.

Train a fresh ConvNet-3 (width 128, instance norm, average pooling) on the distilled set
only, then report its accuracy on the real test split; repeat over several seeds. The
hyper-parameters follow the DC/DSA/DM reference ``evaluate_synset``: SGD lr 0.01,
momentum 0.9, weight decay 5e-4, lr/10 for the second half of training, cross-entropy,
DSA augmentation (per-sample, unseeded) on every training batch, batch size 256.

``EvalConfig(model=...)`` trains another network of :mod:`quadd_train.nn.models`
instead (cross-architecture evaluation: ``mlp``, ``alexnet``, ``vgg11``, ``resnet18``);
feature-vector data trains the MLP by default, without DSA, otherwise alike. Every run
reports top-1 (``accuracy``), top-2 and top-4 accuracy, and for a dataset with
``test_rsrp`` the share of test samples whose predicted class is within 1 dB of the best.

``evaluate_qdd`` trains *from the file*: every epoch reads the `.qdd` through
``quadd_codec.QddDataset`` and a ``DataLoader``, so what is measured is exactly what a
user of the file gets. ``evaluate_tensors`` runs the same protocol on an in-memory set.

Modules, one concern each:

* :mod:`.protocol` -- :class:`EvalConfig` (the protocol's constants), the compile rule,
  the test metrics, and one training run (:func:`train_and_test`);
* :mod:`.runs` -- several seeded runs, one after another or in worker processes, and the
  result record;
* :mod:`.parallel` -- the worker processes (CPU), their epoch ticks through a queue;
* :mod:`.qdd` -- the entry points :func:`evaluate_qdd` and :func:`evaluate_tensors`, and
  the checks that a set matches the dataset it is tested on.
"""

from __future__ import annotations

from .protocol import COMPILE_MIN_PIXELS, EvalConfig, eval_runtime, train_and_test
from .qdd import evaluate_qdd, evaluate_tensors

__all__ = [
    "COMPILE_MIN_PIXELS",
    "EvalConfig",
    "eval_runtime",
    "evaluate_qdd",
    "evaluate_tensors",
    "train_and_test",
]

"""Distillation objectives: the plug point for what a synthetic set is trained to match.

QuADD wraps any dataset-distillation method. The synthetic set and the quantizer know
nothing of the method; an objective only turns the *quantized* synthetic batch into a
differentiable loss. This module's docstring is the contract every objective keeps.

The contract
------------
An objective is a subclass of :class:`Objective` registered under a name:

* ``name`` and ``Options``: the registered name (what ``--method`` takes) and a dataclass
  of the objective's own options, every field with a default. Each field's
  ``metadata`` may hold ``help`` (the ``--help`` text), ``flag`` (the command line flag:
  a string such as ``"--pool-size"``; absent: ``--<name>-<field>``; ``None``: none, the
  option is then set with ``--opt field=value`` only), ``choices`` (allowed values),
  ``min`` (smallest number) and ``show_default``; a ``bool`` option's flag sets the
  opposite of its default (DM's ``--no-dsa``). ``quadd distill --opt KEY=VALUE``
  reaches every field, its text parsed by the field's type (``int``, ``float``, ``str``,
  ``bool``, or one of these or None, written ``none``).
* ``__init__(**options)``: builds ``self.options`` from keyword arguments (an unknown
  name is a ``ValueError``); a subclass checks their values there, so a bad setting is
  refused before any data is loaded.
* ``prepare(x_real, y_real, num_classes, ipc, runtime, seed, progress=False,
  iterations=None)``: once per run, before the first loss, with the normalized real
  training set ``(N, C, H, W)`` and its labels, the samples per class, the run's
  :class:`quadd_train.runtime.Runtime` (device, bf16, channels_last, compile, resolved
  once for the run), its seed and length. Defaults that depend on the device or the
  run's length are resolved here, once; an objective restored from a checkpoint keeps
  what it was built with. Before it, a run sets ``data_name`` to the dataset's name
  (for messages and cache listings).
* ``loss(syn, labels, rng)``: every iteration, the scalar loss of the quantized,
  enlarged synthetic batch ``syn`` (class-major, ``ipc`` per class). All randomness per
  iteration comes from ``rng``, the global torch RNG (both checkpointed by the loop) or
  the objective's own ``state_dict``, so a resumed run continues the same stream.
* ``parameters()``: learnables the objective owns (a learned learning rate, soft
  labels): tensors, or ``torch.optim`` parameter groups. The loop trains them with SGD
  at the run's ``momentum`` and ``lr_img`` (a group's own ``lr`` wins), and checkpoints
  and restores their values and the optimizer's state. Default: none.
* ``fingerprint()``: the settings a checkpoint must match to be resumed (JSON-like
  values; keys must not repeat the run's own settings). Called after ``prepare`` when a
  checkpoint is written, and after ``load_state_dict`` (before ``prepare``) when one is
  resumed, so it must name the values a restored state adopted.
* ``state_dict()`` / ``load_state_dict(state)``: precomputed state worth keeping
  (tensors, plain values, NumPy arrays only: checkpoints load with ``weights_only``).
  ``load_state_dict`` runs before ``prepare`` on resume, so ``prepare`` can skip work
  that was restored.
* ``report()`` and ``summary(prepare_seconds)``: what ran, for the result (``report``'s
  keys join ``quadd distill --json``'s) and the phrase the command's summary line shows
  in parentheses (``""``: nothing).

Registering
-----------
``@register_objective("name")`` on the class, in a module imported before use. A
separate package adds one through the entry point group ``quadd.objectives`` (name =
the objective's name, value = ``"package.module:Class"``); entry points are loaded
lazily, the first time their name is asked for, and one that fails to load is named in
the error. :func:`objective_names` lists every name; :func:`get_objective` returns the
class; :func:`make_objective` builds one; :func:`options_class` returns its ``Options``
(a built-in's without importing torch, for the command line's flags).

A run (``quadd_train.loop.distill``) calls, in order: the constructor (also once to
check the options early), ``load_state_dict`` and ``fingerprint`` when resuming,
``prepare``, ``parameters``, ``loss`` every iteration, ``fingerprint`` and
``state_dict`` at every checkpoint, and ``report`` and ``summary`` at the end.
"""

from __future__ import annotations

from .base import Objective
from .options import build_options, option_fields, parse_option_text
from .registry import (
    ENTRY_POINT_GROUP,
    get_objective,
    make_objective,
    objective_names,
    options_class,
    register_objective,
)

__all__ = ["ENTRY_POINT_GROUP", "Objective", "build_options", "get_objective",
           "make_objective", "objective_names", "option_fields", "options_class",
           "parse_option_text", "register_objective"]

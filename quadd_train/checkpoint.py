"""Distillation checkpoints: what one holds, writing it atomically, reading it without
running code, and the settings a resumed run must share with it.

A checkpoint is a dict of tensors, plain values and NumPy arrays, loaded with
``weights_only``. ``fingerprint`` holds the run's settings (those a resume may not
change) and ``objective_fingerprint`` the objective's; a setting missing from a saved
fingerprint counts at its default.
"""

from __future__ import annotations

import pickle
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from quadd_codec.paths import atomic_open

from .config import DistillConfig

if TYPE_CHECKING:
    from .objectives import Objective

__all__ = ["CKPT_VERSION", "check_resumable", "load_checkpoint", "run_fingerprint",
           "save_checkpoint"]

CKPT_VERSION = 2
# Config fields that may change between a checkpoint and its resumption (the objective's
# options are compared through its own fingerprint).
RESUMABLE_FIELDS = {
    "iterations",
    "checkpoint_every",
    "checkpoint_path",
    "resume",
    "device",
    "data_dir",
    "objective_options",
    # How the arithmetic is laid out and run, not what it computes (up to rounding): a
    # run whose compile broke can go on without it.
    "compile",
    "channels_last",
}
KEYS = {"version", "fingerprint", "objective_fingerprint", "iteration", "synthetic",
        "quantizer", "opt_img", "opt_quant", "np_rng", "torch_rng", "objective",
        "objective_params", "opt_objective", "loss"}


def _checkpoint_globals() -> list[Any]:
    # Checkpoints hold tensors, plain Python values and a few small NumPy arrays (pool
    # seeds and orders): these, and nothing else, may be unpickled from one.
    dtypes = {type(np.dtype(t)) for t in (np.bool_, np.int8, np.int16, np.int32, np.int64,
                                           np.uint8, np.uint16, np.uint32, np.uint64,
                                           np.float32, np.float64)}
    return [np.ndarray(0).__reduce__()[0], np.ndarray, np.dtype, *dtypes]


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] if text else type(exc).__name__


def load_checkpoint(path: str, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A distillation checkpoint, read without running code from the file: anything but
    tensors, plain values and NumPy arrays is refused (``weights_only``), as is a file
    that is not a checkpoint of this version."""
    try:
        with torch.serialization.safe_globals(_checkpoint_globals()):
            state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle, zip and torch errors alike
        # torch's own message for a refused object advises loading it unsafely: not ours.
        refused = isinstance(exc, pickle.UnpicklingError) or "Weights only" in str(exc)
        detail = ("it holds objects other than tensors and plain values, which are not "
                  "loaded" if refused else _describe(exc))
        raise ValueError(f"cannot read checkpoint {path}: not a quadd checkpoint, or "
                         f"damaged ({detail})") from exc
    if not isinstance(state, dict) or not isinstance(state.get("version"), int):
        raise ValueError(f"{path} is not a quadd distill checkpoint")
    if state["version"] < CKPT_VERSION:
        raise ValueError(f"checkpoint {path} was written by an older quadd; start again "
                         "without --resume")
    if state["version"] != CKPT_VERSION:
        raise ValueError(f"checkpoint {path} has an unsupported version")
    if not KEYS <= set(state):
        raise ValueError(f"{path} is not a quadd distill checkpoint")
    return state


def save_checkpoint(state: dict[str, Any], path: str) -> None:
    """Write ``state`` (with this version) to ``path`` atomically."""
    with atomic_open(path) as f:
        torch.save({"version": CKPT_VERSION, **state}, f)


def run_fingerprint(config: DistillConfig) -> dict[str, Any]:
    """The run's settings a checkpoint must match."""
    return {k: v for k, v in asdict(config).items() if k not in RESUMABLE_FIELDS}


def check_resumable(state: dict[str, Any], config: DistillConfig, objective: Objective,
                    path: str) -> None:
    """Refuse a checkpoint made with other settings, naming each (its value there and
    now), or one past the run's iterations. ``objective`` has loaded the checkpoint's
    state, so its fingerprint names what it adopted from it."""
    then = {k: v for k, v in {**run_fingerprint(DistillConfig()), **state["fingerprint"]}.items()
            if k not in RESUMABLE_FIELDS}
    now = run_fingerprint(config)
    then_obj, now_obj = state["objective_fingerprint"], objective.fingerprint()
    if set(now_obj) - set(then_obj):
        defaults = type(objective)().fingerprint()
        then_obj = {**{k: defaults.get(k) for k in now_obj}, **then_obj}
    then, now = {**then, **then_obj}, {**now, **now_obj}
    if then != now:
        diff = sorted(k for k in set(then) | set(now) if then.get(k) != now.get(k))
        shown = ", ".join(f"{k} {_shown(then.get(k))} there, {_shown(now.get(k))} now"
                          for k in diff)
        raise ValueError(f"checkpoint {path} was made with different settings ({shown})")
    if int(state["iteration"]) > config.iterations:
        # Writing that later state as an N-iteration file would mislabel it.
        raise ValueError(
            f"checkpoint {path} is at iteration {int(state['iteration'])}, past "
            f"--iterations {config.iterations}; raise --iterations or start without "
            "--resume"
        )


def _shown(value: Any) -> str:
    # An unset setting takes its default for the device and the run.
    return "auto" if value is None else repr(value)

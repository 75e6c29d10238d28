"""GM's options and the loop lengths it resolves from the samples per class.

Torch-free, so the command line can build GM's flags without importing torch. Every
flag is spelled ``--gm-...``: the objectives' flags share one command, and DM already
owns ``--no-dsa``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_LOSS_SCALE", "GMOptions", "REFERENCE_LOOPS", "default_loops"]

# The reference's (outer_loop, inner_loop) per images per class (DatasetCondensation's
# get_loops): the samples take `outer` steps per network, the network trains `inner`
# epochs on the synthetic set between two of them.
REFERENCE_LOOPS: dict[int, tuple[int, int]] = {
    1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}

# The reference steps the images with lr_img 0.1; the run's --lr-img defaults to DM's 1.0.
# SGD's step is linear in the loss, so scaling the loss by 0.1 takes the reference's step.
DEFAULT_LOSS_SCALE = 0.1


def _opt(default: Any, help: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, **meta})


def default_loops(ipc: int) -> tuple[int, int]:
    """``(outer_loop, inner_loop)`` for ``ipc`` samples per class: the reference's table
    where it has the value; elsewhere ``outer = ipc`` (as every entry of the table, at
    most 50) and ``inner`` interpolated linearly between the table's neighbours (10
    beyond 50).

    >>> default_loops(1), default_loops(10), default_loops(50)
    ((1, 1), (10, 50), (50, 10))
    >>> default_loops(4), default_loops(15), default_loops(200)
    ((4, 17), (15, 38), (50, 10))
    """
    ipc = max(int(ipc), 1)
    if ipc in REFERENCE_LOOPS:
        return REFERENCE_LOOPS[ipc]
    keys = sorted(REFERENCE_LOOPS)
    if ipc > keys[-1]:
        return keys[-1], REFERENCE_LOOPS[keys[-1]][1]
    hi = next(k for k in keys if k > ipc)
    lo = max(k for k in keys if k < ipc)
    a, b = REFERENCE_LOOPS[lo][1], REFERENCE_LOOPS[hi][1]
    return ipc, int(round(a + (b - a) * (ipc - lo) / (hi - lo)))


@dataclass
class GMOptions:
    """GM knobs; the defaults are the reference's (DC/DSA, ConvNet)."""

    outer_loop: int | None = _opt(
        None,
        "Synthetic-set steps per network: a fresh network every this many iterations "
        "(--iterations counts these steps).  [default: from the samples per class, as the "
        "reference: 1 at 1, 10 at 10, 50 at 50]",
        flag="--gm-outer-loop", min=1)
    inner_loop: int | None = _opt(
        None,
        "Epochs the network trains on the synthetic set between two of its steps.  "
        "[default: from the samples per class, as the reference: 1 at 1, 50 at 10, 10 at "
        "50]",
        flag="--gm-inner-loop", min=0)
    lr_net: float = _opt(0.01, "Learning rate of the network's training between steps.",
                         flag="--gm-lr-net", min=0.0)
    net_momentum: float = _opt(0.5, "SGD momentum of the network's training.", flag=None,
                               min=0.0)
    batch_real: int = _opt(256, "Real samples per class behind each real gradient.",
                           flag="--gm-batch-real", min=1)
    batch_train: int = _opt(256, "Synthetic samples per step of the network's training.",
                            flag=None, min=1)
    dsa: bool = _opt(True, "Disable differentiable Siamese augmentation (images only; "
                     "feature vectors are never augmented).", flag="--gm-no-dsa")
    dsa_strategy: str = _opt("color_crop_cutout_flip_scale_rotate",
                             "DSA transforms, joined by _.", flag=None)
    model: str | None = _opt(
        None, "Network whose gradients are matched.  [default: convnet for images, mlp "
        "for feature vectors]", flag="--gm-model")
    width: int = _opt(128, "Network width.", flag="--gm-width", min=1)
    depth: int = _opt(3, "Network depth.", flag="--gm-depth", min=1)
    loss_scale: float = _opt(
        DEFAULT_LOSS_SCALE,
        "Factor on the matching loss, so that the run's --lr-img (1.0 by default, DM's "
        "reference) takes the GM reference's image step (lr_img 0.1).", flag=None)

    def check(self) -> None:
        """Refuse values GM cannot run, naming the option."""
        for name in ("outer_loop",):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.inner_loop is not None and self.inner_loop < 0:
            raise ValueError("inner_loop must be >= 0")
        for name in ("batch_real", "batch_train", "width", "depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("lr_net", "net_momentum"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if not self.loss_scale > 0:
            raise ValueError("loss_scale must be > 0")

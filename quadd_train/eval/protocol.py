"""One run of the protocol: train a fresh network on a set, test it on the real split.

The network is :attr:`EvalConfig.model` (default: the data's, ConvNet-3 for images and
the MLP for feature vectors; any name of :data:`quadd_train.nn.models.MODELS`). Images
train under DSA; vectors, which no DSA transform applies to, train on the samples as
they are, otherwise with the same optimizer and schedule (MLP width 128, depth 3). A run
reports top-1, top-2 and top-4 test accuracy, and with the dataset's ``test_rsrp`` the
share of test samples whose predicted class is within 1 dB of the best class.

:class:`EvalConfig` holds the protocol's constants. It is a frozen value passed to every
function that trains (a worker process receives the caller's instance with its run), so a
test or a bench shrinks the network by passing ``EvalConfig(width=16)``, never by changing
shared state.

Where a run computes comes from :func:`quadd_train.runtime.resolve_runtime`, the one place
distillation and evaluation resolve device and compile; :func:`eval_runtime` adds the
protocol's rule for when to compile by default and keeps training in float32.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from quadd_codec.dataset import qdd_collate

from ..data import DatasetBundle
from ..nn.augment import DEFAULT_STRATEGY, ParamDiffAug, diff_augment
from ..nn.models import build_model, default_model
from ..runtime import Runtime, resolve_device, resolve_runtime, to_device

__all__ = [
    "COMPILE_MIN_PIXELS",
    "EvalConfig",
    "TOP_K",
    "WITHIN_DB",
    "check_eval_bundle",
    "compile_default",
    "eval_model",
    "eval_runtime",
    "prediction_metrics",
    "sample_pixels",
    "train_and_test",
    "train_run",
]


@dataclass(frozen=True)
class EvalConfig:
    """The protocol's constants; the defaults are the reference values."""

    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    width: int = 128
    depth: int = 3
    test_batch: int = 1024
    #: The network trained (quadd_train.nn.models); None: the data's default model.
    model: str | None = None


#: Top-k accuracies every run reports (k capped at the number of classes).
TOP_K = (1, 2, 4)
#: A prediction counts as "within" when its class's quality (``test_rsrp``) is at most
#: this many dB below the best class's.
WITHIN_DB = 1.0


# torch.compile costs about a minute per process on the CPU and then runs a ConvNet-3
# training step about 1.8x faster (CIFAR-10 batches). The default weighs the run's work in
# sample-pixels trained (epochs x samples x H x W): 1e8 is about 6 minutes of eager
# training on 2 cores, where compiling saves about 3 minutes for its one.
COMPILE_MIN_PIXELS = 10**8


def sample_pixels(num_samples: int, bundle: Any, epochs: int) -> int:
    """A run's work: epochs x samples x H x W of ``bundle``'s images (0 for feature
    vectors: the compile default was measured on images, and a small MLP's step is too
    short for compiling to pay)."""
    shape = getattr(bundle, "sample_shape", None)
    if shape is not None and len(shape) != 3:
        return 0
    h, w = bundle.im_size
    return epochs * num_samples * h * w


def compile_default(device: torch.device, pixels: int) -> bool:
    """Compile when not asked: on the CPU, where it was measured, for runs of at least
    ``COMPILE_MIN_PIXELS`` sample-pixels. On a GPU the default stays eager."""
    return device.type == "cpu" and pixels >= COMPILE_MIN_PIXELS


def eval_runtime(device: str | torch.device, compile: bool | None, pixels: int) -> Runtime:
    """How a run of ``pixels`` sample-pixels computes. The protocol trains in float32 (the
    reference values were measured so), and channels_last only when compiled: eager NHWC
    steps are slower on the CPU and the protocol keeps one layout per mode everywhere."""
    dev = resolve_device(device)
    rt = resolve_runtime(dev, bf16=False, compile=compile,
                         compile_default=compile_default(dev, pixels))
    return dataclasses.replace(rt, channels_last=rt.compile, channels_last_default=False)


def eval_model(bundle: DatasetBundle, config: EvalConfig) -> str:
    """The model name a run trains: ``config.model``, or the data's default."""
    return config.model or default_model(bundle.sample_shape)


def _new_model(bundle: DatasetBundle, config: EvalConfig) -> torch.nn.Module:
    return build_model(eval_model(bundle, config), bundle.sample_shape, bundle.num_classes,
                       width=config.width, depth=config.depth)


def check_eval_bundle(bundle: DatasetBundle, config: EvalConfig = EvalConfig()  # noqa: B008
                      ) -> None:
    """The protocol needs a test split to test on, and a model that takes the data's
    samples (built once here, so a mismatch fails before any training)."""
    with torch.random.fork_rng(devices=[]):
        _new_model(bundle, config)
    if len(bundle.y_test) == 0:
        raise ValueError(f"{bundle.name} has an empty test split: nothing to test on")


def train_and_test(
    dataset: Dataset,
    bundle: DatasetBundle,
    epochs: int,
    seed: int,
    device: str | torch.device = "cpu",
    batch_size: int = 256,
    dsa: bool = True,
    normalized: bool = False,
    on_epoch: Any = None,
    compile: bool | None = None,
    config: EvalConfig = EvalConfig(),  # noqa: B008 - a frozen value
) -> float:
    """One run: train a fresh network (``config.model``) on ``dataset`` (read through a
    DataLoader each epoch), return top-1 test accuracy in percent. ``normalized`` says
    the dataset already yields normalized values; otherwise ``bundle.normalize`` is
    applied per batch. ``compile``: train through ``torch.compile`` with channels_last
    (same arithmetic up to float rounding); None compiles on the CPU for runs of
    ``COMPILE_MIN_PIXELS``+ sample-pixels. A failed compile (no C++ compiler...) warns
    once per process and the run goes on eager from the step that failed."""
    return train_run(dataset, bundle, epochs, seed, device, batch_size, dsa, normalized,
                     on_epoch, compile, config)[0]["top1"]


def _collate(batch: Any) -> tuple[Tensor, Tensor]:
    # A dataset's __getitems__ may hand back an already-batched (x, y) pair; anything
    # else goes through the codec's collate (a QddBatch taken as it is, no per-sample
    # restacking; a list of per-sample pairs collated as usual).
    if isinstance(batch, tuple) and len(batch) == 2 and isinstance(batch[0], Tensor):
        x, y = batch
    else:
        x, y = qdd_collate(batch)
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)


def prediction_metrics(logits: Tensor, y: Tensor, rsrp: Tensor | None = None) -> dict[str, Any]:
    """Counts of correct test predictions: ``top1``, ``top2``, ``top4`` (the label among
    the k highest logits, k at most the number of classes) and, given ``rsrp`` (each
    sample's quality per class, dB), ``within_1db``: the predicted class is at most
    :data:`WITHIN_DB` below the best one (ties with the best count).

    >>> logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0]])
    >>> rsrp = torch.tensor([[-80.0, -79.5, -90.0], [-70.0, -75.0, -74.0]])
    >>> m = prediction_metrics(logits, torch.tensor([1, 0]), rsrp)
    >>> m["top1"], m["top2"], m["top4"], m["within_1db"]
    (0, 1, 2, 1)
    """
    k = logits.shape[1]
    order = logits.topk(min(max(TOP_K), k), dim=1).indices
    hit = order == y.view(-1, 1)
    out: dict[str, Any] = {f"top{t}": int(hit[:, :min(t, k)].any(1).sum()) for t in TOP_K}
    if rsrp is not None:
        picked = rsrp.gather(1, order[:, :1]).squeeze(1)
        out["within_1db"] = int((picked >= rsrp.max(1).values - WITHIN_DB).sum())
    return out


@torch.no_grad()
def _test_metrics(net: torch.nn.Module, bundle: DatasetBundle, dev: torch.device,
                  config: EvalConfig) -> dict[str, float]:
    """:func:`prediction_metrics` over the test split, in percent."""
    net.eval()
    totals: dict[str, int] = {}
    rsrp = bundle.test_rsrp
    # Big batches only pay off on a GPU; on the CPU they just cost memory bandwidth.
    step = config.test_batch if dev.type == "cuda" else min(config.test_batch, 256)
    for i in range(0, len(bundle.y_test), step):
        xb = bundle.normalize(to_device(bundle.x_test[i : i + step], dev))
        yb = to_device(bundle.y_test[i : i + step], dev)
        rb = None if rsrp is None else to_device(rsrp[i : i + step], dev)
        for key, count in prediction_metrics(net(xb).float(), yb, rb).items():
            totals[key] = totals.get(key, 0) + count
    n = max(1, len(bundle.y_test))
    return {key: 100.0 * count / n for key, count in totals.items()}


# Set by the first failed compile in this process, so later runs do not pay for it again.
_compile_broken = False


def _compile_failed(exc: Exception) -> None:
    global _compile_broken
    _compile_broken = True
    warnings.warn(
        f"torch.compile failed ({type(exc).__name__}: {exc}); training eager",
        RuntimeWarning,
        stacklevel=3,
    )


def _step(forward: Any, opt: torch.optim.Optimizer, xb: Tensor, yb: Tensor) -> Tensor:
    loss = F.cross_entropy(forward(xb), yb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def train_run(
    dataset: Dataset,
    bundle: DatasetBundle,
    epochs: int,
    seed: int,
    device: str | torch.device,
    batch_size: int,
    dsa: bool,
    normalized: bool,
    on_epoch: Any,
    compile: bool | None,
    config: EvalConfig,
) -> tuple[dict[str, float], bool]:
    """:func:`train_and_test`'s run: its test metrics in percent (``top1``, ``top2``,
    ``top4``, and ``within_1db`` when the bundle has ``test_rsrp``), and whether it
    ended compiled."""
    check_eval_bundle(bundle, config)
    num_samples = len(dataset)  # type: ignore[arg-type]
    rt = eval_runtime(device, compile, sample_pixels(num_samples, bundle, epochs))
    dev = rt.device
    images = len(bundle.sample_shape) == 3
    dsa = dsa and images  # DSA's transforms are image transforms
    channels_last = rt.channels_last and images
    # fork_rng: seeding for this run must not disturb the caller's global RNG, which
    # also drives the unseeded DSA draws below.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _new_model(bundle, config).to(dev)
        forward: Any = net
        if rt.compile and not _compile_broken:
            if channels_last:
                net = net.to(memory_format=torch.channels_last)
            try:
                # Static shapes: a run has two batch sizes (full and the epoch's last).
                forward = torch.compile(net, dynamic=False)
            except Exception as exc:  # noqa: BLE001 - unsupported Python build...
                _compile_failed(exc)
        gen = torch.Generator().manual_seed(seed)
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=True,
            num_workers=0,
            collate_fn=_collate,
            generator=gen,
        )
        decay_at = epochs // 2
        opt = torch.optim.SGD(
            net.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
        param = ParamDiffAug()
        layout = torch.channels_last if channels_last else torch.contiguous_format
        for ep in range(epochs):
            if ep == decay_at and epochs > 1:
                for group in opt.param_groups:
                    group["lr"] = config.lr * 0.1
            net.train()
            for xb, yb in loader:
                xb, yb = to_device(xb, dev), to_device(yb, dev)
                if not normalized:
                    xb = bundle.normalize(xb)
                if dsa:
                    xb = diff_augment(xb, DEFAULT_STRATEGY, seed=None, param=param)
                if forward is net:
                    loss = _step(net, opt, xb, yb)
                    continue
                try:
                    # Backward graphs compile lazily, inside loss.backward(): the whole
                    # step is guarded. A failure comes before opt.step(), so the step is
                    # redone eagerly from unchanged weights (zero_grad clears partial grads).
                    loss = _step(forward, opt, xb.contiguous(memory_format=layout), yb)
                except Exception as exc:  # noqa: BLE001 - no compiler, unsupported op...
                    _compile_failed(exc)
                    forward = net
                    loss = _step(net, opt, xb, yb)
            if on_epoch is not None:
                on_epoch(float(loss.detach()))
        return _test_metrics(net, bundle, dev, config), forward is not net

"""The standard dataset-distillation evaluation protocol.

Train a fresh ConvNet-3 (width 128, instance norm, average pooling) on the distilled set
only, then report its accuracy on the real test split; repeat over several seeds. The
hyper-parameters follow the DC/DSA/DM reference ``evaluate_synset``: SGD lr 0.01,
momentum 0.9, weight decay 5e-4, lr/10 for the second half of training, cross-entropy,
DSA augmentation (per-sample, unseeded) on every training batch, batch size 256.

``evaluate_qdd`` trains *from the file*: every epoch reads the `.qdd` through
``quadd_codec.QddDataset`` and a ``DataLoader``, so what is measured is exactly what a
user of the file gets. ``evaluate_tensors`` runs the same protocol on an in-memory set.
"""

from __future__ import annotations

import contextlib
import os
import queue
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate

from .data import DatasetBundle
from .nn.augment import DEFAULT_STRATEGY, ParamDiffAug, diff_augment
from .nn.convnet import ConvNet
from .runtime import resolve_device, to_device

__all__ = [
    "EvalConfig",
    "evaluate_qdd",
    "evaluate_tensors",
    "train_and_test",
]


class EvalConfig:
    """Protocol constants (the reference values); module-level so tests can shrink them."""

    lr = 0.01
    momentum = 0.9
    weight_decay = 5e-4
    width = 128
    depth = 3
    test_batch = 1024


# torch.compile costs about a minute per process on the CPU and then runs a ConvNet-3
# training step about 1.8x faster (CIFAR-10 batches). The default weighs the run's work in
# sample-pixels trained (epochs x samples x H x W): 1e8 is about 6 minutes of eager
# training on 2 cores, where compiling saves about 3 minutes for its one.
COMPILE_MIN_PIXELS = 10**8


def _want_compile(compile: bool | None, dev: torch.device, pixels: int) -> bool:
    if compile is not None:
        return bool(compile)
    # Auto only where it was measured: the CPU. On a GPU the default stays eager.
    return dev.type == "cpu" and pixels >= COMPILE_MIN_PIXELS


def _work(dataset: Dataset, bundle: DatasetBundle, epochs: int) -> int:
    h, w = bundle.im_size
    return epochs * len(dataset) * h * w  # type: ignore[arg-type]


class _TensorSet(Dataset):
    """An in-memory labelled set with batched access, mirroring QddDataset's interface."""

    def __init__(self, x: Tensor, y: Tensor) -> None:
        self.x = x
        self.y = y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.x[i], int(self.y[i])

    def __getitems__(self, idx: Sequence[int]) -> tuple[Tensor, Tensor]:
        ix = torch.as_tensor(list(idx), dtype=torch.long)
        return self.x[ix], self.y[ix]


def _collate(batch: Any) -> tuple[Tensor, Tensor]:
    # A dataset's __getitems__ may hand back an already-batched (x, y) pair; a list of
    # per-sample pairs goes through the ordinary collation.
    if isinstance(batch, tuple) and len(batch) == 2 and isinstance(batch[0], Tensor):
        x, y = batch
    else:
        x, y = default_collate(batch)
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)


def _check_image_bundle(bundle: DatasetBundle) -> None:
    if bundle.x_train.dim() != 4:
        raise ValueError(
            f"evaluation trains a ConvNet and needs images (N, C, H, W); "
            f"{bundle.name} has samples of shape {bundle.sample_shape}"
        )
    if len(bundle.y_test) == 0:
        raise ValueError(f"{bundle.name} has an empty test split: nothing to test on")


@torch.no_grad()
def _test_accuracy(net: torch.nn.Module, bundle: DatasetBundle, dev: torch.device) -> float:
    net.eval()
    correct = 0
    # Big batches only pay off on a GPU; on the CPU they just cost memory bandwidth.
    step = EvalConfig.test_batch if dev.type == "cuda" else min(EvalConfig.test_batch, 256)
    for i in range(0, len(bundle.y_test), step):
        xb = bundle.normalize(to_device(bundle.x_test[i : i + step], dev))
        yb = to_device(bundle.y_test[i : i + step], dev)
        correct = correct + (net(xb).argmax(1) == yb).sum()
    return 100.0 * int(correct) / max(1, len(bundle.y_test))


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
) -> float:
    """One run: train a fresh ConvNet on ``dataset`` (read through a DataLoader each
    epoch), return test accuracy in percent. ``normalized`` says the dataset already
    yields normalized values; otherwise ``bundle.normalize`` is applied per batch.
    ``compile``: train through ``torch.compile`` with channels_last (same arithmetic up
    to float rounding); None compiles on the CPU for runs of ``COMPILE_MIN_PIXELS``+
    sample-pixels. A failed compile (no C++ compiler...) warns once per process and the
    run goes on eager from the step that failed."""
    return _train_run(dataset, bundle, epochs, seed, device, batch_size, dsa, normalized,
                      on_epoch, compile)[0]


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


def _train_run(
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
) -> tuple[float, bool]:
    """``train_and_test``, also saying whether the run ended compiled."""
    _check_image_bundle(bundle)
    dev = resolve_device(device)
    use_compile = _want_compile(compile, dev, _work(dataset, bundle, epochs))
    # fork_rng: seeding for this run must not disturb the caller's global RNG, which
    # also drives the unseeded DSA draws below.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ConvNet(
            bundle.channels,
            bundle.num_classes,
            bundle.im_size,
            width=EvalConfig.width,
            depth=EvalConfig.depth,
        ).to(dev)
        forward: Any = net
        if use_compile and not _compile_broken:
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
            lr=EvalConfig.lr,
            momentum=EvalConfig.momentum,
            weight_decay=EvalConfig.weight_decay,
        )
        param = ParamDiffAug()
        for ep in range(epochs):
            if ep == decay_at and epochs > 1:
                for group in opt.param_groups:
                    group["lr"] = EvalConfig.lr * 0.1
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
                    loss = _step(forward, opt, xb.contiguous(memory_format=torch.channels_last),
                                 yb)
                except Exception as exc:  # noqa: BLE001 - no compiler, unsupported op...
                    _compile_failed(exc)
                    forward = net
                    loss = _step(net, opt, xb, yb)
            if on_epoch is not None:
                on_epoch(float(loss.detach()))
        return _test_accuracy(net, bundle, dev), forward is not net


def _worker_setup(threads: int, constants: dict[str, Any]) -> None:
    torch.set_num_threads(threads)
    # A spawned worker imports this module afresh: carry over what the caller changed.
    for name, value in constants.items():
        setattr(EvalConfig, name, value)


def _eval_constants() -> dict[str, Any]:
    return {k: v for k, v in vars(EvalConfig).items() if not k.startswith("_")}


def _parallel_runs(
    dataset: Dataset,
    bundle: DatasetBundle,
    runs: int,
    epochs: int,
    seed: int,
    jobs: int,
    batch_size: int,
    dsa: bool,
    normalized: bool,
    bar: Any,
    compile: bool | None = None,
) -> tuple[list[float], list[bool]]:
    """Runs in worker processes on the CPU. Small ConvNet batches use two threads poorly,
    so independent runs side by side finish sooner than one after another."""
    import dataclasses
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # Workers need only the test split and the statistics; not a copy of the train set.
    slim = dataclasses.replace(bundle, x_train=bundle.x_train[:1], y_train=bundle.y_train[:1])
    threads = max(1, torch.get_num_threads() // jobs)
    # spawn, not fork: forking a process whose thread pools are running can deadlock.
    ctx = multiprocessing.get_context("spawn")
    # With a bar, workers report each epoch through a queue, so it moves as they train.
    manager = ctx.Manager() if not bar.disable else None
    ticks = manager.Queue() if manager is not None else None
    try:
        with ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=ctx,
            initializer=_worker_setup,
            initargs=(threads, _eval_constants()),
        ) as pool:
            futures = [
                pool.submit(_train_run, dataset, slim, epochs, seed + r, "cpu", batch_size,
                            dsa, normalized, _EpochTick(ticks) if ticks else None, compile)
                for r in range(runs)
            ]
            try:
                while ticks is not None and not all(f.done() for f in futures):
                    with contextlib.suppress(queue.Empty):
                        ticks.get(timeout=0.2)
                        bar.update(1)
                results = [f.result() for f in futures]
            except BaseException:
                # Ctrl-C or a failed run: the runs not started yet are not wanted.
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    finally:
        if manager is not None:
            manager.shutdown()
    bar.update(runs * epochs - bar.n)  # the ticks still queued when the last run ended
    return [r[0] for r in results], [r[1] for r in results]


class _EpochTick:
    """A worker's per-epoch callback: one item on the parent's queue per epoch."""

    def __init__(self, ticks: Any) -> None:
        self.ticks = ticks

    def __call__(self, loss: float) -> None:
        self.ticks.put(1)


def _protocol(
    dataset: Dataset,
    bundle: DatasetBundle,
    runs: int,
    epochs: int,
    seed: int,
    device: str,
    batch_size: int,
    dsa: bool,
    progress: bool,
    normalized: bool = False,
    jobs: int = 1,
    compile: bool | None = None,
) -> dict[str, Any]:
    from tqdm import tqdm

    if runs < 1 or epochs < 1:
        raise ValueError("runs and epochs must both be >= 1")
    if jobs < 1:
        raise ValueError("jobs must be >= 1")
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError("the distilled set is empty")
    dev = resolve_device(device)
    jobs = min(jobs, runs) if dev.type == "cpu" else 1  # one GPU: runs share it anyway
    accs: list[float] = []
    compiled: list[bool] = []  # each run resolves the compile default and says what ran
    start = time.perf_counter()
    with tqdm(total=runs * epochs, desc="eval", disable=not progress, unit="ep") as bar:
        if jobs > 1:
            bar.set_postfix_str(f"{runs} runs in {jobs} worker processes", refresh=True)
            accs, compiled = _parallel_runs(dataset, bundle, runs, epochs, seed, jobs,
                                            batch_size, dsa, normalized, bar, compile)
        else:
            def tick(loss: float) -> None:
                bar.set_postfix(run=f"{len(accs) + 1}/{runs}", loss=f"{loss:.3f}", refresh=False)
                if (bar.n + 1) % epochs == 0:
                    # Testing on the whole test split follows and can take a while.
                    bar.set_postfix_str(f"run {len(accs) + 1}/{runs}: testing on "
                                        f"{len(bundle.y_test):,} images", refresh=False)
                bar.update(1)

            for r in range(runs):
                acc, ran_compiled = _train_run(
                    dataset,
                    bundle,
                    epochs,
                    seed + r,
                    dev,
                    batch_size,
                    dsa,
                    normalized,
                    # Reading the loss for the bar waits for the GPU: only with a bar.
                    tick if progress else None,
                    compile,
                )
                accs.append(acc)
                compiled.append(ran_compiled)
    return {
        "dataset": bundle.name,
        # Percent; rounded to what a test split of up to a million images can resolve.
        "accuracy": round(float(np.mean(accs)), 4),
        "std": round(float(np.std(accs)), 4),  # population std over runs
        "unit": "percent",
        "runs": runs,
        "accuracies": accs,
        "epochs": epochs,
        "num_samples": len(dataset),  # type: ignore[arg-type]
        "seed": seed,
        "device": str(dev),
        "jobs": jobs,
        # What ran, not what was asked: a failed compile falls back to eager.
        "compile": bool(compiled) and all(compiled),
        "seconds": time.perf_counter() - start,
    }


def evaluate_tensors(
    x: Tensor,
    y: Tensor,
    bundle: DatasetBundle,
    runs: int = 5,
    epochs: int = 1000,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 256,
    dsa: bool = True,
    progress: bool = True,
    normalized: bool = False,
    jobs: int = 1,
    compile: bool | None = None,
) -> dict[str, Any]:
    """Evaluate an in-memory distilled set ``x`` (N, C, H, W), labels ``y`` (N,).

    ``x`` is in the bundle's source value space unless ``normalized=True``.
    Returns ``accuracy``/``std`` in percent, ``accuracies`` per run, ``runs``, ``epochs``.
    ``jobs`` and ``compile`` as in :func:`evaluate_qdd`.
    """
    _check_image_bundle(bundle)
    x = torch.as_tensor(x, dtype=torch.float32).detach().cpu()
    y = torch.as_tensor(y, dtype=torch.long).cpu()
    if tuple(x.shape[1:]) != bundle.sample_shape:
        raise ValueError(
            f"samples have shape {tuple(x.shape[1:])}, {bundle.name} needs {bundle.sample_shape}"
        )
    if len(x) != len(y):
        raise ValueError(f"{len(x)} samples but {len(y)} labels")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= bundle.num_classes):
        raise ValueError(f"labels must lie in 0..{bundle.num_classes - 1}")
    return _protocol(
        _TensorSet(x, y), bundle, runs, epochs, seed, device, batch_size, dsa, progress,
        normalized=normalized, jobs=jobs, compile=compile,
    )


def _some(names: list[str], shown: int = 8) -> str:
    """A class list short enough for a one-line error."""
    if len(names) <= shown:
        return f"classes {names}"
    return f"{len(names)} classes [{', '.join(map(repr, names[:shown]))}, ...]"


def _check_qdd_matches(ds: Any, bundle: DatasetBundle, path: str) -> None:
    names = list(getattr(ds, "class_names", None) or [])
    if names and names != list(bundle.class_names):
        raise ValueError(
            f"{path} has {_some(names)}, but dataset {bundle.name} has "
            f"{_some(list(bundle.class_names))}"
        )
    num = getattr(ds, "num_classes", None)
    if num is not None and int(num) != bundle.num_classes:
        raise ValueError(
            f"{path} has {num} classes, but dataset {bundle.name} has {bundle.num_classes}"
        )
    targets = getattr(ds, "targets", None)
    if targets is not None and len(targets) and int(torch.as_tensor(targets).min()) < 0:
        raise ValueError(f"{path} has no class labels; evaluation needs a labelled set")
    shape = tuple(int(s) for s in ds.sample_shape)
    if shape != bundle.sample_shape:
        raise ValueError(
            f"{path} holds samples of shape {shape}, but dataset {bundle.name} has "
            f"{bundle.sample_shape}"
        )


def evaluate_qdd(
    path: str | os.PathLike[str],
    bundle: DatasetBundle,
    runs: int = 5,
    epochs: int = 1000,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 256,
    dsa: bool = True,
    progress: bool = True,
    jobs: int = 1,
    compile: bool | None = None,
) -> dict[str, Any]:
    """Evaluate a `.qdd` distilled set against ``bundle``'s real test split.

    Training reads the file through ``QddDataset`` + ``DataLoader`` every epoch. On the
    CPU, ``jobs`` > 1 trains that many runs at once in worker processes, splitting the
    torch threads between them; run ``r`` is seeded ``seed + r`` either way.
    ``compile`` as in :func:`train_and_test` (None: on the CPU for long runs).
    Raises ``ValueError`` when the file's classes or sample shape do not match the
    bundle, and ``quadd_codec.QddError`` subclasses for a bad file.
    """
    from quadd_codec import QddDataset

    _check_image_bundle(bundle)
    path = os.fspath(path)
    ds = QddDataset(path, denormalize=True)
    _check_qdd_matches(ds, bundle, path)
    result = _protocol(ds, bundle, runs, epochs, seed, device, batch_size, dsa, progress,
                       jobs=jobs, compile=compile)
    result["file"] = path
    result["file_bytes"] = os.path.getsize(path)
    return result

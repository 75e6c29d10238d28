"""Independent runs side by side in worker processes, on the CPU.

Small ConvNet batches use two threads poorly, so runs trained at once, each with its share
of the torch threads, finish sooner than one after another. Each worker runs
:func:`~quadd_train.eval.protocol.train_run` with the arguments it is handed, the
:class:`~quadd_train.eval.protocol.EvalConfig` among them, so a run in a worker is the
run the caller would have made in its own process. With a progress bar, workers report
each finished epoch through a queue and the bar moves as they train.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import queue
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch
from torch.utils.data import Dataset

from ..data import DatasetBundle
from .protocol import EvalConfig, train_run

__all__ = ["parallel_runs"]


def parallel_runs(
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
    compile: bool | None,
    config: EvalConfig,
) -> tuple[list[dict[str, float]], list[bool]]:
    """Runs ``seed .. seed + runs - 1`` in ``jobs`` worker processes: their test metrics
    and whether each ended compiled, in seed order. ``bar`` (a tqdm) counts epochs."""
    # Workers need only the test split and the statistics; not a copy of the train set.
    slim = dataclasses.replace(bundle, x_train=bundle.x_train[:1], y_train=bundle.y_train[:1])
    threads = max(1, torch.get_num_threads() // jobs)
    # spawn, not fork: forking a process whose thread pools are running can deadlock.
    ctx = multiprocessing.get_context("spawn")
    manager = ctx.Manager() if not bar.disable else None
    ticks = manager.Queue() if manager is not None else None
    try:
        with ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=ctx,
            initializer=_worker_setup,
            initargs=(threads,),
        ) as pool:
            futures = [
                pool.submit(train_run, dataset, slim, epochs, seed + r, "cpu", batch_size,
                            dsa, normalized, _EpochTick(ticks) if ticks else None, compile,
                            config)
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


def _worker_setup(threads: int) -> None:
    torch.set_num_threads(threads)


class _EpochTick:
    """A worker's per-epoch callback: one item on the parent's queue per epoch."""

    def __init__(self, ticks: Any) -> None:
        self.ticks = ticks

    def __call__(self, loss: float) -> None:
        self.ticks.put(1)

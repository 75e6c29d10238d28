"""The protocol's runs: ``runs`` trainings seeded ``seed + r``, and the result record.

On the CPU, ``jobs`` > 1 trains that many runs at once in worker processes
(:mod:`.parallel`); a GPU is shared by the runs anyway, so there they go one after
another. Under ``torchrun`` (:mod:`quadd_train.distributed`) rank ``k`` of ``W`` trains
the contiguous block of runs :meth:`~quadd_train.distributed.Context.share` gives it
(``--jobs`` then applies per rank), and the per-run metrics are gathered in run order,
so every rank returns the one-process record. Either way run ``r`` is seeded
``seed + r`` (its network, shuffling and DSA draws come from that seed alone) and the
accuracies do not depend on ``jobs`` or on the rank that trained it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ..data import DatasetBundle
from ..distributed import context, gather_lists
from ..runtime import resolve_device
from .parallel import parallel_runs
from .protocol import TOP_K, EvalConfig, eval_model, train_run

__all__ = ["run_protocol"]


def run_protocol(
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
    config: EvalConfig = EvalConfig(),  # noqa: B008 - a frozen value
) -> dict[str, Any]:
    """Train and test ``runs`` times; the record :func:`~.qdd.evaluate_qdd` returns:
    top-1 as ``accuracy``/``std``/``accuracies``, the other metrics as :func:`_spread`
    names them, the ``model`` trained and whether DSA ran."""
    from tqdm import tqdm

    if runs < 1 or epochs < 1:
        raise ValueError("runs and epochs must both be >= 1")
    if jobs < 1:
        raise ValueError("jobs must be >= 1")
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError("the distilled set is empty")
    dev = resolve_device(device)
    ctx = context()
    mine = ctx.share(runs)  # this rank's runs (all of them in one process)
    # One GPU: runs share it anyway. A rank with no runs has no workers to start.
    jobs = max(1, min(jobs, len(mine))) if dev.type == "cpu" else 1
    start = time.perf_counter()
    progress = progress and ctx.is_main
    # Rank 0's bar counts its own runs' epochs.
    desc = f"eval, rank 0 of {ctx.world}" if ctx.active else "eval"
    with tqdm(total=len(mine) * epochs, desc=desc, disable=not progress, unit="ep") as bar:
        if jobs > 1:
            bar.set_postfix_str(f"{len(mine)} runs in {jobs} worker processes", refresh=True)
            metrics, compiled = parallel_runs(dataset, bundle, len(mine), epochs,
                                              seed + mine.start, jobs, batch_size, dsa,
                                              normalized, bar, compile, config)
        else:
            metrics, compiled = _serial_runs(dataset, bundle, mine, runs, epochs, seed, dev,
                                             batch_size, dsa, normalized, bar, compile,
                                             config)
    if ctx.active:
        # Copied in rank order, which with block shares is run order.
        pairs = gather_lists(list(zip(metrics, compiled, strict=True)))
        metrics, compiled = [m for m, _ in pairs], [c for _, c in pairs]
    accs = [m["top1"] for m in metrics]
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
        "jobs": jobs,  # worker processes per rank
        "ranks": ctx.world,
        # What ran, not what was asked: a failed compile falls back to eager.
        "compile": bool(compiled) and all(compiled),
        "seconds": time.perf_counter() - start,
        "model": eval_model(bundle, config),
        "dsa": dsa and len(bundle.sample_shape) == 3,  # what ran: images only
        **_spread(metrics),
    }


def _serial_runs(
    dataset: Dataset,
    bundle: DatasetBundle,
    mine: range,
    runs: int,
    epochs: int,
    seed: int,
    dev: Any,
    batch_size: int,
    dsa: bool,
    normalized: bool,
    bar: Any,
    compile: bool | None,
    config: EvalConfig,
) -> tuple[list[dict[str, float]], list[bool]]:
    """Runs ``mine`` (of ``runs``) one after another in this process: their metrics and
    whether each ended compiled (each run resolves the compile default and says what
    ran)."""
    metrics: list[dict[str, float]] = []
    compiled: list[bool] = []

    def tick(loss: float) -> None:
        at = mine.start + len(metrics) + 1
        bar.set_postfix(run=f"{at}/{runs}", loss=f"{loss:.3f}", refresh=False)
        if (bar.n + 1) % epochs == 0:
            # Testing on the whole test split follows and can take a while.
            bar.set_postfix_str(f"run {at}/{runs}: testing on {len(bundle.y_test):,} "
                                "images", refresh=False)
        bar.update(1)

    for r in mine:
        run_metrics, ran_compiled = train_run(
            dataset, bundle, epochs, seed + r, dev, batch_size, dsa, normalized,
            # Reading the loss for the bar waits for the GPU: only with a bar.
            None if bar.disable else tick,
            compile, config,
        )
        metrics.append(run_metrics)
        compiled.append(ran_compiled)
    return metrics, compiled


def _spread(metrics: list[dict[str, float]]) -> dict[str, Any]:
    """Mean, population std and per-run values of every metric but top-1 (the record's
    ``accuracy``): ``top2``, ``top2_std``, ``top2_runs``..., ``within_1db`` (None
    without ``test_rsrp``)."""
    out: dict[str, Any] = {}
    keys = [f"top{k}" for k in TOP_K if k != 1] + ["within_1db"]
    for key in keys:
        values = [m[key] for m in metrics if key in m]
        if len(values) != len(metrics):
            out[key] = out[f"{key}_std"] = out[f"{key}_runs"] = None
            continue
        out[key] = round(float(np.mean(values)), 4)
        out[f"{key}_std"] = round(float(np.std(values)), 4)
        out[f"{key}_runs"] = values
    return out

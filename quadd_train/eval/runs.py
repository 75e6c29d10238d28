"""The protocol's runs: ``runs`` trainings seeded ``seed + r``, and the result record.

On the CPU, ``jobs`` > 1 trains that many runs at once in worker processes
(:mod:`.parallel`); a GPU is shared by the runs anyway, so there they go one after
another. Either way run ``r`` is seeded ``seed + r`` and the accuracies do not depend on
``jobs``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ..data import DatasetBundle
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
    jobs = min(jobs, runs) if dev.type == "cpu" else 1  # one GPU: runs share it anyway
    metrics: list[dict[str, float]] = []
    compiled: list[bool] = []  # each run resolves the compile default and says what ran
    start = time.perf_counter()
    with tqdm(total=runs * epochs, desc="eval", disable=not progress, unit="ep") as bar:
        if jobs > 1:
            bar.set_postfix_str(f"{runs} runs in {jobs} worker processes", refresh=True)
            metrics, compiled = parallel_runs(dataset, bundle, runs, epochs, seed, jobs,
                                           batch_size, dsa, normalized, bar, compile, config)
        else:
            def tick(loss: float) -> None:
                bar.set_postfix(run=f"{len(metrics) + 1}/{runs}", loss=f"{loss:.3f}",
                                refresh=False)
                if (bar.n + 1) % epochs == 0:
                    # Testing on the whole test split follows and can take a while.
                    bar.set_postfix_str(f"run {len(metrics) + 1}/{runs}: testing on "
                                        f"{len(bundle.y_test):,} images", refresh=False)
                bar.update(1)

            for r in range(runs):
                run_metrics, ran_compiled = train_run(
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
                    config,
                )
                metrics.append(run_metrics)
                compiled.append(ran_compiled)
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
        "jobs": jobs,
        # What ran, not what was asked: a failed compile falls back to eager.
        "compile": bool(compiled) and all(compiled),
        "seconds": time.perf_counter() - start,
        "model": eval_model(bundle, config),
        "dsa": dsa and len(bundle.sample_shape) == 3,  # what ran: images only
        **_spread(metrics),
    }


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

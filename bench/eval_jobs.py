"""Wall time of `quadd eval` with its runs one after another (all threads) and side by
side in worker processes (`--jobs`), on the same file in the same session.

    python bench/eval_jobs.py FILE.qdd --dataset cifar10 --data-dir ../shared/datasets \
        --runs 2 --epochs 20 --trials 2

Trials alternate (1, N, 1, N, ...) so drift on a shared machine hits both alike; the
report gives each trial and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from quadd_train.data import load_dataset  # noqa: E402
from quadd_train.evaluate import evaluate_qdd  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--trials", type=int, default=2)
    args = ap.parse_args()

    bundle = load_dataset(args.dataset, args.data_dir)
    times: dict[int, list[float]] = {1: [], args.jobs: []}
    accs: dict[int, list[float]] = {}
    for _ in range(args.trials):
        for jobs in (1, args.jobs):
            t0 = time.perf_counter()
            r = evaluate_qdd(args.file, bundle, runs=args.runs, epochs=args.epochs,
                             device="cpu", progress=False, jobs=jobs)
            times[jobs].append(time.perf_counter() - t0)
            accs[jobs] = r["accuracies"]
    seq, par = statistics.median(times[1]), statistics.median(times[args.jobs])
    print(f"# eval --jobs {args.jobs} vs one after another: {args.file}")
    print(f"{args.runs} runs x {args.epochs} epochs; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {platform.machine()}, {os.cpu_count()} cores; "
          f"{dt.date.today().isoformat()}")
    print(f"one after another: {', '.join(f'{t:.1f}' for t in times[1])} s")
    print(f"--jobs {args.jobs}: {', '.join(f'{t:.1f}' for t in times[args.jobs])} s "
          "(including starting the workers)")
    print(f"speed-up (median): {seq / par:.2f}x")
    print(f"accuracies, one after another: {accs[1]}; --jobs {args.jobs}: {accs[args.jobs]}")


if __name__ == "__main__":
    main()

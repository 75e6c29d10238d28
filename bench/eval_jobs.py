"""Wall time of `quadd eval` under two settings, on the same file in the same session:
its runs one after another (all threads) and side by side in worker processes
(`--jobs`), both eager; or, with `--vs compile`, eager and through torch.compile
(`--compile`, compile time included), both one run after another. Compiled kernels are
cached on disk and in the process, so only a first trial on a fresh machine pays the
full compile; later trials measure a warm cache.

    python bench/eval_jobs.py FILE.qdd --dataset cifar10 --data-dir ../shared/datasets \
        --runs 2 --epochs 20 --trials 2
    python bench/eval_jobs.py FILE.qdd --dataset cifar10 --data-dir ../shared/datasets \
        --vs compile --runs 1 --epochs 100 --trials 2

Trials alternate (A, B, A, B, ...) so drift on a shared machine hits both alike; the
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
from quadd_train.eval import evaluate_qdd  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--vs", choices=["jobs", "compile"], default="jobs",
                    help="what to compare against the eager, one-after-another baseline")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--trials", type=int, default=2)
    args = ap.parse_args()

    base = ("one after another", {"jobs": 1, "compile": False})
    if args.vs == "jobs":
        other = (f"--jobs {args.jobs} (including starting the workers)",
                 {"jobs": args.jobs, "compile": False})
    else:
        other = ("--compile (including compiling)", {"jobs": 1, "compile": True})
    bundle = load_dataset(args.dataset, args.data_dir)
    times: dict[str, list[float]] = {base[0]: [], other[0]: []}
    accs: dict[str, list[float]] = {}
    for _ in range(args.trials):
        for label, kw in (base, other):
            t0 = time.perf_counter()
            r = evaluate_qdd(args.file, bundle, runs=args.runs, epochs=args.epochs,
                             device="cpu", progress=False, **kw)
            times[label].append(time.perf_counter() - t0)
            accs[label] = r["accuracies"]
    print(f"# eval {other[0].split(' (')[0]} vs eager one after another: {args.file}")
    print(f"{args.runs} runs x {args.epochs} epochs; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {platform.machine()}, {os.cpu_count()} cores; "
          f"{dt.date.today().isoformat()}")
    for label, ts in times.items():
        print(f"{label}: {', '.join(f'{t:.1f}' for t in ts)} s")
    ratio = statistics.median(times[base[0]]) / statistics.median(times[other[0]])
    print(f"speed-up (median): {ratio:.2f}x")
    print("accuracies: " + "; ".join(f"{label.split(' (')[0]}: {a}" for label, a in accs.items()))


if __name__ == "__main__":
    main()

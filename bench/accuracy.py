"""Accuracy at equal bytes: QuADD at several bit widths vs the 32-bit, post-quantized and
random-subset baselines, each written as a real `.qdd` file and evaluated from it.

    python bench/accuracy.py --dataset mnist --budget 7840 --budget 31360 \
        --data-dir ../shared/datasets --out docs/results/mnist.jsonl

Every finished configuration is appended to the --out JSON-lines file at once, so an
interrupted run keeps what it measured and a rerun skips what is already there.
`--report` turns such files into the markdown tables of docs/results.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from quadd_codec import Denorm, max_samples_per_class  # noqa: E402
from quadd_train.budget import parse_size  # noqa: E402
from quadd_train.data import load_dataset  # noqa: E402
from quadd_train.distill import DistillConfig, distill, subset  # noqa: E402
from quadd_train.evaluate import evaluate_qdd  # noqa: E402


def _fits(bundle: Any, budget: int, bits: int) -> int:
    denorm = Denorm(bundle.std.tolist(), bundle.mean.tolist())
    return max_samples_per_class(budget, bundle.sample_shape, bits, bundle.class_names,
                                 denorm=denorm)


def _configs(args: argparse.Namespace, budget: int) -> list[dict[str, Any]]:
    """QuADD at each bit width, then the baselines (post-quantized and subset at each
    width that fits, 32-bit DM)."""
    runs = [{"kind": "quadd", "bits": b, "quantizer": args.quantizer} for b in args.bits]
    runs.append({"kind": "dm32", "bits": 32, "quantizer": "none"})
    runs += [{"kind": "post", "bits": b, "quantizer": "none"} for b in args.post_bits]
    runs += [{"kind": "subset", "bits": b} for b in args.subset_bits]
    for r in runs:
        r["budget"] = budget
    return runs


def _key(r: dict[str, Any]) -> tuple:
    return (r["budget"], r["kind"], r["bits"])


def run(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    bundle = load_dataset(args.dataset, args.data_dir)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        done = {_key(json.loads(line)) for line in out.read_text().splitlines() if line}
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    for budget in args.budget:
        for r in _configs(args, budget):
            if _key(r) in done:
                continue
            record: dict[str, Any] = {
                **r, "dataset": args.dataset, "iterations": args.iterations,
                "eval_epochs": args.eval_epochs, "eval_runs": args.runs,
                "pool_size": args.pool_size, "real_per_class": args.real_per_class,
                "date": dt.date.today().isoformat(), "machine": machine,
                "torch": torch.__version__,
            }
            if _fits(bundle, budget, r["bits"]) == 0:
                record.update(status="does not fit", ipc=0)
                _append(out, record)
                print(f"{_key(r)}: not even one sample per class fits", flush=True)
                continue
            path = work / f"{args.dataset}-{budget}-{r['kind']}-{r['bits']}.qdd"
            t0 = time.time()
            if r["kind"] == "subset":
                record["ipc"] = subset(bundle, budget, r["bits"], args.seed, path).ipc
            else:
                cfg = DistillConfig(
                    dataset=args.dataset, budget_bytes=budget,
                    bits=r["bits"] if r["bits"] != 32 else 8,
                    quantizer=r["quantizer"], iterations=args.iterations, seed=args.seed,
                    post_quantize=r["kind"] == "post", pool_size=args.pool_size,
                    real_per_class=args.real_per_class, device="auto",
                )
                res = distill(cfg, bundle, path, progress=False)
                record["ipc"] = res.ipc
                record["it_per_s"] = res.it_per_s
                record["final_loss"] = res.final_loss
            record["distill_seconds"] = round(time.time() - t0, 1)
            t0 = time.time()
            ev = evaluate_qdd(path, bundle, runs=args.runs, epochs=args.eval_epochs,
                              seed=args.seed, progress=False)
            record.update(status="ok", accuracy=ev["accuracy"], std=ev["std"],
                          accuracies=ev["accuracies"], file_bytes=os.path.getsize(path),
                          eval_seconds=round(time.time() - t0, 1))
            assert record["file_bytes"] <= budget
            _append(out, record)
            print(f"{_key(r)}: ipc {record['ipc']}, {record['file_bytes']} B, "
                  f"{record['accuracy']:.2f} +- {record['std']:.2f} %", flush=True)


def _append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def report(paths: list[str]) -> str:
    lines = []
    for p in paths:
        rows = [json.loads(line) for line in Path(p).read_text().splitlines() if line]
        if not rows:
            continue
        first = rows[0]
        lines += [
            f"### {first['dataset']} ({p})",
            "",
            f"Distillation: {first['iterations']} iterations, pool {first['pool_size']} nets x "
            f"{first['real_per_class']} real images per class; evaluation: ConvNet-3, "
            f"{first['eval_epochs']} epochs, {first['eval_runs']} runs. Machine: "
            f"{first['machine']}, torch {first['torch']}, {first['date']}.",
            "",
            "| budget (B) | method | bits | img/class | file bytes | accuracy % | std |",
            "|---:|---|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            if r["status"] != "ok":
                lines.append(f"| {r['budget']} | {r['kind']} | {r['bits']} | 0 | - | "
                             f"{r['status']} | - |")
                continue
            lines.append(f"| {r['budget']} | {r['kind']} | {r['bits']} | {r['ipc']} | "
                         f"{r['file_bytes']} | {r['accuracy']:.2f} | {r['std']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--budget", action="append", type=parse_size, default=[])
    ap.add_argument("--bits", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--post-bits", type=int, nargs="*", default=[2])
    ap.add_argument("--subset-bits", type=int, nargs="*", default=[2])
    ap.add_argument("--quantizer", default="uniform")
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--pool-size", type=int, default=32)
    ap.add_argument("--real-per-class", type=int, default=128)
    ap.add_argument("--eval-epochs", type=int, default=300)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/results/accuracy.jsonl")
    ap.add_argument("--work-dir", default=os.path.expanduser("~/.cache/quadd/bench-accuracy"))
    ap.add_argument("--report", nargs="*", help="print markdown for these .jsonl files")
    args = ap.parse_args()
    if args.report is not None:
        print(report(args.report))
        return
    if not args.budget:
        ap.error("give at least one --budget")
    run(args)


if __name__ == "__main__":
    main()

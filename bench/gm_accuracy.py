"""Gradient matching at equal bytes: GM at 32 bits and at low bit widths against DM at
the same budget, each written as a real `.qdd` file and evaluated from it.

    python bench/gm_accuracy.py --dataset digits --budget 4096 --iterations 200 \
        --run gm:32 --run gm:2 --run dm:2 --run dm:32 \
        --gm-opt batch_real=64 --gm-opt inner_loop=10 --out docs/results/gm.jsonl

A run is ``METHOD:BITS`` (32: the unquantized set, ``--quantizer none``). Every finished
row is appended to the --out JSON-lines file at once, and a rerun skips the rows already
there. ``--report FILE`` prints a JSON-lines file as the markdown table of
docs/results/gm.md.
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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from quadd_train import DistillConfig, distill  # noqa: E402
from quadd_train.budget import parse_size  # noqa: E402
from quadd_train.data import load_dataset  # noqa: E402
from quadd_train.eval import evaluate_qdd  # noqa: E402
from quadd_train.objectives import options_class, parse_option_text  # noqa: E402


def _machine() -> str:
    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} GPU; {cpu}"
    return cpu


def _run_spec(text: str) -> tuple[str, int]:
    method, _, bits = text.partition(":")
    if not bits.isdigit() or int(bits) not in (1, 2, 3, 4, 5, 6, 7, 8, 32):
        raise argparse.ArgumentTypeError(f"expected METHOD:BITS (bits 1..8 or 32), got {text!r}")
    return method, int(bits)


def _key(r: dict[str, Any]) -> tuple:
    return (r["dataset"], r["budget"], r["method"], r["bits"], r["iterations"], r["seed"],
            json.dumps(r["options"], sort_keys=True), r["eval_runs"], r["eval_epochs"])


def _options(args: argparse.Namespace, method: str) -> dict[str, Any]:
    items = {"gm": args.gm_opt, "dm": args.dm_opt}.get(method, [])
    return dict(parse_option_text(options_class(method), t) for t in items)


def run(args: argparse.Namespace) -> None:
    bundle = load_dataset(args.dataset, args.data_dir)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {_key(json.loads(line)) for line in out.read_text().splitlines() if line} \
        if out.exists() else set()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    for budget in args.budget:
        for method, bits in args.run:
            record: dict[str, Any] = {
                "dataset": args.dataset, "budget": budget, "method": method, "bits": bits,
                "iterations": args.iterations, "seed": args.seed,
                "options": _options(args, method), "eval_runs": args.runs,
                "eval_epochs": args.eval_epochs}
            if _key(record) in done:
                continue
            path = work / f"{args.dataset}-{budget}-{method}-{bits}-n{args.iterations}.qdd"
            cfg = DistillConfig(
                dataset=args.dataset, budget_bytes=budget, bits=min(bits, 8),
                quantizer="none" if bits == 32 else args.quantizer, method=method,
                iterations=args.iterations, seed=args.seed, device=args.device,
                objective_options=record["options"])
            t0 = time.time()
            res = distill(cfg, bundle, path, progress=args.progress)
            t1 = time.time()
            ev = evaluate_qdd(path, bundle, runs=args.runs, epochs=args.eval_epochs,
                              seed=args.seed, device=args.device, progress=False)
            record.update(
                ipc=res.ipc, file_bytes=os.path.getsize(path), final_loss=res.final_loss,
                report=res.report, accuracy=ev["accuracy"], std=ev["std"],
                accuracies=ev["accuracies"], distill_seconds=round(t1 - t0, 1),
                eval_seconds=round(time.time() - t1, 1), date=dt.date.today().isoformat(),
                machine=_machine(), torch=torch.__version__, threads=torch.get_num_threads())
            assert record["file_bytes"] <= budget
            with out.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"{method}@{bits}b {budget} B: ipc {res.ipc}, {record['file_bytes']} B, "
                  f"{ev['accuracy']:.2f} +- {ev['std']:.2f} %", flush=True)


def report(paths: list[str]) -> str:
    """The rows of JSON-lines files as a markdown table."""
    lines = ["| dataset | budget | method | bits | ipc | file B | iterations | options | "
             "eval runs x epochs | accuracy % | distill s | date |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in paths:
        for line in Path(p).read_text().splitlines():
            if not line:
                continue
            r = json.loads(line)
            opts = " ".join(f"{k}={v}" for k, v in sorted(r["options"].items())) or "-"
            lines.append(
                f"| {r['dataset']} | {r['budget']} | {r['method']} | {r['bits']} | {r['ipc']} "
                f"| {r['file_bytes']} | {r['iterations']} | {opts} | {r['eval_runs']} x "
                f"{r['eval_epochs']} | {r['accuracy']:.2f} +- {r['std']:.2f} | "
                f"{r['distill_seconds']:.0f} | {r['date']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--budget", type=parse_size, action="append", default=[])
    ap.add_argument("--run", type=_run_spec, action="append", default=[],
                    help="METHOD:BITS (repeatable), e.g. gm:2, gm:32, dm:2")
    ap.add_argument("--quantizer", default="uniform")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gm-opt", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--dm-opt", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--runs", type=int, default=5, help="evaluation runs")
    ap.add_argument("--eval-epochs", type=int, default=1000)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--work-dir", default="bench/work-gm")
    ap.add_argument("--out", default="docs/results/gm.jsonl")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--report", nargs="*", default=None, metavar="FILE")
    args = ap.parse_args()
    if args.report is not None:
        print(report(args.report or [args.out]))
        return
    if not args.budget or not args.run:
        ap.error("give at least one --budget and one --run")
    run(args)


if __name__ == "__main__":
    main()

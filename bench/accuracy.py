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
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from quadd_train import DistillConfig, distill, load_checkpoint, subset  # noqa: E402
from quadd_train.budget import parse_size  # noqa: E402
from quadd_train.data import load_dataset  # noqa: E402
from quadd_train.eval import evaluate_qdd  # noqa: E402
from quadd_train.plan import plan  # noqa: E402


def _fits(args: argparse.Namespace, bundle: Any, budget: int, bits: int) -> int:
    """Samples per class that fit, asked of the same planner `distill` uses."""
    cfg = DistillConfig(dataset=args.dataset, budget_bytes=budget, bits=min(bits, 8),
                        quantizer="none" if bits == 32 else "uniform", upsample=args.upsample,
                        upsample_filter=args.upsample_filter)
    return plan(cfg, bundle).ipc


def _configs(args: argparse.Namespace, budget: int) -> list[dict[str, Any]]:
    """QuADD at each bit width (and each --quantizer), then the baselines (post-quantized
    and subset at each width that fits, 32-bit DM); --only keeps the named ones."""
    runs = [{"kind": "quadd", "bits": b, "quantizer": q} for q in args.quantizer
            for b in args.bits]
    runs.append({"kind": "dm32", "bits": 32, "quantizer": "none"})
    runs += [{"kind": "post", "bits": b, "quantizer": "none", "post_codebook": cb}
             for cb in args.post_codebook for b in args.post_bits]
    runs += [{"kind": "subset", "bits": b, "quantizer": "none"} for b in args.subset_bits]
    for r in runs:
        r["budget"] = budget
    if args.only:
        runs = [r for r in runs if _name(r) in args.only or f"{r['kind']}:{r['bits']}" in args.only]
    return runs


def _name(r: dict[str, Any]) -> str:
    return f"{r['kind']}:{r['bits']}:{r['quantizer']}"


def _key(r: dict[str, Any]) -> tuple:
    return (r["budget"], r["kind"], r["bits"], r.get("quantizer", "uniform"),
            r.get("iterations"), r.get("dm_mode", "fast"), r.get("ipc_fixed"),
            r.get("post_codebook", "uniform"), r.get("quant_warmup", 0), r.get("upsample", 1),
            r.get("lr_img", 1.0), r.get("pool_train_steps", 0),
            r.get("pool_train_batch", 256), r.get("upsample_filter", "nearest"),
            # Rows written before seeds were recorded all used seed 0.
            r.get("seed", 0), r.get("pool_size"), r.get("real_per_class"),
            r.get("eval_epochs"), r.get("eval_runs"),
            _pool_order(r))


def _pool_order(r: dict[str, Any]) -> str | None:
    """How the row's distillation drew its DM pool (None: it drew none)."""
    if r["kind"] == "subset" or r.get("dm_mode", "fast") != "fast":
        return None
    return r.get("pool_order", "random")  # rows from before the setting drew at random


def _machine() -> str:
    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} GPU; {cpu}"
    return cpu


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
    stages = sorted(set(args.stages or [args.iterations]))
    for budget in args.budget:
        for r in _configs(args, budget):
            if r["kind"] == "subset":
                _subset_row(args, bundle, r, budget, work, out, done)
            else:
                _distill_rows(args, bundle, r, budget, stages, work, out, done)


def _base_record(args: argparse.Namespace, r: dict[str, Any]) -> dict[str, Any]:
    return {
        **r, "dataset": args.dataset, "eval_epochs": args.eval_epochs, "eval_runs": args.runs,
        "pool_size": args.pool_size, "real_per_class": args.real_per_class, "seed": args.seed,
        "pool_order": args.pool_order,
        "dm_mode": args.dm_mode, "ipc_fixed": args.ipc, "quant_warmup": args.quant_warmup,
        "upsample": args.upsample, "lr_img": args.lr_img,
        # Subsets are stored as block means for repetition whatever the distilled rows use.
        "upsample_filter": "nearest" if r["kind"] == "subset" else args.upsample_filter,
        "pool_train_steps": args.pool_train_steps, "pool_train_batch": args.pool_train_batch,
        "date": dt.date.today().isoformat(), "machine": _machine(),
        "torch": torch.__version__,
    }


def _evaluate(args: argparse.Namespace, bundle: Any, path: Path, record: dict[str, Any],
              budget: int, out: Path) -> None:
    t0 = time.time()
    ev = evaluate_qdd(path, bundle, runs=args.runs, epochs=args.eval_epochs, seed=args.seed,
                      device=args.device, progress=False, jobs=args.eval_jobs)
    record.update(status="ok", accuracy=ev["accuracy"], std=ev["std"],
                  accuracies=ev["accuracies"], file_bytes=os.path.getsize(path),
                  eval_seconds=round(time.time() - t0, 1), eval_compile=ev["compile"])
    assert record["file_bytes"] <= budget
    _append(out, record)
    print(f"{_key(record)}: ipc {record['ipc']}, {record['file_bytes']} B, "
          f"{record['accuracy']:.2f} +- {record['std']:.2f} %", flush=True)


def _subset_row(args: argparse.Namespace, bundle: Any, r: dict[str, Any], budget: int,
                work: Path, out: Path, done: set) -> None:
    record = {**_base_record(args, r), "iterations": 0}
    if _key(record) in done:
        return
    if args.deadline_at and time.time() + args.eval_guess > args.deadline_at:
        print(f"{_key(record)}: skipped, the evaluation would end past the deadline", flush=True)
        return
    if _fits(args, bundle, budget, r["bits"]) == 0:
        record.update(status="does not fit", ipc=0)
        _append(out, record)
        return
    path = work / f"{args.dataset}-{budget}-subset-{r['bits']}-up{args.upsample}.qdd"
    record["ipc"] = subset(bundle, budget, r["bits"], args.seed, path,
                           upsample=args.upsample).ipc
    record["distill_seconds"] = 0.0
    _evaluate(args, bundle, path, record, budget, out)


def _distill_rows(args: argparse.Namespace, bundle: Any, r: dict[str, Any], budget: int,
                  stages: list[int], work: Path, out: Path, done: set) -> None:
    """One run per configuration, evaluated at each stage: the run goes on from the
    previous stage's checkpoint (byte-identical to an uninterrupted run of that length),
    and a stage is skipped when it would not finish before --deadline-at."""
    if _fits(args, bundle, budget, r["bits"]) == 0:
        record = {**_base_record(args, r), "iterations": stages[-1]}
        if _key(record) not in done:
            record.update(status="does not fit", ipc=0)
            _append(out, record)
            print(f"{_key(record)}: not even one sample per class fits", flush=True)
        return
    stem = (f"{args.dataset}-{budget}-{r['kind']}-{r['bits']}-{r['quantizer']}-{args.dm_mode}"
            f"-ipc{args.ipc or 'max'}-{r.get('post_codebook', 'uniform')}-w{args.quant_warmup}"
            f"-up{args.upsample}-p{args.pool_size}x{args.real_per_class}-s{args.seed}"
            f"-c{args.compile}"
            # Only a non-default rate is named, so older work files keep their names.
            + (f"-lr{args.lr_img:g}" if args.lr_img != 1.0 else "")
            + (f"-{args.upsample_filter}" if args.upsample_filter != "nearest" else "")
            + (f"-pt{args.pool_train_steps}x{args.pool_train_batch}"
               if args.pool_train_steps else "")
            # Older work files drew the pool at random and carry no suffix; a shuffled
            # run must not resume their checkpoints.
            + ("-shuffle" if args.pool_order == "shuffle" and args.dm_mode == "fast" else ""))
    ckpt = work / f"{stem}.ckpt"
    pending = [n for n in stages
               if _key({**_base_record(args, r), "iterations": n}) not in done]
    if not pending:
        return
    # A checkpoint left by an interrupted run carries on, unless it is past the first stage
    # still to measure: a later stage's state must never be written as an earlier one.
    at = _checkpoint_iteration(ckpt) if ckpt.exists() else 0  # where the next stage starts
    if at > pending[0]:
        ckpt.unlink()
        at = 0
    rate: float | None = None
    eval_guess = args.eval_guess
    for n_it in pending:
        record = {**_base_record(args, r), "iterations": n_it}
        if args.deadline_at and rate:
            need = (n_it - at) / rate + eval_guess
            if time.time() + need > args.deadline_at:
                print(f"{_key(record)}: skipped, would end {need:.0f} s from now, past the "
                      "deadline", flush=True)
                return
        path = work / f"{stem}-{n_it}.qdd"
        cfg = DistillConfig(
            dataset=args.dataset, budget_bytes=budget,
            bits=r["bits"] if r["bits"] != 32 else 8,
            quantizer=r["quantizer"], iterations=n_it, seed=args.seed,
            post_quantize=r["kind"] == "post",
            post_codebook=r.get("post_codebook", "uniform"), quant_warmup=args.quant_warmup,
            device=args.device, ipc=args.ipc, compile=args.compile, upsample=args.upsample,
            upsample_filter=args.upsample_filter, lr_img=args.lr_img,
            objective_options=dict(
                mode=args.dm_mode, pool_size=args.pool_size,
                real_per_class=args.real_per_class, pool_train_steps=args.pool_train_steps,
                pool_train_batch=args.pool_train_batch, pool_order=args.pool_order,
                pool_cache=False),  # prepare_seconds is reported: computed, not read
            # Often enough that a killed run loses little; dividing n_it, so the next
            # stage starts exactly where this one ended.
            checkpoint_every=math.gcd(100, n_it), checkpoint_path=str(ckpt), resume=True,
        )
        t0 = time.time()
        res = distill(cfg, bundle, path, progress=False)
        record.update(ipc=res.ipc, it_per_s=res.it_per_s, final_loss=res.final_loss,
                      prepare_seconds=round(res.prepare_seconds, 1),
                      resumed_from=res.resumed_from,
                      distill_seconds=round(time.time() - t0, 1))
        if res.seconds > 0 and n_it > res.resumed_from:
            rate = (n_it - res.resumed_from) / res.seconds
        at = n_it
        t0 = time.time()
        _evaluate(args, bundle, path, record, budget, out)
        eval_guess = time.time() - t0
    # The checkpoint stays: a later run with a longer stage goes on from it.


def _checkpoint_iteration(path: Path) -> int:
    return int(load_checkpoint(str(path))["iteration"])


def _append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def report(paths: list[str]) -> str:
    """Markdown tables of .jsonl files; rows in file order, one table per file."""
    lines = []
    for p in paths:
        rows = [json.loads(line) for line in Path(p).read_text().splitlines() if line]
        if not rows:
            continue
        first = next((r for r in rows if r["status"] == "ok"), rows[0])
        orders = {_pool_order(r) for r in rows} - {None}
        base_order = "shuffle" if orders == {"shuffle"} else "random"
        order = {"quadd": 0, "dm32": 1, "post": 2, "subset": 3}
        rows.sort(key=lambda r: (r["budget"], order.get(r["kind"], 9), r.get("dm_mode", ""),
                                 r.get("quantizer", ""), r["bits"], r.get("iterations") or 0))
        lines += [
            f"### {first['dataset']} ({p})",
            "",
            f"Distillation: pool {first['pool_size']} nets x {first['real_per_class']} real "
            f"images per class"
            + (" drawn in shuffled passes" if base_order == "shuffle" else "")
            + f"; evaluation: ConvNet-3, {first['eval_epochs']} epochs, "
            f"{first['eval_runs']} runs. Machine: {first['machine']}, torch {first['torch']}, "
            f"{first['date']}.",
            "",
            "| budget (B) | method | quantizer | bits | DM iterations | img/class | file bytes "
            "| accuracy % | std |",
            "|---:|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            kind = r["kind"] if r.get("dm_mode", "fast") == "fast" else f"{r['kind']} (plain)"
            if r.get("post_codebook", "uniform") != "uniform":
                kind += f" ({r['post_codebook']} codebook)"
            if r.get("upsample", 1) != 1:
                kind += f", stored 1/{r['upsample']} per side"
                if r.get("upsample_filter", "nearest") != "nearest":
                    kind += f", {r['upsample_filter']} enlargement"
            if r.get("quant_warmup", 0) and r["kind"] == "quadd":
                kind += f", warm-up {r['quant_warmup']}"
            if r.get("lr_img", 1.0) != 1.0:
                kind += f", lr_img {r['lr_img']:g}"
            if r.get("pool_train_steps", 0):
                kind += (f", pool trained up to {r['pool_train_steps']} steps of "
                         f"{r.get('pool_train_batch', 256)}")
            if (r["pool_size"], r["real_per_class"]) != (first["pool_size"],
                                                         first["real_per_class"]):
                kind += f", pool {r['pool_size']} x {r['real_per_class']}"
            if _pool_order(r) not in (None, base_order):
                kind += (", pool drawn in shuffled passes" if _pool_order(r) == "shuffle"
                         else ", pool drawn at random")
            if (r["eval_epochs"], r["eval_runs"]) != (first["eval_epochs"], first["eval_runs"]):
                kind += f", eval {r['eval_epochs']} epochs x {r['eval_runs']}"
            if r.get("seed", 0):
                kind += f", seed {r['seed']}"
            quant = r.get("quantizer", "-") if r["kind"] == "quadd" else "-"
            its = r.get("iterations") or "-"
            if r["status"] != "ok":
                lines.append(f"| {r['budget']} | {kind} | {quant} | {r['bits']} | - | 0 | - | "
                             f"{r['status']} | - |")
                continue
            lines.append(f"| {r['budget']} | {kind} | {quant} | {r['bits']} | {its} | "
                         f"{r['ipc']} | {r['file_bytes']} | {r['accuracy']:.2f} | "
                         f"{r['std']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--budget", action="append", type=parse_size, default=[])
    ap.add_argument("--bits", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--post-bits", type=int, nargs="*", default=[2])
    ap.add_argument("--post-codebook", nargs="+", choices=["uniform", "kmeans"],
                    default=["uniform"], help="codebook(s) of the post-quantized baseline")
    ap.add_argument("--subset-bits", type=int, nargs="*", default=[2])
    ap.add_argument("--quantizer", nargs="+", default=["uniform"])
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--stages", type=int, nargs="*", default=None,
                    help="evaluate each run after these iteration counts (default: "
                         "--iterations only)")
    ap.add_argument("--deadline-at", type=float, default=0.0,
                    help="unix time: skip a stage that would end later (0: no deadline)")
    ap.add_argument("--eval-guess", type=float, default=60.0,
                    help="seconds one evaluation is assumed to take before one is timed")
    ap.add_argument("--only", nargs="*", default=None,
                    help="run just these configurations, as kind:bits or kind:bits:quantizer")
    ap.add_argument("--ipc", type=int, default=None,
                    help="fixed images per class instead of the most that fit")
    ap.add_argument("--dm-mode", choices=["fast", "plain"], default="fast")
    ap.add_argument("--upsample", type=int, default=1,
                    help="store samples this many times smaller per side (distill and subset)")
    ap.add_argument("--upsample-filter", choices=["nearest", "linear"], default="nearest",
                    help="how distilled --upsample samples are enlarged (subsets: nearest)")
    ap.add_argument("--quant-warmup", type=int, default=0,
                    help="unquantized iterations before the quantizer switches on")
    ap.add_argument("--lr-img", type=float, default=1.0,
                    help="learning rate of the synthetic samples (DM's reference: 1.0)")
    ap.add_argument("--compile", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--pool-size", type=int, default=32)
    ap.add_argument("--real-per-class", type=int, default=128)
    ap.add_argument("--pool-order", choices=["shuffle", "random"], default="shuffle",
                    help="how fast DM draws its pool entries; see distill --pool-order")
    ap.add_argument("--pool-train-steps", type=int, default=0,
                    help="train the pool's networks on real data first (IDM); see distill")
    ap.add_argument("--pool-train-batch", type=int, default=256)
    ap.add_argument("--eval-epochs", type=int, default=300)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--eval-jobs", type=int, default=1,
                    help="evaluation runs trained at once on the CPU (quadd eval --jobs)")
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
    args.compile = {"auto": None, "on": True, "off": False}[args.compile]
    run(args)


if __name__ == "__main__":
    main()

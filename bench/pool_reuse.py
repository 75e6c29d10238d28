"""Fast DM against the plain loop at equal iterations, over many seeds, on a small dataset.

The fast loop's one approximation is its finite pool: each entry (a network and its
per-class DSA transforms) is used about iterations / pool size times, where the plain
loop draws a fresh one every iteration. This bench measures what that reuse costs, for
pool sizes and draw orders given as variants, against the plain loop with the same seed
(a seed fixes the initial samples, so the comparison is paired). ``--real-per-class``
sets both a pool entry's real images and a plain iteration's batch:

    python bench/pool_reuse.py --dataset digits --ipc 2 --iterations 300 \
        --variants plain shuffle:300 random:300 shuffle:16 random:16 \
        --seeds 0-19 --jobs 2 --out docs/results/pool-reuse-digits.jsonl
    python bench/pool_reuse.py --report docs/results/pool-reuse-digits.jsonl

Variants: ``plain`` (the reference loop) or ``ORDER:POOL`` (fast loop, ``ORDER`` one of
``shuffle``/``random``, see ``distill --pool-order``); ``ORDER:POOLxREAL`` also sets the
real images per class behind each pool entry's mean (``shuffle:300x8``), so pools of
equal set-up cost can be compared. Every (variant, seed) is one
distillation (unquantized unless ``--quantizer``) and one evaluation, appended to --out
when done; a rerun skips what is there. Each job uses one torch thread.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _shared import report_or_run  # noqa: E402


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def _variant(v: str) -> dict[str, Any]:
    """Distillation settings of a variant: ``plain``, ``ORDER:POOL`` or ``ORDER:POOLxREAL``."""
    if v == "plain":
        return {"dm_mode": "plain"}
    order, _, rest = v.partition(":")
    size, _, real = rest.partition("x")
    if (order not in ("shuffle", "random") or not size.isdigit() or int(size) < 1
            or (real and (not real.isdigit() or int(real) < 1))):
        raise argparse.ArgumentTypeError(f"variant {v!r}: expected plain, ORDER:POOL or "
                                         "ORDER:POOLxREAL, e.g. shuffle:300 or shuffle:300x8")
    out: dict[str, Any] = {"dm_mode": "fast", "pool_order": order, "pool_size": int(size)}
    if real:
        out["real_per_class"] = int(real)
    return out


def _job(args: dict[str, Any], variant: str, seed: int) -> dict[str, Any]:
    import torch

    from quadd_train import DistillConfig, distill
    from quadd_train.data import load_dataset
    from quadd_train.eval import evaluate_qdd

    torch.set_num_threads(1)
    bundle = load_dataset(args["dataset"], args["data_dir"])
    settings = {"real_per_class": args["real_per_class"], **_variant(variant)}
    settings["mode"] = settings.pop("dm_mode", "auto")
    cfg = DistillConfig(dataset=args["dataset"], budget_bytes=1 << 30,
                        quantizer=args["quantizer"], bits=args["bits"], ipc=args["ipc"],
                        iterations=args["iterations"], seed=seed, device="cpu",
                        compile=args.get("compile", False),
                        # The set-up is timed: computed, never read from the pool cache.
                        objective_options={"batch_real": args["real_per_class"],
                                           "pool_cache": False, **settings})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.qdd"
        res = distill(cfg, bundle, path, progress=False)
        ev = evaluate_qdd(path, bundle, runs=args["runs"], epochs=args["epochs"], seed=0,
                          device="cpu", progress=False)
    return {"variant": variant, "seed": seed, "dataset": args["dataset"], "ipc": res.ipc,
            "iterations": args["iterations"], "real_per_class": args["real_per_class"],
            "quantizer": args["quantizer"], "bits": res.bits,
            "eval_epochs": args["epochs"], "eval_runs": args["runs"],
            "compile": bool(args.get("compile", False)),
            "accuracy": ev["accuracy"], "accuracies": ev["accuracies"],
            "prepare_seconds": round(res.prepare_seconds, 2),
            "loop_seconds": round(res.seconds, 2), "final_loss": res.final_loss,
            "date": dt.date.today().isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"}


def _key(r: dict[str, Any]) -> tuple:
    return (r["variant"], r["seed"], r["dataset"], r["ipc"], r["iterations"],
            r["real_per_class"], r["eval_epochs"], r["eval_runs"],
            r.get("quantizer", "none"), r.get("bits", 32), r.get("compile", False))


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        done = {_key(json.loads(line)) for line in out.read_text().splitlines() if line}
    shared = {"dataset": args.dataset, "data_dir": args.data_dir, "ipc": args.ipc,
              "iterations": args.iterations, "real_per_class": args.real_per_class,
              "epochs": args.epochs, "runs": args.runs, "quantizer": args.quantizer,
              "bits": args.bits, "compile": args.compile}
    file_bits = 32 if args.quantizer == "none" else args.bits
    todo = [(v, s) for s in args.seeds for v in args.variants
            if _key({**shared, "variant": v, "seed": s, "eval_epochs": args.epochs,
                     "eval_runs": args.runs, "bits": file_bits}) not in done]
    print(f"{len(todo)} jobs to run, {len(args.seeds) * len(args.variants) - len(todo)} done",
          flush=True)
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        futs = {pool.submit(_job, shared, v, s): (v, s) for v, s in todo}
        for fut in as_completed(futs):
            row = fut.result()
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{row['variant']:>12} seed {row['seed']:>3}: {row['accuracy']:.2f}% "
                  f"(prepare {row['prepare_seconds']} s, loop {row['loop_seconds']} s)",
                  flush=True)


def report(paths: list[str]) -> str:
    rows = [json.loads(line) for p in paths for line in Path(p).read_text().splitlines()
            if line]
    if not rows:
        return "no rows"
    by: dict[str, dict[int, dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["variant"], {})[r["seed"]] = r
    first = rows[0]
    quant = ("unquantized" if first.get("quantizer", "none") == "none"
             else f"{first['quantizer']} quantizer at {first['bits']} bits")
    lines = [
        f"{first['dataset']}, {first['ipc']} img/class, {quant}, {first['iterations']} "
        f"DM iterations, {first['real_per_class']} real images per class per pool entry "
        "(the whole class where smaller) and per plain iteration (the whole class too); "
        f"evaluation: ConvNet-3, {first['eval_epochs']} epochs x {first['eval_runs']} runs. "
        f"Machine: {first['machine']}, {first['date']}.",
        "",
        "| loop | draws per entry | real images per class per entry | seeds | "
        "mean accuracy % | mean difference to plain (paired) | std. error | "
        "seeds below plain | prepare s | loop s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    plain = by.get("plain", {})
    settings = {v: _variant(v) for v in by}
    # The reference first, then larger pools before smaller, more real images before
    # fewer, then by name.
    order = sorted(by, key=lambda v: (v != "plain", -settings[v].get("pool_size", 0),
                                      -settings[v].get("real_per_class",
                                                       first["real_per_class"]), v))
    for v in order:
        seeds = by[v]
        acc = [r["accuracy"] for r in seeds.values()]
        prep = sum(r["prepare_seconds"] for r in seeds.values()) / len(seeds)
        loop = sum(r["loop_seconds"] for r in seeds.values()) / len(seeds)
        diff, se, below = "-", "-", "-"
        if v != "plain":
            d = [seeds[s]["accuracy"] - plain[s]["accuracy"] for s in seeds if s in plain]
            if len(d) > 1:
                m = sum(d) / len(d)
                sd = math.sqrt(sum((x - m) ** 2 for x in d) / (len(d) - 1))
                diff, se = f"{m:+.2f}", f"{sd / math.sqrt(len(d)):.2f}"
                below = f"{sum(x < 0 for x in d)} of {len(d)}"
        real = settings[v].get("real_per_class", first["real_per_class"])
        if v == "plain":
            name, reuse = "plain (reference)", "-"
        else:
            size = settings[v]["pool_size"]
            name = f"fast, pool {size}, {settings[v]['pool_order']}"
            reuse = f"{first['iterations'] / size:.1f}"
        lines.append(f"| {name} | {reuse} | {real} | {len(acc)} | {sum(acc) / len(acc):.2f} | "
                     f"{diff} | {se} | {below} | {prep:.1f} | {loop:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--ipc", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--real-per-class", type=int, default=256,
                    help="real images per class behind a pool entry's mean and in a plain "
                    "iteration's batch")
    ap.add_argument("--quantizer", default="none", choices=["none", "uniform", "apot",
                                                            "learned"])
    ap.add_argument("--bits", type=int, default=2, help="with a quantizer")
    ap.add_argument("--variants", nargs="+", default=["plain", "shuffle:300", "shuffle:16"])
    ap.add_argument("--seeds", type=_seeds, default=_seeds("0-9"), help="e.g. 0-19 or 0,3,5")
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the DM embeddings (pays on CIFAR-10 at 1000 "
                    "iterations; off by default, as in the digits rows)")
    ap.add_argument("--out", default="pool-reuse.jsonl")
    ap.add_argument("--report", nargs="*")
    report_or_run(ap, _variant, run, report)


if __name__ == "__main__":
    main()

"""Fast-DM pools of equal set-up cost, compared by the DM loss on networks they never saw.

A pool of ``P`` entries x ``R`` real images per class costs ``P * R`` embedded images per
class to set up. Spending that on many entries with few images each (no entry reused, a
noisier real mean) or on few entries with many images (reused ``iterations / P`` times)
are two ends of one trade. Accuracy needs many seeds to tell them apart on CIFAR-10,
which a CPU cannot afford, so this bench measures what DM itself optimizes, on a held-out
pool: ``H`` other random networks and transforms whose real means average ``RH`` images
per class. A set fitted to its own pool's quirks, or left noisy, scores worse there.

Each run starts from the same synthetic set (``--from FILE.qdd``, unquantized, or real
images), runs ``--iterations`` steps of DM's optimizer (SGD, lr 1.0, momentum 0.5) with
one pool variant and seed, and reports the held-out loss of its final set (per class,
mean over the held-out entries). Variants are ``PxR``; ``plain`` is the reference loop.

    python bench/pool_heldout.py --dataset cifar10 --data-dir ../shared/datasets \\
        --from start.qdd --iterations 200 --variants 200x256 200x32 25x256 50x128 \\
        --seeds 0 1 --out heldout.jsonl
    python bench/pool_heldout.py --report heldout.jsonl
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

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _shared import report_or_run, start_set  # noqa: E402

HELDOUT_SEED = 1_000_003  # far from the run seeds, so no held-out entry is a pool entry


def _variant(v: str) -> dict[str, Any]:
    if v == "plain":
        return {"mode": "plain"}
    pool, _, real = v.partition("x")
    if not (pool.isdigit() and real.isdigit() and int(pool) > 0 and int(real) > 0):
        raise argparse.ArgumentTypeError(f"variant {v!r}: expected plain or POOLxREAL, "
                                         "e.g. 200x32")
    return {"mode": "fast", "pool_size": int(pool), "real_per_class": int(real)}


def _heldout(args: argparse.Namespace, x_real: Any, y_real: Any, k: int, ipc: int) -> Any:
    import torch

    from quadd_train.objectives.dm import DMObjective
    from quadd_train.runtime import resolve_runtime

    obj = DMObjective(pool_size=args.heldout, real_per_class=args.heldout_real)
    cache = Path(args.cache) if args.cache else None
    if cache is not None and cache.exists():
        obj.load_state_dict(torch.load(cache, weights_only=False))
    t = time.perf_counter()
    obj.prepare(x_real, y_real, k, ipc, resolve_runtime("cpu", bf16=False), HELDOUT_SEED)
    if cache is not None and not cache.exists():
        torch.save(obj.state_dict(), cache)
    print(f"held-out pool {args.heldout} x {args.heldout_real}: "
          f"{time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    return obj


def _heldout_loss(held: Any, syn: Any) -> float:
    import torch

    with torch.no_grad():
        total = sum(float(held.entry_loss(syn, p)) for p in range(held.pool_size))
    return total / held.pool_size / held.num_classes


def run(args: argparse.Namespace) -> None:
    import torch

    from quadd_train.data import load_dataset
    from quadd_train.objectives.dm import DMObjective
    from quadd_train.runtime import resolve_runtime

    if args.threads:
        torch.set_num_threads(args.threads)
    bundle = load_dataset(args.dataset, args.data_dir)
    x_real = bundle.normalize(bundle.x_train.float())
    y_real = bundle.y_train.long()
    start, _labels, what = start_set(args.source, bundle, x_real, args.ipc, 0)
    k = bundle.num_classes
    ipc = start.shape[0] // k
    held = _heldout(args, x_real, y_real, k, ipc)
    out = Path(args.out)
    done = set()
    if out.exists():
        done = {(r["variant"], r["seed"]) for r in map(json.loads, out.read_text().splitlines())}
    base = {"dataset": args.dataset, "start": what, "ipc": ipc, "iterations": args.iterations,
            "heldout": f"{args.heldout}x{args.heldout_real}",
            "start_heldout_loss": _heldout_loss(held, start)}
    for seed in args.seeds:
        for v in args.variants:
            if (v, seed) in done:
                continue
            obj = DMObjective(**_variant(v), pool_cache=False)  # its set-up is timed
            runtime = resolve_runtime("cpu", bf16=False, compile=args.compile)
            t0 = time.perf_counter()
            torch.manual_seed(seed)
            obj.prepare(x_real, y_real, k, ipc, runtime, seed)
            t1 = time.perf_counter()
            syn = start.clone().requires_grad_(True)
            opt = torch.optim.SGD([syn], lr=1.0, momentum=0.5)
            rng = np.random.default_rng([seed, 0xD15])
            losses = []
            for _ in range(args.iterations):
                loss = obj.loss(syn, None, rng)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()) / k)
            t2 = time.perf_counter()
            row = {**base, "variant": v, "seed": seed,
                   "heldout_loss": _heldout_loss(held, syn.detach()),
                   "train_loss_last50": float(np.mean(losses[-50:])),
                   "prepare_seconds": round(t1 - t0, 1), "loop_seconds": round(t2 - t1, 1),
                   "date": dt.date.today().isoformat(),
                   "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                              f"torch {torch.__version__}"}
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{v:>9} seed {seed}: held-out {row['heldout_loss']:.4f} "
                  f"(train {row['train_loss_last50']:.4f}; prepare {row['prepare_seconds']} s, "
                  f"loop {row['loop_seconds']} s)", flush=True)


def report(paths: list[str]) -> str:
    rows = [json.loads(line) for p in paths for line in Path(p).read_text().splitlines()
            if line]
    if not rows:
        return "no rows"
    first = rows[0]
    by: dict[str, dict[int, dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["variant"], {})[r["seed"]] = r
    lines = [
        f"{first['dataset']}, from {first['start']} ({first['ipc']} img/class, held-out loss "
        f"{first['start_heldout_loss']:.4f}), {first['iterations']} DM iterations; held-out "
        f"pool {first['heldout']} (networks x real images per class). Loss per class. "
        f"Machine: {first['machine']}, {first['date']}.",
        "",
        "| pool (entries x real/class) | draws per entry | set-up images per class | seeds | "
        "held-out loss | std. error | train loss (last 50) | set-up s | loop s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    def order(v: str) -> tuple:
        s = _variant(v)
        return (v != "plain", -s.get("pool_size", 0) * s.get("real_per_class", 0),
                -s.get("pool_size", 0))

    for v, seeds in sorted(by.items(), key=lambda kv: order(kv[0])):
        h = [r["heldout_loss"] for r in seeds.values()]
        m = sum(h) / len(h)
        se = (math.sqrt(sum((x - m) ** 2 for x in h) / (len(h) - 1) / len(h))
              if len(h) > 1 else float("nan"))
        s = _variant(v)
        reuse = "-" if v == "plain" else f"{first['iterations'] / s['pool_size']:.1f}"
        cost = "-" if v == "plain" else str(s["pool_size"] * s["real_per_class"])
        tr = sum(r["train_loss_last50"] for r in seeds.values()) / len(seeds)
        prep = sum(r["prepare_seconds"] for r in seeds.values()) / len(seeds)
        loop = sum(r["loop_seconds"] for r in seeds.values()) / len(seeds)
        lines.append(f"| {v} | {reuse} | {cost} | {len(h)} | {m:.4f} | {se:.4f} | {tr:.4f} | "
                     f"{prep:.0f} | {loop:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--from", dest="source", default=None, help="start set (.qdd, unquantized)")
    ap.add_argument("--ipc", type=int, default=16, help="without --from: real images per class")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--variants", nargs="+", type=str, default=["200x256", "200x32", "25x256"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--heldout", type=int, default=64, help="held-out networks")
    ap.add_argument("--heldout-real", type=int, default=256, help="held-out real images/class")
    ap.add_argument("--cache", default=None, help="keep the held-out pool in this file")
    ap.add_argument("--compile", action="store_true", help="torch.compile the embeddings")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="pool-heldout.jsonl")
    ap.add_argument("--report", nargs="*")
    report_or_run(ap, _variant, run, report)


if __name__ == "__main__":
    main()

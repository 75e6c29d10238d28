"""Compiled DM steps on the CPU in NCHW and in channels_last, interleaved in one run.

Why: a compiled run on a CPU takes channels_last by default (``resolve_runtime``),
because compiled NHWC steps measured no slower than NCHW there while eager ones took
twice as long (``dm_speed.py``). This checks the compiled claim on the loops and set
sizes ``dm_speed`` does not time: the plain loop, and a large synthetic set embedded in
checkpointed pieces.

    python bench/layout_speed.py --data-dir ../shared/datasets --mode fast --ipc 16 --reps 20
    python bench/layout_speed.py --data-dir ../shared/datasets --mode plain --ipc 16 --reps 4
    python bench/layout_speed.py --data-dir ../shared/datasets --mode fast --ipc 545 --reps 3

Steps are full optimizer steps (2-bit uniform quantizer, DM loss, backward, update) on
CIFAR-10 after two warm-up steps that compile; the two layouts alternate step by step.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from quadd_train.data import load_dataset
from quadd_train.objectives import make_objective
from quadd_train.quantizers import make_quantizer
from quadd_train.runtime import resolve_runtime
from quadd_train.synthetic import SyntheticSet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--mode", choices=("fast", "plain"), default="fast")
    ap.add_argument("--ipc", type=int, default=16)
    ap.add_argument("--reps", type=int, default=10, help="timed steps per layout")
    args = ap.parse_args()

    bundle = load_dataset("cifar10", data_dir=args.data_dir)
    x, y = bundle.normalize(bundle.x_train.float()), bundle.y_train.long()
    steps = {}
    for layout in ("NCHW", "channels_last"):
        torch.manual_seed(0)
        syn = SyntheticSet.from_real(x, y, 10, args.ipc, 0)
        quant = make_quantizer("uniform", 2, "channel", num_samples=10 * args.ipc,
                               num_channels=3)
        quant.init_from(syn.data.detach())
        pool = {"pool_size": 2, "real_per_class": 128} if args.mode == "fast" else {}
        obj = make_objective("dm", mode=args.mode, **pool)
        runtime = resolve_runtime("cpu", compile=True,
                                  channels_last=layout == "channels_last")
        obj.prepare(x, y, 10, args.ipc, runtime, 0, iterations=1000)
        opt = torch.optim.SGD([syn.data], lr=1.0, momentum=0.5)
        rng = np.random.default_rng(0)

        def step(obj=obj, quant=quant, syn=syn, opt=opt, rng=rng) -> None:
            loss = obj.loss(syn.expand(quant(syn.data)), syn.labels, rng)
            opt.zero_grad()
            loss.backward()
            opt.step()

        for _ in range(2):
            step()
        steps[layout] = step
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.reps):
        for layout, step in steps.items():
            t = time.perf_counter()
            step()
            times[layout].append(time.perf_counter() - t)
    print(f"{args.mode} loop, CIFAR-10, ipc {args.ipc}, compiled, bf16={obj.bf16}; "
          f"{args.reps} interleaved steps per layout; {time.strftime('%Y-%m-%d %H:%M')}, "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    for layout, ts in times.items():
        print(f"  {layout}: best {min(ts):.4f} s, median {np.median(ts):.4f} s")
    a, b = times["NCHW"], times["channels_last"]
    print(f"  NCHW / channels_last: best {min(a) / min(b):.3f}, "
          f"median {np.median(a) / np.median(b):.3f}")


if __name__ == "__main__":
    main()

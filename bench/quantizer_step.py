"""The affine quantizers' step (uniform, APoT), fused path against the generic one.

One step = quantize the samples, a sum-of-squares loss, backward, and (optionally) the
quantizer's Adam update, the quantizer part of a DM iteration without the network. It
prints the top-level aten ops per step (a GPU launches a kernel for most of them) and
the step time, both paths interleaved, best of ``--rounds`` rounds of ``--steps``.

    python bench/quantizer_step.py [--device cpu|cuda] [--quantizer uniform apot]
        [--rounds 15] [--steps 20]
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import platform
import sys
import time
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from quadd_train.quantizers import make_quantizer, quantizer_optimizer  # noqa: E402


def _stepper(name: str, shape: tuple[int, ...], fused: bool, adam: bool, device: str
             ) -> Callable[[], None]:
    gen = torch.Generator().manual_seed(0)
    syn = torch.randn(*shape, generator=gen).to(device).requires_grad_(True)
    quant = make_quantizer(name, 4, "channel", shape[0], shape[1]).to(device)
    quant.init_from(syn.detach())
    quant.fused = fused
    opt = quantizer_optimizer(quant, 0.005) if adam else None

    def step() -> None:
        out = quant(syn)
        loss = (out * out).sum()
        syn.grad = None
        quant.zero_grad()
        loss.backward()
        if opt is not None:
            opt.step()
        if syn.is_cuda:
            torch.cuda.synchronize()

    return step


def _top_level_ops(step: Callable[[], None]) -> int:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    ops = [e for e in prof.events() if e.name.startswith("aten::")]
    return sum(1 for e in ops if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quantizer", nargs="+", choices=["uniform", "apot"],
                    default=["uniform", "apot"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"- date: {dt.datetime.now().isoformat(timespec='seconds')}; machine: "
          f"{platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), "
          f"device {args.device}\n")
    print("| quantizer | samples | Adam | ops generic | ops fused | ms generic | ms fused "
          "| speed-up |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for name, shape, adam in itertools.product(args.quantizer, [(160, 3, 32, 32), (16, 3, 4, 4)],
                                               (False, True)):
        steps = {f: _stepper(name, shape, f, adam, args.device) for f in (False, True)}
        for s in steps.values():
            s()
            s()
        ops = {f: _top_level_ops(s) for f, s in steps.items()}
        best = dict.fromkeys(steps, float("inf"))
        for _ in range(args.rounds):  # interleaved: load hits both alike
            for f, s in steps.items():
                t = time.perf_counter()
                for _ in range(args.steps):
                    s()
                best[f] = min(best[f], (time.perf_counter() - t) / args.steps)
        print(f"| {name} | {'x'.join(map(str, shape))} | {'yes' if adam else 'no'} | "
              f"{ops[False]} | {ops[True]} | {best[False] * 1e3:.3f} | {best[True] * 1e3:.3f} | "
              f"{best[False] / best[True]:.2f}x |")


if __name__ == "__main__":
    main()

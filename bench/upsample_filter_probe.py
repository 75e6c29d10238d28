"""Probe: would another enlargement filter train better than block repetition for `--upsample`?

Written before `.qdd` 1.2 specified linear enlargement (FORMAT.md 7b), to measure first
whether a filter pays before it becomes a format feature: it distils with a
half-pixel-centred bilinear (or nearest) enlargement in the loop, enlarges the file's
quantized samples the same way, stores them as a raw float32 full-size file (over the
budget: an accuracy probe, not a product file) and evaluates that file with the standard
protocol. `quadd distill --upsample-filter linear` is now the product path for bilinear.

    python bench/upsample_filter_probe.py --dataset mnist --budget 7840 --bits 2 \
        --iterations 800 --filter bilinear --data-dir ../shared/datasets
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quadd_codec import QddFile, write_qdd  # noqa: E402
from quadd_train import DistillConfig, distill, synthetic  # noqa: E402
from quadd_train.data import load_dataset  # noqa: E402
from quadd_train.eval import evaluate_qdd  # noqa: E402


def _enlarge(x: torch.Tensor, factor: int, mode: str) -> torch.Tensor:
    if mode == "nearest":
        return F.interpolate(x, scale_factor=factor, mode="nearest")
    return F.interpolate(x, scale_factor=factor, mode=mode, align_corners=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--budget", type=int, default=7840)
    ap.add_argument("--bits", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=800)
    ap.add_argument("--upsample", type=int, default=2)
    ap.add_argument("--filter", choices=["nearest", "bilinear"], default="bilinear")
    ap.add_argument("--eval-epochs", type=int, default=300)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    # The experiment swaps the trainer's enlargement; the shipped code path is untouched.
    def expand(self: synthetic.SyntheticSet, x: torch.Tensor) -> torch.Tensor:
        return x if self.upsample == 1 else _enlarge(x, self.upsample, args.filter)

    synthetic.SyntheticSet.expand = expand  # type: ignore[method-assign]
    bundle = load_dataset(args.dataset, args.data_dir)
    cfg = DistillConfig(dataset=args.dataset, budget_bytes=args.budget, bits=args.bits,
                        iterations=args.iterations, device="cpu", compile=False,
                        upsample=args.upsample, seed=args.seed,
                        objective_options={"pool_size": 32, "real_per_class": 128})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.qdd"
        distill(cfg, bundle, out, progress=False)
        q = QddFile(out)
        f = args.upsample
        small = np.ascontiguousarray(q.read_all(denormalize=True)[..., ::f, ::f])
        big = _enlarge(torch.from_numpy(small), f, args.filter).numpy()
        probe = Path(tmp) / "probe.qdd"
        write_qdd(probe, np.ascontiguousarray(big, np.float32), None, q.labels, 32, "channel",
                  list(q.class_names))
        res = evaluate_qdd(probe, bundle, runs=args.runs, epochs=args.eval_epochs,
                           seed=args.seed, device="cpu", progress=False)
        ipc = q.layout.n // len(q.class_names)
    print(json.dumps({"dataset": args.dataset, "budget": args.budget, "bits": args.bits,
                      "upsample": f, "filter": args.filter, "iterations": args.iterations,
                      "ipc": ipc, "accuracy": res["accuracy"],
                      "std": res["std"], "accuracies": res.get("accuracies")}))


if __name__ == "__main__":
    main()

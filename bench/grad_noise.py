"""How much of the DM gradient's noise comes from the real batch, as a function of its size.

A fast-DM pool entry with ``R`` real images per class gives the same *expected* gradient
as the plain loop's 256 (the loss is quadratic in the real mean, so its gradient is linear
in it); only the noise differs. This bench measures that noise where it matters, at a
synthetic set of the issue's setting (CIFAR-10, 16 img/class), without training anything:

* each draw is what one plain iteration draws: a fresh random ConvNet-3, one DSA transform
  per class, 256 real images per class;
* ``g_256`` is the gradient of the DM loss with respect to the synthetic images with the
  full batch, ``g_R`` the same with the mean over a random ``R``-image part of it;
* ``V_plain`` is the spread of ``g_256`` over draws (``E||g_256 - mean||^2``): the noise of
  the plain loop's gradient, networks, transforms and real batches together;
* ``E||g_R - g_256||^2`` is what a smaller real batch adds on top, so
  ``(V_plain + E||g_R - g_256||^2) / V_plain`` is the gradient variance with ``R`` real
  images per class relative to the plain loop's. The same difference at ``R`` scaled by
  ``(1/256) / (1/R - 1/256)`` estimates how much of ``V_plain`` the plain loop's own
  real batch contributes.

    python bench/grad_noise.py --dataset cifar10 --data-dir ../shared/datasets --ipc 16 \\
        --draws 40 --sizes 8 16 32 64 128 [--from distilled.qdd] [--json out.json]

``--from`` measures at a distilled set (a file written without ``--upsample``) instead of
the real images a run starts from.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _shared import start_set  # noqa: E402

BATCH = 256  # the plain loop's real images per class and iteration (the reference's)


def _grad(real_mean: Any, syn_mean: Any, x: Any) -> Any:
    """Gradient of the DM loss w.r.t. the synthetic images ``x``, flattened, in float64."""
    import torch

    loss = ((real_mean - syn_mean) ** 2).sum()
    (g,) = torch.autograd.grad(loss, x, retain_graph=True)
    return g.double().flatten()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from quadd_train.data import load_dataset
    from quadd_train.objectives.dm import DMObjective
    from quadd_train.runtime import resolve_runtime

    torch.manual_seed(args.seed)
    bundle = load_dataset(args.dataset, args.data_dir)
    x_real = bundle.normalize(bundle.x_train.float())
    y_real = bundle.y_train.long()
    syn, labels, what = start_set(args.source, bundle, x_real, args.ipc, args.seed)
    k = bundle.num_classes
    ipc = syn.shape[0] // k
    obj = DMObjective(mode="plain", batch_real=BATCH)
    obj.prepare(x_real, y_real, k, ipc, resolve_runtime("cpu", bf16=False, compile=False),
                args.seed)
    rng = np.random.default_rng([args.seed, 0x6E0])
    sizes = sorted(set(args.sizes))
    g_full, diffs = [], {r: [] for r in sizes}
    t0 = time.perf_counter()
    for d in range(args.draws):
        net = obj._new_net()
        x = syn.clone().requires_grad_(True)
        syn_means, real_embs, picks = [], [], []
        for c in range(k):
            idx = obj.class_idx[c]
            pick = rng.choice(idx, size=BATCH, replace=idx.size < BATCH)
            seed = int(rng.integers(0, 100_000))
            with torch.no_grad():
                emb = obj._embed(net, obj._augment(obj._gather(pick), seed), kind="real")
            real_embs.append(emb)
            picks.append(rng.permutation(BATCH))
            syn_means.append(obj._embed(net, obj._augment(x[c * ipc:(c + 1) * ipc], seed))
                             .mean(0))
        m_syn = torch.stack(syn_means)

        full = _grad(torch.stack([e.mean(0) for e in real_embs]), m_syn, x)
        g_full.append(full)
        for r in sizes:
            part = torch.stack([e[p[:r]].mean(0) for e, p in zip(real_embs, picks, strict=True)])
            diffs[r].append(float(((_grad(part, m_syn, x) - full) ** 2).sum()))
        print(f"draw {d + 1}/{args.draws} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr,
              flush=True)
    g = torch.stack(g_full)
    v_plain = float(((g - g.mean(0)) ** 2).sum(1).sum() / (len(g) - 1))
    mean_sq = float((g.mean(0) ** 2).sum())
    rows = []
    for r in sizes:
        extra = float(np.mean(diffs[r]))
        own = extra * (1 / BATCH) / (1 / r - 1 / BATCH) if r < BATCH else float("nan")
        rows.append({"real_per_class": r, "extra_variance": extra,
                     "variance_ratio": (v_plain + extra) / v_plain,
                     "plain_share_from_real_batch": own / v_plain})
    return {"dataset": args.dataset, "synthetic": what, "ipc": ipc, "draws": args.draws,
            "batch_real": BATCH, "v_plain": v_plain, "mean_gradient_sq_norm": mean_sq,
            "rows": rows, "seconds": round(time.perf_counter() - t0, 1),
            "date": dt.date.today().isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"}


def render(res: dict[str, Any]) -> str:
    lines = [
        f"{res['dataset']}, {res['synthetic']}, {res['draws']} draws of (network, per-class "
        f"transforms, {res['batch_real']} real/class); V_plain = {res['v_plain']:.4g}, "
        f"||mean gradient||^2 = {res['mean_gradient_sq_norm']:.4g}. "
        f"Machine: {res['machine']}, {res['date']}, {res['seconds']} s.",
        "",
        "| real images per class | gradient variance vs the plain loop | share of the plain "
        "loop's variance from its 256-image batch (estimate) |",
        "|---:|---:|---:|",
    ]
    for r in res["rows"]:
        lines.append(f"| {r['real_per_class']} | {r['variance_ratio']:.3f}x | "
                     f"{100 * r['plain_share_from_real_batch']:.1f}% |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--ipc", type=int, default=16, help="without --from")
    ap.add_argument("--from", dest="source", default=None, help="a distilled .qdd file")
    ap.add_argument("--draws", type=int, default=40)
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="also write the result here")
    args = ap.parse_args()
    if args.draws < 2:
        ap.error("--draws must be >= 2")
    if any(r < 1 or r > BATCH for r in args.sizes):
        ap.error(f"--sizes must lie in 1..{BATCH}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    res = measure(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    print(render(res))


if __name__ == "__main__":
    main()

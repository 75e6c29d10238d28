"""``--bits auto``: pick the bit width (and upsample factor) for a budget with a cheap proxy.

The proxy, so a user can judge what the choice rests on:

1. A seeded, class-stratified held-out slice (``holdout``, default 10%) is split off the
   REAL TRAINING set. The dataset's test split is never read: the choice must not be
   tuned on what the final file is later tested on.
2. For each candidate (bits, upsample) whose file fits the budget (``plan(...).ipc > 0``;
   bits 32 means quantizer ``none``), a short pilot distillation runs on the remaining
   training samples: ``pilot_iterations`` (default ``max(20, iterations // 10)``), same
   seed, objective and settings otherwise, written to a temporary file.
3. The standard ConvNet trains on that pilot file for ``epochs`` epochs (one run, same
   seed) and is scored on the held-out slice.
4. The best score wins; ties go to fewer bits, then to the smaller upsample factor.

Pilots take about a tenth of the iterations and a few epochs of evaluation, so the whole
choice costs well under a quarter of a sweep over the same candidates.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from .config import DistillConfig

__all__ = ["RAW_BITS", "Choice", "choose_setting", "holdout_split", "pilot_iterations_for"]

RAW_BITS = 32  # the unquantized candidate: quantizer "none"
PILOT_EPOCHS = 100  # 30 left digits ConvNets at ~50% and misranked 1 vs 2 bits


@dataclass
class Choice:
    """What ``choose_setting`` picked and what every candidate scored."""

    bits: int
    upsample: int
    # "bits/upsample" -> held-out accuracy in percent (None: does not fit the budget)
    scores: dict[str, float | None] = field(default_factory=dict)
    proxy: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def record(self) -> dict[str, Any]:
        """The deterministic part stored in the file's provenance (no timings)."""
        return {"picked": key(self.bits, self.upsample), "proxy": self.proxy_text(),
                "scores": {k: (None if v is None else round(v, 4))
                           for k, v in self.scores.items()}}

    def proxy_text(self) -> str:
        p = self.proxy
        return (f"pilot {p['pilot_iterations']} it, {p['epochs']} epochs, "
                f"{round(p['holdout'] * 100)}% held-out of train")


def key(bits: int, upsample: int) -> str:
    return f"{bits}/{upsample}"


def pilot_iterations_for(iterations: int) -> int:
    return max(20, iterations // 10)


def holdout_split(y: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor,
                                                                         torch.Tensor]:
    """Indices (kept, held_out) of a seeded split stratified by class: each class gives
    ``round(fraction * count)`` samples (at least one, never all of them)."""
    if not 0 < fraction < 1:
        raise ValueError(f"holdout must lie strictly between 0 and 1, got {fraction}")
    gen = torch.Generator().manual_seed(seed)
    kept, held = [], []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        if len(idx) < 2:
            raise ValueError(f"class {c} has {len(idx)} training sample(s); the held-out "
                             "slice needs at least 2 per class")
        idx = idx[torch.randperm(len(idx), generator=gen)]
        h = min(max(1, round(fraction * len(idx))), len(idx) - 1)
        held.append(idx[:h])
        kept.append(idx[h:])
    return torch.sort(torch.cat(kept)).values, torch.sort(torch.cat(held)).values


def proxy_bundles(bundle: Any, fraction: float, seed: int) -> tuple[Any, Any]:
    """(pilot bundle, scoring bundle): both train on the kept training samples; the
    scoring bundle's test split is the held-out slice. Same normalization as ``bundle``,
    so pilot files carry the real run's denormalization."""
    kept, held = holdout_split(bundle.y_train, fraction, seed)
    # The held-out slice comes from the training split: the test split's per-class
    # quality (test_rsrp) does not describe it.
    return replace(bundle, x_train=bundle.x_train[kept], y_train=bundle.y_train[kept],
                   x_test=bundle.x_train[held], y_test=bundle.y_train[held], test_rsrp=None)


def candidate_config(config: DistillConfig, bits: int, upsample: int) -> DistillConfig:
    """``config`` at one candidate setting (32 bits: the unquantized baseline)."""
    if bits == RAW_BITS:
        return replace(config, quantizer="none", upsample=upsample, auto=None)
    quantizer = "uniform" if config.quantizer == "none" else config.quantizer
    return replace(config, bits=bits, quantizer=quantizer, upsample=upsample, auto=None)


def choose_setting(
    config: DistillConfig,
    bundle: Any,
    candidates_bits: tuple[int, ...] = (1, 2, 4, 8, RAW_BITS),
    candidates_upsample: tuple[int, ...] = (1,),
    pilot_iterations: int | None = None,
    holdout: float = 0.1,
    epochs: int | None = None,
    progress: bool = False,
) -> Choice:
    """Score each fitting candidate with the proxy of the module docstring; return the
    best. ``epochs``: the pilots' training (default ``PILOT_EPOCHS``). Raises
    ``ValueError`` when no candidate fits the budget."""
    from .eval import evaluate_qdd
    from .loop import distill
    from .plan import plan

    t0 = time.perf_counter()
    epochs = PILOT_EPOCHS if epochs is None else epochs
    its = pilot_iterations_for(config.iterations) if pilot_iterations is None else pilot_iterations
    pilot_bundle = proxy_bundles(bundle, holdout, config.seed)
    proxy = {"pilot_iterations": its, "epochs": epochs, "holdout": holdout}
    cands = [(b, u) for u in candidates_upsample for b in candidates_bits]
    scores: dict[str, float | None] = {}
    widest = max(cands, key=lambda c: len(key(*c)))
    worst = Choice(bits=widest[0], upsample=widest[1], proxy=proxy,
                   scores={key(b, u): 100.0 for b, u in cands})
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(cands), desc="auto: pilots", unit="pilot", leave=False)
    with tempfile.TemporaryDirectory(prefix="quadd-auto-") as tmp:
        for bits, up in cands:
            cfg = candidate_config(config, bits, up)
            # Pilots are short: no checkpoints, no compile (it would cost more than it saves).
            cfg = replace(cfg, iterations=its, checkpoint_every=0, checkpoint_path=None,
                          resume=False, compile=False)
            try:
                # The final file's own provenance (full iterations, this choice's record)
                # decides what fits, with every score a float: the largest record.
                final = replace(candidate_config(config, bits, up), auto=worst.record())
                ipc = plan(final, bundle).ipc
            except ValueError:  # e.g. an upsample factor the image side does not divide
                ipc = 0
            fits = ipc >= (config.ipc or 1)
            if not fits:
                scores[key(bits, up)] = None
            else:
                path = os.path.join(tmp, f"pilot-{bits}-{up}.qdd")
                # The final run's sample count, not what the pilot's smaller provenance fits.
                cfg = replace(cfg, ipc=config.ipc or ipc)
                distill(cfg, pilot_bundle, path, progress=False)
                res = evaluate_qdd(path, pilot_bundle, runs=1, epochs=epochs, seed=config.seed,
                                   device=config.device, progress=False)
                scores[key(bits, up)] = float(res["accuracy"])
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    fitting = [(s, b, u) for (b, u) in cands if (s := scores[key(b, u)]) is not None]
    if not fitting:
        raise ValueError(f"no candidate setting fits the budget of {config.budget_bytes} B")
    _, bits, up = max(fitting, key=lambda t: (t[0], -t[1], -t[2]))
    return Choice(bits=bits, upsample=up, scores=scores, proxy=proxy,
                  seconds=time.perf_counter() - t0)

"""``quadd sweep``: distill and evaluate every (budget, bits, upsample) point, and the
baselines at the same budgets, keeping each finished point in ``DIR/sweep.jsonl``.

A point is one real run: a ``.qdd`` file written into the sweep folder and evaluated
with the standard protocol (``runs`` x ``epochs``). Each finished point is appended to
the store at once (append, flush, fsync), so a sweep killed at any moment and started
again with the same settings redoes at most the point it was on. Points whose budget
does not fit one sample per class are recorded as such, not raised. Under ``torchrun``
the points are dealt out across the ranks (:func:`run_sweep`): the store, its order and
every record are the one-process ones, and a restart redoes at most one round.

What a sweep runs is the table :data:`KINDS`: QuADD itself and the baselines, each a
:class:`Kind` (which points it has, and how one point is run). A new baseline is one
entry there.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from .config import DistillConfig

__all__ = ["BASELINES", "KINDS", "Kind", "Outcome", "Point", "SweepSettings", "SweepStore",
           "best_point", "distill_command_for", "parse_bits", "parse_int_list", "run_sweep"]

STORE_NAME = "sweep.jsonl"
RAW_BITS = 32


@dataclass(frozen=True)
class Point:
    """One run of a sweep: what is stored (``kind``) at which budget, bits and size."""

    kind: str
    budget: int
    bits: int
    upsample: int = 1

    @property
    def key(self) -> tuple[str, int, int, int]:
        return (self.kind, self.budget, self.bits, self.upsample)

    def file_name(self) -> str:
        size = "" if self.upsample == 1 else f"-x{self.upsample}"
        return f"{self.kind}-{self.budget}B-{self.bits}bit{size}.qdd"


@dataclass
class SweepSettings:
    """The settings every point of a sweep shares (what a finished point must match)."""

    dataset: str
    budgets: list[int]
    bits: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 8, 32])
    upsample: list[int] = field(default_factory=lambda: [1])
    method: str = "dm"
    quantizer: str = "uniform"
    iterations: int = 1000
    runs: int = 3
    epochs: int = 300
    seed: int = 0
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    data_dir: str | None = None  # where the data lies, not what it is: not matched
    device: str = "auto"  # not matched either

    def matched(self) -> dict[str, Any]:
        """What a stored point must have been made with to be reused."""
        return {"dataset": self.dataset, "method": self.method, "quantizer": self.quantizer,
                "iterations": self.iterations, "runs": self.runs, "epochs": self.epochs,
                "seed": self.seed}

    def distill_config(self, point: Point, post_quantize: bool = False) -> DistillConfig:
        raw = point.bits == RAW_BITS
        return DistillConfig(
            dataset=self.dataset, budget_bytes=point.budget, bits=8 if raw else point.bits,
            quantizer="none" if raw else self.quantizer, method=self.method,
            iterations=self.iterations, seed=self.seed, device=self.device,
            upsample=point.upsample, post_quantize=post_quantize, data_dir=self.data_dir,
        )


@dataclass
class Outcome:
    """What running one point gave; ``ipc == 0``: the budget does not fit it."""

    ipc: int
    n: int = 0
    file: str | None = None
    file_bytes: int = 0
    distill_seconds: float = 0.0
    # Set by a kind whose files `evaluate_qdd` cannot read (it evaluates them itself).
    accuracy: float | None = None
    std: float | None = None
    accuracies: list[float] | None = None
    eval_seconds: float = 0.0


@dataclass(frozen=True)
class Kind:
    """One line of :data:`KINDS`: the points it adds at a budget, how one is run, and
    its name in tables and legends."""

    label: str
    points: Callable[[SweepSettings, int], list[Point]]
    run: Callable[[Point, SweepSettings, Any, str], Outcome]


def _quadd_points(s: SweepSettings, budget: int) -> list[Point]:
    return [Point("quadd", budget, b, u) for u in s.upsample for b in s.bits]


def _run_distill(point: Point, s: SweepSettings, bundle: Any, path: str,
                 post_quantize: bool = False) -> Outcome:
    from .loop import distill
    from .plan import default_group, plan

    cfg = dataclasses.replace(s.distill_config(point, post_quantize),
                              group=default_group(bundle.sample_shape))
    if plan(cfg, bundle).ipc == 0:
        return Outcome(ipc=0)
    t0 = time.perf_counter()
    res = distill(cfg, bundle, path, progress=False)
    return Outcome(res.ipc, res.n, path, res.file_bytes, time.perf_counter() - t0)


def _subset_points(s: SweepSettings, budget: int) -> list[Point]:
    return [Point("subset", budget, b) for b in s.bits]


def _run_subset(point: Point, s: SweepSettings, bundle: Any, path: str) -> Outcome:
    from .baselines import subset, subset_layout
    from .plan import default_group

    # The group the command line defaults to for this data, as for the distilled points.
    group = default_group(bundle.sample_shape)
    layout = subset_layout(bundle, point.bits, s.seed, group=group, upsample=point.upsample)
    if layout.max_samples_per_class(point.budget) < 1:
        return Outcome(ipc=0)
    t0 = time.perf_counter()
    res = subset(bundle, point.budget, point.bits, s.seed, path, group=group,
                 upsample=point.upsample)
    return Outcome(res.ipc, res.n, path, res.file_bytes, time.perf_counter() - t0)


def _post_points(s: SweepSettings, budget: int) -> list[Point]:
    return [Point("post", budget, b) for b in s.bits if b != RAW_BITS]


def _run_post(point: Point, s: SweepSettings, bundle: Any, path: str) -> Outcome:
    return _run_distill(point, s, bundle, path, post_quantize=True)


def _dm32_points(s: SweepSettings, budget: int) -> list[Point]:
    # The 32-bit point itself: a QuADD point, run once even when --bits lists 32 too.
    return [Point("quadd", budget, RAW_BITS)]


#: What an image-codec baseline is filed under as ``bits``: its source pixels' width (a
#: JPEG or WebP file has no bits per value; the plots draw it as a line).
IMAGE_BITS = 8


def _image_points(s: SweepSettings, budget: int, codec: str) -> list[Point]:
    # Full and half size: the practitioner's two resolutions (``upsample`` is the scale).
    return [Point(codec, budget, IMAGE_BITS, scale) for scale in (1, 2)]


def _run_image(point: Point, s: SweepSettings, bundle: Any, path: str) -> Outcome:
    from .image_baseline import evaluate_image_baseline, write_image_baseline

    archive = path[: -len(".qdd")] + ".zip"
    t0 = time.perf_counter()
    try:
        res = write_image_baseline(bundle, point.budget, archive, codec=point.kind,
                                   scale=point.upsample, seed=s.seed)
    except ValueError as exc:
        if "does not fit" in str(exc):
            return Outcome(ipc=0)
        raise
    t1 = time.perf_counter()
    ev = evaluate_image_baseline(archive, bundle, runs=s.runs, epochs=s.epochs, seed=s.seed,
                                 device=s.device, progress=False)
    return Outcome(res.ipc, res.n, archive, res.file_bytes, t1 - t0,
                   accuracy=float(ev["accuracy"]), std=float(ev["std"]),
                   accuracies=[float(a) for a in ev.get("accuracies", [])],
                   eval_seconds=time.perf_counter() - t1)


#: Kind name -> Kind. "quadd" is the sweep itself; the others are baselines.
KINDS: dict[str, Kind] = {
    "quadd": Kind("QuADD", _quadd_points, _run_distill),
    "subset": Kind("random subset", _subset_points, _run_subset),
    "post": Kind("post-quantized DM", _post_points, _run_post),
    "dm32": Kind("DM 32-bit", _dm32_points, _run_distill),
    "jpeg": Kind("random images as JPEG", partial(_image_points, codec="jpeg"), _run_image),
    "webp": Kind("random images as WebP", partial(_image_points, codec="webp"), _run_image),
}
BASELINES: tuple[str, ...] = tuple(k for k in KINDS if k != "quadd")


def parse_int_list(text: str, what: str, allowed: Callable[[int], bool], rule: str) -> list[int]:
    """``"1,2,4"`` -> [1, 2, 4] (sorted, without repeats); ValueError naming ``what``."""
    values = []
    for part in str(text).split(","):
        part = part.strip()
        if not part.lstrip("-").isdigit():
            raise ValueError(f"{what}: {part!r} is not a whole number (expected e.g. 1,2,4)")
        if not allowed(int(part)):
            raise ValueError(f"{what}: {part} is out of range ({rule})")
        values.append(int(part))
    return sorted(set(values))


def parse_bits(text: str) -> list[int]:
    return parse_int_list(text, "bits", lambda b: 1 <= b <= 8 or b == RAW_BITS,
                          "each must be 1..8, or 32 for unquantized DM")


def sweep_points(s: SweepSettings) -> list[Point]:
    """Every point of the sweep, in run order: per budget, QuADD first, then the
    baselines; each point once."""
    seen: dict[tuple, Point] = {}
    for budget in s.budgets:
        for name in ("quadd", *s.baselines):
            for p in KINDS[name].points(s, budget):
                seen.setdefault(p.key, p)
    return list(seen.values())


class SweepStore:
    """``DIR/sweep.jsonl``: one JSON object per finished point, appended durably."""

    def __init__(self, folder: str) -> None:
        self.path = os.path.join(folder, STORE_NAME)

    def load(self) -> list[dict[str, Any]]:
        """The stored records; a line that does not parse (a write cut short by a kill)
        is skipped, and a half-written last line is cut off so the next append starts on
        a line of its own."""
        if not os.path.exists(self.path):
            return []
        with open(self.path, "rb") as f:
            data = f.read()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as f:
                f.truncate(keep)
                f.flush()
                os.fsync(f.fileno())
            data = data[:keep]
        records = []
        for line in data.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and {"kind", "budget", "bits", "upsample"} <= set(rec):
                records.append(rec)
        return records

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


def record_key(rec: dict[str, Any]) -> tuple[str, int, int, int]:
    return (rec["kind"], int(rec["budget"]), int(rec["bits"]), int(rec["upsample"]))


def _run_point(point: Point, s: SweepSettings, bundle: Any, folder: str) -> dict[str, Any]:
    from .eval import evaluate_qdd

    t0 = time.perf_counter()
    out = KINDS[point.kind].run(point, s, bundle, os.path.join(folder, point.file_name()))
    rec: dict[str, Any] = {**asdict(point), "fits": out.ipc > 0, "ipc": out.ipc, "n": out.n,
                           "file": out.file, "file_bytes": out.file_bytes,
                           "accuracy": None, "std": None, "accuracies": None,
                           "distill_seconds": round(out.distill_seconds, 3),
                           "eval_seconds": 0.0}
    if out.accuracy is not None:  # a kind that evaluates its own files
        rec.update(accuracy=out.accuracy, std=out.std, accuracies=out.accuracies,
                   eval_seconds=round(out.eval_seconds, 3))
    elif out.ipc > 0 and out.file:
        t1 = time.perf_counter()
        res = evaluate_qdd(out.file, bundle, runs=s.runs, epochs=s.epochs, seed=s.seed,
                           device=s.device, progress=False)
        rec.update(accuracy=float(res["accuracy"]), std=float(res["std"]),
                   accuracies=[float(a) for a in res.get("accuracies", [])],
                   eval_seconds=round(time.perf_counter() - t1, 3))
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    rec["runs"], rec["epochs"] = s.runs, s.epochs
    rec["settings"] = s.matched()
    return rec


def run_sweep(
    s: SweepSettings,
    folder: str,
    bundle: Any,
    on_record: Callable[[dict[str, Any], bool], None] | None = None,
    note: Callable[[str], None] | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Run every point of ``s`` not already finished in ``folder``'s store; returns the
    records of all the sweep's points, in point order (stored ones reused).
    ``on_record(rec, reused)`` is called for each point, in point order, as it is known;
    ``note`` gets one-line notes.

    Under ``torchrun`` (:mod:`.distributed`) every rank calls this alike: the points to
    run are dealt out in rounds of one per rank (rank ``r`` runs the ``r``-th point of
    each round, whole, as one process would), and after each round rank 0 appends the
    round's records to the store in point order. Only rank 0 reads and writes the store,
    calls ``on_record`` and ``note`` and shows the bar; every rank returns the records."""
    from tqdm import tqdm

    from .distributed import broadcast_object, context

    ctx = context()
    os.makedirs(folder, exist_ok=True)  # every rank writes its points' files there
    store = SweepStore(folder)
    wanted = s.matched()
    stored: dict[tuple, dict[str, Any]] = {}
    other: set[tuple] = set()
    for rec in broadcast_object(store.load() if ctx.is_main else None):
        if rec.get("settings") == wanted:
            stored[record_key(rec)] = rec
        else:
            other.add(record_key(rec))
    points = sweep_points(s)
    todo = [p for p in points if p.key not in stored]
    known: dict[tuple, tuple[dict[str, Any], bool]] = {
        p.key: (stored[p.key], True) for p in points if p.key in stored}
    reported = 0

    def report() -> None:
        # Points are reported in point order: each as soon as all before it are known.
        nonlocal reported
        while reported < len(points) and points[reported].key in known:
            rec, reused = known[points[reported].key]
            if on_record and ctx.is_main:
                on_record(rec, reused)
            reported += 1
            bar.update(1)

    bar = tqdm(total=len(points), desc="sweep", unit="point", file=sys.stderr,
               disable=not (progress and ctx.is_main), dynamic_ncols=True)
    try:
        report()
        for first in range(0, len(todo), ctx.world):
            round_ = todo[first:first + ctx.world]
            for p in round_:
                if p.key in other and note and ctx.is_main:
                    note(f"{store.path} has {p.kind} at {p.budget} B, {p.bits} bits, "
                         f"upsample {p.upsample} made with other settings: not reused, "
                         "running it again")
            p = round_[0]
            bar.set_postfix_str(f"{p.kind} {p.budget} B {p.bits} bit x{p.upsample}"
                                + (f" (+{len(round_) - 1} on other ranks)"
                                   if len(round_) > 1 else ""), refresh=True)
            outcomes = _run_round(round_, s, bundle, folder)
            for p, (status, rec) in zip(round_, outcomes, strict=True):
                if status == "done":
                    if ctx.is_main:
                        store.append(rec)
                    known[p.key] = (rec, False)
            report()
            for rank, (p, (status, why)) in enumerate(zip(round_, outcomes, strict=True)):
                if status == "failed":  # after the round's finished points are stored
                    raise ValueError(f"{p.kind} at {p.budget} B, {p.bits} bits, upsample "
                                     f"{p.upsample} (rank {rank}): {why}")
    finally:
        bar.close()
    return [known[p.key][0] for p in points]


def _run_round(round_: list[Point], s: SweepSettings, bundle: Any,
               folder: str) -> list[tuple[str, Any]]:
    """One round's outcomes, on every rank: ``("done", record)`` or ``("failed", why)``
    per point. This rank runs the point at its rank's place as one process would
    (:func:`~.distributed.local`); the others' come from their ranks. In one process a
    failure is raised as it is."""
    from .distributed import context, gather_objects, local

    ctx = context()
    if not ctx.active:
        return [("done", _run_point(round_[0], s, bundle, folder))]
    outcome: tuple[str, Any] = ("idle", None)
    if ctx.rank < len(round_):
        try:
            with local():
                outcome = ("done", _run_point(round_[ctx.rank], s, bundle, folder))
        except Exception as exc:  # noqa: BLE001 - every rank raises it after the round
            outcome = ("failed", str(exc) or type(exc).__name__)
    return gather_objects(outcome)[: len(round_)]


def best_point(records: list[dict[str, Any]], budget: int | None = None) -> dict | None:
    """The QuADD point with the highest accuracy (fewer bytes break a tie)."""
    runs = [r for r in records if r["kind"] == "quadd" and r.get("accuracy") is not None
            and (budget is None or r["budget"] == budget)]
    if not runs:
        return None
    return max(runs, key=lambda r: (r["accuracy"], -r["file_bytes"]))


def distill_command_for(rec: dict[str, Any], s: SweepSettings,
                        output: str = "distilled.qdd") -> list[str]:
    """The ``quadd distill`` arguments that write ``rec``'s point again."""
    args = ["quadd", "distill", "--dataset", s.dataset, "--budget", str(rec["budget"])]
    if s.data_dir:
        args += ["--data-dir", s.data_dir]
    if rec["bits"] == RAW_BITS:
        args += ["--quantizer", "none"]
    else:
        args += ["--bits", str(rec["bits"]), "--quantizer", s.quantizer]
    if rec["upsample"] != 1:
        args += ["--upsample", str(rec["upsample"])]
    args += ["--method", s.method, "--iterations", str(s.iterations), "--seed", str(s.seed),
             "-o", output]
    return args

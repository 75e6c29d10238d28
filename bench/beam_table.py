"""The QuADD paper's beam-management table, measured on our data: top-1 (and top-2/4,
within 1 dB) against the storage ratio to the full 32-bit training file, every size the
real file on disk.

    quadd dataset beam --drops 20000 -o beam.npz
    python bench/beam_table.py --npz beam.npz --out docs/results/beam.jsonl
    python bench/beam_table.py --report docs/results/beam.jsonl --plot docs/results/beam.png

Rows: the full training split at 32 and at 8 bits (``quadd encode``); then, at each
``--ratio`` (budget = full 32-bit file / ratio): QuADD at each ``--bits``, 32-bit
distillation (``--quantizer none``) and a random real subset at 32 and at 8 bits
(``quadd subset``). Every row runs the CLI a user would run, and is appended to
``--out`` when it finishes, so a rerun skips what is there. ``--report`` prints the
markdown table, the largest ratio whose top-1 stays within 5 points of the full data for
each method, and with ``--plot`` draws top-1 against the ratio (log axis).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

QUADD = [str(Path(sys.executable).with_name("quadd"))]
if not Path(QUADD[0]).exists():
    QUADD = [sys.executable, "-m", "quadd_cli"]


def _run(args: list[str]) -> dict[str, Any]:
    """One quadd command with --json; its JSON object."""
    quiet = [] if args[0] == "subset" else ["--no-progress"]  # subset has no progress bar
    out = subprocess.run(QUADD + args + ["--json", *quiet], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"quadd {' '.join(args)} failed:\n{out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _eval(args: argparse.Namespace, qdd: Path, epochs: int) -> dict[str, Any]:
    r = _run(["eval", str(qdd), "--dataset", args.npz, "--runs", str(args.runs),
              "--epochs", str(epochs), "--jobs", str(args.jobs)])
    keep = ("accuracy", "std", "top2", "top4", "within_1db", "model", "epochs", "runs",
            "num_samples")
    return {k: r.get(k) for k in keep}


def _done(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {json.loads(line)["key"] for line in path.read_text().splitlines() if line.strip()}


def _write_train_npz(npz: str, dest: Path) -> None:
    """The training split as the x/y/classes .npz that ``quadd encode`` takes."""
    with np.load(npz) as d:
        names = d["class_names"] if "class_names" in d.files else d["classes"]
        np.savez(dest, x=d["x_train"], y=d["y_train"], classes=names)


def _configs(args: argparse.Namespace) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = [{"kind": "full", "bits": 32}, {"kind": "full", "bits": 8}]
    for ratio in args.ratio:
        runs += [{"kind": "quadd", "bits": b, "ratio": ratio} for b in args.bits]
        runs.append({"kind": "distill32", "bits": 32, "ratio": ratio})
        runs += [{"kind": "subset", "bits": b, "ratio": ratio} for b in (32, 8)]
    for c in runs:
        c["key"] = f"{c['kind']}-{c['bits']}-{c.get('ratio', 1)}-{args.method}-{args.iterations}"
    return runs


def _measure(args: argparse.Namespace, c: dict[str, Any], work: Path,
             full_bytes: int) -> dict[str, Any]:
    out = work / f"{c['key']}.qdd"
    start = time.perf_counter()
    if c["kind"] == "full":
        cmd = ["encode", str(work / "train.npz"), "--bits", str(c["bits"]), "-o", str(out),
               "--force"]
        subprocess.run(QUADD + cmd + ["--no-progress"], check=True, capture_output=True)
        epochs = args.full_epochs
    else:
        budget = full_bytes // c["ratio"]
        common = ["--dataset", args.npz, "--budget", str(budget), "-o", str(out), "--force"]
        if c["kind"] == "subset":
            cmd = ["subset", *common, "--bits", str(c["bits"])]
        else:
            quant = ["--quantizer", "none"] if c["bits"] == 32 else ["--bits", str(c["bits"])]
            cmd = ["distill", *common, *quant, "--method", args.method,
                   "--iterations", str(args.iterations)]
        _run(cmd)
        epochs = args.epochs
    made = time.perf_counter() - start
    size = out.stat().st_size
    row = {**c, "command": "quadd " + " ".join(cmd), "file_bytes": size,
           "ratio_measured": round(full_bytes / size, 2) if full_bytes else 1.0,
           "make_seconds": round(made, 1), **_eval(args, out, epochs),
           "date": dt.date.today().isoformat(), "machine": f"{platform.machine()}, "
           f"{os.cpu_count()} cores, torch threads {os.environ.get('OMP_NUM_THREADS', '-')}"}
    out.unlink()
    return row


def run(args: argparse.Namespace) -> None:
    dest = Path(args.out)
    done = _done(dest)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _write_train_npz(args.npz, work / "train.npz")
        full32 = work / "full32.qdd"
        subprocess.run(QUADD + ["encode", str(work / "train.npz"), "--bits", "32", "-o",
                                str(full32), "--no-progress"], check=True, capture_output=True)
        full_bytes = full32.stat().st_size
        print(f"full 32-bit training file: {full_bytes:,} B", file=sys.stderr)
        for c in _configs(args):
            if c["key"] in done:
                continue
            row = _measure(args, c, work, full_bytes)
            with dest.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{c['key']}: {row['file_bytes']:,} B (x{row['ratio_measured']}), "
                  f"top-1 {row['accuracy']:.2f} +- {row['std']:.2f}", file=sys.stderr)


def _label(r: dict[str, Any]) -> str:
    if r["kind"] == "quadd":
        return f"QuADD {r['bits']}-bit"
    names = {"full": "full data", "distill32": "32-bit distillation", "subset": "random subset"}
    return f"{names[r['kind']]} {r['bits']}-bit" if r["kind"] != "distill32" else names[
        r["kind"]]


def report(files: list[str], plot: str | None) -> str:
    rows = [json.loads(line) for f in files for line in Path(f).read_text().splitlines()
            if line.strip()]
    full = next((r for r in rows if r["kind"] == "full" and r["bits"] == 32), None)
    lines = ["| method | bytes | ratio | top-1 % | top-2 % | top-4 % | within 1 dB % |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["ratio_measured"], r["kind"], r["bits"])):
        w = "-" if r.get("within_1db") is None else f"{r['within_1db']:.1f}"
        lines.append(f"| {_label(r)} | {r['file_bytes']:,} | {r['ratio_measured']:.1f} | "
                     f"{r['accuracy']:.2f} ± {r['std']:.2f} | {r['top2']:.1f} | "
                     f"{r['top4']:.1f} | {w} |")
    if full is not None:
        lines.append("")
        lines.append(f"Largest ratio within 5 points of the full 32-bit data "
                     f"({full['accuracy']:.2f} %):")
        for label in sorted({_label(r) for r in rows if r["kind"] != "full"}):
            ok = [r["ratio_measured"] for r in rows if _label(r) == label
                  and r["accuracy"] >= full["accuracy"] - 5]
            lines.append(f"- {label}: " + (f"{max(ok):.1f}x" if ok else "none measured"))
    if plot:
        _plot(rows, full, plot)
    return "\n".join(lines)


def _plot(rows: list[dict[str, Any]], full: dict[str, Any] | None, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label in sorted({_label(r) for r in rows if r["kind"] != "full"}):
        pts = sorted((r["ratio_measured"], r["accuracy"]) for r in rows if _label(r) == label)
        ax.plot(*zip(*pts, strict=True), marker="o", label=label)
    if full is not None:
        ax.axhline(full["accuracy"], color="k", ls="--", lw=1, label="full data 32-bit")
        ax.axhline(full["accuracy"] - 5, color="gray", ls=":", lw=1, label="full - 5 points")
    ax.set_xscale("log")
    ax.set_xlabel("compression ratio to the full 32-bit training file (real bytes)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("Beam management (BM-Case 1, Set B 8 -> Set A 32)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--npz", help="dataset from `quadd dataset beam`")
    ap.add_argument("--out", default="docs/results/beam.jsonl")
    ap.add_argument("--ratio", type=int, action="append", help="default: 36 and 180")
    ap.add_argument("--bits", default="1,2,4", help="QuADD bit widths (comma-separated)")
    ap.add_argument("--method", default="dm")
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=300, help="eval epochs on distilled sets")
    ap.add_argument("--full-epochs", type=int, default=50, help="eval epochs on full data")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--report", nargs="+", metavar="JSONL")
    ap.add_argument("--plot", help="with --report: write the plot here (PNG)")
    args = ap.parse_args()
    if args.report:
        print(report(args.report, args.plot))
        return
    if not args.npz:
        ap.error("--npz is required to measure")
    args.ratio = args.ratio or [36, 180]
    args.bits = [int(b) for b in args.bits.split(",")]
    run(args)


if __name__ == "__main__":
    main()

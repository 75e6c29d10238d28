"""The pictures of a sweep (matplotlib, Agg backend): accuracy against bits per value at
one budget, and with several budgets the rate-accuracy curve (accuracy against file
size). Each PNG is written atomically.
"""

from __future__ import annotations

import math
import os
from typing import Any

from .sweep import KINDS, RAW_BITS, best_point

__all__ = ["plot_budget", "plot_rate", "plot_sweep"]

# Baseline kind -> (colour, line style, marker).
_STYLE = {"subset": ("tab:gray", "--", "s"), "post": ("tab:orange", "--", "^"),
          "dm32": ("tab:red", ":", None), "jpeg": ("tab:olive", "-.", "D"),
          "webp": ("tab:pink", "-.", "v")}
_LINE_COLOURS = ("tab:blue", "tab:green", "tab:purple", "tab:brown", "tab:cyan")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, and no GUI toolkit needed
    import matplotlib.pyplot as plt

    return plt


def _size_label(upsample: int, shape: tuple[int, ...] | None) -> str:
    what = "full size" if upsample == 1 else f"1/{upsample} size"
    if shape and len(shape) == 3:
        what += f" ({shape[-2] // upsample}x{shape[-1] // upsample})"
    elif shape:
        what += f" ({shape[0]} features)"
    return what


def _kib(n: float) -> str:
    return f"{n:,.0f} B" if n < 1024 else f"{n / 1024:,.2f} KiB ({n:,.0f} B)"


def _bits(b: int) -> str:
    return "1 bit" if b == 1 else f"{b} bits"


def _protocol(records: list[dict[str, Any]]) -> str:
    """A second title line: how the points were made and evaluated."""
    s = next((r.get("settings") for r in records if r.get("settings")), None)
    if not s:
        return ""
    return (f"\n{s['method']}, {s['iterations']} iterations; test accuracy, mean of "
            f"{s['runs']} run{'s' if s['runs'] != 1 else ''} x {s['epochs']} epochs")


def _save(fig: Any, path: str) -> None:
    from quadd_codec.paths import atomic_open

    with atomic_open(path) as f:
        fig.savefig(f, format="png", dpi=120)


def plot_budget(records: list[dict[str, Any]], budget: int, path: str, dataset: str,
                sample_shape: tuple[int, ...] | None = None) -> str:
    """Accuracy against bits per value at ``budget``: one line per storage resolution,
    the baselines at the same budget, the best point starred."""
    plt = _pyplot()
    recs = [r for r in records if r["budget"] == budget]
    ran = [r for r in recs if r.get("accuracy") is not None]
    bits_swept = sorted({r["bits"] for r in recs})
    fig, ax = plt.subplots(figsize=(8, 5.2))
    x = math.log2
    quadd = [r for r in ran if r["kind"] == "quadd"]
    for i, u in enumerate(sorted({r["upsample"] for r in quadd})):
        pts = sorted((r for r in quadd if r["upsample"] == u), key=lambda r: r["bits"])
        ax.plot([x(r["bits"]) for r in pts], [r["accuracy"] for r in pts], "o-", lw=2,
                color=_LINE_COLOURS[i % len(_LINE_COLOURS)],
                label=f"QuADD, {_size_label(u, sample_shape)}")
        for r in pts:
            ax.annotate(f"{r['ipc']}/class", (x(r["bits"]), r["accuracy"]),
                        textcoords="offset points", xytext=(0, 7), ha="center", fontsize=7,
                        color=_LINE_COLOURS[i % len(_LINE_COLOURS)])
    dm32 = next((r for r in ran if r["kind"] == "quadd" and r["bits"] == RAW_BITS
                 and r["upsample"] == 1), None)
    if dm32 is not None:
        colour, style, _ = _STYLE["dm32"]
        ax.axhline(dm32["accuracy"], color=colour, ls=style, lw=1.5,
                   label=f"{KINDS['dm32'].label} ({dm32['ipc']}/class)")
    for kind in ("subset", "post"):
        pts = sorted((r for r in ran if r["kind"] == kind), key=lambda r: r["bits"])
        if pts:
            colour, style, marker = _STYLE[kind]
            ax.plot([x(r["bits"]) for r in pts], [r["accuracy"] for r in pts], ls=style,
                    marker=marker, color=colour, lw=1.2, label=f"{KINDS[kind].label}")
    # Image codecs have no bits per value: their best point (full or half size) is a line.
    for kind in ("jpeg", "webp"):
        pts = [r for r in ran if r["kind"] == kind]
        if pts:
            top = max(pts, key=lambda r: r["accuracy"])
            colour, style, _ = _STYLE[kind]
            size = "full size" if top["upsample"] == 1 else f"1/{top['upsample']} size"
            ax.axhline(top["accuracy"], color=colour, ls=style, lw=1.5,
                       label=f"{KINDS[kind].label}, best ({size}, {top['ipc']}/class)")
    # Other kinds (added baselines): markers at their bits.
    for kind in sorted({r["kind"] for r in ran} - {"quadd", "subset", "post", "jpeg", "webp"}):
        pts = sorted((r for r in ran if r["kind"] == kind), key=lambda r: r["bits"])
        ax.plot([x(r["bits"]) for r in pts], [r["accuracy"] for r in pts], ls="--",
                marker="D", lw=1.2, label=KINDS[kind].label if kind in KINDS else kind)
    best = best_point(records, budget)
    if best is not None:
        ax.plot([x(best["bits"])], [best["accuracy"]], marker="*", ms=20, color="gold",
                markeredgecolor="black", ls="none", zorder=5,
                label=f"best: {_bits(best['bits'])}, {_size_label(best['upsample'], None)}, "
                f"{best['ipc']}/class, {best['accuracy']:.1f}%")
    unfit = sorted({(r["bits"], r["upsample"]) for r in recs
                    if r["kind"] == "quadd" and not r.get("fits")})
    if unfit:
        what = ", ".join(_bits(b) + (" at full size" if u == 1 else f" at 1/{u} size")
                         for b, u in unfit)
        ax.text(0.01, 0.01, f"does not fit one sample per class: {what}",
                transform=ax.transAxes, fontsize=8, color="dimgray", va="bottom")
    ax.set_xticks([x(b) for b in bits_swept], [str(b) for b in bits_swept])
    if bits_swept:
        ax.set_xlim(x(bits_swept[0]) - 0.3, x(bits_swept[-1]) + 0.3)
    return _finish(plt, fig, ax, path, "bits per stored value (log scale)",
                   f"{dataset}: accuracy at a budget of {_kib(budget)}{_protocol(recs)}")


def plot_rate(records: list[dict[str, Any]], path: str, dataset: str) -> str:
    """Accuracy against file size: the best QuADD point per budget and each baseline's
    best point per budget."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.2))
    budgets = sorted({r["budget"] for r in records})
    series: dict[str, list[dict[str, Any]]] = {}
    for budget in budgets:
        ran = [r for r in records if r["budget"] == budget and r.get("accuracy") is not None]
        best = best_point(ran)
        if best is not None:
            series.setdefault("quadd", []).append(best)
        dm32 = [r for r in ran if r["kind"] == "quadd" and r["bits"] == RAW_BITS
                and r["upsample"] == 1]
        if dm32:
            series.setdefault("dm32", []).append(dm32[0])
        for kind in sorted({r["kind"] for r in ran} - {"quadd"}):
            top = max((r for r in ran if r["kind"] == kind), key=lambda r: r["accuracy"])
            series.setdefault(kind, []).append(top)
    for kind, pts in series.items():
        colour, style, marker = _STYLE.get(kind, (None, "--", "D"))
        if kind == "quadd":
            colour, style, marker = "tab:blue", "-", "o"
        label = ("QuADD, best point" if kind == "quadd" else
                 f"{KINDS[kind].label if kind in KINDS else kind}"
                 + ("" if kind == "dm32" else ", best point"))
        ax.plot([r["file_bytes"] / 1024 for r in pts], [r["accuracy"] for r in pts],
                ls=style, marker=marker or "o", color=colour, lw=2 if kind == "quadd" else 1.2,
                label=label)
        if kind == "quadd":
            for r in pts:
                ax.annotate(_bits(r["bits"]) + ("" if r["upsample"] == 1
                                                  else f", 1/{r['upsample']}"),
                            (r["file_bytes"] / 1024, r["accuracy"]),
                            textcoords="offset points", xytext=(0, 7), ha="center",
                            fontsize=7, color="tab:blue")
    ax.set_xscale("log", base=2)
    ticks = [b / 1024 for b in budgets]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    return _finish(plt, fig, ax, path, "file size (KiB, log scale; ticks at the budgets)",
                   f"{dataset}: accuracy against bytes (rate-accuracy){_protocol(records)}")


def _finish(plt: Any, fig: Any, ax: Any, path: str, xlabel: str, title: str) -> str:
    """Label, lay out and write a plot of test accuracy; returns ``path``."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def plot_sweep(records: list[dict[str, Any]], folder: str, dataset: str,
               sample_shape: tuple[int, ...] | None = None) -> list[str]:
    """Every picture of a sweep: ``sweep.png`` for one budget; ``sweep-<bytes>.png`` per
    budget and ``rate.png`` for several. Returns the paths written."""
    budgets = sorted({r["budget"] for r in records})
    if len(budgets) == 1:
        return [plot_budget(records, budgets[0], os.path.join(folder, "sweep.png"), dataset,
                            sample_shape)]
    paths = [plot_budget(records, b, os.path.join(folder, f"sweep-{b}.png"), dataset,
                         sample_shape) for b in budgets]
    paths.append(plot_rate(records, os.path.join(folder, "rate.png"), dataset))
    return paths

"""``quadd sweep``: distill and evaluate every (budget, bits, upsample) point and the
baselines at the same budgets, print a table as points finish, draw the plots and name
the best point's ``quadd distill`` command (library: ``quadd_train.sweep``).

Under ``torchrun`` the points are dealt out across the ranks; rank 0 keeps the store,
prints, plots and recommends (docs/scaling.md)."""

from __future__ import annotations

import os
import shlex
import sys
from typing import Any

import click

from .errors import describe, fail
from .eval_command import lost_peer_message
from .objective_flags import RegistryChoice
from .train_options import SIZE, data_dir_opt, dataset_opt, load_bundle, train_errors

__all__ = ["sweep_command"]


def _int_list(parse: Any) -> Any:
    def callback(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
        try:
            return parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return callback


def _bits(value: str) -> list[int]:
    from quadd_train.sweep import parse_bits

    return parse_bits(value)


def _upsample(value: str) -> list[int]:
    from quadd_train.sweep import parse_int_list

    return parse_int_list(value, "upsample", lambda u: 1 <= u <= 16, "each must be 1..16")


def _baselines(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str]:
    from quadd_train.sweep import BASELINES

    if value is None:
        return list(BASELINES)
    names = [v.strip() for v in value.split(",") if v.strip() and v.strip() != "none"]
    for n in names:
        if n not in BASELINES:
            raise click.BadParameter(f"unknown baseline {n!r}; expected some of "
                                     f"{', '.join(BASELINES)} (or none)")
    return list(dict.fromkeys(names))


HEADER = (f"{'kind':<8} {'budget B':>9} {'bits':>4} {'size':>5} {'img/class':>9} "
          f"{'bytes':>8} {'accuracy %':>14} {'seconds':>8}")


def format_row(rec: dict[str, Any], reused: bool = False) -> str:
    size = "full" if rec["upsample"] == 1 else f"1/{rec['upsample']}"
    head = f"{rec['kind']:<8} {rec['budget']:>9,} {rec['bits']:>4} {size:>5}"
    if not rec.get("fits"):
        return f"{head} {'-':>9} {'-':>8} {'does not fit':>14}"
    acc = f"{rec['accuracy']:.2f} +- {rec['std']:.2f}"
    when = "(stored)" if reused else f"{rec['seconds']:.0f}"
    return f"{head} {rec['ipc']:>9} {rec['file_bytes']:>8,} {acc:>14} {when:>8}"


@click.command("sweep")
@dataset_opt
@data_dir_opt
@click.option("--budget", "-b", "budgets", type=SIZE, multiple=True, required=True,
              help="A size limit (bytes, or with a unit B, KB, MB, KiB, MiB, e.g. 2KiB); "
              "repeat for several budgets.")
@click.option("--bits", "bits", default="1,2,3,4,8,32", show_default=True,
              callback=_int_list(_bits),
              help="Bit widths to sweep, comma separated: 1..8, and 32 for unquantized DM.")
@click.option("--upsample", "upsample", default="1", show_default=True,
              callback=_int_list(_upsample),
              help="Storage resolutions to sweep, comma separated: 1 (full size), 2 (half "
              "size per side), ...")
@click.option("--method", type=RegistryChoice("quadd_train.objectives:objective_names"),
              default="dm", show_default=True, help="Distillation objective.")
@click.option("--quantizer", "-q", type=RegistryChoice("quadd_train.quantizers:quantizer_names"),
              default="uniform", show_default=True, help="Quantizer in the loop.")
@click.option("--iterations", "-n", type=click.IntRange(min=0), default=1000,
              show_default=True, help="Distillation iterations per point.")
@click.option("--runs", type=click.IntRange(min=1), default=3, show_default=True,
              help="Evaluation runs per point.")
@click.option("--epochs", type=click.IntRange(min=1), default=300, show_default=True,
              help="Epochs per evaluation run (the reduced protocol: quote the full one, "
              "`quadd eval --runs 5 --epochs 1000`, for a result).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--baselines", default=None, callback=_baselines,
              help="Baselines at the same budgets, comma separated, or none "
              "[default: all: subset,post,dm32,jpeg,webp].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
@click.option("--progress/--no-progress", default=None,
              help="Progress bar over the points on stderr (default: when stderr is a "
              "terminal).")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True,
              help="Folder for the .qdd files, sweep.jsonl and the plots (created).")
def sweep_command(dataset: str, data_dir: str | None, budgets: tuple[int, ...],
                  bits: list[int], upsample: list[int], method: str, quantizer: str,
                  iterations: int, runs: int, epochs: int, seed: int, baselines: list[str],
                  device: str, progress: bool | None, out: str) -> None:
    """Distill and evaluate every (budget, bits, upsample) point and the baselines at the
    same budgets; plot accuracy against bits and name the best point.

    Each finished point is appended to OUT/sweep.jsonl at once: the same command run
    again skips the points it finished."""
    # Needed only for the plots at the end: a missing one is said before hours of work.
    import matplotlib  # noqa: F401
    from tqdm import tqdm

    from quadd_train import distributed as dist
    from quadd_train.sweep import SweepSettings, best_point, distill_command_for, run_sweep
    from quadd_train.sweep_plot import plot_sweep

    if quantizer == "none":
        raise click.BadParameter("unquantized DM is the 32-bit point: add 32 to --bits",
                                 param_hint="--quantizer")
    # Under torchrun: join the other ranks, each runs its share of the points.
    try:
        ctx = dist.init_from_env(device)
    except (ValueError, RuntimeError) as exc:
        fail(f"cannot join the distributed run: {describe(exc)}")
    if progress is None:
        progress = sys.stderr.isatty()
    settings = SweepSettings(
        dataset=dataset, budgets=sorted(set(budgets)), bits=bits, upsample=upsample,
        method=method, quantizer=quantizer, iterations=iterations, runs=runs, epochs=epochs,
        seed=seed, baselines=baselines, data_dir=data_dir, device=device)

    def echo(line: str, err: bool = False) -> None:
        if not ctx.is_main:
            return  # rank 0 reports
        tqdm.write(line, file=sys.stderr if err else sys.stdout)
        (sys.stderr if err else sys.stdout).flush()

    try:
        if os.path.exists(out) and not os.path.isdir(out):
            raise ValueError(f"{out} exists and is not a folder")
        bundle = load_bundle(dataset, data_dir)
        if len(bundle.sample_shape) != 3:
            # Feature vectors: no image codec to compare with, nothing to store smaller.
            images = [b for b in settings.baselines if b in ("jpeg", "webp")]
            if images or settings.upsample != [1]:
                echo(f"quadd: note: {bundle.name} holds feature vectors: sweeping full size "
                     f"only{', without the ' + '/'.join(images) + ' baseline' if images else ''}",
                     err=True)
            settings.baselines = [b for b in settings.baselines if b not in images]
            settings.upsample = [1]
        shape = "x".join(str(d) for d in bundle.sample_shape)
        ranks = f"; points dealt out to {ctx.world} ranks" if ctx.active else ""
        echo(f"{bundle.name}: {bundle.num_classes} classes, samples {shape}; budgets "
             f"{', '.join(f'{b:,} B' for b in settings.budgets)}; {iterations} "
             f"iterations, evaluated {runs} x {epochs} epochs{ranks}")
        echo(HEADER)
        records = run_sweep(
            settings, out, bundle,
            on_record=lambda rec, reused: echo(format_row(rec, reused)),
            note=lambda text: echo(f"quadd: note: {text}", err=True), progress=progress)
        if not ctx.is_main:
            return
        plots = plot_sweep(records, out, bundle.name, tuple(bundle.sample_shape))
    except train_errors() as exc:
        store = os.path.join(out, "sweep.jsonl")
        fail(lost_peer_message(ctx, exc, f"the finished points are in {store}: run the "
                               "same command again to go on") or describe(exc))
    finally:
        dist.shutdown()
    for budget in settings.budgets:
        best = best_point(records, budget)
        if best is None:
            click.echo(f"at {budget:,} B no QuADD point fits one sample per class")
            continue
        size = "full size" if best["upsample"] == 1 else f"1/{best['upsample']} size"
        bits_text = "1 bit" if best["bits"] == 1 else f"{best['bits']} bits"
        click.echo(f"best at {budget:,} B: {bits_text}, {size}, {best['ipc']} "
                   f"img/class, {best['file_bytes']:,} B, accuracy {best['accuracy']:.2f} "
                   f"+- {best['std']:.2f} %")
        click.echo("  reproduce it: " + shlex.join(distill_command_for(best, settings)))
    click.echo(f"results in {os.path.join(out, 'sweep.jsonl')}; plots: {', '.join(plots)}")

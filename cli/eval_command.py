"""``quadd eval``: train a network (ConvNet-3 for images, an MLP for feature vectors, or
``--model``) on a `.qdd` distilled set, test on the real test split.

Under ``torchrun`` the runs split across the ranks (``quadd_train.eval.runs``); rank 0
prints the one-process result (docs/scaling.md)."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from quadd_train.nn import MODELS

from .errors import describe, fail, run_guarded
from .output import json_line

__all__ = ["eval_command", "lost_peer_message"]


@click.command("eval")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--dataset", "-d", required=True,
    help="Real dataset to test on: digits, mnist, fashion-mnist, cifar10, beam (generated), "
    "or a path (folder with train/ and test/, or .npz).",
)
@click.option(
    "--data-dir", type=click.Path(file_okay=False), default=None,
    help="Folder with the dataset archives/folders (default: $QUADD_DATA, else "
    "~/.cache/quadd/datasets).",
)
@click.option("--runs", type=click.IntRange(min=1), default=5, show_default=True,
              help="Independent trainings (different seeds).")
@click.option("--epochs", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Passes over the distilled set per run.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the first run.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="CPU only: train this many runs at once in worker processes, sharing "
              "the torch threads (each run keeps its seed, so results do not depend on it); "
              "under torchrun, per rank.")
@click.option("--compile/--no-compile", "compile_", default=None,
              help="Train through torch.compile with channels_last: about 1.8x faster per "
              "CIFAR-10 epoch on a CPU, after a compile of up to a minute (default: on "
              "the CPU when epochs x samples x pixels reaches 1e8; needs a C++ compiler, "
              "else warns and trains eager).")
@click.option("--no-dsa", is_flag=True,
              help="Train without DSA augmentation (feature vectors never use it).")
@click.option("--model", "-m", type=click.Choice(MODELS), default=None,
              help="Network to train (cross-architecture evaluation).  [default: convnet "
              "(ConvNet-3) for images, mlp for feature vectors]")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: when stderr is a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def eval_command(
    file: str,
    dataset: str,
    data_dir: str | None,
    runs: int,
    epochs: int,
    seed: int,
    device: str,
    batch_size: int,
    jobs: int,
    compile_: bool | None,
    no_dsa: bool,
    model: str | None,
    progress: bool | None,
    as_json: bool,
) -> None:
    """Evaluate the distilled set FILE.qdd with the standard protocol.

    Trains a fresh network (--model; ConvNet-3 for images, an MLP for feature
    vectors) on the file's samples (read from the file every epoch) RUNS times and
    reports mean and std test accuracy (top-1, then top-2 and top-4) in percent on the
    real test split of --dataset; with per-class quality in the dataset (rsrp_test),
    also how often the predicted class is within 1 dB of the best. FILE may also be a
    JPEG/WebP archive from `quadd baseline`: its images are decoded as a receiver would
    and trained on the same way.
    """
    from quadd_train import distributed as dist
    from quadd_train.data import load_dataset
    from quadd_train.eval import EvalConfig, evaluate_qdd
    from quadd_train.image_baseline import evaluate_image_baseline, is_image_baseline

    if not os.path.isfile(file):
        fail(f"{file}: no such file")
    # Under torchrun: join the other ranks, each trains its block of the runs.
    try:
        ctx = dist.init_from_env(device)
    except (ValueError, RuntimeError) as exc:
        fail(f"cannot join the distributed run: {describe(exc)}")
    if progress is None:
        progress = sys.stderr.isatty()

    def run() -> dict:
        bundle = load_dataset(dataset, data_dir)
        evaluate = evaluate_image_baseline if is_image_baseline(file) else evaluate_qdd
        return evaluate(
            file,
            bundle,
            runs=runs,
            epochs=epochs,
            seed=seed,
            device=device,
            batch_size=batch_size,
            dsa=not no_dsa,
            progress=progress,
            jobs=jobs,
            compile=compile_,
            config=EvalConfig(model=model),
        )

    def guarded() -> dict:
        try:
            return run()
        except Exception as exc:
            why = lost_peer_message(ctx, exc)
            if why is None:
                raise
            raise ValueError(why) from exc

    # The quadd group guards every subcommand too; this keeps the command well-behaved
    # when invoked on its own (tests, embedding in another click group).
    try:
        result = run_guarded(guarded)
    finally:
        dist.shutdown()
    if not ctx.is_main:
        return  # rank 0 reports
    if as_json:
        click.echo(json_line(result))
    else:
        click.echo(
            f"{result['dataset']}: accuracy {result['accuracy']:.2f} +- {result['std']:.2f} % "
            f"over {runs} run(s) of {epochs} epochs; {result['num_samples']} samples, "
            f"{result['file_bytes']} bytes ({file})"
        )
        click.echo(_more_metrics(result))


def _more_metrics(result: dict) -> str:
    """The second line: the model, top-2/top-4 and (with rsrp_test) within-1-dB."""
    parts = [f"{result['model']}: top-2 {result['top2']:.2f} +- {result['top2_std']:.2f} %",
             f"top-4 {result['top4']:.2f} +- {result['top4_std']:.2f} %"]
    if result.get("within_1db") is not None:
        parts.append(f"within 1 dB of the best {result['within_1db']:.2f} +- "
                     f"{result['within_1db_std']:.2f} %")
    return ", ".join(parts)


def lost_peer_message(ctx: Any, exc: BaseException,
                      then: str = "nothing was written") -> str | None:
    """The one line for ``exc`` when it is a collective that failed in a distributed run
    (a rank died, a peer timed out), naming this rank and ending with ``then`` (what is
    left and what to do); None for any other failure."""
    from quadd_train.distributed import lost_peer

    if not ctx.active or not lost_peer(exc):
        return None
    # gloo's own text goes on to advise reading the other ranks' logs: cut there.
    why = describe(exc).split(". This is typically")[0]
    return f"rank {ctx.rank} of {ctx.world} lost the other ranks ({why}); {then}"

"""``quadd baseline jpeg|webp``: random real images as JPEG or WebP in a ZIP archive of at
most --budget bytes, the baseline a practitioner would send (see
``quadd_train.image_baseline``)."""

from __future__ import annotations

import sys
from dataclasses import asdict

import click

from .errors import describe, fail
from .output import force_opt, json_line
from .train_options import (
    budget_opt,
    check_train_output,
    data_dir_opt,
    dataset_opt,
    load_bundle,
    train_errors,
)

__all__ = ["baseline_command"]


@click.command("baseline")
@click.argument("codec", type=click.Choice(["jpeg", "webp"]))
@dataset_opt
@data_dir_opt
@budget_opt
@click.option("--scale", type=click.Choice(["1", "2"]), default="1", show_default=True,
              help="2: store images box-downsampled to half size per side; readers enlarge "
              "them back bilinearly.")
@click.option("--quality", type=click.IntRange(1, 100), default=None,
              help="Encoder quality (default: the highest of 10, 20, 30, 50, 75, 90 that "
              "fits as many images per class as 75 does).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the random draw of samples.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: when stderr is a terminal).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result (with every candidate weighed) as one JSON object.")
@click.option("--output", "-o", "output", type=click.Path(dir_okay=False), required=True,
              help="Output .zip file (written atomically).")
@force_opt
def baseline_command(
    codec: str,
    dataset: str,
    data_dir: str | None,
    budget: int,
    scale: str,
    quality: int | None,
    seed: int,
    progress: bool | None,
    as_json: bool,
    output: str,
    force: bool,
) -> None:
    """Baseline: random real images per class as JPEG or WebP, as many as fit --budget,
    in one ZIP archive OUTPUT.

    The archive holds one mosaic per class or one file per image, whichever fits more,
    and a small manifest; its size on disk is at most --budget. It prints every quality
    weighed and the one written. `quadd eval OUTPUT --dataset D` evaluates it like a .qdd.
    """
    from quadd_train.image_baseline import write_image_baseline

    if progress is None:
        progress = sys.stderr.isatty()
    try:
        check_train_output(output, force, dataset)
        bundle = load_bundle(dataset, data_dir, output)
        res = write_image_baseline(bundle, budget, output, codec, int(scale), seed,
                                   quality, progress=progress)
    except train_errors() as exc:
        fail(describe(exc))
    if as_json:
        click.echo(json_line(asdict(res)))
        return
    click.echo(f"{'quality':>7}  {'layout':>8}  {'img/class':>9}  {'bytes':>8}")
    for p in res.candidates:
        mark = "  <- written" if (p.quality, p.layout) == (res.quality, res.layout) else ""
        click.echo(f"{p.quality:>7}  {p.layout:>8}  {p.ipc:>9}  {p.file_bytes:>8,}{mark}")
    click.echo(
        f"wrote {res.path}: {res.codec} quality {res.quality}, scale {res.scale}, "
        f"{res.layout}, {res.n} images ({res.ipc}/class), {res.file_bytes:,} of "
        f"{res.budget_bytes:,} bytes"
    )

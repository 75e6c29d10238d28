"""``quadd subset``: write a random-subset `.qdd` file that fits a byte budget; ``quadd
plan``: what fits a budget at each bit width."""

from __future__ import annotations

from dataclasses import asdict

import click

from .errors import describe, fail
from .output import force_opt, json_line
from .train_options import (
    budget_opt,
    check_train_output,
    data_dir_opt,
    dataset_opt,
    group_for,
    group_opt,
    load_bundle,
    out_opt,
    train_errors,
    upsample_filter_opt,
    upsample_opt,
    upsample_option,
)

__all__ = ["plan_command", "subset_command"]


@click.command("subset")
@dataset_opt
@data_dir_opt
@budget_opt
@click.option("--bits", type=click.IntRange(1, 32), default=4, show_default=True,
              help="Bits per stored value: 1..8, or 32 for raw float32.")
@click.option("--codebook", type=click.Choice(["uniform", "kmeans"]), default="uniform",
              show_default=True)
@group_opt
@upsample_option("by repeating each value; subset stores the mean of each block")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@out_opt
@force_opt
def subset_command(
    dataset: str,
    data_dir: str | None,
    budget: int,
    bits: int,
    codebook: str,
    group: str | None,
    upsample: int,
    seed: int,
    as_json: bool,
    output: str,
    force: bool,
) -> None:
    """Baseline: random real samples per class, quantized to --bits, as many as fit
    --budget, written to OUTPUT.qdd."""
    from quadd_train import subset

    if 8 < bits < 32:
        raise click.BadParameter("must be 1..8 or 32", param_hint="--bits")
    try:
        check_train_output(output, force, dataset)
        bundle = load_bundle(dataset, data_dir, output)
        res = subset(bundle, budget, bits, seed, output, codebook=codebook,
                     group=group_for(group, bundle),
                     upsample=upsample)
    except train_errors() as exc:
        fail(describe(exc))
    if as_json:
        click.echo(json_line(asdict(res)))
    else:
        # A class with fewer samples than the budget allows gives all it has.
        per_class = (f"{res.ipc}/class" if res.n == res.ipc * bundle.num_classes
                     else f"up to {res.ipc}/class: some classes have fewer")
        click.echo(
            f"wrote {res.path}: {res.n} samples ({per_class}) at {res.bits} bits, "
            f"{res.file_bytes} of {res.budget_bytes} bytes"
        )


@click.command("plan")
@dataset_opt
@data_dir_opt
@budget_opt
@click.option("--bits", "bits_list", type=click.IntRange(1, 8), multiple=True,
              help="Bit widths to list (repeatable; default 1, 2, 4, 8). A 32-bit row for "
              "unquantized DM is always added.")
@click.option("--quantizer", "-q", type=click.Choice(["uniform", "apot", "learned"]),
              default="uniform", show_default=True)
@click.option("--iterations", "-n", type=click.IntRange(min=0), default=1000,
              show_default=True, help="As for distill: recorded in the file's provenance.")
@click.option("--seed", type=int, default=0, show_default=True)
@group_opt
@upsample_opt
@upsample_filter_opt
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per bit width.")
def plan_command(
    dataset: str,
    data_dir: str | None,
    budget: int,
    bits_list: tuple[int, ...],
    quantizer: str,
    iterations: int,
    seed: int,
    group: str | None,
    upsample: int,
    upsample_filter: str,
    as_json: bool,
) -> None:
    """How many samples per class `quadd distill` fits into --budget at each bit width,
    and the exact size of the file it would write (header, codebooks, labels and
    provenance included). Nothing is trained or written."""
    from quadd_train import DistillConfig
    from quadd_train.plan import plan

    try:
        bundle = load_bundle(dataset, data_dir)
        rows = []
        for b in sorted(set(bits_list or (1, 2, 4, 8))) + [32]:
            cfg = DistillConfig(
                dataset=dataset, budget_bytes=budget, bits=min(b, 8),
                group=group_for(group, bundle),
                quantizer="none" if b == 32 else quantizer, iterations=iterations, seed=seed,
                upsample=upsample, upsample_filter=upsample_filter,
            )
            rows.append(plan(cfg, bundle))
    except train_errors() as exc:
        fail(describe(exc))
    if as_json:
        for r in rows:
            click.echo(json_line(asdict(r)))
        return
    shape = "x".join(str(d) for d in bundle.sample_shape)
    stored = "" if upsample == 1 else (
        f", stored {upsample}x smaller per side ({bundle.sample_shape[-2] // upsample}x"
        f"{bundle.sample_shape[-1] // upsample})")
    click.echo(f"{bundle.name}: {bundle.num_classes} classes, samples {shape}{stored}; "
               f"budget {budget:,} B")
    click.echo(f"{'bits':>4}  {'per class':>9}  {'samples':>7}  {'file bytes':>10}  "
               f"{'unused':>7}")
    for r in rows:
        if r.ipc == 0:
            click.echo(f"{r.bits:>4}  {'-':>9}  {'-':>7}  {'-':>10}  {'-':>7}  "
                       f"(one per class needs {r.one_per_class_bytes:,} B)")
        else:
            click.echo(f"{r.bits:>4}  {r.ipc:>9}  {r.n:>7}  {r.file_bytes:>10,}  "
                       f"{r.budget_bytes - r.file_bytes:>7,}")
    # The file records its settings, so their digits count too.
    click.echo(f"(exact for distill with these settings, --iterations {iterations} and "
               f"--seed {seed} included: the file records its settings, so other values "
               "can shift the size by a few bytes)")
    smallest = int(bundle.y_train.bincount(minlength=bundle.num_classes).min())
    if any(r.ipc > smallest for r in rows):
        click.echo(f"note: some rows afford more samples per class than the smallest class "
                   f"has ({smallest:,}); distill starts those from repeated real samples, "
                   "subset stores each real sample once")

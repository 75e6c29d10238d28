"""``quadd distill`` and ``quadd subset``: write a distilled / random-subset `.qdd` file
that fits a byte budget; ``quadd plan``: what fits a budget at each bit width."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import asdict
from typing import Any

import click

from .errors import describe, fail
from .output import json_line

__all__ = ["distill_command", "plan_command", "subset_command"]


class _SizeType(click.ParamType):
    """A byte size such as 120KiB, 1MB or 4096 (bad values are usage errors, exit 2)."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from quadd_train.budget import parse_size

        try:
            return parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SIZE = _SizeType()

_dataset_opt = click.option(
    "--dataset", "-d", default="digits", show_default=True,
    help="digits (built in), mnist, fashion-mnist, cifar10, or a path "
    "(folder with train/ and test/, or .npz).",
)
_data_dir_opt = click.option(
    "--data-dir", type=click.Path(file_okay=False), default=None,
    help="Folder with the dataset archives/folders (default: $QUADD_DATA, else "
    "~/.cache/quadd/datasets).",
)
_budget_opt = click.option(
    "--budget", "-b", type=SIZE, required=True,
    help="Size limit of the output file: bytes, or with a unit B, KB, MB (x1000), "
    "KiB, MiB (x1024), e.g. 120KiB.",
)
_out_opt = click.option(
    "--output", "-o", "output", type=click.Path(dir_okay=False), required=True,
    help="Output .qdd file (written atomically).",
)


def _upsample_option(how: str) -> Any:
    return click.option(
        "--upsample", type=click.IntRange(1, 16), default=1, show_default=True,
        help=f"Store images this many times smaller per side; readers enlarge them again "
        f"({how}), so about upsample^2 times as many samples fit the budget.",
    )


_upsample_opt = _upsample_option("--upsample-filter")
_upsample_filter_opt = click.option(
    "--upsample-filter", type=click.Choice(["nearest", "linear"]), default="nearest",
    show_default=True,
    help="How --upsample images are enlarged, in the loop and by readers: repeat each "
    "value (nearest) or interpolate bilinearly (linear; .qdd 1.2).",
)
_group_opt = click.option(
    "--group", type=click.Choice(["tensor", "channel", "sample-channel"]), default="channel",
    show_default=True, help="What one codebook covers.",
)


def _load(dataset: str, data_dir: str | None, *outputs: str | None) -> Any:
    from quadd_codec.paths import same_file
    from quadd_train.data import load_dataset

    # Writing over the dataset being read would replace it with the result.
    source = os.path.expanduser(dataset)
    for target in filter(None, outputs):
        if os.path.exists(source) and same_file(source, target):
            raise ValueError(f"{target} is the input dataset; write the result elsewhere")
    return load_dataset(dataset, data_dir)


def _errors() -> tuple[type[BaseException], ...]:
    # RuntimeError too: torch raises it for unreadable checkpoints, and the distiller for
    # a broken size invariant. The quadd group handles Ctrl-C (exit 130) and the rest.
    from quadd_codec import QddError

    return (QddError, ValueError, OSError, RuntimeError, MemoryError)


@click.command("distill")
@_dataset_opt
@_data_dir_opt
@_budget_opt
@click.option("--bits", type=click.IntRange(1, 8), default=4, show_default=True,
              help="Bits per stored value (ignored by --quantizer none, which stores 32).")
@click.option("--quantizer", "-q", type=click.Choice(["uniform", "apot", "learned", "none"]),
              default="uniform", show_default=True,
              help="Differentiable quantizer in the loop; none = unquantized 32-bit DM.")
@click.option("--method", type=click.Choice(["dm"]), default="dm", show_default=True,
              help="Distillation objective.")
@click.option("--iterations", "-n", type=click.IntRange(min=0), default=1000,
              show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--ipc", type=click.IntRange(min=1), default=None,
              help="Samples per class (default: the most that fit the budget).")
@_group_opt
@click.option("--post-quantize", is_flag=True,
              help="Baseline: distill unquantized at the same sample count, quantize once "
              "at the end.")
@click.option("--post-codebook", type=click.Choice(["uniform", "kmeans"]), default="uniform",
              show_default=True, help="Codebook used by --post-quantize.")
@click.option("--quant-warmup", type=click.IntRange(min=0), default=0, show_default=True,
              help="Iterations to run unquantized first; the quantizer is then fitted to "
              "the samples and trained with them.")
@_upsample_opt
@_upsample_filter_opt
@click.option("--lr-img", type=float, default=1.0, show_default=True)
@click.option("--lr-quant", type=float, default=0.005, show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Save a checkpoint every N iterations (0: never).")
@click.option("--checkpoint", "checkpoint_path", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint file (default: OUTPUT.ckpt).")
@click.option("--resume", is_flag=True,
              help="Continue from the checkpoint if it exists (same settings required).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
@click.option("--dm-mode", type=click.Choice(["auto", "fast", "plain"]), default="auto",
              show_default=True,
              help="fast: pool of random networks with precomputed real embeddings; "
              "plain: the reference loop (a fresh network and real batch every iteration); "
              "auto: plain on a GPU (a pool that reuses nothing computes the same samples "
              "there at the same cost) unless --pool-size, --real-per-class, "
              "--pool-train-steps or --pool-order random asks for a pool; fast elsewhere.")
@click.option("--pool-size", type=click.IntRange(min=1), default=None,
              help="Random networks (each with its own DSA draws) in the fast-mode pool. "
              "A pool smaller than --iterations is reused, and reuse costs accuracy at "
              "equal iterations; a larger one costs a longer set-up (docs/results.md).  "
              "[default: on a GPU one per iteration (at most 4096), on a CPU one per 4 "
              "iterations (at most 2048)]")
@click.option("--real-per-class", type=click.IntRange(min=1), default=None,
              help="Real images per class behind each precomputed mean (fast mode).  "
              "[default: 256, the plain loop's batch]")
@click.option("--pool-order", type=click.Choice(["shuffle", "random"]), default="shuffle",
              show_default=True,
              help="Fast mode: draw the pool's entries in passes (each once per pass; the "
              "first pass of an untrained pool in index order, later ones shuffled; with a "
              "pool of at least --iterations none is reused) or independently at random "
              "(with replacement).")
@click.option("--pool-train-steps", type=click.IntRange(min=0), default=0, show_default=True,
              help="Fast mode: train the pool's networks on real batches first, network p "
              "for p/(pool size - 1) of this many SGD steps, so the pool spans random to "
              "partly trained embeddings (IDM). 0: random networks, as DM.")
@click.option("--pool-train-batch", type=click.IntRange(min=1), default=256,
              show_default=True, help="Real images per pool training step.")
@click.option("--no-dsa", is_flag=True, help="Disable differentiable Siamese augmentation.")
@click.option("--bf16/--no-bf16", default=None,
              help="bfloat16 autocast for the embedding network (default: when the "
              "CPU/GPU computes bf16 natively).")
@click.option("--channels-last/--no-channels-last", default=None,
              help="NHWC activations (default: on CUDA, and on a CPU when compiled).")
@click.option("--compile/--no-compile", "compile_", default=None,
              help="torch.compile the embedding network (default: for runs of 300+ "
              "iterations; needs a C++ compiler on CPU, falls back to eager).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for torch (default: torch's choice).")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: when stderr is a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@_out_opt
def distill_command(
    dataset: str,
    data_dir: str | None,
    budget: int,
    bits: int,
    quantizer: str,
    method: str,
    iterations: int,
    seed: int,
    ipc: int | None,
    group: str,
    post_quantize: bool,
    post_codebook: str,
    quant_warmup: int,
    upsample: int,
    upsample_filter: str,
    lr_img: float,
    lr_quant: float,
    checkpoint_every: int,
    checkpoint_path: str | None,
    resume: bool,
    device: str,
    dm_mode: str,
    pool_size: int | None,
    real_per_class: int | None,
    pool_order: str,
    pool_train_steps: int,
    pool_train_batch: int,
    no_dsa: bool,
    bf16: bool | None,
    channels_last: bool | None,
    compile_: bool | None,
    threads: int | None,
    progress: bool | None,
    as_json: bool,
    output: str,
) -> None:
    """Distill --dataset into OUTPUT.qdd, at most --budget bytes, with quantization in
    the loop (QuADD): samples and quantization levels are optimized together."""
    import torch

    from quadd_train.distill import DistillConfig, distill

    if threads:
        torch.set_num_threads(threads)
    if progress is None:
        progress = sys.stderr.isatty()
    cfg = DistillConfig(
        dataset=dataset, budget_bytes=budget, bits=bits, quantizer=quantizer, method=method,
        iterations=iterations, seed=seed, lr_img=lr_img, lr_quant=lr_quant, device=device,
        group=group, ipc=ipc, post_quantize=post_quantize, post_codebook=post_codebook,
        quant_warmup=quant_warmup, upsample=upsample, upsample_filter=upsample_filter,
        checkpoint_every=checkpoint_every, checkpoint_path=checkpoint_path, resume=resume,
        data_dir=data_dir, dm_mode=dm_mode, pool_size=pool_size,
        real_per_class=real_per_class, pool_order=pool_order,
        pool_train_steps=pool_train_steps,
        pool_train_batch=pool_train_batch, dsa=not no_dsa, channels_last=channels_last,
        bf16=bf16, compile=compile_,
    )
    ckpt = cfg.checkpoint_for(output)
    started = time.time()
    if resume and not os.path.exists(ckpt):
        click.echo(f"quadd: note: no checkpoint at {ckpt}; starting from the beginning",
                   err=True)
    try:
        bundle = _load(dataset, data_dir, output,
                       ckpt if checkpoint_every or checkpoint_path else None)
        res = distill(cfg, bundle, output, progress=progress)
    except _errors() as exc:
        fail(describe(exc))
    except KeyboardInterrupt:
        # Only a checkpoint this run resumed from or wrote: an older one at the same path
        # may hold other settings, and --resume would then refuse it.
        if checkpoint_every and os.path.exists(ckpt) and (
                resume or os.path.getmtime(ckpt) >= started):
            from quadd_train.distill import load_checkpoint

            with contextlib.suppress(ValueError, OSError):
                at = load_checkpoint(ckpt)["iteration"]
                click.echo(f"quadd: interrupted; the checkpoint of iteration {at} is in "
                           f"{ckpt}: run the same command with --resume to go on", err=True)
                sys.exit(130)
        raise
    if as_json:
        click.echo(json_line(asdict(res)))
    else:
        # The default pool depends on the device and --iterations: say which was used.
        pool = (f" (DM pool {res.pool_size} x {res.real_per_class} real/class, set up in "
                f"{res.prepare_seconds:.0f} s)" if res.pool_size is not None else
                " (plain DM loop)" if res.dm_mode == "plain" else "")
        stored = f", stored {upsample}x smaller per side" if upsample > 1 else ""
        resumed = f", resumed from {res.resumed_from}" if res.resumed_from else ""
        classes = max(res.n // max(res.ipc, 1), 1)
        click.echo(
            f"wrote {res.path}: {res.n} samples ({res.ipc}/class) at {res.bits} bits{stored}, "
            f"{res.file_bytes} of {res.budget_bytes} bytes; {res.iterations} iterations"
            f"{resumed}{pool}, final loss/class {res.final_loss / classes:.4f}, "
            f"{res.it_per_s:.2f} it/s"
        )


@click.command("subset")
@_dataset_opt
@_data_dir_opt
@_budget_opt
@click.option("--bits", type=click.IntRange(1, 32), default=4, show_default=True,
              help="Bits per stored value: 1..8, or 32 for raw float32.")
@click.option("--codebook", type=click.Choice(["uniform", "kmeans"]), default="uniform",
              show_default=True)
@_group_opt
@_upsample_option("by repeating each value; subset stores the mean of each block")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@_out_opt
def subset_command(
    dataset: str,
    data_dir: str | None,
    budget: int,
    bits: int,
    codebook: str,
    group: str,
    upsample: int,
    seed: int,
    as_json: bool,
    output: str,
) -> None:
    """Baseline: random real samples per class, quantized to --bits, as many as fit
    --budget, written to OUTPUT.qdd."""
    from quadd_train.distill import subset

    if 8 < bits < 32:
        raise click.BadParameter("must be 1..8 or 32", param_hint="--bits")
    try:
        bundle = _load(dataset, data_dir, output)
        res = subset(bundle, budget, bits, seed, output, codebook=codebook, group=group,
                     upsample=upsample)
    except _errors() as exc:
        fail(describe(exc))
    if as_json:
        click.echo(json_line(asdict(res)))
    else:
        click.echo(
            f"wrote {res.path}: {res.n} samples ({res.ipc}/class) at {res.bits} bits, "
            f"{res.file_bytes} of {res.budget_bytes} bytes"
        )


@click.command("plan")
@_dataset_opt
@_data_dir_opt
@_budget_opt
@click.option("--bits", "bits_list", type=click.IntRange(1, 8), multiple=True,
              help="Bit widths to list (repeatable; default 1, 2, 4, 8). A 32-bit row for "
              "unquantized DM is always added.")
@click.option("--quantizer", "-q", type=click.Choice(["uniform", "apot", "learned"]),
              default="uniform", show_default=True)
@click.option("--iterations", "-n", type=click.IntRange(min=0), default=1000,
              show_default=True, help="As for distill: recorded in the file's provenance.")
@click.option("--seed", type=int, default=0, show_default=True)
@_group_opt
@_upsample_opt
@_upsample_filter_opt
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per bit width.")
def plan_command(
    dataset: str,
    data_dir: str | None,
    budget: int,
    bits_list: tuple[int, ...],
    quantizer: str,
    iterations: int,
    seed: int,
    group: str,
    upsample: int,
    upsample_filter: str,
    as_json: bool,
) -> None:
    """How many samples per class `quadd distill` fits into --budget at each bit width,
    and the exact size of the file it would write (header, codebooks, labels and
    provenance included). Nothing is trained or written."""
    from quadd_train.distill import DistillConfig, plan

    try:
        bundle = _load(dataset, data_dir)
        rows = []
        for b in sorted(set(bits_list or (1, 2, 4, 8))) + [32]:
            cfg = DistillConfig(
                dataset=dataset, budget_bytes=budget, bits=min(b, 8), group=group,
                quantizer="none" if b == 32 else quantizer, iterations=iterations, seed=seed,
                upsample=upsample, upsample_filter=upsample_filter,
            )
            rows.append(plan(cfg, bundle))
    except _errors() as exc:
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

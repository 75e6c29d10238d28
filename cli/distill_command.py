"""``quadd distill``: write a distilled `.qdd` file that fits a byte budget.

``--method`` takes any registered objective (``quadd_train.objectives``); its options
are flags of their own section in ``--help`` (generated from its ``Options``) and
``--opt KEY=VALUE``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import replace
from typing import Any

import click

from .errors import describe, fail
from .objective_flags import ObjectiveCommand, RegistryChoice, collect_objective_options
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
)

__all__ = ["distill_command"]


class _IntOrAuto(click.ParamType):
    """An integer in [low, high], or ``auto`` (bad values are usage errors, exit 2)."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high
        self.name = f"{low}..{high}|auto"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int | str:
        if isinstance(value, int) or str(value).strip().lower() != "auto":
            try:
                n = int(value)
            except ValueError:
                self.fail(f"{value!r} is not an integer from {self.low} to {self.high} "
                          "or 'auto'", param, ctx)
            if not self.low <= n <= self.high:
                self.fail(f"{n} is not in the range {self.low}..{self.high} (or 'auto')",
                          param, ctx)
            return n
        return "auto"


@click.command("distill", cls=ObjectiveCommand)
@dataset_opt
@data_dir_opt
@budget_opt
@click.option("--bits", type=_IntOrAuto(1, 8), default=4, show_default=True,
              help="Bits per stored value (ignored by --quantizer none, which stores 32); "
              "auto: short pilot runs scored on a held-out slice of the training set pick "
              "1, 2, 4, 8 or 32 (unquantized).")
@click.option("--quantizer", "-q", type=RegistryChoice("quadd_train.quantizers:quantizer_names"),
              default="uniform", show_default=True,
              help="Differentiable quantizer in the loop; none = unquantized 32-bit DM.")
@click.option("--method", type=RegistryChoice("quadd_train.objectives:objective_names"),
              default="dm", show_default=True,
              help="Distillation objective; its options are listed below under its name, "
              "and can also be given as --opt KEY=VALUE.")
@click.option("--iterations", "-n", type=click.IntRange(min=0), default=1000,
              show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--ipc", type=click.IntRange(min=1), default=None,
              help="Samples per class (default: the most that fit the budget).")
@group_opt
@click.option("--post-quantize", is_flag=True,
              help="Baseline: distill unquantized at the same sample count, quantize once "
              "at the end.")
@click.option("--post-codebook", type=click.Choice(["uniform", "kmeans"]), default="uniform",
              show_default=True, help="Codebook used by --post-quantize.")
@click.option("--quant-warmup", type=click.IntRange(min=0), default=0, show_default=True,
              help="Iterations to run unquantized first; the quantizer is then fitted to "
              "the samples and trained with them.")
@click.option("--upsample", type=_IntOrAuto(1, 16), default=1, show_default=True,
              help="Store images this many times smaller per side; readers enlarge them "
              "again (--upsample-filter), so about upsample^2 times as many samples fit "
              "the budget. auto: try 1 and 2 with --bits auto.")
@upsample_filter_opt
@click.option("--lr-img", type=float, default=1.0, show_default=True)
@click.option("--lr-quant", type=float, default=0.005, show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Save a checkpoint every N iterations (0: never).")
@click.option("--checkpoint", "checkpoint_path", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint file (default: OUTPUT.ckpt).")
@click.option("--resume", is_flag=True,
              help="Continue from the checkpoint if it exists (same settings required); "
              "an existing OUTPUT, from the run being resumed, is then replaced.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
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
@out_opt
@force_opt
@click.pass_context
def distill_command(
    ctx: click.Context,
    dataset: str,
    data_dir: str | None,
    budget: int,
    bits: int | str,
    quantizer: str,
    method: str,
    iterations: int,
    seed: int,
    ipc: int | None,
    group: str | None,
    post_quantize: bool,
    post_codebook: str,
    quant_warmup: int,
    upsample: int | str,
    upsample_filter: str,
    lr_img: float,
    lr_quant: float,
    checkpoint_every: int,
    checkpoint_path: str | None,
    resume: bool,
    device: str,
    bf16: bool | None,
    channels_last: bool | None,
    compile_: bool | None,
    threads: int | None,
    progress: bool | None,
    as_json: bool,
    output: str,
    force: bool,
    **objective_values: Any,
) -> None:
    """Distill --dataset into OUTPUT.qdd, at most --budget bytes, with quantization in
    the loop (QuADD): samples and quantization levels are optimized together."""
    options = collect_objective_options(ctx, method, objective_values)
    import torch

    from quadd_train import DistillConfig, distill
    from quadd_train import distributed as dist

    if threads:
        torch.set_num_threads(threads)
    # Under torchrun: join the other ranks (docs/scaling.md); only rank 0 talks.
    try:
        ctx = dist.init_from_env(device)
    except (ValueError, RuntimeError) as exc:
        fail(f"cannot join the distributed run: {describe(exc)}")
    if progress is None:
        progress = sys.stderr.isatty()
    progress = progress and ctx.is_main
    auto = [name for name, v in (("bits", bits), ("upsample", upsample)) if v == "auto"]
    if auto and post_quantize:
        fail("--bits/--upsample auto do not combine with --post-quantize")
    if auto and ctx.active:
        fail("--bits/--upsample auto run in one process only; pick them there, then "
             "distill with torchrun")
    cfg = DistillConfig(
        dataset=dataset, budget_bytes=budget, bits=4 if bits == "auto" else int(bits),
        quantizer=quantizer, method=method,
        iterations=iterations, seed=seed, lr_img=lr_img, lr_quant=lr_quant, device=device,
        group=group or "channel", ipc=ipc, post_quantize=post_quantize, post_codebook=post_codebook,
        quant_warmup=quant_warmup, upsample=1 if upsample == "auto" else int(upsample),
        upsample_filter=upsample_filter,
        checkpoint_every=checkpoint_every, checkpoint_path=checkpoint_path, resume=resume,
        data_dir=data_dir, channels_last=channels_last, bf16=bf16, compile=compile_,
        objective_options=options,
    )
    ckpt = cfg.checkpoint_for(output)
    started = time.time()
    if resume and not os.path.exists(ckpt) and ctx.is_main:
        click.echo(f"quadd: note: no checkpoint at {ckpt}; starting from the beginning",
                   err=True)
    try:
        check_train_output(output, force or resume, dataset)
        bundle = load_bundle(dataset, data_dir, output,
                             ckpt if checkpoint_every or checkpoint_path else None)
        if group is None:  # the data's default: a shared codebook for vectors
            cfg = replace(cfg, group=group_for(None, bundle))
        choice = None
        if auto:
            from quadd_train.plan import check_dir

            # Refuse what the writer would refuse before the pilots, not after them.
            cfg.validate()
            check_dir(output)
            cfg, choice = _choose(cfg, bundle, bits, upsample, progress)
        res = distill(cfg, bundle, output, progress=progress)
    except train_errors() as exc:
        if ctx.active and dist.lost_peer(exc):
            # gloo's own text goes on to advise reading the other ranks' logs: cut there.
            why = describe(exc).split(". This is typically")[0]
            fail(f"rank {ctx.rank} of {ctx.world} lost the other ranks ({why}); "
                 + (f"the last checkpoint is {ckpt}: run the same command with --resume "
                    "to go on" if checkpoint_every else "nothing was written"))
        fail(describe(exc))
    except KeyboardInterrupt:
        # Only a checkpoint this run resumed from or wrote: an older one at the same path
        # may hold other settings, and --resume would then refuse it.
        if checkpoint_every and os.path.exists(ckpt) and (
                resume or os.path.getmtime(ckpt) >= started):
            from quadd_train.checkpoint import load_checkpoint

            with contextlib.suppress(ValueError, OSError):
                at = load_checkpoint(ckpt)["iteration"]
                click.echo(f"quadd: interrupted; the checkpoint of iteration {at} is in "
                           f"{ckpt}: run the same command with --resume to go on", err=True)
                sys.exit(130)
        raise
    finally:
        dist.shutdown()
    if not ctx.is_main:
        return  # rank 0 reports
    if as_json:
        out = res.to_dict()
        if choice is not None:
            out["auto"] = {**(cfg.auto or {}), "seconds": round(choice.seconds, 3)}
        click.echo(json_line(out))
    else:
        what = f" ({res.summary})" if res.summary else ""
        up = cfg.upsample
        stored = f", stored {up}x smaller per side" if up > 1 else ""
        resumed = f", resumed from {res.resumed_from}" if res.resumed_from else ""
        classes = max(res.n // max(res.ipc, 1), 1)
        click.echo(
            f"wrote {res.path}: {res.n} samples ({res.ipc}/class) at {res.bits} bits{stored}, "
            f"{res.file_bytes} of {res.budget_bytes} bytes; {res.iterations} iterations"
            f"{resumed}{what}, final loss/class {res.final_loss / classes:.4f}, "
            f"{res.it_per_s:.2f} it/s"
        )



def _choose(cfg: Any, bundle: Any, bits: int | str, upsample: int | str,
            progress: bool) -> tuple[Any, Any]:
    """Run the --bits/--upsample auto proxy, print its table on stderr, and return the
    configuration of the picked setting (the choice recorded in its provenance)."""
    from quadd_train.auto_bits import RAW_BITS, candidate_config, choose_setting

    if bits == "auto":
        cand_bits: tuple[int, ...] = (1, 2, 4, 8, RAW_BITS)
    else:
        cand_bits = (RAW_BITS,) if cfg.quantizer == "none" else (int(bits),)
    if upsample == "auto" and len(bundle.sample_shape) == 3:
        h, w = bundle.im_size
        cand_up: tuple[int, ...] = (1, 2) if h % 2 == 0 and w % 2 == 0 else (1,)
    elif upsample == "auto":  # feature vectors are never resized
        cand_up = (1,)
    else:
        cand_up = (int(upsample),)
    choice = choose_setting(cfg, bundle, cand_bits, cand_up, progress=progress)
    # Exactly the record the proxy sized its fit check for.
    record = choice.record()
    echo = lambda line: click.echo(line, err=True)  # noqa: E731
    echo(f"quadd: auto ({choice.proxy_text()}; {choice.seconds:.1f} s), "
         "held-out accuracy per setting:")
    echo(f"  {'bits':>4} {'upsample':>8}  accuracy")
    for up in cand_up:
        for b in cand_bits:
            score = choice.scores[f"{b}/{up}"]
            shown = "does not fit" if score is None else f"{score:7.2f}%"
            mark = "  <- picked" if (b, up) == (choice.bits, choice.upsample) else ""
            echo(f"  {b:>4} {up:>8}  {shown}{mark}")
    echo(f"quadd: picked {choice.bits} bits, upsample {choice.upsample}: the best held-out "
         "accuracy (ties go to fewer bits); distilling with it")
    return replace(candidate_config(cfg, choice.bits, choice.upsample), auto=record), choice

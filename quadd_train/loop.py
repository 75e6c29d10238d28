"""The distillation loop: ``distill`` wires the synthetic set, the differentiable
quantizer and the objective together, optimizes samples and quantization parameters
jointly, and writes a `.qdd` file that is guaranteed (and checked) to fit the budget.

Baselines run through the same loop: ``quantizer="none"`` (32-bit, at the count that
fits at 32 bits) and ``post_quantize=True`` (unquantized at the QuADD count, quantized
once at the end); :func:`quadd_train.baselines.subset` takes random real samples.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from quadd_codec import quantize_array
from quadd_codec.paths import same_file

from .checkpoint import check_resumable, load_checkpoint, run_fingerprint, save_checkpoint
from .config import DistillConfig, DistillResult
from .distributed import (
    Context,
    broadcast_object,
    context,
    gather_rows,
    sum_in_rank_order,
)
from .objectives import make_objective
from .plan import check_dir, check_memory, check_written, file_layout, plan_ipc
from .quantizers import make_quantizer, quantizer_optimizer
from .runtime import resolve_runtime
from .synthetic import SyntheticSet

__all__ = ["distill"]


def distill(
    config: DistillConfig, bundle: Any, out_path: str | os.PathLike[str], progress: bool = True
) -> DistillResult:
    """Run QuADD (or a baseline, per ``config``) on ``bundle`` and write ``out_path``.

    The file stores the samples in normalized space with ``Denorm(scale=std,
    offset=mean)``. Its size is checked against the budget after writing.

    In a distributed run (:mod:`.distributed`) every rank calls this alike: the ranks
    split the objective's set-up and classes, rank 0 alone shows progress and writes
    the checkpoints and the file, the same bytes one process writes.
    """
    from .data import check_every_class_has_samples

    config.validate()
    check_every_class_has_samples(bundle)
    out_path = os.fspath(out_path)
    runtime = resolve_runtime(config.device, bf16=config.bf16,
                              channels_last=config.channels_last, compile=config.compile,
                              compile_default=config.compile_default)
    ctx = context()
    progress = progress and ctx.is_main
    if ctx.active and runtime.device.type == "cuda" and runtime.device.index is None:
        # Each rank its own GPU (distributed.init_from_env made it the current one).
        runtime = replace(runtime, device=torch.device("cuda", torch.cuda.current_device()))
    device = runtime.device
    ckpt_path = config.checkpoint_for(out_path)
    if (config.checkpoint_every or config.resume) and same_file(ckpt_path, out_path):
        raise ValueError(f"the checkpoint and the output are the same file ({out_path}); "
                         "pick another --checkpoint")
    objective = make_objective(config.method, config.objective_options)
    state = _read_checkpoint(ckpt_path, device) if config.resume else None
    if state is not None:
        # Before anything is built: a resumed objective adopts what it ran with (DM's
        # loop and pool), and a mismatch is named as one.
        objective.load_state_dict(state["objective"])
        check_resumable(state, config, objective, ckpt_path)
    # Fail before hours of optimization, not when writing the result.
    for path in {out_path, ckpt_path} if config.checkpoint_every else {out_path}:
        check_dir(path)
    layout = file_layout(config, bundle)
    num_classes = len(layout.class_names)
    ipc_max = plan_ipc(config.budget_bytes, layout)
    ipc = ipc_max if config.ipc is None else int(config.ipc)
    if ipc > ipc_max:
        raise ValueError(
            f"ipc {ipc} does not fit the budget: at most {ipc_max} samples per class fit "
            f"{config.budget_bytes} B at {layout.bits} bits"
        )
    n = ipc * num_classes
    check_memory(n, layout.sample_shape, config.upsample, ipc, device)

    cuda_ids = [device.index if device.index is not None else torch.cuda.current_device()
                ] if device.type == "cuda" else []
    # The run seeds the global torch RNG (network initializations draw from it); fork
    # it so the caller's random stream is left as it was.
    with torch.random.fork_rng(devices=cuda_ids):
        torch.manual_seed(config.seed)
        x_real = bundle.normalize(bundle.x_train.float())
        y_real = bundle.y_train.long()
        syn = SyntheticSet.from_real(x_real, y_real, num_classes, ipc, config.seed,
                                     upsample=config.upsample,
                                     upsample_filter=config.upsample_filter).to(device)
        quant = make_quantizer(
            config.train_quantizer,
            config.bits,
            config.group,
            num_samples=n,
            num_channels=layout.sample_shape[0],
            soft_round_beta=config.soft_round_beta,
        ).to(device)
        quant.init_from(syn.data.detach())
        opt_img = torch.optim.SGD([syn.data], lr=config.lr_img, momentum=config.momentum)
        opt_q = quantizer_optimizer(quant, config.lr_quant)
        rng = np.random.default_rng([int(config.seed), 1])

        objective.data_name = str(bundle.name)
        t0 = time.perf_counter()
        objective.prepare(x_real, y_real, num_classes, ipc, runtime, config.seed,
                          progress=progress, iterations=config.iterations)
        prepare_seconds = time.perf_counter() - t0
        # The objective's own learnables, trained beside the samples (see the contract).
        groups = list(objective.parameters())
        opt_obj = (torch.optim.SGD(groups, lr=config.lr_img, momentum=config.momentum)
                   if groups else None)
        obj_params = [p for g in (opt_obj.param_groups if opt_obj else []) for p in g["params"]]
        split = _split(objective, ctx, num_classes, ipc, bool(obj_params))

        start_it = 0
        last_loss = float("nan")
        if state is not None:
            syn.load_state_dict(state["synthetic"])
            quant.load_state_dict(state["quantizer"])
            opt_img.load_state_dict(state["opt_img"])
            if opt_q is not None and state["opt_quant"] is not None:
                opt_q.load_state_dict(state["opt_quant"])
            _restore_objective_params(obj_params, opt_obj, state)
            rng.bit_generator.state = state["np_rng"]
            torch.set_rng_state(state["torch_rng"])
            if device.type == "cuda" and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(state["cuda_rng"], device)
            start_it = int(state["iteration"])
            last_loss = float(state["loss"])

        def checkpoint(iteration: int) -> None:
            if not ctx.is_main:  # every rank holds the same state; one writes it
                return
            save_checkpoint(
                {
                    "fingerprint": run_fingerprint(config),
                    "objective_fingerprint": objective.fingerprint(),
                    "iteration": iteration,
                    "synthetic": syn.state_dict(),
                    "quantizer": quant.state_dict(),
                    "opt_img": opt_img.state_dict(),
                    "opt_quant": opt_q.state_dict() if opt_q is not None else None,
                    "np_rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state(device)
                    if device.type == "cuda"
                    else None,
                    "objective": objective.state_dict(),
                    "objective_params": [p.detach().cpu().clone() for p in obj_params],
                    "opt_objective": opt_obj.state_dict() if opt_obj is not None else None,
                    "loss": last_loss,
                },
                ckpt_path,
            )

        from tqdm import tqdm

        bar = tqdm(
            total=config.iterations,
            initial=min(start_it, config.iterations),
            desc=f"distill {config.quantizer}@{layout.bits}b ipc={ipc}",
            unit="it",
            file=sys.stderr,
            disable=not progress,
            dynamic_ncols=True,
        )
        if runtime.compile and start_it < config.iterations:
            # The first step compiles (a minute or so on a fresh machine): say why the bar
            # waits; the loss replaces this after it.
            bar.set_postfix_str("compiling the first step", refresh=True)
        optimizers = [o for o in (opt_img, opt_q, opt_obj) if o is not None]
        t_loop = time.perf_counter()
        done = 0
        try:
            for it in range(start_it, config.iterations):
                warm = it < config.quant_warmup
                if it == config.quant_warmup > 0:
                    # Fit the levels to the samples as they are now, not as initialized.
                    quant.init_from(syn.data.detach())
                syn_q = syn.data if warm else quant(syn.data)
                if split is None:
                    loss = objective.loss(syn.expand(syn_q), syn.labels, rng)
                    for o in optimizers:
                        o.zero_grad(set_to_none=True)
                    loss.backward()
                else:
                    for o in optimizers:
                        o.zero_grad(set_to_none=True)
                    loss = split_backward(objective, syn.expand(syn_q), syn.labels, rng,
                                          *split)
                opt_img.step()
                if opt_q is not None and not warm:
                    opt_q.step()
                if opt_obj is not None:
                    opt_obj.step()
                done += 1
                # Reading the loss waits for the GPU; every iteration would serialize it.
                last = it == config.iterations - 1
                ckpt = bool(config.checkpoint_every) and (it + 1) % config.checkpoint_every == 0
                if it % 10 == 0 or it == start_it or last or ckpt:
                    last_loss = (float(loss.detach()) if split is None
                                 else sum_in_rank_order(float(loss)))
                    if not math.isfinite(last_loss):
                        # Writing on would put NaN samples (and undefined codes) in a file.
                        raise ValueError(
                            f"distillation diverged: loss {last_loss} at iteration {it + 1}; "
                            "try a smaller --lr-img or --lr-quant"
                        )
                    # Per class, as the summary also prints it: comparable across datasets.
                    bar.set_postfix_str(f"loss/class {last_loss / num_classes:.4f}",
                                        refresh=False)
                bar.update(1)  # after the postfix, so this refresh shows the new loss
                if ckpt:
                    checkpoint(it + 1)
        finally:
            bar.close()
        seconds = time.perf_counter() - t_loop

        # One last forward with the final parameters: the file holds exactly this.
        with torch.no_grad():
            if config.post_quantize:
                x_final = syn.data.detach().float().cpu().numpy()
                codes, levels = quantize_array(x_final, config.bits, config.post_codebook,
                                               config.group)
            else:
                if config.quant_warmup >= config.iterations > 0:
                    quant.init_from(syn.data.detach())  # the loop never switched it on
                codes, levels = quant.export(syn.data.detach())
    labels = syn.labels.cpu().numpy().astype(np.int64)
    if ctx.is_main:
        written = layout.write(out_path, codes, levels, labels)
        size = check_written(out_path, config.budget_bytes, layout.size(n))
        assert written == size
    else:
        size = layout.size(n)  # rank 0 writes the file
    return DistillResult(
        path=out_path,
        ipc=ipc,
        n=n,
        bits=layout.bits,
        file_bytes=size,
        budget_bytes=config.budget_bytes,
        iterations=config.iterations,
        seconds=seconds,
        prepare_seconds=prepare_seconds,
        it_per_s=done / seconds if seconds > 0 and done else 0.0,
        final_loss=last_loss,
        resumed_from=start_it,
        report=objective.report(),
        summary=objective.summary(prepare_seconds),
    )


def _restore_objective_params(params: list[torch.Tensor], opt: torch.optim.Optimizer | None,
                              state: dict[str, Any]) -> None:
    saved = state["objective_params"]
    if len(saved) != len(params) or any(s.shape != p.shape for s, p in zip(saved, params,
                                                                            strict=False)):
        raise ValueError("the checkpoint's objective parameters do not match the objective's")
    with torch.no_grad():
        for p, s in zip(params, saved, strict=True):
            p.copy_(s.to(p.device, p.dtype))
    if opt is not None and state["opt_objective"] is not None:
        opt.load_state_dict(state["opt_objective"])


def _read_checkpoint(path: str, device: torch.device) -> dict[str, Any] | None:
    """The checkpoint to resume from (None: none there). In a distributed run rank 0
    reads it and sends it to the others (nodes need not share a file system); a refusal
    is raised on every rank."""
    ctx = context()
    if not ctx.active:
        return load_checkpoint(path, device) if os.path.exists(path) else None
    state: dict[str, Any] | None = None
    problem = ""
    if ctx.is_main and os.path.exists(path):
        try:
            # On the CPU: a CUDA tensor pickled on rank 0 would unpickle on rank 0's GPU.
            state = load_checkpoint(path, "cpu")
        except ValueError as exc:
            problem = str(exc)
    state, problem = broadcast_object((state, problem))
    if problem:
        raise ValueError(problem)
    return state


def _split(objective: Any, ctx: Context, num_classes: int, ipc: int,
           has_params: bool) -> tuple[slice, list[int]] | None:
    """This rank's rows of the (class-major) synthetic set and every rank's row count,
    when the run is distributed and the objective computes a share of the classes
    (``split_classes``); None: every rank computes the whole loss (the same result,
    no faster). An objective with learnables of its own computes it whole: their
    gradient would be a sum of per-rank parts, rounded unlike one process's."""
    hook = getattr(objective, "split_classes", None)
    if (not ctx.active or has_params or hook is None
            or not hook(ctx.share(num_classes))):
        return None
    mine = ctx.share(num_classes)
    counts = [len(ctx.share(num_classes, r)) * ipc for r in range(ctx.world)]
    return slice(mine.start * ipc, mine.stop * ipc), counts


def split_backward(objective: Any, x: torch.Tensor, labels: torch.Tensor,
                   rng: np.random.Generator, rows: slice, counts: list[int]) -> torch.Tensor:
    """One distributed step's backward pass: the objective's loss of this rank's rows of
    ``x`` (the samples as the networks see them), its gradient gathered from every rank
    in rank order (copied, never added), then the backward pass from ``x`` that one
    process runs, so shared parameters (a group quantizer's levels) get its gradient
    bit for bit. Returns this rank's share of the loss."""
    local = x[rows].detach().requires_grad_(True)
    loss = objective.loss(local, labels[rows], rng)
    loss.backward()
    grad = local.grad if local.grad is not None else torch.zeros_like(local)
    x.backward(gather_rows(grad, counts))
    return loss.detach()

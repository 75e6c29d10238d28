"""Quantization-aware dataset distillation under a byte budget (QuADD).

``distill`` wires the three pieces together -- synthetic set, differentiable quantizer,
objective -- asks the codec how many samples per class fit the budget at the chosen
bit width, optimizes samples and quantization parameters jointly, and writes a `.qdd`
file that is guaranteed (and checked) to fit the budget.

Baselines live in the same tool: ``quantizer="none"`` (32-bit DM at the count that fits
at 32 bits), ``post_quantize=True`` (unquantized DM at the QuADD count, quantized once
at the end) and :func:`subset` (random real samples).
"""

from __future__ import annotations

import math
import os
import pickle
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from quadd_codec import (
    Denorm,
    downsample_mean,
    encoded_size,
    max_samples_per_class,
    quantize_array,
    write_qdd,
)
from quadd_codec.layout import stored_shape as codec_stored_shape
from quadd_codec.paths import atomic_open, check_output_file, same_file

from .data import check_every_class_has_samples
from .methods import make_objective
from .methods.dm import default_mode, default_pool
from .quantizers import GROUPS, QUANTIZERS, make_quantizer, quantizer_optimizer
from .runtime import available_memory, resolve_device
from .synthetic import SyntheticSet

__all__ = [
    "DistillConfig",
    "DistillResult",
    "FileLayout",
    "Plan",
    "SubsetResult",
    "distill",
    "file_layout",
    "plan",
    "plan_ipc",
    "resolve_device",
    "subset",
]

_CKPT_VERSION = 1
COMPILE_MIN_ITERATIONS = 300
# Config fields that may change between a checkpoint and its resumption.
_RESUMABLE_FIELDS = {
    "iterations",
    "checkpoint_every",
    "checkpoint_path",
    "resume",
    "device",
    "data_dir",
}


@dataclass
class DistillConfig:
    """Everything that defines a distillation run."""

    dataset: str = "digits"
    budget_bytes: int = 120 * 1024
    bits: int = 4
    quantizer: str = "uniform"  # uniform | apot | learned | none
    method: str = "dm"
    iterations: int = 1000
    seed: int = 0
    lr_img: float = 1.0  # DM reference value for ConvNet
    lr_quant: float = 0.005  # Adam step for quantizer parameters (normalized units)
    momentum: float = 0.5  # DM reference SGD momentum
    device: str = "auto"  # auto | cpu | cuda
    group: str = "channel"  # tensor | channel | sample-channel
    codebook_dtype: str = "f4"
    ipc: int | None = None  # fixed samples per class (must fit); None -> the max that fits
    post_quantize: bool = False
    post_codebook: str = "uniform"  # codebook for post_quantize: uniform | kmeans
    soft_round_beta: float | None = None  # uniform quantizer: soft-rounding surrogate
    # Iterations run unquantized before the quantizer is fitted to the samples and
    # switched on (0: quantized from the start).
    quant_warmup: int = 0
    # Store samples this many times smaller per side; readers enlarge them again
    # (FORMAT.md 7a), so about upsample**2 times as many fit the budget.
    upsample: int = 1
    # How that enlargement is computed, in the loop and by readers: "nearest"
    # (repetition) or "linear" (bilinear interpolation, FORMAT.md 7b). The codec checks
    # both, as it does for every other file argument, when the layout is planned.
    upsample_filter: str = "nearest"
    checkpoint_every: int = 0  # 0 disables checkpoints
    checkpoint_path: str | None = None  # default: "<out>.ckpt"
    resume: bool = False
    data_dir: str | None = None
    # --- objective speed/fidelity switches (DM) ---
    # fast (network pool, precomputed real means) | plain (reference) | auto: plain on a
    # GPU unless a pool setting is given, fast elsewhere (methods.dm.default_mode)
    dm_mode: str = "auto"
    # fast DM: None sizes the pool for the device and --iterations (default_pool)
    pool_size: int | None = None
    real_per_class: int | None = None
    pool_order: str = "shuffle"  # fast DM: entries once per pass ("shuffle") or "random"
    pool_train_steps: int = 0  # fast DM: train the pool's networks up to this many steps
    pool_train_batch: int = 256  # real images per pool training step
    batch_real: int = 256
    dsa: bool = True
    channels_last: bool | None = None  # None: on CUDA, and on a CPU when compiled
    bf16: bool | None = None  # None: when the hardware has native bf16 (AMX, bf16 GPUs)
    compile: bool | None = None  # None: for runs of >= COMPILE_MIN_ITERATIONS iterations
    method_options: dict[str, Any] = field(default_factory=dict)

    def checkpoint_for(self, out_path: str | os.PathLike[str]) -> str:
        """The checkpoint file of a run writing ``out_path``."""
        return self.checkpoint_path or os.fspath(out_path) + ".ckpt"

    def validate(self) -> None:
        if self.quantizer not in QUANTIZERS:
            raise ValueError(f"unknown quantizer {self.quantizer!r}; expected one of {QUANTIZERS}")
        if self.group not in GROUPS:
            raise ValueError(f"unknown group {self.group!r}; expected one of {GROUPS}")
        if self.quantizer != "none" or self.post_quantize:
            if not 1 <= int(self.bits) <= 8:
                raise ValueError(f"bits must be in 1..8, got {self.bits}")
        if self.iterations < 0:
            raise ValueError("iterations must be >= 0")
        if self.budget_bytes <= 0:
            raise ValueError("budget must be positive")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.post_codebook not in ("uniform", "kmeans"):
            raise ValueError("post_codebook must be 'uniform' or 'kmeans'")
        if self.quant_warmup < 0:
            raise ValueError("quant_warmup must be >= 0")
        if self.ipc is not None and self.ipc < 1:
            raise ValueError("ipc must be >= 1")
        # The objective checks its own options (pool size, order, ...); building it is
        # cheap, and it fails here rather than after the data is loaded.
        make_objective(self.method, **self.objective_options())

    @property
    def file_bits(self) -> int:
        """Bit width of the written file (32 for the unquantized baseline)."""
        if self.quantizer == "none" and not self.post_quantize:
            return 32
        return int(self.bits)

    @property
    def train_quantizer(self) -> str:
        """Quantizer in the training loop (post-quantization trains unquantized)."""
        return "none" if self.post_quantize else self.quantizer

    def objective_options(self) -> dict[str, Any]:
        if self.method != "dm":
            return dict(self.method_options)
        opts: dict[str, Any] = {
            "mode": self.dm_mode,
            "pool_size": self.pool_size,
            "real_per_class": self.real_per_class,
            "iterations": self.iterations,
            "pool_order": self.pool_order,
            "pool_train_steps": self.pool_train_steps,
            "pool_train_batch": self.pool_train_batch,
            "batch_real": self.batch_real,
            "dsa": self.dsa,
            "channels_last": self.channels_last,
            "bf16": self.bf16,
            # Compiling costs tens of seconds once; it pays only on longer runs.
            "compile": self.iterations >= COMPILE_MIN_ITERATIONS
            if self.compile is None
            else self.compile,
        }
        opts.update(self.method_options)
        return opts


@dataclass
class DistillResult:
    path: str
    ipc: int
    n: int
    bits: int
    file_bytes: int
    budget_bytes: int
    iterations: int
    seconds: float  # wall time of the optimization loop (this process)
    prepare_seconds: float  # precomputation before the loop (pool of real embeddings)
    it_per_s: float
    final_loss: float
    resumed_from: int = 0
    # The DM loop that ran ("fast" or "plain"; None for other methods), and the fast
    # loop's pool as built (entries, real images per class; None without one).
    dm_mode: str | None = None
    pool_size: int | None = None
    real_per_class: int | None = None


@dataclass
class SubsetResult:
    path: str
    ipc: int
    n: int
    bits: int
    file_bytes: int
    budget_bytes: int


def _denorm(bundle: Any) -> Denorm:
    return Denorm(scale=[float(s) for s in bundle.std], offset=[float(m) for m in bundle.mean])


def _provenance(kind: str, **items: Any) -> dict[str, Any]:
    # Deterministic content only (no timings): its size is part of the budget, and the
    # same arguments must give the same size before and after the run.
    return {"tool": f"quadd {kind}", **{k: v for k, v in items.items() if v is not None}}


@dataclass(frozen=True)
class FileLayout:
    """What the size of a distilled file depends on; the codec turns it into bytes."""

    class_names: list[str]
    sample_shape: tuple[int, ...]
    bits: int  # file bit width (32 for the unquantized baseline)
    group: str
    codebook_dtype: str
    denorm: Denorm
    provenance: dict[str, Any]
    upsample: int = 1  # sample_shape is the stored shape; readers enlarge it this much
    upsample_filter: str = "nearest"

    def max_ipc(self, budget_bytes: int) -> int:
        """Samples per class that fit ``budget_bytes`` (0 when not even one does)."""
        return max_samples_per_class(
            budget_bytes,
            self.sample_shape,
            self.bits,
            self.class_names,
            group=self.group,
            codebook_dtype=self.codebook_dtype,
            denorm=self.denorm,
            provenance=self.provenance,
            upsample=self.upsample,
            upsample_filter=self.upsample_filter,
        )

    def size(self, n: int) -> int:
        """Exact size in bytes of the file holding ``n`` samples."""
        return encoded_size(
            n,
            self.sample_shape,
            self.bits,
            self.group,
            self.class_names,
            self.codebook_dtype,
            self.denorm,
            self.provenance,
            upsample=self.upsample,
            upsample_filter=self.upsample_filter,
        )


def stored_shape(sample_shape: tuple[int, ...], upsample: int) -> tuple[int, ...]:
    """The per-sample shape a file stores when readers upsample it by ``upsample``."""
    # The codec owns the factor's range and divisibility rules; the trainer's networks
    # additionally need exactly (C, H, W).
    if upsample != 1 and len(sample_shape) != 3:
        raise ValueError(f"upsample needs image samples (C, H, W), got shape {sample_shape}")
    return codec_stored_shape(sample_shape, upsample)


def plan_ipc(budget_bytes: int, layout: FileLayout) -> int:
    """Samples per class that fit the budget, from the codec; a clear error if none."""
    ipc = layout.max_ipc(budget_bytes)
    if ipc < 1:
        need = layout.size(len(layout.class_names))
        raise ValueError(
            f"budget of {budget_bytes} B is too small: one sample per class at "
            f"{layout.bits} bits needs {need} B"
        )
    return ipc


def _check_written(path: str, budget: int, expected: int) -> int:
    size = os.path.getsize(path)
    if size > budget:
        raise RuntimeError(f"wrote {size} B to {path}, over the {budget} B budget")
    if size != expected:
        raise RuntimeError(f"wrote {size} B but the codec predicted {expected} B")
    return size


def _check_dir(path: str) -> None:
    # What the writer will refuse (-, a missing folder, a device), refused before any
    # training; and a folder it could not create its temp file in.
    directory = check_output_file(path)
    if not os.access(directory, os.W_OK):
        raise ValueError(f"cannot write {path}: directory {directory} is not writable")


# Copies of the synthetic set a training step holds at once, each at full (enlarged)
# size in float32: the samples, their gradient and momentum, the quantized and the
# enlarged samples, and the augmented batch the network sees.
_SYN_COPIES = 6


def _check_memory(n: int, sample_shape: tuple[int, ...], upsample: int, ipc: int,
                  device: torch.device) -> None:
    """Refuse a synthetic set that could not be trained in the device's free memory (a
    large budget at few bits on a small dataset affords millions of samples), before
    allocating any of it."""
    free = available_memory(device)
    values = math.prod(sample_shape) * upsample**2
    need = n * values * 4 * _SYN_COPIES
    if free is not None and need > free:
        raise ValueError(
            f"the budget affords {ipc:,} samples per class ({n:,} in all), which would take "
            f"about {need / 2**30:.1f} GiB to train; {free / 2**30:.1f} GiB is free on "
            f"{device.type}. Pass a smaller --ipc or --budget"
        )


# Checkpoints hold tensors, plain Python values and a few small NumPy arrays (pool seeds
# and orders): these, and nothing else, may be unpickled from one.
def _checkpoint_globals() -> list[Any]:
    dtypes = {type(np.dtype(t)) for t in (np.bool_, np.int8, np.int16, np.int32, np.int64,
                                           np.uint8, np.uint16, np.uint32, np.uint64,
                                           np.float32, np.float64)}
    return [np.ndarray(0).__reduce__()[0], np.ndarray, np.dtype, *dtypes]


_CKPT_KEYS = {"version", "fingerprint", "iteration", "synthetic", "quantizer", "opt_img",
              "opt_quant", "np_rng", "torch_rng", "objective", "loss"}


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] if text else type(exc).__name__


def load_checkpoint(path: str, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A distillation checkpoint, read without running code from the file: anything but
    tensors, plain values and NumPy arrays is refused (``weights_only``), as is a file
    that is not a checkpoint of this version."""
    try:
        with torch.serialization.safe_globals(_checkpoint_globals()):
            state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle, zip and torch errors alike
        # torch's own message for a refused object advises loading it unsafely: not ours.
        refused = isinstance(exc, pickle.UnpicklingError) or "Weights only" in str(exc)
        detail = ("it holds objects other than tensors and plain values, which are not "
                  "loaded" if refused else _describe(exc))
        raise ValueError(f"cannot read checkpoint {path}: not a quadd checkpoint, or "
                         f"damaged ({detail})") from exc
    if not isinstance(state, dict) or not _CKPT_KEYS <= set(state):
        raise ValueError(f"{path} is not a quadd distill checkpoint")
    if state.get("version") != _CKPT_VERSION:
        raise ValueError(f"checkpoint {path} has an unsupported version")
    return state


def _atomic_torch_save(obj: Any, path: str) -> None:
    with atomic_open(path) as f:
        torch.save(obj, f)


def _fingerprint(config: DistillConfig) -> dict[str, Any]:
    fp = {k: v for k, v in asdict(config).items() if k not in _RESUMABLE_FIELDS}
    if config.method != "dm" or config.dm_mode == "plain":
        del fp["pool_order"]  # only the fast loop draws from a pool
    if config.method != "dm":
        del fp["dm_mode"]  # a DM knob
    return fp


def _saved_fingerprint(saved: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's settings, with those it predates at the value they had then."""
    then = {**_fingerprint(DistillConfig()), **saved}
    if "pool_order" not in saved:
        # Fast DM drew its pool at random before the order was a setting; other runs
        # never draw one, so for them the setting does not exist.
        if saved.get("method", "dm") == "dm" and saved.get("dm_mode", "fast") == "fast":
            then["pool_order"] = "random"
        else:
            then.pop("pool_order", None)
    if then.get("method", "dm") != "dm":
        then.pop("dm_mode", None)
    return then


def file_layout(config: DistillConfig, bundle: Any) -> FileLayout:
    """The layout ``distill(config, bundle, ...)`` writes, provenance block included."""
    provenance = _provenance(
        "distill",
        dataset=bundle.name,
        method=config.method,
        quantizer=config.quantizer,
        post_quantize=config.post_quantize or None,
        bits=config.file_bits,
        group=config.group,
        iterations=config.iterations,
        seed=config.seed,
        upsample=config.upsample if config.upsample != 1 else None,
        upsample_filter=None if config.upsample_filter == "nearest" else config.upsample_filter,
    )
    # Post-quantization keeps QuADD's sample count (that is the baseline's point): the
    # count comes from the *file* bit width, which for it is `bits`, not 32.
    return FileLayout(
        class_names=list(bundle.class_names),
        sample_shape=stored_shape(tuple(int(d) for d in bundle.x_train.shape[1:]),
                                  config.upsample),
        bits=config.file_bits,
        group=config.group,
        codebook_dtype=config.codebook_dtype,
        denorm=_denorm(bundle),
        provenance=provenance,
        upsample=config.upsample,
        upsample_filter=config.upsample_filter,
    )


@dataclass
class Plan:
    """What ``distill`` would write for a configuration, before any optimization."""

    bits: int
    ipc: int  # samples per class that fit (0: none)
    n: int
    file_bytes: int  # exact size of that file (0 when nothing fits)
    budget_bytes: int
    one_per_class_bytes: int  # size with one sample per class: the smallest budget


def plan(config: DistillConfig, bundle: Any) -> Plan:
    """How many samples per class ``config`` fits into its budget, and the exact file
    size, from the codec (the same numbers ``distill`` uses)."""
    check_every_class_has_samples(bundle)
    layout = file_layout(config, bundle)
    k = len(layout.class_names)
    ipc = layout.max_ipc(config.budget_bytes)
    return Plan(
        bits=layout.bits,
        ipc=ipc,
        n=ipc * k,
        file_bytes=layout.size(ipc * k) if ipc else 0,
        budget_bytes=config.budget_bytes,
        one_per_class_bytes=layout.size(k),
    )


def distill(
    config: DistillConfig, bundle: Any, out_path: str | os.PathLike[str], progress: bool = True
) -> DistillResult:
    """Run QuADD (or a baseline, per ``config``) on ``bundle`` and write ``out_path``.

    The file stores the samples in normalized space with ``Denorm(scale=std,
    offset=mean)``. Its size is checked against the budget after writing.
    """
    config.validate()
    check_every_class_has_samples(bundle)
    if len(bundle.sample_shape) != 3:
        raise ValueError(f"distill trains ConvNets and needs image samples (C, H, W); "
                         f"{bundle.name} has samples of shape {tuple(bundle.sample_shape)}")
    out_path = os.fspath(out_path)
    device = resolve_device(config.device)
    ckpt_path = config.checkpoint_for(out_path)
    state: dict[str, Any] | None = None
    if (config.checkpoint_every or config.resume) and same_file(ckpt_path, out_path):
        raise ValueError(f"the checkpoint and the output are the same file ({out_path}); "
                         "pick another --checkpoint")
    if config.resume and os.path.exists(ckpt_path):
        state = load_checkpoint(ckpt_path, device)
    if config.method == "dm" and config.dm_mode == "auto":
        # A resumed run keeps the loop it started with, whatever the device now.
        mode = (state["fingerprint"].get("dm_mode", "fast") if state is not None else
                default_mode(device, config.pool_size, config.real_per_class,
                             config.pool_train_steps, config.pool_order))
        config = replace(config, dm_mode=mode)
    if config.method == "dm" and None in (config.pool_size, config.real_per_class):
        # The defaults depend on the device and the run's length, so a run resumes on the
        # pool it was started with (even with more iterations, or before the defaults
        # changed); a new run records the numbers, not "default".
        if state is not None:
            saved = state["fingerprint"]
            config = replace(
                config,
                pool_size=saved.get("pool_size", 128) if config.pool_size is None
                else config.pool_size,
                real_per_class=saved.get("real_per_class", 256)
                if config.real_per_class is None else config.real_per_class)
        elif config.dm_mode == "fast":
            pool, real = default_pool(device, config.iterations, config.pool_size,
                                      config.real_per_class)
            config = replace(config, pool_size=pool, real_per_class=real)
    if state is not None:
        # A setting added since the checkpoint was written counts at its value then.
        # Checked before anything is built, so a mismatch is named as one (an objective
        # would otherwise reject the mixed settings in its own words).
        then = _saved_fingerprint(state["fingerprint"])
        now = _fingerprint(config)
        if then != now:
            diff = sorted(k for k in set(then) | set(now) if then.get(k) != now.get(k))
            shown = ", ".join(f"{k} {then.get(k)!r} there, {now.get(k)!r} now" for k in diff)
            raise ValueError(
                f"checkpoint {ckpt_path} was made with different settings ({shown})"
            )
        if int(state["iteration"]) > config.iterations:
            # Writing that later state as an N-iteration file would mislabel it.
            raise ValueError(
                f"checkpoint {ckpt_path} is at iteration {int(state['iteration'])}, past "
                f"--iterations {config.iterations}; raise --iterations or start without "
                "--resume"
            )
    # Fail before hours of optimization, not when writing the result.
    for path in {out_path, ckpt_path} if config.checkpoint_every else {out_path}:
        _check_dir(path)
    layout = file_layout(config, bundle)
    class_names, sample_shape = layout.class_names, layout.sample_shape
    denorm, provenance, file_bits = layout.denorm, layout.provenance, layout.bits
    num_classes = len(class_names)
    ipc_max = plan_ipc(config.budget_bytes, layout)
    ipc = ipc_max if config.ipc is None else int(config.ipc)
    if ipc > ipc_max:
        raise ValueError(
            f"ipc {ipc} does not fit the budget: at most {ipc_max} samples per class fit "
            f"{config.budget_bytes} B at {file_bits} bits"
        )
    n = ipc * num_classes
    _check_memory(n, sample_shape, config.upsample, ipc, device)

    cuda_ids = [device.index or 0] if device.type == "cuda" else []
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
            num_channels=sample_shape[0],
            soft_round_beta=config.soft_round_beta,
        ).to(device)
        quant.init_from(syn.data.detach())
        objective = make_objective(config.method, **config.objective_options())
        opt_img = torch.optim.SGD([syn.data], lr=config.lr_img, momentum=config.momentum)
        opt_q = quantizer_optimizer(quant, config.lr_quant)
        rng = np.random.default_rng([int(config.seed), 1])

        start_it = 0
        if state is not None:
            objective.load_state_dict(state["objective"])

        t0 = time.perf_counter()
        objective.prepare(x_real, y_real, num_classes, ipc, device, config.seed,
                          progress=progress)
        prepare_seconds = time.perf_counter() - t0

        last_loss = float("nan")
        if state is not None:
            syn.load_state_dict(state["synthetic"])
            quant.load_state_dict(state["quantizer"])
            opt_img.load_state_dict(state["opt_img"])
            if opt_q is not None and state["opt_quant"] is not None:
                opt_q.load_state_dict(state["opt_quant"])
            rng.bit_generator.state = state["np_rng"]
            torch.set_rng_state(state["torch_rng"])
            if device.type == "cuda" and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(state["cuda_rng"], device)
            start_it = int(state["iteration"])
            last_loss = float(state["loss"])

        def save_checkpoint(iteration: int) -> None:
            _atomic_torch_save(
                {
                    "version": _CKPT_VERSION,
                    "fingerprint": _fingerprint(config),
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
                    "loss": last_loss,
                },
                ckpt_path,
            )

        from tqdm import tqdm

        bar = tqdm(
            total=config.iterations,
            initial=min(start_it, config.iterations),
            desc=f"distill {config.quantizer}@{file_bits}b ipc={ipc}",
            unit="it",
            file=sys.stderr,
            disable=not progress,
            dynamic_ncols=True,
        )
        if config.objective_options().get("compile") and start_it < config.iterations:
            # The first step compiles (a minute or so on a fresh machine): say why the bar
            # waits; the loss replaces this after it.
            bar.set_postfix_str("compiling the first step", refresh=True)
        t_loop = time.perf_counter()
        done = 0
        try:
            for it in range(start_it, config.iterations):
                warm = it < config.quant_warmup
                if it == config.quant_warmup > 0:
                    # Fit the levels to the samples as they are now, not as initialized.
                    quant.init_from(syn.data.detach())
                syn_q = syn.data if warm else quant(syn.data)
                loss = objective.loss(syn.expand(syn_q), syn.labels, rng)
                opt_img.zero_grad(set_to_none=True)
                if opt_q is not None:
                    opt_q.zero_grad(set_to_none=True)
                loss.backward()
                opt_img.step()
                if opt_q is not None and not warm:
                    opt_q.step()
                done += 1
                # Reading the loss waits for the GPU; every iteration would serialize it.
                last = it == config.iterations - 1
                ckpt = bool(config.checkpoint_every) and (it + 1) % config.checkpoint_every == 0
                if it % 10 == 0 or it == start_it or last or ckpt:
                    last_loss = float(loss.detach())
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
                    save_checkpoint(it + 1)
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
    written = write_qdd(
        out_path,
        codes,
        levels,
        labels,
        file_bits,
        config.group,
        class_names,
        denorm=denorm,
        codebook_dtype=config.codebook_dtype,
        provenance=provenance,
        upsample=config.upsample,
        upsample_filter=config.upsample_filter,
    )
    size = _check_written(out_path, config.budget_bytes, layout.size(n))
    assert written == size
    return DistillResult(
        path=out_path,
        ipc=ipc,
        n=n,
        bits=file_bits,
        file_bytes=size,
        budget_bytes=config.budget_bytes,
        iterations=config.iterations,
        seconds=seconds,
        prepare_seconds=prepare_seconds,
        it_per_s=done / seconds if seconds > 0 and done else 0.0,
        final_loss=last_loss,
        resumed_from=start_it,
        **({"dm_mode": config.dm_mode} if config.method == "dm" else {}),
        **({"pool_size": config.pool_size, "real_per_class": config.real_per_class}
           if config.method == "dm" and config.dm_mode == "fast" else {}),
    )


def subset(
    bundle: Any,
    budget_bytes: int,
    bits: int,
    seed: int,
    out_path: str | os.PathLike[str],
    codebook: str = "uniform",
    group: str = "channel",
    codebook_dtype: str = "f4",
    upsample: int = 1,
) -> SubsetResult:
    """Random-real-subset baseline: the most samples per class that fit at ``bits``.

    With ``upsample > 1`` each real sample is stored block-averaged, ``upsample`` times
    smaller per side (the same storage as ``distill --upsample``).

    ``bits=32`` stores raw float32. A class smaller than the affordable count
    contributes all its samples (no duplicates: a real subset has nothing to gain
    from them), so the file may then be below the budget.
    """
    out_path = os.fspath(out_path)
    _check_dir(out_path)
    if bits != 32 and not 1 <= bits <= 8:
        raise ValueError(f"bits must be in 1..8 or 32, got {bits}")
    if group not in GROUPS:
        raise ValueError(f"unknown group {group!r}; expected one of {GROUPS}")
    layout = FileLayout(
        class_names=list(bundle.class_names),
        sample_shape=stored_shape(tuple(int(d) for d in bundle.x_train.shape[1:]), upsample),
        bits=bits,
        group=group,
        codebook_dtype=codebook_dtype,
        denorm=_denorm(bundle),
        provenance=_provenance("subset", dataset=bundle.name, bits=bits, group=group,
                               seed=seed, codebook=codebook if bits != 32 else None,
                               upsample=upsample if upsample != 1 else None),
        upsample=upsample,
    )
    class_names, num_classes = layout.class_names, len(layout.class_names)
    ipc = plan_ipc(budget_bytes, layout)
    labels_np = bundle.y_train.cpu().numpy()
    rng = np.random.default_rng([int(seed), 2])
    picks = [rng.permutation(np.flatnonzero(labels_np == c))[:ipc] for c in range(num_classes)]
    idx = np.concatenate(picks).astype(np.int64)
    labels = labels_np[idx].astype(np.int64)
    x = bundle.normalize(bundle.x_train[torch.from_numpy(idx)].float())
    x = downsample_mean(np.ascontiguousarray(x.cpu().numpy(), dtype=np.float32), upsample)
    if bits == 32:
        codes, levels = x, None
    else:
        codes, levels = quantize_array(x, bits, codebook, group)
    write_qdd(out_path, codes, levels, labels, bits, group, class_names, denorm=layout.denorm,
              codebook_dtype=codebook_dtype, provenance=layout.provenance, upsample=upsample)
    size = _check_written(out_path, budget_bytes, layout.size(len(idx)))
    # A class smaller than the affordable count gave all it has.
    taken = max(len(p) for p in picks)
    return SubsetResult(out_path, taken, len(idx), bits, size, budget_bytes)

"""What defines a distillation run, and what runs return.

:class:`DistillConfig` holds the run's own settings (budget, bits, quantizer, loop,
checkpoints, device and numerics) and names its objective: ``method`` and
``objective_options``, which the objective (``quadd_train.objectives``) checks and
interprets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["COMPILE_MIN_ITERATIONS", "DistillConfig", "DistillResult", "SubsetResult"]

# Compiling costs tens of seconds once; it pays only on runs of this many iterations.
COMPILE_MIN_ITERATIONS = 300


@dataclass
class DistillConfig:
    """Everything that defines a distillation run."""

    dataset: str = "digits"
    budget_bytes: int = 120 * 1024
    bits: int = 4
    quantizer: str = "uniform"  # uniform | apot | learned | none
    method: str = "dm"  # a registered objective (quadd_train.objectives)
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
    # How the run computes (quadd_train.runtime.resolve_runtime, once per run).
    channels_last: bool | None = None  # None: on CUDA, and on a CPU when compiled
    bf16: bool | None = None  # None: when the hardware has native bf16 (AMX, bf16 GPUs)
    compile: bool | None = None  # None: for runs of >= COMPILE_MIN_ITERATIONS iterations
    # The objective's own options (its Options dataclass's fields), checked by it.
    objective_options: dict[str, Any] = field(default_factory=dict)
    # How --bits auto chose this run's setting (quadd_train.auto_bits.Choice.record()):
    # stored in the provenance, so it is part of the file and of its budget.
    auto: dict[str, Any] | None = None

    def checkpoint_for(self, out_path: str | os.PathLike[str]) -> str:
        """The checkpoint file of a run writing ``out_path``."""
        return self.checkpoint_path or os.fspath(out_path) + ".ckpt"

    def validate(self) -> None:
        from quadd_codec import check_bits
        from quadd_codec.rules import check_group

        from .objectives import make_objective
        from .quantizers import quantizer_names

        names = quantizer_names()
        if self.quantizer not in names:
            raise ValueError(f"unknown quantizer {self.quantizer!r}; expected one of {names}")
        check_group(self.group, error=ValueError)
        if self.quantizer != "none" or self.post_quantize:
            check_bits(self.bits, error=ValueError)
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
        # The objective checks its own options; building it is cheap, and it fails here
        # rather than after the data is loaded.
        make_objective(self.method, self.objective_options)

    @property
    def file_bits(self) -> int:
        """Bit width of the written file (32 for the unquantized baseline)."""
        if self.quantizer == "none" and not self.post_quantize:
            return 32
        return int(self.bits)

    @property
    def train_quantizer(self) -> str:
        """Quantizer in the loop (post-quantization trains unquantized)."""
        return "none" if self.post_quantize else self.quantizer

    @property
    def compile_default(self) -> bool:
        """Whether the run compiles when ``compile`` is not given."""
        return self.iterations >= COMPILE_MIN_ITERATIONS


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
    prepare_seconds: float  # the objective's precomputation before the loop
    it_per_s: float
    final_loss: float
    resumed_from: int = 0
    # The objective's report() (e.g. DM: the loop and pool that ran) and its phrase for
    # the summary line.
    report: dict[str, Any] = field(default_factory=dict)
    summary: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The result as one flat mapping: the run's numbers, then the report's keys."""
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in ("report", "summary")}
        out.update(self.report)
        return out


@dataclass
class SubsetResult:
    path: str
    ipc: int
    n: int
    bits: int
    file_bytes: int
    budget_bytes: int

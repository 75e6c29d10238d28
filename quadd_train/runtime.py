"""Where and how a run computes: the device, bf16 autocast, channels_last, torch.compile.

Distillation and evaluation resolve these settings here, once, from what the user asked
for (None: the default for the device and the run) into a :class:`Runtime`.

Host-to-device copies that do not stall the GPU:

A plain ``cpu_tensor.to("cuda")`` waits for everything already queued on the stream,
so a handful of tiny parameter copies per iteration (augmentation draws, index
batches) would serialize the CPU with the GPU. ``to_device`` stages such copies through
pinned memory and issues them asynchronously; on the CPU it is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Runtime", "as_runtime", "available_memory", "cpu_model", "native_bf16",
           "resolve_device", "resolve_runtime", "to_device"]


@dataclass(frozen=True)
class Runtime:
    """How a run computes. ``channels_last_default``: the layout was not asked for, so a
    run may go back to NCHW where NHWC only pays when compiled (a failed compile)."""

    device: torch.device
    bf16: bool
    channels_last: bool
    compile: bool
    channels_last_default: bool = True


def resolve_runtime(
    device: str | torch.device = "auto",
    *,
    bf16: bool | None = None,
    channels_last: bool | None = None,
    compile: bool | None = None,
    compile_default: bool = False,
) -> Runtime:
    """The settings a run uses: bf16 where the hardware computes it natively,
    ``compile_default`` (the caller's rule for its run's length) unless asked, and
    channels_last on CUDA, or on a CPU when compiled (compiled NHWC steps measured 4-12%
    faster than NCHW there, eager ones twice as slow)."""
    dev = resolve_device(device)
    comp = compile_default if compile is None else bool(compile)
    return Runtime(
        device=dev,
        bf16=native_bf16(dev) if bf16 is None else bool(bf16),
        channels_last=(dev.type == "cuda" or comp) if channels_last is None
        else bool(channels_last),
        compile=comp,
        channels_last_default=channels_last is None,
    )


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return dev


def to_device(t: Tensor, device: torch.device, dtype: torch.dtype | None = None) -> Tensor:
    """``t.to(device, dtype)``, asynchronous for CPU -> CUDA copies."""
    if device.type == "cuda" and t.device.type == "cpu":
        # The caching host allocator keeps the pinned block alive until the copy is done.
        # contiguous() first: an expanded (stride-0) view would be re-copied to
        # unpinned memory inside the transfer, which makes it synchronous again.
        t = t.contiguous().pin_memory().to(device, non_blocking=True)
    return t.to(device=device, dtype=dtype) if dtype is not None else t.to(device)


def available_memory(device: torch.device) -> int | None:
    """Bytes free for new tensors on ``device``: the GPU's free memory, or the host's
    MemAvailable on Linux; None where it cannot be told."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    from quadd_codec.sources import host_available_memory

    return host_available_memory()


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 matmul/conv run natively (else autocast would only slow things down)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


def as_runtime(runtime: Runtime | torch.device | str) -> Runtime:
    """``runtime`` itself, or a device's default settings (not compiled)."""
    if isinstance(runtime, Runtime):
        return runtime
    return resolve_runtime(runtime)


def cpu_model() -> str:
    """The processor's model name (its kernels and instruction set shape CPU rounding and
    speed), or the platform's word for it where /proc/cpuinfo is missing."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"

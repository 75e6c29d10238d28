"""Device choice and host-to-device copies that do not stall the GPU.

A plain ``cpu_tensor.to("cuda")`` waits for everything already queued on the stream,
so a handful of tiny parameter copies per iteration (augmentation draws, index
batches) would serialize the CPU with the GPU. ``to_device`` stages such copies through
pinned memory and issues them asynchronously; on the CPU it is a no-op.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["available_memory", "resolve_device", "to_device"]


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

"""Scale-out on ``torch.distributed``: when a run is distributed, how its work splits, and
the order every reduction takes.

The contract (what makes a distributed file byte-identical to the one-process file):

* A run is distributed when ``torchrun`` launched it with ``WORLD_SIZE > 1`` (its
  environment: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``).
  :func:`init_from_env` then joins the process group, ``gloo`` on CPUs and ``nccl`` on
  GPUs (rank ``LOCAL_RANK``'s GPU), with a timeout on every collective, so a rank that
  dies ends the others with an error instead of a hang.
* Work is split in contiguous blocks (:meth:`Context.share`): rank ``r`` of ``W`` takes
  items ``[r*n//W, (r+1)*n//W)`` of the DM pool's networks and of the synthetic set's
  classes. A rank may get none.
* Results come back by *gathering*, never by summing partial floats: per-network means
  and per-class gradients are computed on exactly one rank each and concatenated in rank
  order (:func:`gather_rows`), so every rank ends with the tensor one process computes.
  Parameters shared across classes (a tensor- or channel-group quantizer's levels) get
  their gradient from the gathered per-sample gradients by the same backward pass one
  process runs, so it cannot depend on the world size or timing.
* Every rank keeps the whole (small) state: synthetic set, quantizer, optimizers, pool.
  The ranks stay equal step by step; rank 0 alone writes the checkpoint (which any world
  size resumes) and the file, and shows progress.
* Independent jobs (``quadd eval``'s runs, ``quadd sweep``'s points) are split instead:
  each is run whole by one rank, inside :func:`local` (so nothing it calls splits again
  or waits on a peer), and the results come back in job order (:func:`gather_lists`).

Outside a distributed run every function here is the one-process identity.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
from torch import Tensor

__all__ = ["Context", "DEFAULT_TIMEOUT_S", "all_agree", "broadcast_object", "context",
           "gather_lists", "gather_objects", "gather_rows", "init_from_env", "launched",
           "local", "lost_peer", "shutdown", "sum_in_rank_order"]

# A collective waits this long for its peers (QUADD_DIST_TIMEOUT overrides): longer than
# any rank's head start (one pool network, one checkpoint write), short enough that a
# rank lost without torchrun noticing ends the run rather than leaves it hanging.
DEFAULT_TIMEOUT_S = 600


@dataclass(frozen=True)
class Context:
    """This process's place in the run: ``world == 1`` is a one-process run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, n: int, rank: int | None = None) -> range:
        """Rank ``rank``'s (default: this rank's) contiguous block of ``n`` items."""
        r = self.rank if rank is None else rank
        return range(r * n // self.world, (r + 1) * n // self.world)


_current = Context()


def context() -> Context:
    """This process's context (a one-process run unless :func:`init_from_env` joined)."""
    return _current


@contextmanager
def local() -> Iterator[Context]:
    """Run the body as a one-process run on this rank alone: a job one rank owns (a sweep
    point's distill and evaluation) must not split its work with, or wait on, ranks that
    are busy with jobs of their own."""
    global _current
    saved = _current
    _current = Context()
    try:
        yield _current
    finally:
        _current = saved


def launched() -> bool:
    """Whether torchrun (or another launcher setting its variables) started this process
    as one of several."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def init_from_env(device: str = "auto") -> Context:
    """Join the process group torchrun's environment describes (once); a one-process
    context when not launched as one of several. ``device``: the run's (auto/cpu/cuda)."""
    global _current
    if _current.active or not launched():
        return _current
    import torch.distributed as dist

    if not dist.is_available():
        raise ValueError("this PyTorch build has no torch.distributed; run without torchrun")
    for var in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise ValueError(f"WORLD_SIZE is set but {var} is not: launch with torchrun")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda:
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but CUDA is not available")
        torch.cuda.set_device(local % torch.cuda.device_count())
    backend = "nccl" if cuda else "gloo"
    timeout = timedelta(seconds=float(os.environ.get("QUADD_DIST_TIMEOUT",
                                                     DEFAULT_TIMEOUT_S)))
    dist.init_process_group(backend, store=_store(rank, world, timeout), rank=rank,
                            world_size=world, timeout=timeout)
    _current = Context(rank=rank, world=world, local_rank=local, backend=backend)
    return _current


def _store(rank: int, world: int, timeout: timedelta) -> Any:
    """The rendezvous store, its keys under this attempt's own prefix: after a restart
    (``torchrun --max-restarts``) the agent's store still holds the failed attempt's
    addresses, and gloo would connect to those dead peers."""
    import torch.distributed as dist

    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                          world, is_master=rank == 0 and not agent, timeout=timeout)
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"quadd/attempt-{attempt}/", store)


def shutdown() -> None:
    """Leave the process group (a no-op outside a distributed run). Called from a
    ``finally``: on a clean exit (no exception on its way out) the ranks first meet at a
    barrier, because a rank tearing gloo down while a peer still works (rank 0 writing
    the file) was seen to abort in gloo's threads ("terminate called without an active
    exception"); after a failure a peer may be gone, so there is no barrier."""
    global _current
    if not _current.active:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        if sys.exc_info()[0] is None:
            dist.barrier()
        dist.destroy_process_group()
    _current = Context()


def _comm_device(t: Tensor) -> torch.device:
    # NCCL moves CUDA tensors only; gloo CPU tensors.
    return torch.device("cuda", torch.cuda.current_device()) if _current.backend == "nccl" \
        else torch.device("cpu")


def gather_rows(local: Tensor, counts: list[int]) -> Tensor:
    """Every rank's ``local`` (``counts[r]`` rows on rank ``r``, same trailing shape and
    dtype) concatenated in rank order, on every rank. Rows are copied, never added."""
    if not _current.active:
        return local
    import torch.distributed as dist

    rows = max(counts)
    dev = _comm_device(local)
    padded = torch.zeros((rows, *local.shape[1:]), dtype=local.dtype, device=dev)
    padded[: local.shape[0]] = local.detach().to(dev)
    parts = [torch.empty_like(padded) for _ in range(_current.world)]
    dist.all_gather(parts, padded)
    out = torch.cat([p[:n] for p, n in zip(parts, counts, strict=True)])
    return out.to(local.device)


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's picklable ``obj``, in rank order."""
    if not _current.active:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * _current.world
    dist.all_gather_object(out, obj)
    return out


def gather_lists(local: list[Any]) -> list[Any]:
    """Every rank's list of picklable items, concatenated in rank order, on every rank:
    with :meth:`Context.share` blocks, the items in job order."""
    return [item for part in gather_objects(list(local)) for item in part]


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not _current.active:
        return obj
    import torch.distributed as dist

    box = [obj if _current.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_agree(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on every rank."""
    return all(gather_objects(bool(flag)))


def sum_in_rank_order(value: float) -> float:
    """The sum of every rank's ``value``, added in rank order (the same on every rank)."""
    if not _current.active:
        return float(value)
    parts = gather_rows(torch.tensor([float(value)], dtype=torch.float64),
                        [1] * _current.world)
    total = 0.0
    for v in parts.tolist():
        total += v
    return total


def lost_peer(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective that failed: a peer died or timed out."""
    import torch.distributed as dist

    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc).lower()
    return any(w in text for w in ("gloo", "nccl", "connection", "timed out", "timeout"))

"""Distributed distillation on loopback: ``torchrun --nproc-per-node 2 -m quadd_cli distill``
(gloo, two CPU processes) writes the bytes one process writes, with a per-sample and a
shared (channel-group) quantizer, and its checkpoint resumes in one process to the same
file. Skipped where torch.distributed or gloo is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

from quadd_train.distributed import Context  # noqa: E402

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with gloo is not available",
)

# Tiny and fixed: a 4-network pool (so the mode and pool do not depend on the run's
# length), one thread per process, no pool cache (every run computes its pool).
BASE = ["distill", "--dataset", "digits", "--budget", "3000", "--threads", "1",
        "--pool-size", "4", "--real-per-class", "32", "--no-pool-cache", "--no-progress",
        "--seed", "3"]


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "QUADD_DIST_TIMEOUT": "60"}
    env.pop("WORLD_SIZE", None)  # a test run under a launcher stays one process
    return env


def _quadd(tmp: Path, *args: str, ranks: int = 1) -> subprocess.CompletedProcess[str]:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                 str(ranks), "--standalone", "-m", "quadd_cli"] if ranks > 1
                else [sys.executable, "-m", "quadd_cli"])
    proc = subprocess.run([*launcher, *BASE, *args], cwd=tmp, env=_env(), text=True,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def shared_one(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The one-process file with a shared (tensor-group) quantizer."""
    tmp = tmp_path_factory.mktemp("one")
    _quadd(tmp, "-n", "4", "--group", "tensor", "-o", "one.qdd")
    return (tmp / "one.qdd").read_bytes()


def test_two_ranks_write_the_one_process_file(tmp_path: Path) -> None:
    one = _quadd(tmp_path, "-n", "4", "--group", "sample-channel", "-o", "one.qdd")
    two = _quadd(tmp_path, "-n", "4", "--group", "sample-channel", "-o", "two.qdd",
                 ranks=2)
    assert (tmp_path / "one.qdd").read_bytes() == (tmp_path / "two.qdd").read_bytes()
    # Rank 0 alone reports.
    assert one.stdout.count("wrote ") == 1 and two.stdout.count("wrote ") == 1


def test_shared_quantizer_two_ranks_and_resumed_in_one(tmp_path: Path,
                                                       shared_one: bytes) -> None:
    # The levels' gradient sums over every class: the same bytes at any world size.
    _quadd(tmp_path, "-n", "4", "--group", "tensor", "-o", "two.qdd", ranks=2)
    assert (tmp_path / "two.qdd").read_bytes() == shared_one
    # A 2-rank checkpoint at iteration 2, finished by one process.
    args = ["--group", "tensor", "--checkpoint", "run.ckpt"]
    _quadd(tmp_path, "-n", "2", "--checkpoint-every", "2", *args, "-o", "half.qdd",
           ranks=2)
    resumed = _quadd(tmp_path, "-n", "4", "--resume", *args, "-o", "resumed.qdd")
    assert "resumed from 2" in resumed.stdout
    assert (tmp_path / "resumed.qdd").read_bytes() == shared_one


@pytest.mark.parametrize("n,world", [(10, 2), (10, 3), (4, 8), (0, 2)])
def test_shares_are_contiguous_blocks_covering_every_item(n: int, world: int) -> None:
    shares = [Context(rank=r, world=world).share(n) for r in range(world)]
    assert [i for s in shares for i in s] == list(range(n))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_one_process_context_is_inactive() -> None:
    from quadd_train import distributed

    ctx = distributed.context()
    assert not ctx.active and ctx.is_main and ctx.share(5) == range(5)
    t = torch.arange(6.0).reshape(3, 2)
    assert distributed.gather_rows(t, [3]) is t
    assert distributed.sum_in_rank_order(2.5) == 2.5

"""``quadd eval`` and ``quadd sweep`` under ``torchrun --nproc-per-node 2`` (gloo, two CPU
processes) give the one-process results: the same per-run accuracies, the same sweep
records in the same order and the same bytes in every point's file; a restarted 2-rank
sweep skips the stored points. The one-process runs are made in this process with one
torch thread, the threads each rank has (torch numerics depend on the thread count).
Skipped where torch.distributed or gloo is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

from click.testing import CliRunner  # noqa: E402

from quadd_cli.main import main  # noqa: E402

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with gloo is not available",
)

EVAL = ["--dataset", "digits", "--runs", "3", "--epochs", "30", "--no-progress", "--json"]
SWEEP = ["sweep", "--dataset", "digits", "--budget", "2KiB", "--bits", "2,4",
         "--baselines", "subset", "--iterations", "2", "--runs", "2", "--epochs", "10",
         "--no-progress"]
# What a point's record must reproduce (times and paths aside).
SAME = ("kind", "budget", "bits", "upsample", "fits", "ipc", "n", "file_bytes", "accuracy",
        "std", "accuracies", "runs", "epochs", "settings")


@pytest.fixture(autouse=True)
def one_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One torch thread here, as in each rank; a pool cache of the test's own."""
    monkeypatch.setenv("QUADD_CACHE", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _here(*args: str) -> str:
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def _two_ranks(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "QUADD_DIST_TIMEOUT": "60"}
    env.pop("WORLD_SIZE", None)  # a test run under a launcher stays one process
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
         "2", "-m", "quadd_cli", *args], cwd=cwd, env=env, text=True, capture_output=True,
        timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_two_rank_eval_is_the_one_process_result(tmp_path: Path) -> None:
    qdd = str(tmp_path / "set.qdd")
    _here("distill", "--dataset", "digits", "--budget", "3000", "-n", "1", "--pool-size",
          "1", "--real-per-class", "16", "--no-progress", "-o", qdd)
    one = json.loads(_here("eval", qdd, *EVAL))
    two_proc = _two_ranks(tmp_path, "eval", qdd, *EVAL)
    lines = two_proc.stdout.splitlines()
    assert len(lines) == 1, two_proc.stdout  # rank 0 alone prints
    two = json.loads(lines[0])
    # 3 runs on 2 ranks: run 0 on rank 0, runs 1-2 on rank 1, gathered in run order.
    assert one["ranks"] == 1 and two["ranks"] == 2
    for key in ("accuracies", "top2_runs", "top4_runs", "accuracy", "std", "top2", "top4",
                "runs", "num_samples", "file_bytes", "compile"):
        assert two[key] == one[key], key
    # Each run is its own seed's: the runs differ, so a run out of place would show.
    assert len(set(one["top2_runs"])) > 1 or len(set(one["accuracies"])) > 1


def _records(folder: Path) -> list[dict]:
    return [json.loads(s) for s in (folder / "sweep.jsonl").read_text().splitlines()]


def test_two_rank_sweep_stores_the_one_process_records(tmp_path: Path) -> None:
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    _here(*SWEEP, "--out", str(one_dir))
    one_recs = _records(one_dir)
    # quadd 2/4 bits, subset 2/4 bits, in point order.
    assert [(r["kind"], r["bits"]) for r in one_recs] == [
        ("quadd", 2), ("quadd", 4), ("subset", 2), ("subset", 4)]
    # A restarted sweep: subset 2 bits is stored already, so it is skipped and the rest
    # runs in rounds (quadd 2 on rank 0, quadd 4 on rank 1), (subset 4 on rank 0, rank 1
    # idle), appended in point order.
    two_dir.mkdir()
    stored = (one_dir / "sweep.jsonl").read_text().splitlines(keepends=True)[2]
    (two_dir / "sweep.jsonl").write_text(stored)
    two = _two_ranks(tmp_path, *SWEEP, "--out", str(two_dir))
    two_recs = _records(two_dir)
    assert [(r["kind"], r["bits"]) for r in two_recs] == [
        ("subset", 2), ("quadd", 2), ("quadd", 4), ("subset", 4)]
    assert two.stdout.count("(stored)") == 1
    assert not (two_dir / "subset-2048B-2bit.qdd").exists()  # not run again
    for a, b in zip([one_recs[i] for i in (0, 1, 3)], two_recs[1:], strict=True):
        assert {k: a[k] for k in SAME} == {k: b[k] for k in SAME}
        assert a["fits"] and os.path.basename(a["file"]) == os.path.basename(b["file"])
        # The point's file is the one-process file, whichever rank wrote it.
        assert Path(a["file"]).read_bytes() == Path(b["file"]).read_bytes()
    # Rank 0 alone reports: the table in point order, the recommendation, the plot.
    rows = [line.split()[:3] for line in two.stdout.splitlines() if "2,048" in line
            and line.split()[0] in ("quadd", "subset")]
    assert rows == [["quadd", "2,048", "2"], ["quadd", "2,048", "4"],
                    ["subset", "2,048", "2"], ["subset", "2,048", "4"]]
    assert two.stdout.count("best at 2,048 B") == 1
    assert (two_dir / "sweep.png").exists()

"""bench/grad_noise.py and bench/pool_heldout.py measure what they say, on digits."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest

_BENCH = Path(__file__).resolve().parents[1] / "bench"

pytestmark = pytest.mark.usefixtures("one_thread")


def _load(name: str, monkeypatch):
    monkeypatch.syspath_prepend(str(_BENCH))  # the scripts import their shared _shared
    spec = importlib.util.spec_from_file_location(f"bench_{name}", _BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_grad_noise_adds_nothing_for_the_whole_batch_and_more_for_less(monkeypatch):
    gn = _load("grad_noise", monkeypatch)
    args = argparse.Namespace(dataset="digits", data_dir=None, ipc=2, source=None, draws=3,
                              sizes=[8, 256], seed=0)
    res = gn.measure(args)
    rows = {r["real_per_class"]: r for r in res["rows"]}
    # All 256 images in another order: the same mean, so the same gradient.
    assert rows[256]["extra_variance"] <= 1e-9 * res["v_plain"]
    assert rows[8]["extra_variance"] > 1e-6 * res["v_plain"]
    assert rows[8]["variance_ratio"] > 1.0
    assert "| 8 |" in gn.render(res)


def test_pool_heldout_scores_each_variant_once_and_reproducibly(monkeypatch, tmp_path, capsys):
    ho = _load("pool_heldout", monkeypatch)

    def run(out: Path) -> list[dict]:
        monkeypatch.setattr(sys, "argv", [
            "pool_heldout.py", "--dataset", "digits", "--ipc", "1", "--iterations", "3",
            "--variants", "3x8", "1x8", "--heldout", "2", "--heldout-real", "8",
            "--cache", str(tmp_path / "held.pt"), "--out", str(out)])
        ho.main()
        return [json.loads(line) for line in out.read_text().splitlines()]

    rows = run(tmp_path / "a.jsonl")
    assert [r["variant"] for r in rows] == ["3x8", "1x8"]
    assert (tmp_path / "held.pt").exists()
    assert run(tmp_path / "a.jsonl") == rows  # a rerun skips what is there
    again = run(tmp_path / "b.jsonl")  # the cached held-out pool scores the same
    assert [r["heldout_loss"] for r in again] == [r["heldout_loss"] for r in rows]
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["pool_heldout.py", "--report", str(tmp_path / "a.jsonl")])
    ho.main()
    report = capsys.readouterr().out
    assert "| 3x8 | 1.0 | 24 | 1 |" in report and "| 1x8 | 3.0 | 8 | 1 |" in report
    monkeypatch.setattr(sys, "argv", ["pool_heldout.py", "--variants", "3y8"])
    with pytest.raises(SystemExit):
        ho.main()

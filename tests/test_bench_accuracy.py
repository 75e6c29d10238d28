"""bench/accuracy.py keeps a killed run's checkpoint and goes on from it, and never lets a
checkpoint from past the stage it measures seed that stage."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "bench" / "accuracy.py"


@pytest.fixture()
def bench():
    spec = importlib.util.spec_from_file_location("bench_accuracy", _PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(bench, monkeypatch, tmp_path: Path, iterations: int, *extra: str) -> list[dict]:
    out = tmp_path / "rows.jsonl"
    monkeypatch.setattr(sys, "argv", [
        "accuracy.py", "--dataset", "digits", "--budget", "1024", "--bits", "2",
        "--post-bits", "--subset-bits", "--only", "quadd:2", "--iterations", str(iterations),
        "--pool-size", "2", "--real-per-class", "8", "--eval-epochs", "1", "--runs", "1",
        "--compile", "off", "--device", "cpu", "--out", str(out),
        "--work-dir", str(tmp_path / "work"), *extra,
    ])
    bench.main()
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def _killed(*args, **kwargs):
    raise KeyboardInterrupt  # the run dies after distilling, before its row is written


def test_interrupted_run_resumes_from_its_checkpoint(bench, monkeypatch, tmp_path):
    real_evaluate = bench._evaluate
    monkeypatch.setattr(bench, "_evaluate", _killed)
    with pytest.raises(KeyboardInterrupt):
        _run(bench, monkeypatch, tmp_path, 4)
    ckpts = list((tmp_path / "work").glob("*.ckpt"))
    assert len(ckpts) == 1 and bench._checkpoint_iteration(ckpts[0]) == 4

    monkeypatch.setattr(bench, "_evaluate", real_evaluate)
    rows = _run(bench, monkeypatch, tmp_path, 4)
    assert [(r["iterations"], r["resumed_from"]) for r in rows] == [(4, 4)]
    assert rows[0]["eval_compile"] is False  # one epoch of digits: not worth compiling

    # A longer run later goes on from where that one ended.
    rows = _run(bench, monkeypatch, tmp_path, 6)
    assert [(r["iterations"], r["resumed_from"]) for r in rows[1:]] == [(6, 4)]


def test_checkpoint_past_the_stage_is_dropped(bench, monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "_evaluate", _killed)
    with pytest.raises(KeyboardInterrupt):
        _run(bench, monkeypatch, tmp_path, 6)
    monkeypatch.undo()
    rows = _run(bench, monkeypatch, tmp_path, 4)
    assert [(r["iterations"], r["resumed_from"]) for r in rows] == [(4, 0)]


def test_a_different_rate_or_pool_is_its_own_row_and_run(bench, monkeypatch, tmp_path):
    _run(bench, monkeypatch, tmp_path, 4)
    _run(bench, monkeypatch, tmp_path, 4, "--lr-img", "0.5")
    rows = _run(bench, monkeypatch, tmp_path, 4, "--pool-train-steps", "3")
    # Not taken as done, and not resumed from another setting's checkpoint.
    assert [(r["lr_img"], r["pool_train_steps"], r["resumed_from"]) for r in rows] == [
        (1.0, 0, 0), (0.5, 0, 0), (1.0, 3, 0)]
    assert len(list((tmp_path / "work").glob("*.ckpt"))) == 3
    report = bench.report([str(tmp_path / "rows.jsonl")])
    assert "lr_img 0.5" in report and "pool trained up to 3 steps of 256" in report


def test_the_upsample_filter_is_its_own_row_and_run(bench, monkeypatch, tmp_path):
    _run(bench, monkeypatch, tmp_path, 4, "--upsample", "2")
    rows = _run(bench, monkeypatch, tmp_path, 4, "--upsample", "2", "--upsample-filter", "linear")
    assert [(r["upsample_filter"], r["resumed_from"]) for r in rows] == [
        ("nearest", 0), ("linear", 0)]
    assert len(list((tmp_path / "work").glob("*.ckpt"))) == 2
    assert "stored 1/2 per side, linear enlargement" in bench.report([str(tmp_path / "rows.jsonl")])


def test_a_different_seed_pool_size_or_protocol_is_its_own_row(bench, monkeypatch, tmp_path):
    _run(bench, monkeypatch, tmp_path, 4)
    _run(bench, monkeypatch, tmp_path, 4, "--seed", "1")
    _run(bench, monkeypatch, tmp_path, 4, "--pool-size", "3")
    rows = _run(bench, monkeypatch, tmp_path, 4, "--eval-epochs", "2")
    assert [(r["seed"], r["pool_size"], r["eval_epochs"]) for r in rows] == [
        (0, 2, 1), (1, 2, 1), (0, 3, 1), (0, 2, 2)]
    # Seed and pool size each distill their own set; only the protocol reuses one.
    assert [r["resumed_from"] for r in rows] == [0, 0, 0, 4]
    report = bench.report([str(tmp_path / "rows.jsonl")])
    assert ", seed 1 |" in report and ", pool 3 x 8 |" in report
    assert ", eval 2 epochs x 1 |" in report

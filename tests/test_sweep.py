"""`quadd sweep`: points stored as they finish, a restart that skips them, points that
do not fit, the plots, the recommended command and bad input (tiny runs on digits)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

import quadd_train.loop
from quadd_cli.distill_command import distill_command
from quadd_cli.main import main
from quadd_train.sweep import SweepStore, parse_bits

FAST = ["--dataset", "digits", "--iterations", "2", "--runs", "1", "--epochs", "2",
        "--no-progress"]


@pytest.fixture
def calls(monkeypatch) -> list:
    """Counts the distillations the sweep runs (each point's, baselines' included)."""
    seen: list = []
    real = quadd_train.loop.distill

    def counting(config, bundle, out_path, progress=True):
        seen.append((config.bits, config.quantizer, config.post_quantize))
        return real(config, bundle, out_path, progress=progress)

    monkeypatch.setattr(quadd_train.loop, "distill", counting)
    return seen


def sweep(out: Path, *args: str):
    result = CliRunner().invoke(main, ["sweep", *FAST, *args, "--out", str(out)],
                                catch_exceptions=False)
    return result


def lines(out: Path) -> list[dict]:
    return [json.loads(s) for s in (out / "sweep.jsonl").read_text().splitlines()]


def test_points_are_stored_and_a_restart_skips_them(tmp_path, calls):
    out = tmp_path / "sw"
    args = ("--budget", "2KiB", "--bits", "2,32", "--baselines", "none")
    res = sweep(out, *args)
    assert res.exit_code == 0, res.output
    recs = lines(out)
    assert [(r["kind"], r["bits"], r["fits"]) for r in recs] == [
        ("quadd", 2, True), ("quadd", 32, False)]
    two = recs[0]
    assert two["ipc"] == 10 and 0 < two["file_bytes"] <= 2048
    assert (out / "quadd-2048B-2bit.qdd").stat().st_size == two["file_bytes"]
    assert 0 <= two["accuracy"] <= 100 and two["runs"] == 1 and two["epochs"] == 2
    assert two["settings"]["iterations"] == 2
    # 32 bits at 2 KiB: one 8x8 float image per class does not fit; recorded, no error.
    assert recs[1]["accuracy"] is None and recs[1]["file"] is None
    assert "does not fit" in res.output
    assert len(calls) == 1

    # The same command again: nothing is run, the table says the points were stored.
    res = sweep(out, *args)
    assert res.exit_code == 0 and len(calls) == 1
    assert "(stored)" in res.output

    # A kill while writing the last line: it is ignored (and cut off), the rest reused.
    with open(out / "sweep.jsonl", "a") as f:
        f.write('{"kind": "quadd", "budget": 20')
    res = sweep(out, *args)
    assert res.exit_code == 0 and len(calls) == 1
    assert len(lines(out)) == 2

    # The point lost with its line is run again, and only it.
    text = (out / "sweep.jsonl").read_text().splitlines()
    (out / "sweep.jsonl").write_text(text[1] + "\n")
    res = sweep(out, *args)
    assert res.exit_code == 0 and len(calls) == 2
    assert sorted(r["bits"] for r in lines(out)) == [2, 32]

    # Other settings for the same point: not reused, and said so.
    res = sweep(out, *args, "--iterations", "3")
    assert res.exit_code == 0 and len(calls) == 3
    assert "other settings" in res.stderr


def test_baselines_plots_and_the_recommended_command(tmp_path, calls):
    out = tmp_path / "sw"
    res = sweep(out, "--budget", "1KiB", "--budget", "2KiB", "--bits", "2",
                "--baselines", "subset,post")
    assert res.exit_code == 0, res.output
    kinds = sorted((r["kind"], r["budget"]) for r in lines(out))
    assert kinds == [("post", 1024), ("post", 2048), ("quadd", 1024), ("quadd", 2048),
                     ("subset", 1024), ("subset", 2048)]
    # post-quantized DM keeps QuADD's count at the same bits.
    by = {(r["kind"], r["budget"]): r for r in lines(out)}
    assert by["post", 2048]["ipc"] == by["quadd", 2048]["ipc"]
    assert [c[2] for c in calls].count(True) == 2
    for name in ("sweep-1024.png", "sweep-2048.png", "rate.png"):
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
    assert not (out / "sweep.png").exists()

    commands = [line.split(": ", 1)[1] for line in res.output.splitlines()
                if line.strip().startswith("reproduce it: quadd distill")]
    assert len(commands) == 2
    args = shlex.split(commands[-1])[2:]
    ctx = distill_command.make_context("distill", args)
    assert ctx.params["budget"] == 2048 and ctx.params["bits"] == 2
    assert ctx.params["iterations"] == 2 and ctx.params["dataset"] == "digits"


def test_one_budget_draws_sweep_png(tmp_path, calls):
    out = tmp_path / "sw"
    res = sweep(out, "--budget", "2KiB", "--bits", "1", "--upsample", "1,2",
                "--baselines", "none")
    assert res.exit_code == 0, res.output
    assert [(r["bits"], r["upsample"]) for r in lines(out)] == [(1, 1), (1, 2)]
    assert (out / "sweep.png").read_bytes().startswith(b"\x89PNG")
    assert not (out / "rate.png").exists()


def test_image_codec_baselines_are_real_archives_at_the_budget(tmp_path, calls):
    out = tmp_path / "sw"
    res = sweep(out, "--budget", "2KiB", "--bits", "2", "--baselines", "jpeg,webp")
    assert res.exit_code == 0, res.output
    images = [r for r in lines(out) if r["kind"] in ("jpeg", "webp")]
    assert sorted((r["kind"], r["upsample"]) for r in images) == [
        ("jpeg", 1), ("jpeg", 2), ("webp", 1), ("webp", 2)]
    for r in images:
        if r["fits"]:
            path = Path(r["file"])
            assert path.suffix == ".zip" and path.stat().st_size == r["file_bytes"] <= 2048
            assert r["accuracy"] is not None and r["ipc"] >= 1
    assert any(r["fits"] for r in images)
    assert (out / "sweep.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("args, message", [
    ((), "Missing option '--budget'"),
    (("--budget", "2KiB", "--bits", "0,9"), "out of range"),
    (("--budget", "2KiB", "--bits", "2,x"), "not a whole number"),
    (("--budget", "2KiB", "--upsample", "0"), "out of range"),
    (("--budget", "2KiB", "--baselines", "jpeg2000"), "unknown baseline"),
    (("--budget", "lots"), "invalid size"),
    (("--budget", "2KiB", "--quantizer", "none"), "add 32 to --bits"),
])
def test_bad_input_is_a_usage_error(tmp_path, args, message):
    res = CliRunner().invoke(main, ["sweep", "--out", str(tmp_path / "o"), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o").exists()


def test_an_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    res = CliRunner().invoke(main, ["sweep", *FAST, "--budget", "2KiB", "--out",
                                    str(tmp_path / "f")])
    assert res.exit_code == 2 and "is a file" in res.output
    assert (tmp_path / "f").read_text() == "x"


def test_store_skips_bad_lines(tmp_path):
    store = SweepStore(str(tmp_path))
    store.append({"kind": "quadd", "budget": 1, "bits": 2, "upsample": 1})
    with open(store.path, "a") as f:
        f.write("not json\n[1, 2]\n{\"kind\": \"qu")
    assert [r["bits"] for r in store.load()] == [2]
    store.append({"kind": "quadd", "budget": 1, "bits": 4, "upsample": 1})
    assert [r["bits"] for r in store.load()] == [2, 4]
    assert parse_bits("32, 1,2,2") == [1, 2, 32]

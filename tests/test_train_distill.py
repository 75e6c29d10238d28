"""End-to-end distillation on the built-in digits set: budget, exactness, resume."""

from __future__ import annotations

import json
import os
from dataclasses import fields

import numpy as np
import pytest
import torch

from quadd_codec import QddFile
from quadd_train import DistillConfig, distill, subset
from quadd_train.objectives.dm import DMOptions
from quadd_train.quantizers import make_quantizer
from quadd_train.synthetic import SyntheticSet

BUDGET = 4096


pytestmark = pytest.mark.usefixtures("one_thread")


_DM_KEYS = {f.name for f in fields(DMOptions)}


def dm_config(**kw) -> DistillConfig:
    """A DistillConfig whose DM options (``dm_mode`` for ``mode``) are given flat."""
    if "dm_mode" in kw:
        kw["mode"] = kw.pop("dm_mode")
    options = {k: kw.pop(k) for k in list(kw) if k in _DM_KEYS}
    return DistillConfig(**kw, objective_options=options)


def _cfg(**kw) -> DistillConfig:
    base = dict(
        budget_bytes=BUDGET,
        bits=2,
        quantizer="uniform",
        iterations=4,
        seed=3,
        pool_size=2,
        real_per_class=32,
        ipc=4,
    )
    base.update(kw)
    return dm_config(**base)


@pytest.mark.parametrize("quantizer", ["uniform", "apot", "learned"])
def test_file_is_the_final_quantized_set(tmp_path, digits, quantizer):
    out = tmp_path / "d.qdd"
    ckpt = tmp_path / "d.ckpt"
    cfg = _cfg(quantizer=quantizer, checkpoint_every=4, checkpoint_path=str(ckpt))
    res = distill(cfg, digits, out, progress=False)
    size = os.path.getsize(out)
    assert size == res.file_bytes <= BUDGET
    f = QddFile(out)
    assert f.n == res.n == 40 and f.bits == 2
    # Rebuild samples + quantizer from the final checkpoint: the file must hold exactly
    # the quantized synthetic set, bit for bit, in normalized space.
    state = torch.load(ckpt, weights_only=False)
    syn = SyntheticSet(torch.zeros(40, 1, 8, 8), torch.zeros(40, dtype=torch.long), 10)
    syn.load_state_dict(state["synthetic"])
    q = make_quantizer(quantizer, 2, "channel", num_samples=40, num_channels=1)
    q.load_state_dict(state["quantizer"])
    with torch.no_grad():
        expect = q(syn.data).numpy()
    got = f.read_all()
    assert np.array_equal(got.view(np.uint32), expect.view(np.uint32))
    assert np.array_equal(np.asarray(f.labels), np.repeat(np.arange(10), 4))
    # Denormalization recovers pixel space.
    den = f.read_all(denormalize=True)
    std, mean = float(digits.std[0]), float(digits.mean[0])
    assert np.allclose(den, got * std + mean, atol=1e-5)


def test_max_ipc_fits_budget(tmp_path, digits):
    res = distill(_cfg(ipc=None, iterations=1), digits, tmp_path / "m.qdd", progress=False)
    assert res.file_bytes <= BUDGET
    # One more sample per class would not fit.
    with pytest.raises(ValueError, match="does not fit"):
        distill(_cfg(ipc=res.ipc + 1, iterations=1), digits, tmp_path / "x.qdd", progress=False)


def test_budget_too_small(tmp_path, digits):
    with pytest.raises(ValueError, match="too small"):
        distill(_cfg(budget_bytes=100), digits, tmp_path / "t.qdd", progress=False)


def test_baselines(tmp_path, digits):
    res32 = distill(_cfg(quantizer="none", ipc=None, iterations=2), digits, tmp_path / "n.qdd",
                    progress=False)
    assert res32.bits == 32 and res32.file_bytes <= BUDGET
    assert QddFile(tmp_path / "n.qdd").bits == 32
    resq = distill(_cfg(ipc=None, iterations=1), digits, tmp_path / "q.qdd", progress=False)
    assert resq.ipc > res32.ipc  # fewer bits buy more samples
    pq = distill(_cfg(ipc=None, post_quantize=True, iterations=2), digits, tmp_path / "p.qdd",
                 progress=False)
    assert pq.ipc == resq.ipc and pq.bits == 2 and pq.file_bytes <= BUDGET
    sub = subset(digits, BUDGET, 2, 0, tmp_path / "s.qdd")
    assert sub.ipc == resq.ipc or sub.file_bytes <= BUDGET
    assert QddFile(tmp_path / "s.qdd").n == sub.n


def test_resume_matches_uninterrupted(tmp_path, digits):
    full = tmp_path / "full.qdd"
    distill(_cfg(iterations=6), digits, full, progress=False)
    part = tmp_path / "part.qdd"
    ckpt = tmp_path / "part.ckpt"
    distill(_cfg(iterations=3, checkpoint_every=3, checkpoint_path=str(ckpt)), digits, part,
            progress=False)
    res = distill(_cfg(iterations=6, checkpoint_path=str(ckpt), resume=True), digits, part,
                  progress=False)
    assert res.resumed_from == 3
    assert full.read_bytes() == part.read_bytes()


@pytest.mark.parametrize("stop", [1, 2, 4])  # before, at and after the switch-on
def test_quant_warmup_resumes_exactly(tmp_path, digits, stop):
    full = tmp_path / "full.qdd"
    distill(_cfg(iterations=5, quant_warmup=2), digits, full, progress=False)
    part, ckpt = tmp_path / "part.qdd", tmp_path / "part.ckpt"
    distill(_cfg(iterations=stop, quant_warmup=2, checkpoint_every=stop,
                 checkpoint_path=str(ckpt)), digits, part, progress=False)
    distill(_cfg(iterations=5, quant_warmup=2, checkpoint_path=str(ckpt), resume=True),
            digits, part, progress=False)
    assert full.read_bytes() == part.read_bytes()
    # Warm-up changes the result (the first iterations see unquantized samples).
    plain = tmp_path / "plain.qdd"
    distill(_cfg(iterations=5), digits, plain, progress=False)
    assert not np.array_equal(QddFile(plain).packed_codes(), QddFile(full).packed_codes())


def test_quant_warmup_longer_than_the_run_still_fits_levels(tmp_path, digits):
    out = tmp_path / "w.qdd"
    distill(_cfg(iterations=3, quant_warmup=10), digits, out, progress=False)
    x = QddFile(out).read_all()
    assert np.isfinite(x).all() and len(np.unique(x)) > 1
    with pytest.raises(ValueError, match="quant_warmup"):
        _cfg(quant_warmup=-1).validate()


def test_resume_rejects_other_settings(tmp_path, digits):
    ckpt = tmp_path / "c.ckpt"
    distill(_cfg(iterations=2, checkpoint_every=2, checkpoint_path=str(ckpt)), digits,
            tmp_path / "a.qdd", progress=False)
    with pytest.raises(ValueError, match="different settings"):
        distill(_cfg(iterations=4, bits=3, checkpoint_path=str(ckpt), resume=True), digits,
                tmp_path / "b.qdd", progress=False)
    # bf16 changes the arithmetic; an unset setting reads as auto.
    with pytest.raises(ValueError, match=r"different settings \(bf16 auto there, False now"):
        distill(_cfg(iterations=4, bf16=False, checkpoint_path=str(ckpt), resume=True),
                digits, tmp_path / "b.qdd", progress=False)


def test_resume_may_change_how_the_arithmetic_runs(tmp_path, digits):
    """A run whose compile broke goes on without it: compile and channels_last change how
    the loop runs, not what it computes, and are not part of a checkpoint's settings."""
    ckpt = tmp_path / "c.ckpt"
    distill(_cfg(iterations=2, checkpoint_every=2, checkpoint_path=str(ckpt)), digits,
            tmp_path / "a.qdd", progress=False)
    res = distill(_cfg(iterations=4, compile=False, channels_last=False,
                       checkpoint_path=str(ckpt), resume=True), digits, tmp_path / "b.qdd",
                  progress=False)
    assert res.resumed_from == 2


def test_resume_refuses_a_checkpoint_past_the_iterations(tmp_path, digits):
    ckpt = tmp_path / "c.ckpt"
    distill(_cfg(iterations=4, checkpoint_every=4, checkpoint_path=str(ckpt)), digits,
            tmp_path / "a.qdd", progress=False)
    with pytest.raises(ValueError, match="past --iterations 2"):
        distill(_cfg(iterations=2, checkpoint_path=str(ckpt), resume=True), digits,
                tmp_path / "b.qdd", progress=False)
    assert not (tmp_path / "b.qdd").exists()


def test_plain_mode_runs(tmp_path, digits):
    res = distill(_cfg(dm_mode="plain", batch_real=16, iterations=2), digits,
                  tmp_path / "p.qdd", progress=False)
    assert res.file_bytes <= BUDGET and np.isfinite(res.final_loss)


@pytest.mark.parametrize("quantizer", ["none", "uniform"])
def test_an_unreused_pool_of_the_plain_batch_is_the_plain_loop(tmp_path, digits, quantizer):
    # The fast loop with one entry per iteration and the plain loop's real batch size
    # draws what the plain loop draws, entry t at iteration t, and computes the same
    # thing with the real embeddings moved up front: the same samples, bit for bit. 24
    # real images per class are fewer than a digits class holds, so which ones each
    # draw takes matters.
    common = dict(iterations=6, quantizer=quantizer, bits=32 if quantizer == "none" else 2,
                  ipc=1 if quantizer == "none" else 4)
    plain = tmp_path / "plain.qdd"
    distill(_cfg(dm_mode="plain", batch_real=24, **common), digits, plain, progress=False)
    fast = tmp_path / "fast.qdd"
    res = distill(_cfg(pool_size=6, real_per_class=24, **common), digits, fast,
                  progress=False)
    assert (res.report["pool_size"], res.report["real_per_class"]) == (6, 24)
    assert QddFile(fast).read_all().tobytes() == QddFile(plain).read_all().tobytes()
    # The plain loop's draws follow its iteration count, which a resumed run restores.
    ckpt = tmp_path / "plain.ckpt"
    half = dict(common, iterations=3)
    distill(_cfg(dm_mode="plain", batch_real=24, checkpoint_every=3,
                 checkpoint_path=str(ckpt), **half), digits, tmp_path / "h.qdd",
            progress=False)
    resumed = tmp_path / "resumed.qdd"
    distill(_cfg(dm_mode="plain", batch_real=24, checkpoint_path=str(ckpt), resume=True,
                 **common), digits, resumed, progress=False)
    assert QddFile(resumed).read_all().tobytes() == QddFile(plain).read_all().tobytes()
    # A run of the automatic loop resumes on the loop it started with (a GPU's plain
    # loop, say, when the checkpoint moves to a CPU).
    again = tmp_path / "again.qdd"
    res = distill(_cfg(dm_mode="auto", batch_real=24, checkpoint_path=str(ckpt),
                       resume=True, pool_size=None, real_per_class=None, **common),
                  digits, again, progress=False)
    assert (res.report["dm_mode"], res.report["pool_size"], res.resumed_from) == (
        "plain", None, 3)
    # Asking that resumed run for a trained pool is a change of settings, and says so.
    with pytest.raises(ValueError, match=r"different settings \(pool_train_steps "):
        distill(_cfg(dm_mode="auto", batch_real=24, checkpoint_path=str(ckpt), resume=True,
                     pool_size=None, real_per_class=None, pool_train_steps=2, **common),
                digits, tmp_path / "x.qdd", progress=False)
    assert QddFile(again).read_all().tobytes() == QddFile(plain).read_all().tobytes()
    # A pool reused, or of other real batches, is another computation.
    other = tmp_path / "other.qdd"
    distill(_cfg(pool_size=3, real_per_class=24, **common), digits, other, progress=False)
    assert QddFile(other).read_all().tobytes() != QddFile(plain).read_all().tobytes()


def _cli():
    import click

    from quadd_cli.distill_command import distill_command
    from quadd_cli.errors import QuaddGroup
    from quadd_cli.train_commands import subset_command

    @click.group(cls=QuaddGroup)
    def group() -> None:
        pass

    group.add_command(distill_command)
    group.add_command(subset_command)
    return group


def test_cli_distill_and_subset(tmp_path):
    from click.testing import CliRunner

    runner = CliRunner()
    out = tmp_path / "c.qdd"
    args = ["distill", "--budget", "4KiB", "--bits", "2", "-n", "2", "--pool-size", "1",
            "--real-per-class", "16", "--ipc", "3", "--json", "-o", str(out)]
    res = runner.invoke(_cli(), args)
    assert res.exit_code == 0, res.output
    assert '"file_bytes"' in res.stdout and out.stat().st_size <= 4096
    row = json.loads(res.stdout)
    assert (row["dm_mode"], row["pool_size"], row["real_per_class"]) == ("fast", 1, 16)
    # The default pool depends on the device and --iterations, so the summary names it.
    res = runner.invoke(_cli(), ["distill", "--budget", "4KiB", "--bits", "2", "-n", "8",
                                 "--ipc", "2", "--device", "cpu", "--force", "-o",
                                 str(out)])
    assert res.exit_code == 0, res.output
    assert "8 iterations (DM pool 2 x 256 real/class, set up in" in res.stdout
    res = runner.invoke(_cli(), ["distill", "--budget", "4KiB", "--bits", "2", "-n", "1",
                                 "--ipc", "2", "--dm-mode", "plain", "--force", "-o",
                                 str(out)])
    assert res.exit_code == 0 and "DM pool" not in res.stdout
    assert "1 iterations (plain DM loop)" in res.stdout
    res = runner.invoke(_cli(), ["subset", "--budget", "4KiB", "--bits", "3", "-o",
                                 str(tmp_path / "s.qdd")])
    assert res.exit_code == 0 and "samples" in res.stdout
    # Bad size: usage error (2). Too small a budget: one error line, exit 1.
    res = runner.invoke(_cli(), ["distill", "--budget", "4XB", "-o", str(out)])
    assert res.exit_code == 2
    res = runner.invoke(_cli(), ["distill", "--budget", "50", "-o", str(tmp_path / "t.qdd")])
    assert res.exit_code == 1
    assert res.stderr.strip().count("\n") == 0 and "too small" in res.stderr
    assert "Traceback" not in res.output
    res = runner.invoke(_cli(), ["subset", "--budget", "4KiB", "--bits", "12", "-o", str(out)])
    assert res.exit_code == 2


def test_cli_plan_matches_the_written_file(tmp_path):
    """`quadd plan` predicts the sample count and the exact size `quadd distill` writes."""
    from click.testing import CliRunner

    from quadd_cli.main import main

    runner = CliRunner()
    res = runner.invoke(main, ["plan", "--budget", "2KiB", "--bits", "2", "--bits", "4",
                               "-n", "2", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["bits"]: r for r in map(json.loads, res.stdout.splitlines())}
    assert sorted(rows) == [2, 4, 32]
    assert rows[32]["ipc"] == 0 and rows[32]["one_per_class_bytes"] > 2048
    for bits in (2, 4):
        out = tmp_path / f"p{bits}.qdd"
        args = ["distill", "--budget", "2KiB", "--bits", str(bits), "-n", "2",
                "--pool-size", "1", "--real-per-class", "16", "--json", "-o", str(out)]
        made = json.loads(runner.invoke(main, args).stdout)
        assert made["ipc"] == rows[bits]["ipc"] > 0
        assert out.stat().st_size == rows[bits]["file_bytes"] <= 2048
        # One more sample per class would not have fitted.
        assert rows[bits]["file_bytes"] + 10 * (bits * 64 // 8) > 2048
    text = runner.invoke(main, ["plan", "--budget", "100"])
    assert text.exit_code == 0 and "one per class needs" in text.stdout
    bad = runner.invoke(main, ["plan", "--budget", "1KiB", "--dataset", "no-such-set"])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert bad.stderr.startswith("quadd: error:")


@pytest.mark.parametrize("filt", ["nearest", "linear"])
def test_upsample_stores_smaller_samples_and_more_of_them(tmp_path, digits, filt):
    """--upsample 2 stores 4x4 digits that decode to 8x8: the file holds exactly the
    quantized low-resolution samples, enlarged as in the loop (2x2 blocks, or bilinear
    with --upsample-filter linear), and fits more per class."""
    full = distill(_cfg(ipc=None, iterations=1), digits, tmp_path / "f.qdd", progress=False)
    out, ckpt = tmp_path / "u.qdd", tmp_path / "u.ckpt"
    res = distill(_cfg(ipc=None, iterations=3, upsample=2, upsample_filter=filt,
                       checkpoint_every=3, checkpoint_path=str(ckpt)),
                  digits, out, progress=False)
    assert res.ipc > 3 * full.ipc and res.file_bytes == out.stat().st_size <= BUDGET
    f = QddFile(out)
    assert (f.upsample, f.stored_shape, f.sample_shape) == (2, (1, 4, 4), (1, 8, 8))
    assert f.upsample_filter == filt
    state = torch.load(ckpt, weights_only=False)
    syn = SyntheticSet(torch.zeros(res.n, 1, 4, 4), torch.zeros(res.n, dtype=torch.long), 10,
                       upsample=2, upsample_filter=filt)
    syn.load_state_dict(state["synthetic"])
    q = make_quantizer("uniform", 2, "channel", num_samples=res.n, num_channels=1)
    q.load_state_dict(state["quantizer"])
    with torch.no_grad():
        expect = syn.expand(q(syn.data)).numpy()
    assert expect.shape == (res.n, 1, 8, 8)
    assert np.array_equal(f.read_all().view(np.uint32), expect.view(np.uint32))
    # The evaluation protocol trains from the file at the dataset's own size.
    from quadd_train.eval import evaluate_qdd

    ev = evaluate_qdd(out, digits, runs=1, epochs=1, progress=False)
    assert ev["num_samples"] == res.n and 0 <= ev["accuracy"] <= 100


def test_upsample_subset_is_block_averaged(tmp_path, digits):
    res = subset(digits, BUDGET, 32, 0, tmp_path / "s.qdd", upsample=2)
    f = QddFile(tmp_path / "s.qdd")
    assert f.bits == 32 and f.sample_shape == (1, 8, 8) and res.file_bytes <= BUDGET
    x = f.read_all(denormalize=True)
    # Every 2x2 block is one value: the mean of the real pixels it replaced.
    assert np.array_equal(x[..., ::2, ::2], x[..., 1::2, 1::2])
    assert abs(float(x.mean()) - float(digits.x_train.float().mean())) < 0.05


def test_upsample_must_divide_the_image(tmp_path, digits):
    with pytest.raises(ValueError, match="must divide the image size 8x8"):
        distill(_cfg(upsample=3), digits, tmp_path / "x.qdd", progress=False)
    from click.testing import CliRunner

    from quadd_cli.main import main

    res = CliRunner().invoke(main, ["distill", "--budget", "4KiB", "--upsample", "3",
                                    "-o", str(tmp_path / "x.qdd")])
    assert res.exit_code == 1 and "must divide" in res.stderr and "Traceback" not in res.output
    assert not (tmp_path / "x.qdd").exists()
    res = CliRunner().invoke(main, ["plan", "--budget", "4KiB", "--upsample", "2", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["bits"]: r for r in map(json.loads, res.stdout.splitlines())}
    full = CliRunner().invoke(main, ["plan", "--budget", "4KiB", "--json"])
    rows_full = {r["bits"]: r for r in map(json.loads, full.stdout.splitlines())}
    assert rows[2]["ipc"] > 3 * rows_full[2]["ipc"]


def test_checkpoint_from_before_a_new_setting_still_resumes(tmp_path, digits):
    """A checkpoint written before `upsample` existed has no such key: it counts as 1."""
    ckpt = tmp_path / "old.ckpt"
    cfg = _cfg(iterations=2, checkpoint_every=2, checkpoint_path=str(ckpt))
    distill(cfg, digits, tmp_path / "a.qdd", progress=False)
    state = torch.load(ckpt, weights_only=False)
    del state["fingerprint"]["upsample"]
    torch.save(state, ckpt)
    res = distill(_cfg(iterations=4, checkpoint_path=str(ckpt), resume=True), digits,
                  tmp_path / "b.qdd", progress=False)
    assert res.resumed_from == 2
    with pytest.raises(ValueError, match=r"different settings \(upsample "):
        distill(_cfg(iterations=4, checkpoint_path=str(ckpt), resume=True, upsample=2),
                digits, tmp_path / "c.qdd", progress=False)


def test_an_objective_setting_the_checkpoint_predates_counts_at_its_default(tmp_path, digits):
    ckpt = tmp_path / "old.ckpt"
    distill(_cfg(iterations=2, checkpoint_every=2, checkpoint_path=str(ckpt),
                 pool_order="random"), digits, tmp_path / "a.qdd", progress=False)
    state = torch.load(ckpt, weights_only=False)
    del state["objective_fingerprint"]["pool_order"]  # as if written before the setting
    torch.save(state, ckpt)
    with pytest.raises(ValueError, match=r"different settings \(pool_order "):
        distill(_cfg(iterations=4, checkpoint_path=str(ckpt), resume=True,
                     pool_order="random"), digits, tmp_path / "b.qdd", progress=False)
    res = distill(_cfg(iterations=4, checkpoint_path=str(ckpt), resume=True), digits,
                  tmp_path / "b.qdd", progress=False)
    assert res.resumed_from == 2
    # The plain loop draws no pool: its runs resume whatever the order says.
    plain = tmp_path / "plain.ckpt"
    distill(_cfg(iterations=1, checkpoint_every=1, checkpoint_path=str(plain),
                 dm_mode="plain", batch_real=8), digits, tmp_path / "p.qdd", progress=False)
    res = distill(_cfg(iterations=2, checkpoint_path=str(plain), resume=True,
                       dm_mode="plain", batch_real=8, pool_order="random"), digits,
                  tmp_path / "p.qdd", progress=False)
    assert res.resumed_from == 1


def test_a_checkpoint_of_an_older_version_is_refused_in_one_line(tmp_path, digits):
    ckpt = tmp_path / "old.ckpt"
    distill(_cfg(iterations=1, checkpoint_every=1, checkpoint_path=str(ckpt)), digits,
            tmp_path / "a.qdd", progress=False)
    state = torch.load(ckpt, weights_only=False)
    state["version"] = 1
    torch.save(state, ckpt)
    with pytest.raises(ValueError, match="written by an older quadd; start again without "
                       "--resume"):
        distill(_cfg(iterations=2, checkpoint_path=str(ckpt), resume=True), digits,
                tmp_path / "b.qdd", progress=False)


def test_an_unset_pool_resumes_on_the_checkpoints_pool(tmp_path, digits):
    # The defaults depend on the device and the run's length. A new run records the
    # numbers; a run without --pool-size / --real-per-class resumes on whatever its
    # checkpoint used, even with more iterations: another device's default, or an older
    # default.
    ckpt = tmp_path / "d.ckpt"
    kw = dict(checkpoint_path=str(ckpt))
    distill(_cfg(iterations=8, pool_size=None, real_per_class=None, checkpoint_every=8, **kw),
            digits, tmp_path / "a.qdd", progress=False)
    state = torch.load(ckpt, weights_only=False)
    assert (state["objective_fingerprint"]["pool_size"],
            state["objective_fingerprint"]["real_per_class"]) == (2, 256)
    assert state["objective"]["pool_means"].shape[0] == 2
    distill(_cfg(iterations=2, pool_size=5, real_per_class=3, checkpoint_every=2, **kw),
            digits, tmp_path / "b.qdd", progress=False)  # as if made where the default is 5 x 3
    res = distill(_cfg(iterations=7, pool_size=None, real_per_class=None, resume=True,
                       checkpoint_every=7, **kw), digits, tmp_path / "b.qdd", progress=False)
    assert res.resumed_from == 2
    state = torch.load(ckpt, weights_only=False)
    assert (state["objective_fingerprint"]["pool_size"],
            state["objective_fingerprint"]["real_per_class"]) == (5, 3)
    assert state["objective"]["pool_means"].shape[0] == 5
    with pytest.raises(ValueError, match=r"different settings \(pool_size "):
        distill(_cfg(iterations=3, pool_size=64, real_per_class=None, resume=True, **kw),
                digits, tmp_path / "b.qdd", progress=False)
    with pytest.raises(ValueError, match=r"different settings \(real_per_class "):
        distill(_cfg(iterations=3, pool_size=None, real_per_class=4, resume=True, **kw),
                digits, tmp_path / "b.qdd", progress=False)
    # The plain loop has no pool; its old checkpoints recorded the old default.
    distill(_cfg(iterations=2, dm_mode="plain", pool_size=128, real_per_class=2,
                 checkpoint_every=2, **kw), digits, tmp_path / "c.qdd", progress=False)
    res = distill(_cfg(iterations=3, dm_mode="plain", pool_size=None, real_per_class=None,
                       resume=True, **kw), digits, tmp_path / "c.qdd", progress=False)
    assert res.resumed_from == 2


def test_a_diverging_run_stops_with_a_clear_error(tmp_path, digits):
    out = tmp_path / "x.qdd"
    with pytest.raises(ValueError, match="diverged"):
        distill(_cfg(quantizer="none", ipc=1, iterations=20, lr_img=1e38), digits, out,
                progress=False)
    assert not out.exists()


def test_pool_build_shows_progress_and_resume_skips_it(tmp_path, digits, capsys):
    # A big pool embeds for minutes before the first iteration; the bar says so.
    ckpt = tmp_path / "p.ckpt"
    distill(_cfg(iterations=2, pool_size=3, checkpoint_every=2, checkpoint_path=str(ckpt)),
            digits, tmp_path / "p.qdd", progress=True)
    err = capsys.readouterr().err
    assert "DM pool" in err and "3/3" in err
    # The checkpoint holds the pool's means, so a resumed run does not embed again.
    distill(_cfg(iterations=3, pool_size=3, checkpoint_path=str(ckpt), resume=True),
            digits, tmp_path / "p.qdd", progress=True)
    err = capsys.readouterr().err
    assert "DM pool" not in err and "distill" in err
    distill(_cfg(iterations=2, pool_size=3), digits, tmp_path / "q.qdd", progress=False)
    assert capsys.readouterr().err == ""

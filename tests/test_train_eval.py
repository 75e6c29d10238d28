"""ConvNet, DSA augmentation, the evaluation protocol and the `quadd eval` command."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from quadd_train.eval import EvalConfig, evaluate_qdd, evaluate_tensors
from quadd_train.eval.qdd import check_qdd_matches
from quadd_train.nn.augment import AUGMENT_FNS, DEFAULT_STRATEGY, ParamDiffAug, diff_augment
from quadd_train.nn.convnet import ConvNet

try:
    from quadd_cli.eval_command import eval_command
except ImportError:  # not installed: import from the source tree
    from cli.eval_command import eval_command

torch.set_num_threads(1)


def _ipc_subset(b, ipc: int):
    idx = torch.cat([torch.nonzero(b.y_train == c)[:ipc, 0] for c in range(b.num_classes)])
    return b.x_train[idx], b.y_train[idx]


# -- ConvNet ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "size", "features"),
    [(1, (8, 8), 128), (1, (28, 28), 2048), (3, (32, 32), 2048), (3, (28, 28), 1152)],
)
def test_convnet_shapes(channel, size, features):
    net = ConvNet(channel, 10, size)
    x = torch.randn(2, channel, *size)
    assert net.embed(x).shape == (2, features)
    assert net(x).shape == (2, 10)
    assert net.num_features == features


def test_convnet_variants_and_errors():
    for norm in ("batchnorm", "layernorm", "groupnorm", "none"):
        assert ConvNet(3, 4, (16, 16), width=8, norm=norm)(torch.randn(2, 3, 16, 16)).shape == (
            2,
            4,
        )
    assert ConvNet(1, 3, (8, 8), width=8, depth=2, pooling="maxpooling", act="leakyrelu")(
        torch.randn(1, 1, 8, 8)
    ).shape == (1, 3)
    with pytest.raises(ValueError):
        ConvNet(3, 10, (32, 32), norm="weird")
    with pytest.raises(ValueError, match="too small"):
        ConvNet(1, 10, (4, 4), depth=4)


# -- DSA ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["S", "M"])
def test_dsa_same_seed_same_output(mode):
    x = torch.rand(6, 3, 16, 16)
    p = ParamDiffAug(aug_mode=mode)
    a = diff_augment(x, DEFAULT_STRATEGY, seed=11, param=p)
    b = diff_augment(x, DEFAULT_STRATEGY, seed=11, param=p)
    assert torch.equal(a, b)
    others = [diff_augment(x, DEFAULT_STRATEGY, seed=s, param=p) for s in range(12, 17)]
    assert any(not torch.equal(a, o) for o in others)


def test_dsa_siamese_across_batch_sizes():
    # Real and synthetic batches differ in size but must get the same transform.
    real, syn = torch.rand(7, 1, 12, 12), torch.rand(2, 1, 12, 12)
    both = torch.cat([syn, real])
    for seed in range(8):
        a = diff_augment(syn, seed=seed, param=ParamDiffAug(aug_mode="M"))
        b = diff_augment(both, seed=seed, param=ParamDiffAug(aug_mode="M"))
        assert torch.allclose(a, b[:2], atol=1e-6)


def test_dsa_does_not_touch_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    diff_augment(torch.zeros(2, 3, 8, 8), seed=5)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("op", sorted(AUGMENT_FNS))
@pytest.mark.parametrize("channels", [1, 3])
def test_dsa_each_op_is_differentiable(op, channels):
    x = torch.rand(4, channels, 8, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, channels, 8, 8, dtype=torch.float64)
    out = diff_augment(x, op, seed=3, param=ParamDiffAug(aug_mode="M"))
    assert out.shape == x.shape
    (out * w).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert float(x.grad.abs().sum()) > 0


def test_dsa_unseeded_is_per_sample_and_none_is_identity():
    x = torch.rand(1, 3, 8, 8).expand(16, 3, 8, 8).contiguous()
    out = diff_augment(x, "color", seed=None)
    assert not torch.allclose(out[0], out[1])
    assert diff_augment(x, "none") is x
    with pytest.raises(ValueError, match="unknown augmentation"):
        diff_augment(x, "color_blur")


# -- evaluation protocol -----------------------------------------------------------------


def test_evaluate_tensors_learns_digits(digits):
    x, y = _ipc_subset(digits, 10)
    r = evaluate_tensors(x, y, digits, runs=1, epochs=20, batch_size=20, progress=False)
    assert r["runs"] == 1 and len(r["accuracies"]) == 1 and r["epochs"] == 20
    assert r["accuracy"] > 50.0, r  # chance is 10 %


def test_evaluate_tensors_rejects_mismatch(digits):
    with pytest.raises(ValueError, match="shape"):
        evaluate_tensors(torch.zeros(2, 3, 8, 8), torch.zeros(2), digits, progress=False)
    with pytest.raises(ValueError, match="labels"):
        evaluate_tensors(torch.zeros(2, 1, 8, 8), torch.tensor([0, 10]), digits,
                         progress=False)


class _FakeQdd:
    def __init__(self, names, shape, targets=(0, 1)):
        self.class_names = names
        self.num_classes = len(names)
        self.sample_shape = shape
        self.targets = torch.tensor(targets)


def test_qdd_metadata_checks(digits):
    names = digits.class_names
    check_qdd_matches(_FakeQdd(names, (1, 8, 8)), digits, "f.qdd")
    with pytest.raises(ValueError, match="classes"):
        check_qdd_matches(_FakeQdd(list("abcdefghij"), (1, 8, 8)), digits, "f.qdd")
    with pytest.raises(ValueError, match="shape"):
        check_qdd_matches(_FakeQdd(names, (3, 8, 8)), digits, "f.qdd")
    with pytest.raises(ValueError, match="labels"):
        check_qdd_matches(_FakeQdd(names, (1, 8, 8), (-1, -1)), digits, "f.qdd")


def _write_digits_qdd(path, x, y, class_names):
    codec = pytest.importorskip("quadd_codec")
    codes = np.round(x.numpy() * 255).astype(np.uint8)
    levels = np.linspace(0, 1, 256, dtype=np.float32)[None]
    codec.write_qdd(str(path), codes=codes, levels=levels, labels=y.numpy(), bits=8,
                    group="tensor", class_names=class_names)
    return path


@pytest.fixture(scope="module")
def digits_qdd(digits, tmp_path_factory):
    x, y = _ipc_subset(digits, 10)
    return _write_digits_qdd(tmp_path_factory.mktemp("qdd") / "d.qdd", x, y,
                             digits.class_names)


def test_evaluate_qdd_learns_digits(digits, digits_qdd):
    r = evaluate_qdd(digits_qdd, digits, runs=1, epochs=20, batch_size=20, progress=False)
    assert r["file_bytes"] == digits_qdd.stat().st_size
    assert r["num_samples"] == 100
    assert r["accuracy"] > 50.0, r


def test_evaluate_qdd_reads_file_every_epoch(digits, digits_qdd, monkeypatch):
    import quadd_codec

    calls = []
    real = quadd_codec.QddDataset.__getitems__

    def spy(self, idx):
        calls.append(len(idx))
        return real(self, idx)

    monkeypatch.setattr(quadd_codec.QddDataset, "__getitems__", spy)
    evaluate_qdd(digits_qdd, digits, runs=1, epochs=3, batch_size=50, progress=False,
                 dsa=False)
    assert calls == [50] * 6


def test_parallel_runs_match_sequential_runs(digits, digits_qdd, monkeypatch):
    # The caller's config must reach the spawned workers too: a narrow net scores
    # differently from the default width, so a lost config would show below.
    kw = dict(runs=3, epochs=4, batch_size=20, progress=False, seed=5,
              config=EvalConfig(width=16))
    seq = evaluate_qdd(digits_qdd, digits, **kw)
    par = evaluate_qdd(digits_qdd, digits, jobs=2, **kw)
    assert par["jobs"] == 2 and seq["jobs"] == 1
    assert par["accuracies"] == seq["accuracies"]
    assert len(set(seq["accuracies"])) > 1  # the runs really are different seeds
    with pytest.raises(ValueError, match="jobs"):
        evaluate_qdd(digits_qdd, digits, jobs=0, **kw)

    # With a bar, the workers' epochs reach it as they happen (through a queue), and the
    # results do not change.
    import tqdm

    updates = []
    real_update = tqdm.tqdm.update

    def counting(self, n=1):
        updates.append(n)
        return real_update(self, n)

    monkeypatch.setattr(tqdm.tqdm, "update", counting)
    shown = evaluate_qdd(digits_qdd, digits, jobs=2, **{**kw, "progress": True})
    assert shown["accuracies"] == seq["accuracies"]
    assert sum(updates) == 3 * 4 and 1 in updates


def test_compile_default_only_for_long_cpu_runs():
    from quadd_train.eval.protocol import COMPILE_MIN_PIXELS, compile_default, sample_pixels

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert compile_default(cpu, COMPILE_MIN_PIXELS)
    assert not compile_default(cpu, COMPILE_MIN_PIXELS - 1)
    assert not compile_default(gpu, 10 * COMPILE_MIN_PIXELS)  # not measured there
    # A CIFAR-10 set of 630 images at 300 epochs compiles; the default demo-sized
    # digits evaluations (8x8 images) stay eager.
    cifar = type("B", (), {"im_size": (32, 32)})()
    digits8 = type("B", (), {"im_size": (8, 8)})()
    assert compile_default(cpu, sample_pixels(630, cifar, 300))
    assert not compile_default(cpu, sample_pixels(1000, digits8, 1000))


def test_eval_runtime_resolves_through_the_shared_runtime():
    from quadd_train.eval import eval_runtime
    from quadd_train.eval.protocol import COMPILE_MIN_PIXELS

    # Asked for, compile is what was asked; not asked for, the length rule decides.
    assert eval_runtime("cpu", True, 1).compile
    assert not eval_runtime("cpu", False, 10**12).compile
    assert eval_runtime("cpu", None, COMPILE_MIN_PIXELS).compile
    assert not eval_runtime("cpu", None, COMPILE_MIN_PIXELS - 1).compile
    for compile in (None, True, False):
        rt = eval_runtime("cpu", compile, COMPILE_MIN_PIXELS)
        # float32 training; NHWC exactly when compiled.
        assert rt.device == torch.device("cpu") and rt.bf16 is False
        assert rt.channels_last == rt.compile


def test_eval_config_is_a_frozen_value():
    import dataclasses

    cfg = EvalConfig()
    assert (cfg.lr, cfg.momentum, cfg.weight_decay, cfg.width, cfg.depth) == (
        0.01, 0.9, 5e-4, 128, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.width = 16  # type: ignore[misc]
    assert EvalConfig(width=16) == dataclasses.replace(cfg, width=16)


@pytest.mark.skipif(not any(shutil.which(c) for c in ("c++", "g++", "clang++")),
                    reason="torch.compile on the CPU needs a C++ compiler")
def test_compiled_training_learns_like_eager(digits, digits_qdd, monkeypatch):
    calls = []
    real_compile = torch.compile

    def spy(*a, **k):
        calls.append(k)
        return real_compile(*a, **k)

    monkeypatch.setattr(torch, "compile", spy)
    kw = dict(runs=1, epochs=20, batch_size=20, progress=False, seed=3)
    eager = evaluate_qdd(digits_qdd, digits, compile=False, **kw)
    assert not calls and eager["compile"] is False
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no silent fall-back to eager
        comp = evaluate_qdd(digits_qdd, digits, compile=True, **kw)
    assert calls == [{"dynamic": False}] and comp["compile"] is True
    # Same seed, same data order and initial weights; only float rounding differs.
    assert comp["accuracy"] > 50.0
    assert abs(comp["accuracy"] - eager["accuracy"]) < 10.0, (comp, eager)


class _FailsBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("no C++ compiler")


@pytest.mark.parametrize("where", ["compile", "forward", "backward"])
def test_failed_compile_falls_back_to_eager(digits, digits_qdd, monkeypatch, where):
    import quadd_train.eval.protocol as ev

    monkeypatch.setattr(ev, "_compile_broken", False)  # restored after the test

    def broken(model, **_):
        if where == "compile":
            raise RuntimeError("no C++ compiler")

        def fn(x):
            if where == "forward":
                raise RuntimeError("no C++ compiler")
            return _FailsBackward.apply(model(x))  # fails inside loss.backward()
        return fn

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler") as rec:
        r = evaluate_qdd(digits_qdd, digits, runs=2, epochs=20, batch_size=20,
                         progress=False, compile=True)
    assert len(rec) == 1  # the second run does not try again
    assert r["compile"] is False  # reports what ran
    assert r["accuracy"] > 50.0


def test_evaluate_qdd_class_mismatch(digits, tmp_path):
    x, y = _ipc_subset(digits, 1)
    p = _write_digits_qdd(tmp_path / "w.qdd", x, y, list("abcdefghij"))
    with pytest.raises(ValueError, match="classes"):
        evaluate_qdd(p, digits, runs=1, epochs=1, progress=False)


# -- CLI ----------------------------------------------------------------------------------


def test_cli_json(digits_qdd):
    res = CliRunner().invoke(
        eval_command,
        [str(digits_qdd), "--dataset", "digits", "--runs", "1", "--epochs", "2",
         "--device", "cpu", "--json", "--no-progress"],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    for key in ("accuracy", "std", "runs", "file_bytes"):
        assert key in out
    assert out["runs"] == 1 and out["file_bytes"] == digits_qdd.stat().st_size


def test_cli_jobs(digits_qdd):
    args = [str(digits_qdd), "--dataset", "digits", "--runs", "2", "--epochs", "1",
            "--device", "cpu", "--json", "--no-progress"]
    seq = json.loads(CliRunner().invoke(eval_command, args).stdout)
    res = CliRunner().invoke(eval_command, [*args, "--jobs", "4"])
    assert res.exit_code == 0, res.output
    par = json.loads(res.stdout)
    assert par["jobs"] == 2  # no more workers than runs
    assert par["accuracies"] == seq["accuracies"]


def test_cli_errors_are_one_line(tmp_path, digits_qdd):
    runner = CliRunner()
    res = runner.invoke(eval_command, [str(tmp_path / "none.qdd"), "--dataset", "digits"])
    assert res.exit_code == 1 and "no such file" in res.stderr
    assert "Traceback" not in res.output

    res = runner.invoke(eval_command, [str(digits_qdd), "--dataset", "mnist",
                                       "--data-dir", str(tmp_path)])
    assert res.exit_code == 1
    assert res.stderr.count("\n") == 1 and "--data-dir" in res.stderr

    bad = tmp_path / "bad.qdd"
    bad.write_bytes(b"not a qdd file at all" * 10)
    res = runner.invoke(eval_command, [str(bad), "--dataset", "digits"])
    assert res.exit_code == 1 and res.stderr.startswith("quadd: error:")
    assert "Traceback" not in res.output

"""Feature-vector data (N, F) end to end: the bundle and its rsrp_test, plan, distill
(tensor and channel codebooks, 1..32 bits), subset, eval with the MLP and its metrics;
the cross-architecture models and --model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from quadd_codec import Denorm, FileSpec, QddFile, quantize_array
from quadd_train.data import load_dataset
from quadd_train.eval import EvalConfig, evaluate_qdd
from quadd_train.eval.protocol import prediction_metrics
from quadd_train.nn.models import build_model

try:
    from quadd_cli.main import main
except ImportError:  # not installed: import from the source tree
    from cli.main import main

torch.set_num_threads(1)

F, K = 8, 4


def _vectors(path, rsrp=True, **extra):
    """Gaussian clusters in dBm-like units, per-feature offsets that differ, and a
    per-class quality where the true class is best by 5 dB (a second class by 0.5)."""
    rng = np.random.default_rng(0)
    centers = rng.normal(-90, 6, size=(K, F)) + np.arange(F) * 3

    def split(n):
        y = rng.integers(0, K, n)
        return (centers[y] + rng.normal(0, 2, size=(n, F))).astype(np.float32), y

    x_tr, y_tr = split(160)
    x_te, y_te = split(60)
    arrays = dict(x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te,
                  classes=np.array([f"beam{i}" for i in range(K)]))
    if rsrp:
        q = np.full((len(y_te), K), -100.0, dtype=np.float32)
        q[np.arange(len(y_te)), y_te] = -80.0
        q[np.arange(len(y_te)), (y_te + 1) % K] = -80.5
        arrays["rsrp_test"] = q
    arrays.update(extra)
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def vec_npz(tmp_path_factory):
    return _vectors(tmp_path_factory.mktemp("vec") / "vec.npz")


@pytest.fixture(scope="module")
def digits_qdd(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits") / "d.qdd"
    res = _run("subset", "--dataset", "digits", "--budget", "3KiB", "--bits", 4, "-o", out)
    assert res.exit_code == 0, res.output
    return out


def _run(*args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    return res


# -- the bundle ---------------------------------------------------------------------------


def test_vector_bundle_per_feature_statistics(vec_npz):
    b = load_dataset(str(vec_npz))
    assert b.sample_shape == (F,) and b.class_names == [f"beam{i}" for i in range(K)]
    assert b.mean.shape == (F,) and b.std.shape == (F,)
    z = b.normalize(b.x_train)
    assert torch.allclose(z.mean(0), torch.zeros(F), atol=1e-4)
    assert torch.allclose(z.std(0, unbiased=False), torch.ones(F), atol=1e-4)
    assert b.test_rsrp is not None and b.test_rsrp.shape == (60, K)
    assert b.test_rsrp.dtype == torch.float32


def test_rsrp_test_is_checked(tmp_path):
    bad = _vectors(tmp_path / "a.npz", rsrp=False, rsrp_test=np.zeros((60, K + 1)))
    with pytest.raises(ValueError, match=r"rsrp_test must have shape .*\(60, 4\)"):
        load_dataset(str(bad))
    nan = np.zeros((60, K), dtype=np.float32)
    nan[3, 1] = np.nan
    bad = _vectors(tmp_path / "b.npz", rsrp=False, rsrp_test=nan)
    with pytest.raises(ValueError, match="NaN"):
        load_dataset(str(bad))
    assert load_dataset(str(_vectors(tmp_path / "c.npz", rsrp=False))).test_rsrp is None


def test_metrics_on_a_hand_made_case():
    logits = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0],   # predicts 0, label 1
                           [1.0, 2.0, 3.0, 4.0, 5.0],   # predicts 4, label 0 (5th)
                           [0.0, 9.0, 0.0, 0.0, 0.0]])  # predicts 1, label 1
    y = torch.tensor([1, 0, 1])
    rsrp = torch.tensor([[-80.9, -80.0, -90.0, -90.0, -90.0],   # 0.9 dB below: within
                         [-70.0, -90.0, -90.0, -90.0, -71.5],   # 1.5 dB below: not
                         [-60.0, -61.0, -70.0, -70.0, -70.0]])  # exactly 1 dB: within
    m = prediction_metrics(logits, y, rsrp)
    assert (m["top1"], m["top2"], m["top4"], m["within_1db"]) == (1, 2, 2, 2)
    assert "within_1db" not in prediction_metrics(logits, y)


# -- plan / distill / subset / eval ---------------------------------------------------------


@pytest.mark.parametrize("group", ["tensor", "channel"])
@pytest.mark.parametrize("bits", [1, 2, 8, 32])
def test_vectors_plan_distill_eval(vec_npz, tmp_path, group, bits):
    # 8 codebooks of 256 float32 levels take 8 KiB alone.
    budget = 10_000 if (bits, group) == (8, "channel") else 6000
    quant = ["--quantizer", "none"] if bits == 32 else ["--bits", bits]
    res = _run("plan", "--dataset", vec_npz, "--budget", budget, "--group", group, "-n", 3,
               "--seed", 1, "--json")
    assert res.exit_code == 0, res.output
    rows = {r["bits"]: r for r in map(json.loads, res.stdout.splitlines())}
    out = tmp_path / "v.qdd"
    res = _run("distill", "--dataset", vec_npz, "--budget", budget, "--group", group,
               *quant, "-n", 3, "--seed", 1, "-o", out, "--json", "--no-progress")
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    size = out.stat().st_size
    assert size == r["file_bytes"] <= budget
    if bits in rows:  # plan lists 1, 2, 4, 8 and 32 by default
        assert (rows[bits]["ipc"], rows[bits]["file_bytes"]) == (r["ipc"], size)
    f = QddFile(out)
    # One channel per feature; one codebook for tensor, one per feature for channel.
    assert f.sample_shape == (F, 1) and f.bits == bits
    if bits != 32:
        assert f.levels.shape == ((1 if group == "tensor" else F), 2**bits)
    res = _run("eval", out, "--dataset", vec_npz, "--runs", 1, "--epochs", 3,
               "--device", "cpu", "--json", "--no-progress")
    assert res.exit_code == 0, res.output
    ev = json.loads(res.stdout)
    assert ev["model"] == "mlp" and ev["dsa"] is False and ev["num_samples"] == r["n"]
    for key in ("accuracy", "top2", "top4", "within_1db"):
        assert 0.0 <= ev[key] <= 100.0 and ev[f"{key}_std" if key != "accuracy" else "std"] >= 0
    assert ev["accuracy"] <= ev["top2"] <= ev["top4"] == 100.0  # 4 classes


def test_vectors_subset_and_eval_learns(vec_npz, tmp_path):
    out = tmp_path / "s.qdd"
    res = _run("subset", "--dataset", vec_npz, "--budget", 3000, "--bits", 4, "-o", out)
    assert res.exit_code == 0, res.output
    f = QddFile(out)
    assert f.sample_shape == (F, 1) and f.levels.shape == (1, 16)  # default: tensor
    b = load_dataset(str(vec_npz))
    ev = evaluate_qdd(out, b, runs=1, epochs=30, batch_size=32, progress=False,
                      config=EvalConfig(width=32, depth=2))
    # Well-separated clusters: the subset teaches the MLP the classes.
    assert ev["accuracy"] > 80.0 and ev["within_1db"] >= ev["accuracy"]


def test_flat_vector_files_are_read_too(vec_npz, tmp_path):
    """A file of (F,) samples (one channel, one shared normalization) evaluates alike."""
    b = load_dataset(str(vec_npz))
    mean, std = float(b.x_train.mean()), float(b.x_train.std())
    x = ((b.x_train[:40] - mean) / std).numpy()
    codes, levels = quantize_array(x, 4, "uniform", "tensor")
    spec = FileSpec(b.class_names, (F,), 4, group="tensor",
                    denorm=Denorm(scale=[std], offset=[mean]))
    path = tmp_path / "flat.qdd"
    spec.write(path, codes, levels, b.y_train[:40].numpy())
    ev = evaluate_qdd(path, b, runs=1, epochs=2, batch_size=16, progress=False,
                      config=EvalConfig(width=16, depth=1))
    assert ev["num_samples"] == 40 and ev["model"] == "mlp"


def test_vector_errors_are_one_line(vec_npz, tmp_path, digits_qdd):
    out = tmp_path / "u.qdd"
    res = _run("distill", "--dataset", vec_npz, "--budget", 3000, "--upsample", 2,
               "-n", 1, "-o", out)
    assert res.exit_code == 1 and "upsample needs image samples" in res.stderr
    assert not out.exists() and "Traceback" not in res.output
    res = _run("subset", "--dataset", vec_npz, "--budget", 3000, "--upsample", 2, "-o", out)
    assert res.exit_code == 1 and "upsample needs image samples" in res.stderr
    res = _run("subset", "--dataset", vec_npz, "--budget", 3000, "-o", out)
    assert res.exit_code == 0
    for model in ("convnet", "alexnet"):
        res = _run("eval", out, "--dataset", vec_npz, "--model", model, "--epochs", 1)
        assert res.exit_code == 1 and res.stderr.count("\n") == 1
        assert "needs image samples" in res.stderr and "--model mlp" in res.stderr
    # An image set against vector data: the shapes differ.
    res = _run("eval", digits_qdd, "--dataset", vec_npz, "--epochs", 1)
    assert res.exit_code == 1 and res.stderr.startswith("quadd: error:")
    # Too small for the network: 8x8 digits on VGG-11.
    res = _run("eval", digits_qdd, "--dataset", "digits", "--model", "vgg11", "--epochs", 1)
    assert res.exit_code == 1 and "at least 32x32" in res.stderr


def test_image_eval_keeps_its_record_and_adds_metrics(digits, digits_qdd):
    ev = evaluate_qdd(digits_qdd, digits, runs=1, epochs=2, batch_size=50, progress=False,
                      config=EvalConfig(width=16))
    assert ev["model"] == "convnet" and ev["dsa"] is True and ev["within_1db"] is None
    assert ev["accuracies"] == [ev["accuracy"]] and ev["accuracy"] <= ev["top2"] <= ev["top4"]
    mlp = evaluate_qdd(digits_qdd, digits, runs=1, epochs=2, batch_size=50, progress=False,
                       config=EvalConfig(width=16, model="mlp"))
    assert mlp["model"] == "mlp"


# -- the cross-architecture models ----------------------------------------------------------


@pytest.mark.parametrize(("name", "shape"), [
    ("alexnet", (1, 28, 28)), ("alexnet", (3, 32, 32)), ("alexnet", (1, 8, 8)),
    ("vgg11", (1, 28, 28)), ("vgg11", (3, 32, 32)),
    ("resnet18", (1, 28, 28)), ("resnet18", (3, 32, 32)), ("resnet18", (3, 16, 16)),
    ("mlp", (8,)), ("mlp", (1, 8, 8)), ("convnet", (1, 8, 8)),
])
def test_models_forward_backward(name, shape):
    torch.manual_seed(0)
    net = build_model(name, shape, 10, width=16, depth=2)
    x = torch.randn(3, *shape, requires_grad=True)
    out = net(x)
    assert out.shape == (3, 10)
    assert net.embed(x).shape == (3, net.num_features)
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize(("name", "shape", "match"), [
    ("vgg11", (1, 8, 8), "at least 32x32"), ("vgg11", (3, 28, 28), "at least 32x32"),
    ("resnet18", (1, 8, 8), "at least 16x16"), ("alexnet", (1, 2, 2), "too small"),
    ("resnet18", (8,), "needs image samples"), ("lenet", (1, 8, 8), "unknown model"),
])
def test_models_refuse_what_they_cannot_take(name, shape, match):
    with pytest.raises(ValueError, match=match):
        build_model(name, shape, 10)


def test_a_test_split_replaced_without_its_rsrp_is_refused(vec_npz):
    import dataclasses

    from quadd_train.auto_bits import proxy_bundles

    b = load_dataset(str(vec_npz))
    with pytest.raises(ValueError, match="test_rsrp has shape"):
        dataclasses.replace(b, x_test=b.x_test[:5], y_test=b.y_test[:5])
    pilot = proxy_bundles(b, 0.1, 0)  # --bits auto scores on a held-out train slice
    assert pilot.test_rsrp is None and len(pilot.y_test) > 0

"""Gradient matching (``--method gm``): the distance, the objective on images and on
feature vectors, every quantizer with it, the command line, and exact resumption."""

from __future__ import annotations

import doctest
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli.main import main
from quadd_codec import QddFile
from quadd_train import DistillConfig, distill
from quadd_train.objectives import make_objective
from quadd_train.objectives.gm import match, objective, options
from quadd_train.objectives.gm.match import gradient_distance

pytestmark = pytest.mark.usefixtures("one_thread")

BUDGET = 2048
# A small network and real batch: the method as it runs, at a size that takes seconds.
TINY = {"width": 16, "depth": 1, "batch_real": 16, "outer_loop": 3, "inner_loop": 1}


def _cfg(**kw) -> DistillConfig:
    gm = {**TINY, **kw.pop("gm", {})}
    base = dict(budget_bytes=BUDGET, bits=2, quantizer="uniform", iterations=4, seed=3,
                ipc=2, method="gm")
    base.update(kw)
    return DistillConfig(**base, objective_options=gm)


@pytest.mark.parametrize("module", [match, options, objective])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0


def test_package_doctest():
    import quadd_train.objectives.gm as gm

    assert doctest.testmod(gm).failed == 0


def test_distance_is_per_output_unit_cosine():
    a = [torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.ones(2)]
    b = [torch.tensor([[2.0, 0.0], [1.0, 0.0]]), -torch.ones(2)]  # biases count nothing
    # Row 1 parallel (0), row 2 orthogonal (1).
    assert float(gradient_distance(a, b)) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="real gradients"):
        gradient_distance(a, b[:1])


def _real(shape, n_per_class=12, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(k).repeat_interleave(n_per_class)
    x = torch.randn(k * n_per_class, *shape, generator=g) + y.view(-1, *[1] * len(shape))
    return x, y


@pytest.mark.parametrize("shape", [(1, 8, 8), (10,)], ids=["image", "vector"])
def test_loss_decreases_on_a_fixed_network(shape):
    # One network for every step, no training between, the whole class as the real batch
    # and no augmentation: the real gradients are fixed, so plain descent must reduce it.
    x, y = _real(shape)
    gm = make_objective("gm", {"width": 16, "depth": 1, "batch_real": 64, "dsa": False,
                               "outer_loop": 100, "inner_loop": 0})
    gm.prepare(x, y, 3, 2, "cpu", seed=0)
    syn = torch.randn(6, *shape, generator=torch.Generator().manual_seed(1),
                      requires_grad=True)
    labels = torch.arange(3).repeat_interleave(2)
    opt = torch.optim.SGD([syn], lr=1.0, momentum=0.5)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(15):
        loss = gm.loss(syn, labels, rng)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert gm.report()["gm_networks"] == 1
    assert losses[-1] < 0.8 * losses[0], losses


def test_vector_samples_use_the_mlp_unaugmented_and_resume_mid_network():
    x, y = _real((10,))
    opts = {"width": 8, "depth": 2, "batch_real": 5, "outer_loop": 4, "inner_loop": 2,
            "batch_train": 4}
    labels = torch.arange(3).repeat_interleave(2)

    def run(gm, syn, rng, steps):
        return [float(gm.loss(syn, labels, rng).detach()) for _ in range(steps)]

    a = make_objective("gm", opts)
    a.prepare(x, y, 3, 2, "cpu", seed=0)
    assert a.report()["gm_model"] == "mlp"
    syn = torch.randn(6, 10, requires_grad=True)
    rng = np.random.default_rng(5)
    first = run(a, syn, rng, 2)  # a fresh network, then one trained on syn
    assert all(np.isfinite(first))
    loss = a.loss(syn, labels, rng)
    loss.backward()
    assert syn.grad is not None and syn.grad.abs().sum() > 0
    # Snapshot mid-network (the next step trains this network, then matches).
    state = a.state_dict()
    rng_state, torch_state = rng.bit_generator.state, torch.get_rng_state()
    after = run(a, syn, rng, 3)  # finishes this network and starts another
    assert a.report()["gm_networks"] == 2

    b = make_objective("gm", opts)
    b.load_state_dict(state)
    b.prepare(x, y, 3, 2, "cpu", seed=0)
    rng.bit_generator.state = rng_state
    torch.set_rng_state(torch_state)
    assert run(b, syn, rng, 3) == after


def test_distill_digits_writes_a_valid_file(tmp_path, digits):
    out = tmp_path / "gm.qdd"
    res = distill(_cfg(iterations=4), digits, out, progress=False)
    f = QddFile(out)
    assert res.file_bytes == out.stat().st_size <= BUDGET
    assert f.n == res.n == 20 and res.bits == 2
    assert res.report["gm_outer_loop"] == 3 and res.report["gm_model"] == "convnet"
    assert res.report["gm_networks"] == 2  # steps 1-3 on one network, step 4 a new one
    assert np.isfinite(res.final_loss)
    assert np.isfinite(f.read_all()).all()


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@pytest.mark.parametrize("quantizer", ["uniform", "apot", "learned"])
def test_every_quantizer_runs_with_gm(tmp_path, digits, quantizer, bits):
    out = tmp_path / f"{quantizer}{bits}.qdd"
    res = distill(_cfg(quantizer=quantizer, bits=bits, ipc=1, iterations=2,
                       gm={"outer_loop": 2}),
                  digits, out, progress=False)
    f = QddFile(out)
    assert res.bits == bits and f.n == 10 and res.file_bytes <= BUDGET
    assert np.isfinite(res.final_loss)
    # The file holds at most 2**bits distinct values per codebook.
    assert len(np.unique(f.read_all())) <= 2 ** bits


def test_resume_matches_uninterrupted(tmp_path, digits):
    # outer_loop 3: the checkpoint at step 4 falls mid-network (its step 2 of 3), so the
    # network, its optimizer's momentum and the loop position must all come back.
    full = tmp_path / "full.qdd"
    distill(_cfg(iterations=7), digits, full, progress=False)
    part, ckpt = tmp_path / "part.qdd", tmp_path / "part.ckpt"
    distill(_cfg(iterations=4, checkpoint_every=4, checkpoint_path=str(ckpt)), digits, part,
            progress=False)
    res = distill(_cfg(iterations=7, checkpoint_path=str(ckpt), resume=True), digits, part,
                  progress=False)
    assert res.resumed_from == 4
    assert full.read_bytes() == part.read_bytes()
    # A GM option is part of what the checkpoint must match.
    with pytest.raises(ValueError, match="lr_net"):
        distill(_cfg(iterations=7, checkpoint_path=str(ckpt), resume=True,
                     gm={"lr_net": 0.05}), digits, tmp_path / "other.qdd", progress=False)


def test_cli_distill_gm(tmp_path):
    out = tmp_path / "cli.qdd"
    r = CliRunner().invoke(main, [
        "distill", "--method", "gm", "-b", str(BUDGET), "--bits", "2", "--ipc", "2",
        "-n", "3", "--gm-width", "16", "--gm-depth", "1", "--gm-batch-real", "16",
        "--gm-inner-loop", "1", "--gm-outer-loop", "2", "--gm-no-dsa", "--no-progress",
        "--json", "-o", str(out)])
    assert r.exit_code == 0, r.output
    result = json.loads(r.output.strip().splitlines()[-1])
    assert result["gm_outer_loop"] == 2 and result["gm_inner_loop"] == 1
    assert QddFile(out).n == 20 and out.stat().st_size <= BUDGET


@pytest.mark.parametrize("args, says", [
    (["--gm-batch-real", "0"], "--gm-batch-real"),
    (["--opt", "loss_scale=0"], "loss_scale must be > 0"),
    (["--opt", "model=nope"], "unknown model 'nope'"),
    (["--no-dsa"], "--no-dsa is an option of --method dm"),
])
def test_cli_refuses_bad_gm_options(tmp_path, args, says):
    out = tmp_path / "bad.qdd"
    r = CliRunner().invoke(main, ["distill", "--method", "gm", "-b", str(BUDGET), "-n", "1",
                                  "--no-progress", "-o", str(out), *args])
    assert r.exit_code != 0 and says in r.output, r.output
    assert not out.exists()

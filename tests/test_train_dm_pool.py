"""Fast DM's network pool: its default size, and trained networks (``pool_train_steps``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli.main import main
from quadd_train import DistillConfig, distill
from quadd_train.objectives import dm
from quadd_train.objectives.dm import DMObjective, default_mode, default_pool, default_syn_chunk
from quadd_train.runtime import resolve_runtime

pytestmark = pytest.mark.usefixtures("one_thread")


def _real(bundle):
    return bundle.normalize(bundle.x_train.float())


def _prepared(bundle, steps: int, pool: int = 3) -> DMObjective:
    obj = DMObjective(pool_size=pool, real_per_class=16, pool_train_steps=steps,
                      pool_train_lr=0.1, pool_train_batch=64)
    obj.prepare(_real(bundle), bundle.y_train, 10, 2, torch.device("cpu"),
                seed=1)
    return obj


def _real_loss(obj: DMObjective, net_index: int, bundle) -> float:
    with torch.no_grad():
        logits = obj._nets[net_index](_real(bundle))
        return float(torch.nn.functional.cross_entropy(logits, bundle.y_train))


def test_pool_networks_are_trained_in_proportion(digits):
    rand = _prepared(digits, 0)
    trained = _prepared(digits, 60)
    # Network 0 trains for 0 steps: the same weights and means as the random pool.
    for a, b in zip(rand._nets[0].parameters(), trained._nets[0].parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(rand._pool_means[0], trained._pool_means[0])
    # The last one trained for all 60 steps and fits the real data better.
    assert _real_loss(trained, 2, digits) < 0.75 * _real_loss(rand, 2, digits)
    assert _real_loss(trained, 2, digits) < _real_loss(trained, 1, digits)
    assert not torch.equal(rand._pool_means[2], trained._pool_means[2])
    # Frozen again for distillation: only the synthetic samples get gradients.
    assert not any(p.requires_grad for net in trained._nets for p in net.parameters())


def test_trained_pool_resumes_exactly_without_retraining(tmp_path, digits, capsys):
    pool = dict(pool_size=3, real_per_class=16, pool_train_steps=6)
    cfg = dict(budget_bytes=4096, bits=2, iterations=4, seed=3, ipc=4,
               objective_options=pool)
    distill(DistillConfig(**cfg), digits, tmp_path / "full.qdd", progress=False)
    ckpt = tmp_path / "p.ckpt"
    distill(DistillConfig(**{**cfg, "iterations": 2}, checkpoint_every=2,
                          checkpoint_path=str(ckpt)), digits, tmp_path / "part.qdd",
            progress=True)
    assert "training networks" in capsys.readouterr().err
    res = distill(DistillConfig(**cfg, checkpoint_path=str(ckpt), resume=True), digits,
                  tmp_path / "part.qdd", progress=True)
    assert res.resumed_from == 2
    assert "training networks" not in capsys.readouterr().err
    assert (tmp_path / "full.qdd").read_bytes() == (tmp_path / "part.qdd").read_bytes()
    # Another number of steps is another pool: no silent reuse.
    with pytest.raises(ValueError, match="pool_train_steps"):
        distill(DistillConfig(**{**cfg, "objective_options": {**pool, "pool_train_steps": 7}},
                              checkpoint_path=str(ckpt),
                              resume=True), digits, tmp_path / "other.qdd", progress=False)


def test_checkpointed_pool_from_before_the_knob_is_reused(digits):
    obj = _prepared(digits, 0)
    state = obj.state_dict()
    del state["cfg"]["pool_train_steps"]  # as written before the knob existed
    again = DMObjective(pool_size=3, real_per_class=16)  # unused training knobs differ
    again.load_state_dict(state)
    assert again._pool_means is state["pool_means"]
    trained = DMObjective(pool_size=3, real_per_class=16, pool_train_steps=5,
                          pool_train_lr=0.1, pool_train_batch=64)
    trained.load_state_dict(state)
    assert trained._pool_means is None  # a random pool is not a trained one


def test_pool_training_needs_the_fast_mode(tmp_path):
    with pytest.raises(ValueError, match="fast DM mode"):
        DMObjective(mode="plain", pool_train_steps=3)
    res = CliRunner().invoke(main, [
        "distill", "--dataset", "digits", "--budget", "4KiB", "--dm-mode", "plain",
        "--pool-train-steps", "3", "-o", str(tmp_path / "x.qdd"),
    ])
    assert res.exit_code != 0
    assert "fast DM mode" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "x.qdd").exists()


def test_the_automatic_loop_is_plain_on_a_gpu_unless_a_pool_is_asked_for(digits):
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert default_mode(gpu) == "plain" and default_mode("cuda") == "plain"
    assert default_mode(cpu) == "fast" and default_mode(cpu, pool_size=4) == "fast"
    for ask in (dict(pool_size=512), dict(real_per_class=64), dict(pool_train_steps=5),
                dict(pool_order="random")):
        assert default_mode(gpu, **ask) == "fast", ask
    obj = DMObjective(pool_size=2, real_per_class=4)
    assert obj.options.mode == "auto"
    obj.prepare(_real(digits), digits.y_train, 10, 1, torch.device("cpu"), seed=0)
    assert obj.mode == "fast" and obj.state_dict()["cfg"]["mode"] == "fast"
    # Restored, it keeps the loop the state was made by.
    plain = DMObjective(mode="plain")
    plain.prepare(_real(digits), digits.y_train, 10, 1, torch.device("cpu"), seed=0)
    again = DMObjective()
    again.load_state_dict(plain.state_dict())
    again.prepare(_real(digits), digits.y_train, 10, 1, torch.device("cpu"), seed=0)
    assert again.mode == "plain" and again._pool_means is None
    with pytest.raises(ValueError, match="DM mode"):
        DMObjective(mode="fastest")


def test_the_default_pool_depends_on_the_device_and_run_length():
    # No GPU is needed to ask: the default depends on the device type and run length.
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    # A GPU: one entry of 256 real images per class per iteration, no reuse.
    assert default_pool(gpu, 1000) == (1000, 256)
    assert default_pool(torch.device("cuda", 1), 10_000) == (4096, 256)  # capped
    # A CPU: one entry per 4 iterations, of the same 256 images.
    assert default_pool(cpu, 1000) == (250, 256)
    assert default_pool(cpu, 1001) == (251, 256)
    assert default_pool(cpu, 2) == (1, 256)
    assert default_pool(cpu, 0) == (1, 256)
    assert default_pool(cpu, 100_000) == (2048, 256)  # capped
    assert default_pool(cpu) == default_pool(cpu, 1000)
    # What is given is kept.
    assert default_pool(cpu, 1000, pool_size=128) == (128, 256)
    assert default_pool(cpu, 1000, real_per_class=64) == (250, 64)
    assert default_pool(gpu, 1000, 7, 9) == (7, 9)


def test_an_unset_pool_takes_the_default_and_resumes(digits):
    obj = DMObjective()
    obj.prepare(_real(digits), digits.y_train, 10, 1, torch.device("cpu"), seed=0,
                iterations=24)
    assert len(obj._nets) == obj._pool_means.shape[0] == obj.pool_size == 6
    # The state records what was built; an objective with nothing asked for takes the
    # saved pool whatever its own default (here: 5 x 2 from elsewhere).
    state = obj.state_dict()
    assert (state["cfg"]["pool_size"], state["cfg"]["real_per_class"]) == (6, 256)
    small = DMObjective(pool_size=5, real_per_class=2)
    small.prepare(_real(digits), digits.y_train, 10, 1, torch.device("cpu"), seed=0)
    again = DMObjective()
    again.load_state_dict(small.state_dict())
    again.prepare(_real(digits), digits.y_train, 10, 1, torch.device("cpu"), seed=0,
                  iterations=6)
    assert (again.pool_size, again.real_per_class, len(again._nets)) == (5, 2, 5)
    assert torch.equal(again._pool_means, small._pool_means)
    for differs in (dict(pool_size=6, real_per_class=2), dict(pool_size=5, real_per_class=3)):
        other = DMObjective(**differs)  # an explicit setting that differs
        other.load_state_dict(small.state_dict())
        assert other._pool_means is None
    with pytest.raises(ValueError, match="pool_size"):
        DMObjective(pool_size=0)
    with pytest.raises(ValueError, match="real_per_class"):
        DMObjective(real_per_class=0)


def test_a_pool_too_large_to_keep_rebuilds_its_networks_identically(digits, monkeypatch):
    def run() -> tuple[DMObjective, list[float]]:
        obj = DMObjective(pool_size=4, real_per_class=8)
        obj.prepare(_real(digits), digits.y_train, 10, 2, torch.device("cpu"), seed=2)
        syn = _real(digits)[:20].clone()
        rng = np.random.default_rng(0)
        return obj, [float(obj.loss(syn, None, rng)) for _ in range(6)]

    kept, kept_losses = run()
    monkeypatch.setattr(dm.pool, "CPU_RESIDENT_NET_BYTES", 0)
    rebuilt, rebuilt_losses = run()
    assert len(kept._nets) == 4 and rebuilt._nets == []
    assert torch.equal(kept._pool_means, rebuilt._pool_means)
    assert rebuilt_losses == kept_losses


def _draws(obj: DMObjective, n: int, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    return [obj._draw(rng) for _ in range(n)]


def test_shuffled_passes_draw_every_entry_once_before_any_again(digits):
    obj = _prepared(digits, 0, pool=5)  # the default order
    assert obj.options.pool_order == "shuffle"
    seq = _draws(obj, 15)
    for k in range(3):
        assert sorted(seq[5 * k: 5 * k + 5]) == list(range(5))
    assert seq[:5] != seq[5:10]  # each pass in its own order
    # Independent draws repeat entries within a pass's length (this seed does).
    rand = DMObjective(pool_size=5, real_per_class=16, pool_order="random")
    rand.pool_size = obj.pool_size
    assert any(len(set(w)) < 5 for w in (_draws(rand, 15)[i:i + 5] for i in range(0, 15, 5)))
    with pytest.raises(ValueError, match="pool_order"):
        DMObjective(pool_order="cyclic")


def test_the_pass_position_survives_a_checkpoint(digits):
    obj = _prepared(digits, 0, pool=4)
    rng = np.random.default_rng(1)
    first = [obj._draw(rng) for _ in range(2)]  # mid-pass
    state, rng_state = obj.state_dict(), rng.bit_generator.state
    rest = [obj._draw(rng) for _ in range(6)]
    again = DMObjective(pool_size=4, real_per_class=16, pool_train_lr=0.1,
                        pool_train_batch=64)
    again.load_state_dict(state)
    again.prepare(_real(digits), digits.y_train, 10, 2, torch.device("cpu"), seed=1)
    rng2 = np.random.default_rng()
    rng2.bit_generator.state = rng_state
    assert [again._draw(rng2) for _ in range(6)] == rest
    assert sorted(first + rest[:2]) == list(range(4))
    # A checkpoint from before shuffled passes has no position: a fresh pass starts.
    del state["pool_order"]
    old = DMObjective(pool_size=4, real_per_class=16, pool_train_lr=0.1, pool_train_batch=64)
    old.load_state_dict(state)
    assert old._pool_means is state["pool_means"] and old._order is None


def test_pool_order_on_the_command_line(tmp_path):
    res = CliRunner().invoke(main, [
        "distill", "--dataset", "digits", "--budget", "4KiB", "--pool-order", "cyclic",
        "-o", str(tmp_path / "x.qdd"),
    ])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "'shuffle'" in res.output and not (tmp_path / "x.qdd").exists()
    with pytest.raises(ValueError, match="pool_order"):
        DistillConfig(objective_options={"pool_order": "cyclic"}).validate()


@pytest.mark.parametrize(("mode", "compile_"), [("fast", False), ("plain", False),
                                               ("fast", True)])
def test_a_large_synthetic_set_is_embedded_in_pieces_with_the_same_loss_and_gradient(
        digits, mode, compile_, monkeypatch):
    # 50 images in 8 even pieces of at most 7 cut through classes of 5; each piece's
    # activations are recomputed in the backward pass instead of kept, and nothing else
    # changes.
    import torch.utils.checkpoint as ckpt

    calls = []
    real_checkpoint = ckpt.checkpoint

    def counting(fn, *args, **kwargs):
        calls.append(args[1].shape[0])
        return real_checkpoint(fn, *args, **kwargs)

    monkeypatch.setattr(ckpt, "checkpoint", counting)
    syn = torch.randn(50, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    results = []
    for chunk in (None, 7):
        obj = DMObjective(mode=mode, pool_size=2, real_per_class=16, batch_real=16,
                          syn_chunk=chunk)
        obj.prepare(_real(digits), digits.y_train, 10, 5,
                    resolve_runtime("cpu", bf16=False, compile=compile_), seed=1)
        assert obj.syn_chunk == 7 if chunk else obj.syn_chunk >= 50  # all 50 in one
        x = syn.clone().requires_grad_(True)
        loss = obj.loss(x, None, np.random.default_rng(0))
        loss.backward()
        results.append((loss.detach(), x.grad))
    assert sorted(calls) == [6] * 6 + [7] * 2
    (whole, g_whole), (pieces, g_pieces) = results
    torch.testing.assert_close(pieces, whole)
    torch.testing.assert_close(g_pieces, g_whole)
    assert g_whole.abs().sum() > 0
    with pytest.raises(ValueError, match="syn_chunk"):
        DMObjective(syn_chunk=0)


def test_the_default_piece_bounds_the_kept_activations():
    from quadd_train.nn.convnet import ConvNet

    cpu = torch.device("cpu")
    net = ConvNet(3, 10, (32, 32))
    # Every layer's output, about 2.1 MiB per 32x32 image at width 128 in fp32 (2.05 MiB
    # measured); half in bf16 on a CPU.
    fp32 = default_syn_chunk(cpu, net, False)
    assert 2.0 < dm.SYN_ACTIVATION_BYTES / fp32 / 2**20 < 2.2
    assert default_syn_chunk(cpu, net, True) == 2 * fp32
    # Without pooling every block keeps a full-size map.
    flat = default_syn_chunk(cpu, ConvNet(3, 10, (32, 32), pooling="none"), False)
    assert 2 * flat < fp32 < 3 * flat


def test_pieces_fall_back_to_eager_when_the_compiled_embedding_fails(digits):
    obj = DMObjective(pool_size=2, real_per_class=16, syn_chunk=7)
    obj.prepare(_real(digits), digits.y_train, 10, 5, resolve_runtime("cpu", bf16=False),
                seed=1)
    syn = torch.randn(50, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    x = syn.clone().requires_grad_(True)
    eager = obj.entry_loss(x, 0)
    eager.backward()

    def broken(net, x):
        raise RuntimeError("no compiler here")

    obj._compiled = {"syn": broken}
    y = syn.clone().requires_grad_(True)
    with pytest.warns(RuntimeWarning, match="no compiler here"):
        loss = obj.entry_loss(y, 0)
    loss.backward()
    assert not obj._compiled
    torch.testing.assert_close(loss.detach(), eager.detach())
    torch.testing.assert_close(y.grad, x.grad)


def test_a_compiled_cpu_run_takes_channels_last_and_drops_it_if_compiling_fails(
        digits, monkeypatch):
    # Compiled NHWC steps measured faster than NCHW on the CPU, eager ones twice as slow:
    # the default layout follows whether the embedding is compiled, and a failed compile
    # takes the run back to NCHW from the next pool entry or iteration on.
    def setup(compile=None, channels_last=None, **kwargs):
        obj = DMObjective(pool_size=2, real_per_class=16, **kwargs)
        runtime = resolve_runtime("cpu", bf16=False, compile=compile,
                                  channels_last=channels_last)
        obj.prepare(_real(digits), digits.y_train, 10, 2, runtime, seed=1)
        return obj

    def layout_of(obj):
        return {p.is_contiguous(memory_format=torch.channels_last)
                for net in obj._nets for p in net.parameters()
                if p.dim() == 4 and p.shape[1] > 1}  # one input channel: both layouts

    eager = setup()
    assert not eager.channels_last and layout_of(eager) == {False}

    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)  # "compiles" to eager
    compiled = setup(compile=True)
    assert compiled.channels_last and layout_of(compiled) == {True}
    torch.testing.assert_close(compiled._pool_means, eager._pool_means)

    def broken(fn, **kwargs):
        def run(net, x):
            raise RuntimeError("no compiler here")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(RuntimeWarning, match="no compiler here"):
        failed = setup(compile=True)  # fails on the first real batch of entry 0
    assert not failed.channels_last and layout_of(failed) == {False}
    torch.testing.assert_close(failed._pool_means, eager._pool_means)
    with pytest.warns(RuntimeWarning, match="no compiler here"):
        asked = setup(compile=True, channels_last=True)  # what was asked for stays
    assert asked.channels_last and layout_of(asked) == {True}

    # A failure inside a loss call finishes that call (its pieces' recomputation must see
    # the layout their forward saw) and switches before the next one.
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)
    obj = setup(compile=True, syn_chunk=7)
    obj._compiled = {"syn": broken(None)}
    syn = torch.randn(20, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    x = syn.clone().requires_grad_(True)
    with pytest.warns(RuntimeWarning, match="no compiler here"):
        loss = obj.loss(x, None, np.random.default_rng(0))
    assert obj.channels_last
    loss.backward()
    reference = setup()
    y = syn.clone().requires_grad_(True)
    reference.loss(y, None, np.random.default_rng(0)).backward()
    torch.testing.assert_close(x.grad, y.grad)
    obj.loss(syn, None, np.random.default_rng(0))
    assert not obj.channels_last and layout_of(obj) == {False}

"""The objective plug point: a new objective is one class, registered by a decorator or
an entry point, and runs through ``distill`` and ``quadd distill`` with its options."""

from __future__ import annotations

import doctest
import importlib.metadata
import json
import sys
import types
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli.main import main
from quadd_codec import QddFile
from quadd_train import DistillConfig, distill
from quadd_train.objectives import (
    ENTRY_POINT_GROUP,
    Objective,
    get_objective,
    make_objective,
    objective_names,
    register_objective,
)
from quadd_train.registry import PluginError

pytestmark = pytest.mark.usefixtures("one_thread")


class MeanMatch(Objective):
    """Match each class's mean sample to its real mean, shifted by a learned offset that
    is pulled towards ``target``: an objective with a parameter of its own."""

    instances: list[MeanMatch] = []

    @dataclass
    class Options:
        scale: float = field(default=1.0, metadata={"help": "Weight of the mean term."})
        target: float = field(default=0.0, metadata={"help": "Offset target.", "flag": None})

    def __init__(self, **options):
        super().__init__(**options)
        if self.options.scale <= 0:
            raise ValueError("scale must be > 0")
        MeanMatch.instances.append(self)

    def prepare(self, x_real, y_real, num_classes, ipc, runtime, seed, progress=False,
                iterations=None):
        self.k = num_classes
        self.means = torch.stack([x_real[y_real == c].mean(0) for c in range(num_classes)])
        self.means = self.means.to(runtime.device)
        self.offset = torch.zeros((), device=runtime.device, requires_grad=True)

    def loss(self, syn, labels, rng):
        syn_means = syn.reshape(self.k, -1, *syn.shape[1:]).mean(1)
        noise = float(rng.normal()) * 1e-3  # draws from the loop's generator
        match = ((syn_means - self.means - self.offset) ** 2).mean()
        return self.options.scale * match + (self.offset - self.options.target - noise) ** 2

    def parameters(self):
        return [{"params": [self.offset], "lr": 0.2}]

    def report(self):
        return {"offset": float(self.offset.detach())}

    def summary(self, prepare_seconds):
        return f"mean match, offset {float(self.offset.detach()):.3f}"


register_objective("mean-match")(MeanMatch)


def _cfg(**kw) -> DistillConfig:
    base = dict(budget_bytes=4096, bits=2, iterations=6, seed=3, ipc=4, method="mean-match",
                objective_options={"scale": 0.5, "target": 1.0})
    base.update(kw)
    return DistillConfig(**base)


def test_a_registered_objective_runs_and_trains_its_own_parameter(tmp_path, digits):
    assert "mean-match" in objective_names() and get_objective("mean-match") is MeanMatch
    MeanMatch.instances.clear()
    res = distill(_cfg(), digits, tmp_path / "m.qdd", progress=False)
    obj = MeanMatch.instances[-1]
    assert obj.options.scale == 0.5
    assert 0 < res.report["offset"] == float(obj.offset.detach())  # pulled towards 1
    assert res.summary.startswith("mean match")
    assert res.to_dict()["offset"] == res.report["offset"]
    assert QddFile(tmp_path / "m.qdd").n == 40
    with pytest.raises(ValueError, match="unknown mean-match option"):
        distill(_cfg(objective_options={"scael": 1}), digits, tmp_path / "x.qdd",
                progress=False)
    with pytest.raises(ValueError, match="scale must be > 0"):
        _cfg(objective_options={"scale": 0}).validate()


def test_an_objective_parameter_is_checkpointed_and_resumed(tmp_path, digits):
    full = tmp_path / "full.qdd"
    MeanMatch.instances.clear()
    whole = distill(_cfg(), digits, full, progress=False)
    ckpt = tmp_path / "part.ckpt"
    distill(_cfg(iterations=3, checkpoint_every=3, checkpoint_path=str(ckpt)), digits,
            tmp_path / "part.qdd", progress=False)
    state = torch.load(ckpt, weights_only=True)
    assert state["objective_fingerprint"] == {"scale": 0.5, "target": 1.0}
    assert float(state["objective_params"][0]) == float(MeanMatch.instances[-1].offset.detach())
    assert state["opt_objective"] is not None
    res = distill(_cfg(checkpoint_path=str(ckpt), resume=True), digits,
                  tmp_path / "part.qdd", progress=False)
    assert res.resumed_from == 3 and res.report == whole.report
    assert full.read_bytes() == (tmp_path / "part.qdd").read_bytes()
    with pytest.raises(ValueError, match=r"different settings \(scale 0.5 there, 2.0 now"):
        distill(_cfg(objective_options={"scale": 2.0, "target": 1.0},
                     checkpoint_path=str(ckpt), resume=True), digits,
                tmp_path / "other.qdd", progress=False)


def test_the_command_line_takes_the_objective_and_its_options(tmp_path):
    out = tmp_path / "c.qdd"
    runner = CliRunner()
    base = ["distill", "--budget", "4KiB", "--bits", "2", "-n", "3", "--ipc", "2",
            "--method", "mean-match"]
    res = runner.invoke(main, [*base, "--mean-match-scale", "2", "--opt", "target=0.5",
                               "--json", "-o", str(out)])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)
    assert "offset" in row and "pool_size" not in row
    assert MeanMatch.instances[-1].options.scale == 2.0
    assert MeanMatch.instances[-1].options.target == 0.5
    res = runner.invoke(main, [*base, "--force", "-o", str(out)])
    assert res.exit_code == 0 and "3 iterations (mean match, offset" in res.stdout
    # A flag of another objective names both; a bad --opt is a usage error too.
    res = runner.invoke(main, [*base, "--pool-size", "4", "-o", str(out)])
    assert res.exit_code == 2
    assert "--pool-size is an option of --method dm, not of --method mean-match" in res.output
    res = runner.invoke(main, ["distill", "--budget", "4KiB", "--mean-match-scale", "2",
                               "-o", str(out)])
    assert res.exit_code == 2 and "not of --method dm" in res.output
    for bad in ("scale=abc", "nope=1", "scale"):
        res = runner.invoke(main, [*base, "--opt", bad, "-o", str(out)])
        assert res.exit_code == 2 and "--opt" in res.output, bad
    # A value the objective itself refuses is a usage error, as through its own flag.
    for flags in (["--opt", "pool_size=0"], ["--pool-size", "0"],
                  ["--opt", "pool_order=bogus"], ["--pool-order", "bogus"]):
        res = runner.invoke(main, ["distill", "--budget", "4KiB", *flags, "-o", str(out)])
        assert res.exit_code == 2 and "Traceback" not in res.output, flags
    # DM's options work through --opt as through their flags.
    res = runner.invoke(main, ["distill", "--budget", "4KiB", "--bits", "2", "-n", "1",
                               "--ipc", "2", "--opt", "pool_size=1", "--opt",
                               "real_per_class=8", "--json", "--force", "-o", str(out)])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)
    assert (row["dm_mode"], row["pool_size"], row["real_per_class"]) == ("fast", 1, 8)
    text = runner.invoke(main, ["distill", "--help"]).stdout
    assert "Options of --method mean-match:" in text and "--mean-match-scale" in text
    assert "Options of --method dm:" in text and "--pool-size" in text


class PluginObjective(MeanMatch):
    """The same objective, offered by a package's entry point instead."""


def _entry_points(monkeypatch, *eps: importlib.metadata.EntryPoint) -> None:
    real = importlib.metadata.entry_points

    def fake(**kwargs):
        if kwargs.get("group") == ENTRY_POINT_GROUP:
            return importlib.metadata.EntryPoints(eps)
        return real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)


def test_an_entry_point_adds_an_objective_and_a_broken_one_is_named(tmp_path, digits,
                                                                    monkeypatch):
    from quadd_train.objectives import registry

    # What the entry points register is forgotten after the test.
    monkeypatch.setattr(registry.OBJECTIVES, "_table", dict(registry.OBJECTIVES._table))
    module = types.ModuleType("quadd_test_plugin")
    module.PluginObjective = PluginObjective
    monkeypatch.setitem(sys.modules, "quadd_test_plugin", module)
    _entry_points(monkeypatch,
                  importlib.metadata.EntryPoint("plug", "quadd_test_plugin:PluginObjective",
                                                ENTRY_POINT_GROUP),
                  importlib.metadata.EntryPoint("broken", "quadd_no_such_module:X",
                                                ENTRY_POINT_GROUP))
    assert {"plug", "broken", "dm"} <= set(objective_names())
    res = distill(_cfg(method="plug"), digits, tmp_path / "p.qdd", progress=False)
    assert res.report["offset"] > 0 and get_objective("plug").name == "plug"
    with pytest.raises(PluginError, match=r"objective 'broken': entry point broken = "
                       r"quadd_no_such_module:X .*failed to load: ModuleNotFoundError"):
        make_objective("broken")
    out = tmp_path / "c.qdd"
    res = CliRunner().invoke(main, ["distill", "--budget", "4KiB", "--bits", "2", "-n", "2",
                                    "--ipc", "2", "--method", "plug", "--opt", "scale=3",
                                    "-o", str(out)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["distill", "--budget", "4KiB", "--method", "broken",
                                    "-o", str(out)])
    assert res.exit_code != 0 and "failed to load" in res.output
    assert "Traceback" not in res.output
    assert np.isfinite(QddFile(out).read_all()).all()


def test_the_objective_modules_doctests():
    from quadd_train.objectives import dm, options, registry
    from quadd_train.objectives.dm import options as dm_options

    for module in (registry, options, dm, dm_options):
        failed, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert attempted > 0 and failed == 0, module.__name__

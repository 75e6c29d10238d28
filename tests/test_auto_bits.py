"""``--bits auto``: the proxy's held-out split, the choice, its provenance, and the CLI."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner

from quadd_cli.main import main
from quadd_codec.reader import open_qdd
from quadd_train import DistillConfig, distill
from quadd_train.auto_bits import (
    candidate_config,
    choose_setting,
    holdout_split,
    proxy_bundles,
)
from quadd_train.data import load_dataset
from quadd_train.plan import plan


@pytest.fixture(scope="module")
def bundle():
    return load_dataset("digits", None)


def _cfg(**kw) -> DistillConfig:
    return DistillConfig(dataset="digits", budget_bytes=2048, iterations=4, device="cpu",
                         compile=False, **kw)


def test_holdout_is_stratified_disjoint_and_from_train(bundle):
    kept, held = holdout_split(bundle.y_train, 0.1, seed=0)
    assert set(kept.tolist()).isdisjoint(held.tolist())
    assert len(kept) + len(held) == len(bundle.y_train)
    for c in range(bundle.num_classes):
        assert int((bundle.y_train[held] == c).sum()) >= 1
    assert torch.equal(holdout_split(bundle.y_train, 0.1, seed=0)[1], held)
    pilot = proxy_bundles(bundle, 0.1, seed=0)
    # The pilots distill from the kept samples and are scored on the held-out ones, all
    # from the real training split; the real test split is not used.
    assert torch.equal(pilot.x_train, bundle.x_train[kept])
    assert torch.equal(pilot.x_test, bundle.x_train[held])
    assert torch.equal(pilot.mean, bundle.mean) and torch.equal(pilot.std, bundle.std)
    assert pilot.x_test.shape[0] != bundle.x_test.shape[0]


def test_choice_is_a_fitting_candidate_and_unfit_ones_are_skipped(bundle):
    cfg = _cfg()
    choice = choose_setting(cfg, bundle, pilot_iterations=2, epochs=2)
    # What fits counts the provenance the final file carries, the choice's record included.
    fits = {f"{b}/1": plan(replace(candidate_config(cfg, b, 1), auto=choice.record()),
                           bundle).ipc > 0 for b in (1, 2, 4, 8, 32)}
    assert choice.scores["32/1"] is None  # 2 KiB holds no float32 digit per class
    assert choice.scores["1/1"] is not None
    for k, score in choice.scores.items():
        if score is not None:
            assert fits[k]
    assert fits[f"{choice.bits}/{choice.upsample}"]
    best = max(v for v in choice.scores.values() if v is not None)
    assert choice.scores[f"{choice.bits}/{choice.upsample}"] == best
    assert choice.proxy == {"pilot_iterations": 2, "epochs": 2, "holdout": 0.1}


def test_provenance_records_the_choice_and_the_file_fits(bundle, tmp_path):
    cfg = _cfg()
    choice = choose_setting(cfg, bundle, candidates_bits=(1, 2), pilot_iterations=2, epochs=2)
    final = replace(candidate_config(cfg, choice.bits, choice.upsample), auto=choice.record())
    out = tmp_path / "auto.qdd"
    res = distill(final, bundle, out, progress=False)
    assert os.path.getsize(out) == res.file_bytes <= cfg.budget_bytes
    prov = open_qdd(str(out)).provenance
    assert prov["auto"] == choice.record()
    assert prov["bits"] == choice.bits
    assert set(prov["auto"]["scores"]) == {"1/1", "2/1"}


def test_nothing_fits_is_a_clear_error(bundle):
    with pytest.raises(ValueError, match="no candidate"):
        choose_setting(_cfg(), bundle, candidates_bits=(32,), pilot_iterations=2, epochs=2)


def test_cli_bits_auto_prints_the_table_and_records_it(tmp_path, monkeypatch):
    import quadd_train.auto_bits as auto_bits

    monkeypatch.setattr(auto_bits, "PILOT_EPOCHS", 2)  # the CLI's proxy, at test speed
    out = tmp_path / "a.qdd"
    r = CliRunner().invoke(main, ["distill", "--dataset", "digits", "--budget", "2KiB",
                                 "--bits", "auto", "--iterations", "2", "--no-progress",
                                 "--device", "cpu", "--json", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "<- picked" in r.stderr and "does not fit" in r.stderr
    assert os.path.getsize(out) <= 2048
    data = json.loads(r.stdout.strip().splitlines()[-1])
    assert data["auto"]["picked"] == open_qdd(str(out)).provenance["auto"]["picked"]


@pytest.mark.parametrize("value", ["9", "x", "0"])
def test_cli_bad_bits_is_a_usage_error(value, tmp_path):
    r = CliRunner().invoke(main, ["distill", "--dataset", "digits", "--bits", value,
                                 "-o", str(tmp_path / "a.qdd")])
    assert r.exit_code == 2
    assert "--bits" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "a.qdd").exists()


def test_upsample_candidates_and_a_factor_the_side_does_not_divide(bundle):
    choice = choose_setting(_cfg(), bundle, candidates_bits=(1,), candidates_upsample=(1, 2, 3),
                            pilot_iterations=2, epochs=2)
    assert choice.scores["1/3"] is None  # 8 is not divisible by 3: skipped, not an error
    assert choice.scores["1/1"] is not None and choice.scores["1/2"] is not None
    assert (choice.bits, choice.upsample) in ((1, 1), (1, 2))

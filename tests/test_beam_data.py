"""The 3GPP beam-management dataset: generation (a few hundred Sionna drops), the .npz
that `quadd dataset beam` writes, `--dataset beam` through the cache, and the one-line
message when the `beam` extra is missing."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from click.testing import CliRunner

from quadd_cli.main import main
from quadd_train.data.beam import (
    NUM_BEAMS,
    SET_B,
    BeamConfig,
    BeamExtraMissing,
    beam_names,
    generate_beam,
    require_sionna,
)
from quadd_train.data.beam.codebook import beam_directions, beam_weights

DROPS = 200


def _has_sionna() -> bool:
    try:
        require_sionna()
    except BeamExtraMissing:
        return False
    return True


needs_sionna = pytest.mark.skipif(not _has_sionna(), reason="the beam extra is not installed")


@pytest.fixture(scope="module")
def data():
    return generate_beam(BeamConfig(drops=DROPS, seed=3), progress=False)


def test_set_b_is_a_spread_subset_of_set_a():
    assert len(SET_B) == 8 == len(set(SET_B))
    rows = sorted(n // 8 for n in SET_B)
    cols = sorted(n % 8 for n in SET_B)
    assert rows == [0, 0, 1, 1, 2, 2, 3, 3] and cols == list(range(8))
    assert beam_names()[0] == "beam00" and beam_names()[-1] == "beam31"


def test_codebook_beams_point_where_they_say():
    # A plane wave from a beam's own direction gets the full array gain (32) through it.
    lam = 0.01
    pos = np.array([(0.0, (c - 3.5) * lam / 2, (1.5 - r) * lam / 2)
                    for c in range(8) for r in range(4)])
    dirs = beam_directions(85.0, 110.0)
    w = beam_weights(pos, lam, dirs)
    theta, phi = dirs[5]
    r = np.array([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)])
    h = np.exp(2j * np.pi / lam * pos @ r)  # a plane wave from beam 5's direction
    gains = np.abs(w.conj() @ h) ** 2
    assert int(np.argmax(gains)) == 5 and gains[5] == pytest.approx(32, rel=1e-4)


@needs_sionna
def test_shapes_dtypes_and_ranges(data):
    n_test = round(DROPS * 0.2)
    assert data.x_train.shape == (DROPS - n_test, 8) and data.x_test.shape == (n_test, 8)
    assert data.rsrp_train.shape == (DROPS - n_test, NUM_BEAMS)
    assert data.rsrp_test.shape == (n_test, NUM_BEAMS)
    assert data.x_train.dtype == np.float32 and data.rsrp_test.dtype == np.float32
    assert data.y_train.dtype == np.int64 and data.y_test.dtype == np.int64
    x = np.concatenate([data.x_train, data.x_test])
    assert np.isfinite(x).all() and x.min() >= -140 and x.max() <= -44
    # Labels are the best Set A beam by the stored (noiseless) RSRP.
    assert (data.y_test == data.rsrp_test.argmax(1)).all()
    assert np.isfinite(data.rsrp_train).all() and data.rsrp_train.max() < 0  # dBm
    y = np.concatenate([data.y_train, data.y_test])
    assert y.min() >= 0 and y.max() < NUM_BEAMS
    assert len(np.unique(y)) >= 10
    # Not trivial: the best beam is sometimes, not always, one of the measured ones.
    assert 0 < data.stats["best_in_set_b"] < 1
    assert 0 < data.stats["set_b_argmax_top1"] < 1
    assert data.stats["max_class_share"] < 0.5


@needs_sionna
def test_same_seed_same_arrays_other_seed_other_arrays(data):
    import torch

    torch.manual_seed(123)
    expected = torch.rand(2)
    torch.manual_seed(123)
    first = torch.rand(1)
    again = generate_beam(BeamConfig(drops=DROPS, seed=3), progress=False)
    # Generating leaves the caller's torch random stream where it was.
    assert torch.equal(torch.cat([first, torch.rand(1)]), expected)
    for key in ("x_train", "y_train", "x_test", "y_test", "rsrp_train", "rsrp_test"):
        assert np.array_equal(getattr(data, key), getattr(again, key)), key
    other = generate_beam(BeamConfig(drops=DROPS, seed=4, rsrp_step=1.0), progress=False)
    assert not np.array_equal(data.rsrp_train, other.rsrp_train)
    # 1 dB reporting quantization: whole dB values.
    assert np.array_equal(other.x_train, np.round(other.x_train))


@needs_sionna
def test_cli_writes_a_loadable_npz_and_refuses_to_overwrite(tmp_path):
    from quadd_train.data import load_dataset

    out = tmp_path / "beam.npz"
    args = ["dataset", "beam", "--drops", "100", "--seed", "1", "--scenario", "umi",
            "--rsrp-step", "1", "--no-progress", "-o", str(out)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "best Set A beam already in Set B" in res.output
    with np.load(out, allow_pickle=False) as z:
        assert z["x_train"].shape == (80, 8) and z["rsrp_test"].shape == (20, 32)
        assert list(z["class_names"]) == beam_names()
    bundle = load_dataset(str(out))
    assert bundle.sample_shape == (8,) and bundle.num_classes == NUM_BEAMS
    before = out.read_bytes()
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1 and "exists (use --force" in res.output
    assert out.read_bytes() == before


@needs_sionna
def test_dataset_beam_is_generated_once_into_the_cache(tmp_path, monkeypatch):
    import quadd_train.data.beam.store as store
    from quadd_train.data import load_dataset

    monkeypatch.setenv("QUADD_CACHE", str(tmp_path))
    monkeypatch.setattr(store, "BeamConfig", lambda: BeamConfig(drops=100))
    bundle = load_dataset("beam")
    cached = list((tmp_path / "extracted").glob("beam-*.npz"))
    assert len(cached) == 1 and bundle.name == "beam" and bundle.sample_shape == (8,)
    monkeypatch.setattr(store, "generate_beam", lambda *a, **k: pytest.fail("regenerated"))
    again = load_dataset("beam")
    assert np.array_equal(again.x_test.numpy(), bundle.x_test.numpy())


def test_missing_extra_is_one_line(tmp_path, monkeypatch):
    # None in sys.modules makes `import sionna` raise ImportError, as when not installed.
    monkeypatch.setitem(sys.modules, "sionna", None)
    monkeypatch.setitem(sys.modules, "sionna.phy", None)
    out = tmp_path / "beam.npz"
    res = CliRunner().invoke(main, ["dataset", "beam", "--drops", "50", "-o", str(out)])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("quadd: error:")
    assert "pip install 'quadd[beam]'" in lines[0]
    assert not out.exists()
    from quadd_train.data import load_dataset

    monkeypatch.setenv("QUADD_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match=r"quadd\[beam\]"):
        load_dataset("beam")


def test_bad_parameters_are_refused(tmp_path):
    res = CliRunner().invoke(main, ["dataset", "beam", "--drops", "10", "--test-fraction",
                                    "1.5", "-o", str(tmp_path / "b.npz")])
    assert res.exit_code == 1 and "--test-fraction" in res.output
    with pytest.raises(ValueError, match="scenario"):
        BeamConfig(scenario="rma").check()


def test_output_must_be_named_npz(tmp_path):
    res = CliRunner().invoke(main, ["dataset", "beam", "--drops", "10", "-o",
                                    str(tmp_path / "b.qdd")])
    assert res.exit_code == 2 and "must end in .npz" in res.output
    assert not (tmp_path / "b.qdd").exists()

"""The `upsample` feature (FORMAT.md 7a): samples stored smaller, decoded by repetition."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import craft, recraft, small_qdd_bytes, split

from quadd_codec import (
    Denorm,
    QddDataset,
    QddFile,
    QddHeaderError,
    QddValueError,
    encoded_size,
    write_qdd,
)
from quadd_codec.codebook import quantize_array


def _blocks(x: np.ndarray, f: int) -> np.ndarray:
    """Independent reference: out[..., i, j] = x[..., i // f, j // f]."""
    rows = np.arange(x.shape[-2] * f) // f
    cols = np.arange(x.shape[-1] * f) // f
    return x[..., rows[:, None], cols[None, :]]


@pytest.mark.parametrize("f", [2, 3, 16])
def test_decodes_to_blocks_of_the_stored_values(tmp_path, f):
    rng = np.random.default_rng(f)
    x = rng.normal(size=(5, 2, 3, 4)).astype(np.float32)
    codes, levels = quantize_array(x, 3, group="channel")
    den = Denorm([0.5, 2.0], [0.25, -1.0])
    path = tmp_path / "u.qdd"
    size = write_qdd(path, codes, levels, np.arange(5) % 2, 3, "channel", ["a", "b"],
                     denorm=den, upsample=f)
    assert size == path.stat().st_size == encoded_size(
        5, (2, 3, 4), 3, "channel", ["a", "b"], denorm=den, upsample=f)
    with QddFile(path, verify=True) as q:
        assert q.upsample == f and q.stored_shape == (2, 3, 4)
        assert q.sample_shape == (2, 3 * f, 4 * f)
        assert q.indices(slice(None)).shape == (5, 2, 3, 4)
        stored = levels[np.arange(2)[None, :, None, None], codes]
        assert np.array_equal(q.read_all(), _blocks(stored, f))
        assert np.array_equal(q.read(2), _blocks(stored[2], f))
        assert np.array_equal(q.read([4, 0]), _blocks(stored[[4, 0]], f))
        assert np.array_equal(q.read_all(denormalize=True),
                              _blocks(stored * np.float32([0.5, 2.0])[:, None, None]
                                      + np.float32([0.25, -1.0])[:, None, None], f))
    ds = QddDataset(path)
    assert ds.sample_shape == (2, 3 * f, 4 * f) and tuple(ds[1][0].shape) == ds.sample_shape
    x_all, _ = ds.tensors()
    assert x_all.shape == (5, 2, 3 * f, 4 * f)


def test_prefix_marks_the_feature_and_plain_files_stay_1_0():
    up = small_qdd_bytes(shape=(1, 2, 3), upsample=2)
    _, _, prefix = split(up)
    assert (prefix["minor"], prefix["features"]) == (1, 1)
    _, _, prefix = split(small_qdd_bytes(shape=(1, 2, 3)))
    assert (prefix["minor"], prefix["features"]) == (0, 0)
    assert len(up) == len(small_qdd_bytes(shape=(1, 2, 3))) + len(b"\xa8upsample\x02")


def test_feature_bit_and_header_field_must_agree():
    up = small_qdd_bytes(shape=(1, 2, 3), upsample=2)
    with pytest.raises(QddHeaderError, match="disagree"):
        QddFile(recraft(up, minor=1, features=0))
    with pytest.raises(QddHeaderError, match="disagree"):
        QddFile(io.BytesIO(recraft(small_qdd_bytes(shape=(1, 2, 3)), features=1)))


@pytest.mark.parametrize("value", [1, 0, 17, -2, 2.0, True, "2"])
def test_bad_header_values_are_rejected(value):
    header, payloads, _ = split(small_qdd_bytes(shape=(1, 2, 3)))
    header["upsample"] = value
    with pytest.raises(QddHeaderError, match="upsample"):
        QddFile(craft(header, payloads, minor=1, features=1))


def test_needs_image_like_samples():
    header, payloads, _ = split(small_qdd_bytes(shape=(4, 5)))
    header["upsample"] = 2
    with pytest.raises(QddHeaderError, match="3 or more dims"):
        QddFile(craft(header, payloads, minor=1, features=1))
    codes = np.zeros((2, 4, 5), np.uint8)
    levels = np.array([[0.0, 1.0]] * 4, np.float32)
    with pytest.raises(QddValueError, match="3 or more dims"):
        write_qdd("/nonexistent/x.qdd", codes, levels, None, 1, "channel", [], upsample=2)
    with pytest.raises(QddValueError, match="1..16"):
        encoded_size(2, (1, 4, 5), 1, "channel", [], upsample=17)


def test_zarr_round_trip_keeps_the_feature(tmp_path):
    from quadd_codec.zarr_io import export_zarr, zarr_to_qdd

    src = tmp_path / "u.qdd"
    src.write_bytes(small_qdd_bytes(shape=(2, 2, 3), upsample=3))
    export_zarr(src, tmp_path / "u.zarr")
    zarr_to_qdd(tmp_path / "u.zarr", tmp_path / "back.qdd")
    assert (tmp_path / "back.qdd").read_bytes() == src.read_bytes()


def test_cli_inspect_and_decode(tmp_path):
    from click.testing import CliRunner

    from quadd_cli.main import main

    src = tmp_path / "u.qdd"
    src.write_bytes(small_qdd_bytes(shape=(2, 2, 3), upsample=2))
    runner = CliRunner()
    res = runner.invoke(main, ["inspect", str(src)])
    assert res.exit_code == 0, res.output
    assert "stored as       2x2x3, upsampled 2x" in res.stdout and ".qdd 1.1" in res.stdout
    res = runner.invoke(main, ["decode", str(src), "-o", str(tmp_path / "u.npz")])
    assert res.exit_code == 0, res.output
    with np.load(tmp_path / "u.npz") as z:
        assert z["x"].shape == (6, 2, 4, 6)
        assert np.array_equal(z["x"], QddFile(src).read_all(denormalize=True))

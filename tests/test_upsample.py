"""The `upsample` feature: samples stored smaller, decoded by repetition (FORMAT.md 7a) or
by linear interpolation (7b)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import craft, recraft, small_qdd_bytes, split

from quadd_codec import (
    Denorm,
    QddDataset,
    QddFile,
    QddHeaderError,
    QddValueError,
    encoded_size,
    linear_taps,
    upsample_linear,
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


def test_downsample_mean_takes_block_means():
    from quadd_codec import downsample_mean, upsample_nearest

    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3, 6, 9)).astype(np.float32)
    small = downsample_mean(x, 3)
    assert small.dtype == np.float32 and small.shape == (4, 3, 2, 3)
    for i in range(2):
        for j in range(3):
            block = x[..., 3 * i:3 * i + 3, 3 * j:3 * j + 3].astype(np.float64)
            assert np.allclose(small[..., i, j], block.mean(axis=(-2, -1)), atol=1e-6)
    # Repeating blocks and averaging them back is exact.
    assert np.array_equal(downsample_mean(upsample_nearest(small, 3), 3), small)
    assert downsample_mean(x, 1) is x


@pytest.mark.parametrize(("shape", "factor", "match"), [
    ((2, 3, 6, 9), 2, "must divide the image size 6x9"),
    ((2, 6, 8), 2, "3 or more dims"),
    ((2, 1, 32, 32), 17, "1..16"),
    ((2, 1, 4, 4), 2.0, "integer"),
])
def test_downsample_mean_rejects(shape, factor, match):
    from quadd_codec import downsample_mean

    with pytest.raises(QddValueError, match=match):
        downsample_mean(np.zeros(shape, np.float32), factor)


def test_cli_encode_stores_half_size(tmp_path):
    from click.testing import CliRunner

    from quadd_cli.main import main

    rng = np.random.default_rng(0)
    small = rng.random((6, 3, 4, 5)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=_blocks(small, 2), y=np.arange(6) % 2)
    runner = CliRunner()
    out = tmp_path / "half.qdd"
    res = runner.invoke(main, ["encode", str(tmp_path / "in.npz"), "-o", str(out), "-b", "32",
                               "--upsample", "2"])
    assert res.exit_code == 0, res.output
    assert "6 samples of 3x8x10 (stored as 3x4x5)" in res.stdout
    q = QddFile(out)
    assert q.upsample == 2 and q.stored_shape == (3, 4, 5)
    # Raw float32 storage of block-constant images gives them back exactly.
    assert np.array_equal(q.read_all(), _blocks(small, 2))
    full = tmp_path / "full.qdd"
    assert runner.invoke(main, ["encode", str(tmp_path / "in.npz"), "-o", str(full),
                                "-b", "32"]).exit_code == 0
    assert out.stat().st_size < full.stat().st_size / 3

    bad = runner.invoke(main, ["encode", str(tmp_path / "in.npz"), "-o",
                               str(tmp_path / "bad.qdd"), "-b", "2", "--upsample", "3"])
    assert bad.exit_code == 1
    assert "quadd: error: upsample 3 must divide the image size 8x10" in bad.stderr
    assert "Traceback" not in bad.output and not (tmp_path / "bad.qdd").exists()


# ------------------------------------------------ linear enlargement (7b)

LINEAR = {"upsample": 2, "upsample_filter": "linear"}


@pytest.mark.parametrize("f", [2, 3, 5, 16])
def test_matches_torch_bilinear_without_corner_alignment(f):
    x = np.random.default_rng(f).normal(size=(2, 3, 4, 5)).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(x), scale_factor=f, mode="bilinear",
                        align_corners=False).numpy()
    out = upsample_linear(x, f)
    assert out.dtype == np.float32 and out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=0, atol=2e-6)


def test_taps_hold_the_border_and_interpolate_inside():
    i0, i1, w0, w1 = linear_taps(3, 2)
    assert i0.tolist() == [0, 0, 0, 1, 1, 2] and i1.tolist() == [1, 1, 1, 2, 2, 2]
    assert w1.tolist() == [0.0, 0.25, 0.75, 0.25, 0.75, 0.25]
    assert (w0 + w1).tolist() == [1.0] * 6
    # One stored row: all four output rows are the same interpolated row, worked by hand
    # from the coordinates (2j + 1 - 4) / 8 clamped to [0, 2].
    x = np.float32([[[[1.0, 2.0, 4.0]]]])
    row = [1.0, 1.0, 1.125, 1.375, 1.625, 1.875, 2.25, 2.75, 3.25, 3.75, 4.0, 4.0]
    assert upsample_linear(x, 4)[0, 0].tolist() == [row] * 4


def test_written_file_decodes_with_the_filter_and_is_version_1_2(tmp_path):
    x = np.random.default_rng(0).normal(size=(4, 2, 3, 3)).astype(np.float32)
    codes, levels = quantize_array(x, 2, group="channel")
    den = Denorm([0.5, 2.0], [0.25, -1.0])
    path = tmp_path / "l.qdd"
    size = write_qdd(path, codes, levels, np.arange(4) % 2, 2, "channel", ["a", "b"],
                     denorm=den, upsample=3, upsample_filter="linear")
    assert size == path.stat().st_size == encoded_size(
        4, (2, 3, 3), 2, "channel", ["a", "b"], denorm=den, upsample=3,
        upsample_filter="linear")
    stored = levels[np.arange(2)[None, :, None, None], codes]
    with QddFile(path, verify=True) as q:
        assert (q.upsample, q.upsample_filter, q.sample_shape) == (3, "linear", (2, 9, 9))
        assert q.layout.minor == 2
        assert np.array_equal(q.read_all(), upsample_linear(stored, 3))
        # De-normalization comes first, then the enlargement (7b "after step 3").
        source = (stored * np.float32([0.5, 2.0])[:, None, None]
                  + np.float32([0.25, -1.0])[:, None, None])
        assert np.array_equal(q.read([1, 3], denormalize=True), upsample_linear(source[[1, 3]], 3))
        assert "upsample_filter='linear'" in repr(q)
    x_all, _ = QddDataset(path).tensors()
    assert tuple(x_all.shape) == (4, 2, 9, 9)


def test_linear_prefix_marks_both_features():
    data = small_qdd_bytes(shape=(1, 2, 3), **LINEAR)
    _, _, prefix = split(data)
    assert (prefix["minor"], prefix["features"]) == (2, 3)
    nearest = small_qdd_bytes(shape=(1, 2, 3), upsample=2)
    assert len(data) == len(nearest) + len(b"\xafupsample_filter\xa6linear")


def test_linear_feature_bit_and_header_field_must_agree():
    data = small_qdd_bytes(shape=(1, 2, 3), **LINEAR)
    with pytest.raises(QddHeaderError, match="bit 1 disagree"):
        QddFile(recraft(data, features=1))
    with pytest.raises(QddHeaderError, match="bit 1 disagree"):
        QddFile(io.BytesIO(recraft(small_qdd_bytes(shape=(1, 2, 3), upsample=2), features=3)))


@pytest.mark.parametrize(("edit", "match"), [
    ({"upsample_filter": "nearest"}, "left out"),
    ({"upsample_filter": "cubic"}, "unknown upsample filter"),
    ({"upsample_filter": 1}, "unknown upsample filter"),
    ({"upsample": None}, "needs an upsample factor"),
])
def test_bad_filter_header_values_are_rejected(edit, match):
    header, payloads, _ = split(small_qdd_bytes(shape=(1, 2, 3), **LINEAR))
    for key, value in edit.items():
        if value is None:
            del header[key]
        else:
            header[key] = value
    with pytest.raises(QddHeaderError, match=match):
        QddFile(craft(header, payloads, minor=2, features=3))


def test_writer_refuses_a_filter_without_a_factor():
    codes = np.zeros((2, 1, 4, 4), np.uint8)
    levels = np.array([[0.0, 1.0]], np.float32)
    with pytest.raises(QddValueError, match="needs an upsample factor"):
        write_qdd("/nonexistent/x.qdd", codes, levels, None, 1, "channel", [],
                  upsample_filter="linear")
    with pytest.raises(QddValueError, match="unknown upsample filter"):
        encoded_size(2, (1, 4, 4), 1, "channel", [], upsample=2, upsample_filter="area")


def test_zarr_round_trip_keeps_the_linear_filter(tmp_path):
    from quadd_codec.zarr_io import export_zarr, zarr_to_qdd

    src = tmp_path / "l.qdd"
    src.write_bytes(small_qdd_bytes(shape=(2, 2, 3), **LINEAR))
    export_zarr(src, tmp_path / "l.zarr")
    zarr_to_qdd(tmp_path / "l.zarr", tmp_path / "back.qdd")
    assert (tmp_path / "back.qdd").read_bytes() == src.read_bytes()


def test_cli_encode_and_inspect_linear(tmp_path):
    from click.testing import CliRunner

    from quadd_cli.main import main

    x = np.random.default_rng(1).random((6, 3, 4, 6)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x, y=np.arange(6) % 2)
    runner = CliRunner()
    out = tmp_path / "l.qdd"
    res = runner.invoke(main, ["encode", str(tmp_path / "in.npz"), "-o", str(out), "-b", "4",
                               "--upsample", "2", "--upsample-filter", "linear"])
    assert res.exit_code == 0, res.output
    assert QddFile(out).upsample_filter == "linear"
    res = runner.invoke(main, ["inspect", str(out)])
    assert res.exit_code == 0, res.output
    assert "stored as       3x2x3, upsampled 2x by linear interpolation" in res.stdout
    assert ".qdd 1.2" in res.stdout
    bad = runner.invoke(main, ["encode", str(tmp_path / "in.npz"), "-o",
                               str(tmp_path / "bad.qdd"), "-b", "4", "--upsample-filter",
                               "linear"])
    assert bad.exit_code != 0 and "--upsample 2 or more" in bad.output
    assert not (tmp_path / "bad.qdd").exists()


def test_distill_refuses_a_filter_without_a_factor(tmp_path):
    from click.testing import CliRunner

    from quadd_cli.main import main

    res = CliRunner().invoke(main, ["distill", "--budget", "4KiB", "--upsample-filter",
                                    "linear", "-n", "1", "-o", str(tmp_path / "x.qdd")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "upsample filter 'linear' needs an upsample factor of 2 or more" in res.output
    assert not (tmp_path / "x.qdd").exists()

"""The JPEG/WebP baselines at equal bytes: `quadd_train.image_baseline` and `quadd baseline`."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from quadd_train.data.bundle import make_bundle
from quadd_train.image_baseline import (
    image_baseline_grid,
    read_image_baseline,
    write_image_baseline,
)

try:
    from quadd_cli.main import main
except ImportError:  # not installed: import from the source tree
    from cli.main import main


@pytest.fixture(scope="module")
def rgb():
    """A tiny RGB set of smooth 16x16 images (3 classes), in [0, 1]."""
    rng = np.random.default_rng(0)
    n = 60
    yy, xx = np.mgrid[0:16, 0:16] / 15.0
    base = np.stack([yy, xx, (yy + xx) / 2])[None]
    x = np.clip(base * rng.uniform(0.3, 1, (n, 3, 1, 1)) + rng.uniform(0, 0.3, (n, 3, 1, 1)),
                0, 1)
    x = (x * 255).round().astype(np.uint8)
    y = np.arange(n) % 3
    return make_bundle("tiny-rgb", x, y, x[:12], y[:12], ["red", "green", "blue"])


def _check_against_source(bundle, x, y, tol):
    """Every decoded image is close to a training image of its own class."""
    src = bundle.x_train.numpy()
    labels = bundle.y_train.numpy()
    for xi, yi in zip(x, y, strict=True):
        err = np.abs(src[labels == yi] - xi).mean(axis=(1, 2, 3)).min()
        assert err < tol


@pytest.mark.parametrize("codec", ["jpeg", "webp"])
def test_file_fits_and_reads_back(digits, tmp_path, codec):
    out = tmp_path / "b.zip"
    res = write_image_baseline(digits, 6000, out, codec=codec)
    assert res.file_bytes == os.path.getsize(out) <= 6000
    assert res.codec == codec and res.ipc >= 1 and res.n == 10 * res.ipc
    x, y, classes = read_image_baseline(out)
    assert x.dtype == np.float32 and x.shape == (res.n, 1, 8, 8)
    assert 0 <= x.min() and x.max() <= 1
    assert classes == digits.class_names
    assert np.array_equal(np.bincount(y, minlength=10), np.full(10, res.ipc))
    _check_against_source(digits, x, y, 0.12)
    # The budget counts everything a receiver needs: the archive holds nothing else.
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
    assert names[0] == "m.json" and len(names) == 1 + (10 if res.layout == "mosaic" else res.n)


def test_more_budget_fits_more(digits):
    small = image_baseline_grid(digits, 4000, "jpeg", qualities=(50,))
    large = image_baseline_grid(digits, 12000, "jpeg", qualities=(50,))
    assert small[0].ipc < large[0].ipc
    assert small[0].file_bytes <= 4000 and large[0].file_bytes <= 12000


@pytest.mark.parametrize("layout", ["mosaic", "separate"])
@pytest.mark.parametrize("codec", ["jpeg", "webp"])
def test_layouts_decode_in_order(rgb, tmp_path, layout, codec):
    out = tmp_path / "b.zip"
    res = write_image_baseline(rgb, 20000, out, codec=codec, quality=90, layout=layout)
    assert res.layout == layout and res.quality == 90
    x, y, classes = read_image_baseline(out)
    assert classes == ["red", "green", "blue"]
    assert x.shape == (res.n, 3, 16, 16)
    _check_against_source(rgb, x, y, 0.05)
    # The draw is the seeded one: the i-th decoded image of a class is its i-th pick.
    again = write_image_baseline(rgb, 20000, tmp_path / "c.zip", codec=codec, quality=90,
                                 layout=layout)
    assert again.file_bytes == res.file_bytes
    assert np.array_equal(read_image_baseline(tmp_path / "c.zip")[0], x)


def test_the_layout_chosen_is_the_one_that_fits_more(rgb):
    mosaic = image_baseline_grid(rgb, 3000, "jpeg", qualities=(50,), layout="mosaic")
    separate = image_baseline_grid(rgb, 3000, "jpeg", qualities=(50,), layout="separate")
    best = image_baseline_grid(rgb, 3000, "jpeg", qualities=(50,))
    assert best[0].ipc == max(p[0].ipc if p else 0 for p in (mosaic, separate))


def test_half_scale_decodes_to_full_size_and_fits_more(rgb, tmp_path):
    full = write_image_baseline(rgb, 1500, tmp_path / "a.zip", quality=50)
    half = write_image_baseline(rgb, 1500, tmp_path / "b.zip", quality=50, scale=2)
    assert half.ipc > full.ipc and half.scale == 2
    x, _, _ = read_image_baseline(tmp_path / "b.zip")
    assert x.shape == (half.n, 3, 16, 16)
    with zipfile.ZipFile(tmp_path / "b.zip") as zf:
        assert json.loads(zf.read("m.json"))["tile"] == [8, 8]


def test_default_quality_keeps_the_count_of_75(digits, tmp_path):
    res = write_image_baseline(digits, 8000, tmp_path / "b.zip")
    grid = {p.quality: p for p in res.candidates}
    assert sorted(grid) == [10, 20, 30, 50, 75, 90]
    assert res.quality == max(q for q, p in grid.items() if p.ipc >= grid[75].ipc)
    assert (res.ipc, res.layout, res.file_bytes) == (
        grid[res.quality].ipc, grid[res.quality].layout, grid[res.quality].file_bytes)


def test_too_small_budget_is_one_line(digits, tmp_path):
    out = tmp_path / "b.zip"
    with pytest.raises(ValueError, match="does not fit one jpeg image per class"):
        write_image_baseline(digits, 300, out)
    assert not out.exists()
    res = CliRunner().invoke(main, ["baseline", "jpeg", "--budget", "300", "-o", str(out)])
    assert res.exit_code == 1 and not out.exists()
    assert res.stderr.strip().count("\n") == 0
    assert res.stderr.startswith("quadd: error: 300 B does not fit")


def test_cli_baseline_and_eval(tmp_path):
    out = tmp_path / "b.zip"
    runner = CliRunner()
    res = runner.invoke(main, ["baseline", "webp", "--budget", "5000", "--scale", "2",
                               "--json", "-o", str(out)])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["file_bytes"] == os.path.getsize(out) <= 5000
    assert info["codec"] == "webp" and info["scale"] == 2 and info["candidates"]
    res = runner.invoke(main, ["baseline", "jpeg", "--budget", "5000", "--quality", "30",
                               "-o", str(tmp_path / "j.zip")])
    assert res.exit_code == 0 and "jpeg quality 30, scale 1" in res.stdout
    res = runner.invoke(main, ["eval", str(out), "--dataset", "digits", "--runs", "1",
                               "--epochs", "2", "--json"])
    assert res.exit_code == 0, res.output
    ev = json.loads(res.stdout)
    assert ev["num_samples"] == info["n"] and ev["file_bytes"] == info["file_bytes"]
    assert 0 <= ev["accuracy"] <= 100

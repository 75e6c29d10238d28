"""`quadd show`: the grid's geometry, tiles equal to the decoded samples, the value range,
bad inputs as one-line errors, the --force rule and a missing Pillow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from quadd_cli.main import main
from quadd_codec import QddFile, quantize_array, write_qdd
from quadd_codec.grid import GAP, TILE_MIN, default_scale


def _write(path: Path, x: np.ndarray, labels: np.ndarray | None, classes: list[str],
           bits: int = 3, **kwargs) -> Path:
    codes, levels = quantize_array(x, bits)
    write_qdd(path, codes, levels, labels, bits, "channel", classes, **kwargs)
    return path


def _pixels(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    return rng.uniform(0, 1, (n, *shape)).astype(np.float32)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    # Class "b" has only 2 samples, fewer than --per-class.
    gray_labels = np.array([0, 1, 2, 0, 2, 0, 1, 2, 0, 2, 0, 2])
    return {
        "gray": _write(tmp_path / "gray.qdd", _pixels(rng, 12, (1, 6, 5)), gray_labels,
                       ["a", "b", "c"]),
        "rgb": _write(tmp_path / "rgb.qdd", _pixels(rng, 8, (3, 4, 4)), np.arange(8) % 2,
                      ["cat", "dog"]),
        "up": _write(tmp_path / "up.qdd", _pixels(rng, 6, (3, 3, 2)), np.arange(6) % 3,
                     ["x", "y", "z"], upsample=2, upsample_filter="linear"),
        "rgba": _write(tmp_path / "rgba.qdd", _pixels(rng, 4, (4, 3, 3)), np.arange(4) % 2,
                       ["p", "q"]),
        "vectors": _write(tmp_path / "vectors.qdd", _pixels(rng, 6, (20,)),
                          np.arange(6) % 2, ["p", "q"]),
        "bytes": _write(tmp_path / "bytes.qdd", rng.uniform(0, 255, (4, 1, 3, 3)).astype(
            np.float32), None, [], bits=8),
    }


def run(*args: object, input: bytes | None = None):
    return CliRunner().invoke(main, ["show", *(str(a) for a in args)], input=input,
                              catch_exceptions=False)


def _one_error(result) -> str:
    assert result.exit_code == 1, (result.output, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("quadd: error: "), result.stderr
    return lines[0]


def _check_grid(png: Path, qdd: Path, per_class: int, scale: int) -> None:
    """Every tile, found from the picture's right edge (the label column's width depends on
    the font), holds exactly the decoded sample magnified; missing samples stay white."""
    with QddFile(qdd) as f:
        c, h, w = f.sample_shape
        labels, k = f.labels, f.num_classes
        decoded = f.read_all(denormalize=True)
    with Image.open(png) as img:
        assert img.mode == {1: "L", 3: "RGB", 4: "RGBA"}[c]
        grid = np.asarray(img)
    grid = grid[:, :, None] if grid.ndim == 2 else grid
    tile_h, tile_w = h * scale, w * scale
    assert grid.shape[0] == k * tile_h + (k + 1) * GAP  # a row per class
    width = grid.shape[1]
    for row in range(k):
        ids = np.flatnonzero(labels == row)[:per_class]
        y0 = GAP + row * (tile_h + GAP)
        for col in range(per_class):
            x0 = width - (per_class - col) * (tile_w + GAP)
            tile = grid[y0 : y0 + tile_h, x0 : x0 + tile_w]
            if col >= len(ids):
                assert (tile == 255).all()
                continue
            want = np.rint(np.clip(decoded[ids[col]], 0, 1) * 255).astype(np.uint8)
            want = want.transpose(1, 2, 0).repeat(scale, 0).repeat(scale, 1)
            np.testing.assert_array_equal(tile, want)
        # Left of the first tile: a white gap, and before it the class name in dark text.
        first = width - per_class * (tile_w + GAP)
        assert (grid[y0 : y0 + tile_h, first - GAP : first] == 255).all()
        assert grid[y0 : y0 + tile_h, : first - GAP, 0].min() < 128


@pytest.mark.parametrize("name, per_class, scale", [
    ("gray", 4, None), ("gray", 3, 2), ("rgb", 4, None), ("up", 2, 5), ("rgba", 2, 1),
])
def test_tiles_are_the_decoded_samples(files, tmp_path, name, per_class, scale):
    out = tmp_path / f"{name}.png"
    args = [files[name], "-o", out, "--per-class", per_class]
    result = run(*args, *(["--scale", scale] if scale else []))
    assert result.exit_code == 0, result.output
    with QddFile(files[name]) as f:
        _, h, w = f.sample_shape
        rows = f.num_classes
    used = scale or default_scale(h, w)
    if scale is None:
        assert max(h, w) * used >= TILE_MIN > max(h, w) * (used - 1)
    assert f"{rows} rows x up to {per_class} samples" in result.output
    assert f"drawn at {used}x" in result.output
    _check_grid(out, files[name], per_class, used)


def test_upsampled_file_is_drawn_at_its_decoded_size(files, tmp_path):
    out = tmp_path / "up.png"
    assert run(files["up"], "-o", out, "--scale", 1).exit_code == 0
    with Image.open(out) as img:
        assert img.height == 3 * 6 + 4 * GAP  # stored 3x2, decoded 6x4


def test_stdin(files, tmp_path):
    out = tmp_path / "in.png"
    result = run("-", "-o", out, "--per-class", 2, input=files["rgb"].read_bytes())
    assert result.exit_code == 0, result.output
    _check_grid(out, files["rgb"], 2, default_scale(4, 4))


def test_byte_range_is_divided_by_255_and_unlabeled_is_one_row(files, tmp_path):
    out = tmp_path / "b.png"
    result = run(files["bytes"], "-o", out, "--scale", 1)
    assert result.exit_code == 0, result.output
    assert "drawn as 0..255 pixels" in result.stderr and "1 row x" in result.output
    with QddFile(files["bytes"]) as f:
        decoded = f.read_all(denormalize=True)
    with Image.open(out) as img:
        grid = np.asarray(img)
    assert grid.shape[0] == 3 + 2 * GAP
    first = grid[GAP : GAP + 3, -4 * (3 + GAP) : -4 * (3 + GAP) + 3]
    np.testing.assert_array_equal(first, np.rint(decoded[0, 0] / 255 * 255).astype(np.uint8))


def test_non_images_and_bad_inputs_are_one_line_errors(files, tmp_path):
    out = tmp_path / "o.png"
    assert "not images" in _one_error(run(files["vectors"], "-o", out))
    assert "No such file" in _one_error(run(tmp_path / "missing.qdd", "-o", out))
    five = _write(tmp_path / "five.qdd", np.zeros((2, 5, 3, 3), np.float32),
                  np.array([0, 1]), ["a", "b"])
    assert "5 channels" in _one_error(run(five, "-o", out))
    assert "not a .qdd" in _one_error(run(tmp_path, "-o", out))
    assert not out.exists()
    assert run(files["gray"], "-o", tmp_path / "o.jpg").exit_code == 2  # usage error
    assert "does not exist" in _one_error(run(files["gray"], "-o", tmp_path / "no" / "o.png"))


def test_existing_output_needs_force(files, tmp_path):
    out = tmp_path / "o.png"
    out.write_bytes(b"keep")
    assert "--force" in _one_error(run(files["gray"], "-o", out))
    assert out.read_bytes() == b"keep"
    assert run(files["gray"], "-o", out, "--force").exit_code == 0
    with Image.open(out) as img:
        assert img.format == "PNG"
    (tmp_path / "dir.png").mkdir()
    assert "directory" in _one_error(run(files["gray"], "-o", tmp_path / "dir.png",
                                         "--force"))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_missing_pillow_is_one_line(files, tmp_path):
    code = ("import sys; sys.modules['PIL'] = None\n"
            "from quadd_cli.main import main\n"
            f"main(['show', {str(files['gray'])!r}, '-o', 'o.png'], prog_name='quadd')\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        "quadd: error: quadd show needs Pillow: pip install 'quadd[images]'"]
    assert not (tmp_path / "o.png").exists()

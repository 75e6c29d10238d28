"""`quadd encode | decode | inspect | verify` end to end, and the shared error handling."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from quadd_cli.main import main
from quadd_codec import QddFile

N, C, H, W = 12, 3, 4, 6


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def run(runner: CliRunner, *args: str, input: bytes | None = None):
    return runner.invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """One input of each kind, all holding the same kind of data."""
    import zarr

    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    x8 = rng.integers(0, 256, (N, C, H, W), dtype=np.uint8)
    y = np.arange(N) % 3
    np.savez(root / "d.npz", x=x8, y=y, classes=np.array(["cat", "../evil", "a/b"]))
    np.save(root / "u.npy", rng.standard_normal((N, 10)).astype(np.float32))
    g = zarr.open_group(str(root / "z.zarr"), mode="w")
    g.create_array("x", data=rng.random((N, 2, 5)).astype(np.float32))
    g.create_array("y", data=y)
    g.attrs["classes"] = ["p", "q", "r"]
    for i in range(N):
        folder = root / "imgs" / ["red", "green"][i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x8[i].transpose(1, 2, 0), mode="RGB").save(folder / f"{i}.png")
    return {"npz": root / "d.npz", "npy": root / "u.npy", "zarr": root / "z.zarr",
            "images": root / "imgs"}


def _assert_one_error_line(result, code: int = 1) -> None:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("quadd: error: "), result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("kind", "bits", "group", "extra"),
    [
        ("npz", 4, "channel", []),
        ("npz", 1, "sample-channel", ["--codebook-dtype", "f2"]),
        ("npy", 3, "tensor", ["--codebook", "kmeans"]),
        ("zarr", 8, "channel", []),
        ("images", 2, "tensor", []),
        ("npz", 32, "tensor", []),
    ],
)
def test_encode_inspect_verify_decode(runner, inputs, tmp_path, kind, bits, group, extra):
    qdd = tmp_path / "out.qdd"
    result = run(runner, "encode", inputs[kind], "-o", qdd, "--bits", bits, "--group", group,
                 "--no-progress", *extra)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 1

    info = json.loads(run(runner, "inspect", qdd, "--json").stdout)
    # These inputs are tiny, so the header can make a file larger than its float32 values;
    # the summary says which, never "0.2x smaller".
    raw = info["n"] * info["values_per_sample"] * 4
    word = "larger" if qdd.stat().st_size > raw else "smaller"
    assert f"x {word} than float32" in result.stdout
    assert info["bits"] == bits and info["group"] == group and info["n"] == N
    assert sum(info["bytes"].values()) == info["file_size"] == qdd.stat().st_size
    assert info["bits_per_value"] == pytest.approx(
        info["file_size"] * 8 / (N * info["values_per_sample"]))
    text = run(runner, "inspect", qdd).stdout
    assert "bits per value" in text

    result = run(runner, "verify", qdd)
    assert result.exit_code == 0 and result.stdout.startswith(f"OK {qdd}:")

    with QddFile(qdd) as f:
        want = f.read_all(denormalize=True)
        labels, names = f.labels, f.class_names
    assert [c["count"] for c in info["classes"]] == (
        np.bincount(labels, minlength=len(names)).tolist() if labels is not None else [])
    assert run(runner, "decode", qdd, "-o", tmp_path / "o.npz").exit_code == 0
    with np.load(tmp_path / "o.npz") as z:
        assert np.array_equal(z["x"], want)
        if labels is not None:
            assert np.array_equal(z["y"], labels) and z["classes"].tolist() == names
    assert run(runner, "decode", qdd, "-o", tmp_path / "o.npy").exit_code == 0
    assert np.array_equal(np.load(tmp_path / "o.npy"), want)
    assert run(runner, "decode", qdd, "-o", tmp_path / "o.zarr").exit_code == 0
    assert run(runner, "import", tmp_path / "o.zarr", "-o", tmp_path / "back.qdd").exit_code == 0
    assert (tmp_path / "back.qdd").read_bytes() == qdd.read_bytes()
    if kind in ("npz", "images"):
        assert run(runner, "decode", qdd, "-o", tmp_path / "pics").exit_code == 0
        pngs = sorted((tmp_path / "pics").rglob("*.png"))
        assert len(pngs) == N
        assert all(p.resolve().is_relative_to((tmp_path / "pics").resolve()) for p in pngs)


def test_image_decode_values_and_safe_dirs(runner, inputs, tmp_path):
    qdd = tmp_path / "d.qdd"
    run(runner, "encode", inputs["npz"], "-o", qdd, "-b", "8", "--no-progress")
    out = tmp_path / "pics"
    assert run(runner, "decode", qdd, "-o", out).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["%2E.%2Fevil", "a%2Fb", "cat"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.qdd", "pics"]  # no evil/ beside
    with QddFile(qdd) as f:
        want = f.read(3, denormalize=True)  # sample 3 is class 0, "cat"
    img = np.asarray(Image.open(out / "cat" / "03.png"))
    assert np.array_equal(img.transpose(2, 0, 1), np.rint(np.clip(want, 0, 1) * 255))
    # Decoding the images back gives the same class names.
    qdd2 = tmp_path / "d2.qdd"
    assert run(runner, "encode", out, "-o", qdd2, "-b", "8", "--no-progress").exit_code == 0
    with QddFile(qdd2) as f:
        assert sorted(f.class_names) == ["../evil", "a/b", "cat"]
    # A non-empty directory is only replaced with --force.
    _assert_one_error_line(run(runner, "decode", qdd, "-o", out))
    assert run(runner, "decode", qdd, "-o", out, "--force").exit_code == 0


def test_unlabeled_file_to_images_and_bad_shapes(runner, inputs, tmp_path):
    qdd = tmp_path / "u.qdd"
    run(runner, "encode", inputs["npy"], "-o", qdd, "-b", "4", "--no-progress")
    result = run(runner, "decode", qdd, "-o", tmp_path / "pics")
    _assert_one_error_line(result)
    assert "C, H, W" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u.qdd"]


def test_encode_is_deterministic(runner, inputs, tmp_path):
    for name in ("a.qdd", "b.qdd"):
        args = ["encode", inputs["npz"], "-o", tmp_path / name, "-b", "3", "--codebook", "kmeans"]
        assert run(runner, *args, "--no-progress").exit_code == 0
    assert (tmp_path / "a.qdd").read_bytes() == (tmp_path / "b.qdd").read_bytes()


def test_stdin(runner, inputs, tmp_path):
    qdd = tmp_path / "d.qdd"
    run(runner, "encode", inputs["npz"], "-o", qdd, "-b", "5", "--no-progress")
    data = qdd.read_bytes()
    result = run(runner, "verify", "-", input=data)
    assert result.exit_code == 0 and result.stdout.startswith("OK <stdin>:")
    info = json.loads(run(runner, "inspect", "-", "--json", input=data).stdout)
    assert info["file_size"] == len(data)
    assert run(runner, "decode", "-", "-o", tmp_path / "s.npy", input=data).exit_code == 0
    with QddFile(qdd) as f:
        assert np.array_equal(np.load(tmp_path / "s.npy"), f.read_all(denormalize=True))
    _assert_one_error_line(run(runner, "verify", "-", input=data[:-5]))


def test_damaged_and_foreign_inputs_fail_cleanly(runner, inputs, tmp_path):
    qdd = tmp_path / "d.qdd"
    run(runner, "encode", inputs["npz"], "-o", qdd, "-b", "4", "--no-progress")
    damaged = bytearray(qdd.read_bytes())
    damaged[len(damaged) // 2] ^= 0x10
    (tmp_path / "bad.qdd").write_bytes(bytes(damaged))
    (tmp_path / "text.qdd").write_text("not a qdd\n")
    (tmp_path / "short.qdd").write_bytes(qdd.read_bytes()[:100])
    before = sorted(p.name for p in tmp_path.iterdir())
    for name in ("bad.qdd", "text.qdd", "short.qdd", "missing.qdd"):
        _assert_one_error_line(run(runner, "verify", tmp_path / name))
        for out in ("o.npz", "o.npy", "o.zarr", "o_dir"):
            _assert_one_error_line(run(runner, "decode", tmp_path / name, "-o", tmp_path / out))
    _assert_one_error_line(run(runner, "inspect", tmp_path / "text.qdd"))
    _assert_one_error_line(run(runner, "encode", tmp_path / "text.qdd", "-o", tmp_path / "x.qdd",
                               "-b", "2"))
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04garbage")
    _assert_one_error_line(run(runner, "encode", tmp_path / "bad.npz", "-o", tmp_path / "x.qdd",
                               "-b", "2"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "bad.npz"])


@pytest.mark.parametrize(
    "args",
    [
        ["encode", "in.npz", "-o", "x.qdd"],  # no --bits
        ["encode", "in.npz", "-o", "x.qdd", "-b", "9"],
        ["encode", "in.npz", "-o", "x.qdd", "-b", "2", "--group", "row"],
        ["decode", "in.qdd"],  # no -o
        ["decode", "in.qdd", "-o", "out.qdd"],
        ["inspect"],
        ["nonsense"],
    ],
)
def test_usage_errors_exit_2(runner, args):
    assert run(runner, *args).exit_code == 2


def test_ctrl_c_exits_130(runner, inputs, tmp_path, monkeypatch):
    import quadd_codec.sources

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(quadd_codec.sources, "load_source", interrupted)
    result = run(runner, "encode", inputs["npz"], "-o", tmp_path / "x.qdd", "-b", "2")
    assert result.exit_code == 130 and "interrupted" in result.stderr
    assert not list(tmp_path.iterdir())


def test_version(runner):
    result = run(runner, "--version")
    assert result.exit_code == 0 and "quadd" in result.stdout


def test_console_script(inputs, tmp_path):
    """The installed `quadd` entry point, as a real process (pipes, exit codes, stderr)."""
    exe = shutil.which("quadd", path=os.path.dirname(sys.executable)) or shutil.which("quadd")
    assert exe, "the quadd console script is not installed"
    qdd = tmp_path / "d.qdd"
    done = subprocess.run([exe, "encode", str(inputs["npz"]), "-o", str(qdd), "-b", "4"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([exe, "verify", "-"], input=qdd.read_bytes(), capture_output=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.startswith(b"OK <stdin>:")
    done = subprocess.run([exe, "decode", "-", "-o", str(tmp_path / "o.npz")], input=b"junk",
                          capture_output=True, text=False, timeout=120)
    assert done.returncode == 1 and done.stderr.decode().count("\n") == 1
    assert done.stderr.startswith(b"quadd: error: ") and not (tmp_path / "o.npz").exists()

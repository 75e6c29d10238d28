"""Overwrite rules, as in gzip: every command refuses an existing output without --force,
an output folder never is, holds or lies inside the input, and --force deletes nothing
that quadd decode did not write (issue 27: H2, M5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import error_line, run_cli


def _assert_refused(result, *words: str) -> None:
    line = error_line(result)
    for word in words:
        assert word in line, line


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("overwrite")
    rng = np.random.default_rng(0)
    np.savez(root / "d.npz", x=rng.random((6, 1, 8, 8)).astype(np.float32),
             y=np.arange(6) % 2, classes=np.array(["a", "b"]))
    assert run_cli("encode", root / "d.npz", "-o", root / "d.qdd", "-b", "2").exit_code == 0
    assert run_cli("decode", root / "d.qdd", "-o", root / "s.zarr").exit_code == 0
    return {"npz": root / "d.npz", "qdd": root / "d.qdd", "zarr": root / "s.zarr"}


# Each command with the output it writes; "{out}" is replaced by the output path.
COMMANDS = {
    "encode": (["encode", "{npz}", "-b", "2"], "x.qdd"),
    "decode-npz": (["decode", "{qdd}"], "x.npz"),
    "decode-npy": (["decode", "{qdd}"], "x.npy"),
    "import": (["import", "{zarr}"], "x.qdd"),
    "show": (["show", "{qdd}"], "x.png"),
    "subset": (["subset", "--budget", "2KiB", "--bits", "2"], "x.qdd"),
    "distill": (["distill", "--budget", "2KiB", "--bits", "2", "-n", "0", "--device", "cpu",
                 "--no-compile"], "x.qdd"),
    "baseline": (["baseline", "jpeg", "--budget", "6000", "--quality", "50"], "x.zip"),
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_existing_output_needs_force(name, files, tmp_path):
    args, out_name = COMMANDS[name]
    args = [a.format(**{k: str(v) for k, v in files.items()}) for a in args]
    out = tmp_path / out_name
    out.write_bytes(b"keep me")
    _assert_refused(run_cli(*args, "-o", out), "exists", "--force")
    assert out.read_bytes() == b"keep me"
    result = run_cli(*args, "-o", out, "--force")
    assert result.exit_code == 0, result.output
    assert out.read_bytes() != b"keep me"
    assert [p.name for p in tmp_path.iterdir()] == [out_name]  # no temp file left


def test_distill_resume_replaces_its_own_output(tmp_path):
    out = tmp_path / "r.qdd"
    args = ["distill", "--budget", "2KiB", "--bits", "2", "-n", "0", "--device", "cpu",
            "--no-compile", "-o", out]
    assert run_cli(*args).exit_code == 0
    assert run_cli(*args, "--resume").exit_code == 0


def test_decode_into_the_folder_of_its_input_deletes_nothing(files, tmp_path):
    """H2: `decode d/in.qdd -o d --force` used to delete in.qdd and everything in d."""
    folder = tmp_path / "d"
    folder.mkdir()
    source = folder / "in.qdd"
    source.write_bytes(files["qdd"].read_bytes())
    (folder / "notes.txt").write_text("mine")
    _assert_refused(run_cli("decode", source, "-o", folder, "--force"), "input")
    assert source.read_bytes() == files["qdd"].read_bytes()
    assert (folder / "notes.txt").read_text() == "mine"
    # Spelled differently, and with only images beside the input: still refused.
    (folder / "notes.txt").unlink()
    (folder / "0.png").write_bytes(b"")
    _assert_refused(run_cli("decode", source, "-o", f"{folder}/./", "--force"), "input")
    assert source.exists() and (folder / "0.png").exists()


@pytest.mark.parametrize("out_name", ["imgs", "x.zarr"])
def test_force_keeps_a_folder_quadd_did_not_write(files, tmp_path, out_name):
    out = tmp_path / out_name
    out.mkdir()
    (out / "thesis.tex").write_text("mine")
    _assert_refused(run_cli("decode", files["qdd"], "-o", out, "--force"), "did not write")
    assert (out / "thesis.tex").read_text() == "mine"


@pytest.mark.parametrize("out_name", ["imgs", "x.zarr"])
def test_force_replaces_what_decode_wrote(files, tmp_path, out_name):
    out = tmp_path / out_name
    assert run_cli("decode", files["qdd"], "-o", out).exit_code == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    _assert_refused(run_cli("decode", files["qdd"], "-o", out), "--force")
    assert run_cli("decode", files["qdd"], "-o", out, "--force").exit_code == 0
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir()] == [out_name]  # no temp or old tree left

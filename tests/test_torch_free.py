"""The codec and its commands work without the optional extras, and a command that needs
a missing extra names it in one line.

Each check runs in a fresh interpreter whose prelude blocks torch, zarr, numcodecs, PIL
and sklearn (`sys.modules[name] = None` makes every import of them fail), then calls the
`quadd` entry point in-process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
VECTORS = sorted((ROOT / "spec" / "vectors").glob("*.qdd"))
BLOCKED = ("torch", "zarr", "numcodecs", "PIL", "sklearn")

PRELUDE = f"""
import sys
for name in {BLOCKED!r}:
    sys.modules[name] = None
"""


def _run(body: str, cwd: Path) -> subprocess.CompletedProcess:
    code = PRELUDE + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_import_needs_no_extra(tmp_path):
    res = _run("""
        import quadd_codec
        quadd_codec.QddFile, quadd_codec.FileSpec, quadd_codec.encode_qdd
        loaded = [m for m in ("torch", "zarr", "numcodecs", "PIL", "sklearn", "quadd_train")
                  if sys.modules.get(m) is not None]
        assert not loaded, loaded
        from quadd_codec import *  # noqa: F403 - what a star import brings must not need torch
        try:
            quadd_codec.QddDataset
        except ImportError as exc:
            print("lazy", exc.name, exc)
    """, tmp_path)
    assert res.returncode == 0, res.stderr
    assert "lazy torch" in res.stdout and "pip install 'quadd[torch]'" in res.stdout


def test_codec_commands_on_every_vector_without_extras(tmp_path):
    assert VECTORS
    res = _run(f"""
        import json
        from quadd_cli.main import main

        def quadd(*args):
            try:
                main(list(args), prog_name="quadd")
            except SystemExit as exc:
                assert exc.code in (0, None), (args, exc.code)

        for i, path in enumerate({[str(p) for p in VECTORS]!r}):
            quadd("verify", path)
            quadd("inspect", path)
            quadd("inspect", "--json", path)
            quadd("decode", path, "-o", f"x{{i}}.npz")
        loaded = [m for m in ("torch", "zarr", "numcodecs", "PIL", "sklearn", "quadd_train")
                  if sys.modules.get(m) is not None]
        print(json.dumps(loaded))
    """, tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1]) == []
    assert res.stdout.count("all checksums match") == len(VECTORS)
    for i, path in enumerate(VECTORS):
        with np.load(tmp_path / f"x{i}.npz") as z:
            expected = np.load(path.with_name(path.stem + ".decoded.npy"))
            assert z["x"].shape == expected.shape


def test_help_lists_every_command_without_torch(tmp_path):
    res = _run("""
        from quadd_cli.main import main
        try:
            main(["--help"], prog_name="quadd")
        except SystemExit as exc:
            assert exc.code == 0
        assert "quadd_train" not in sys.modules and "numpy" not in sys.modules
    """, tmp_path)
    assert res.returncode == 0, res.stderr
    for name in ("encode", "decode", "inspect", "verify", "import", "distill", "subset",
                 "plan", "eval"):
        assert f"\n  {name} " in res.stdout


def test_listed_short_help_is_the_commands_own():
    import click

    from quadd_cli.main import COMMANDS, main

    ctx = click.Context(main)
    for name, (_, short) in COMMANDS.items():
        command = main.get_command(ctx, name)
        assert command is not None
        assert click.Command(name, help=short).get_short_help_str(200) == \
            command.get_short_help_str(200), name


@pytest.mark.parametrize("args, needs", [
    (["distill", "--budget", "4KiB", "-n", "1", "-o", "out.qdd"],
     "quadd distill needs PyTorch: pip install 'quadd[train]'"),
    (["plan", "--budget", "4KiB"], "quadd plan needs PyTorch: pip install 'quadd[train]'"),
    (["eval", "{vector}", "--dataset", "digits"],
     "quadd eval needs PyTorch: pip install 'quadd[train]'"),
    (["decode", "{vector}", "-o", "out.zarr"],
     "quadd decode needs zarr and numcodecs: pip install 'quadd[zarr]'"),
    (["decode", "{vector}", "-o", "pngs"],
     "quadd decode needs Pillow: pip install 'quadd[images]'"),
    (["import", "store.zarr", "-o", "out.qdd"],
     "quadd import needs zarr and numcodecs: pip install 'quadd[zarr]'"),
])
def test_missing_extra_is_one_line(tmp_path, args, needs):
    args = [a.format(vector=VECTORS[0]) for a in args]
    (tmp_path / "store.zarr").mkdir()
    (tmp_path / "store.zarr" / "zarr.json").write_text("{}")
    res = _run(f"""
        from quadd_cli.main import main
        main({args!r}, prog_name="quadd")
    """, tmp_path)
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert res.stderr.strip().splitlines() == [f"quadd: error: {needs}"]
    assert not (tmp_path / "out.qdd").exists() and not (tmp_path / "out.zarr").exists()
    assert not (tmp_path / "pngs").exists()


def test_encode_of_an_image_folder_names_the_images_extra(tmp_path):
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    (tmp_path / "imgs" / "cat" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    res = _run("""
        from quadd_cli.main import main
        main(["encode", "imgs", "-o", "out.qdd", "-b", "4"], prog_name="quadd")
    """, tmp_path)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        "quadd: error: quadd encode needs Pillow: pip install 'quadd[images]'"]

"""Bad input to the codec commands: one error line and exit 1, never a hang, a huge
allocation, a traceback, a temp path in the message or a leftover file."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from quadd_cli.main import main
from quadd_codec import QddFormatError, QddValueError, quantize_array, write_qdd
from quadd_codec.imagefolder import atomic_directory
from quadd_codec.sources import load_source, validate_source
from quadd_codec.zarr_io import export_zarr, import_zarr

N, C, H, W = 8, 1, 4, 4


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def run(runner: CliRunner, *args: object):
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


def error_line(result, code: int = 1) -> str:
    """The single `quadd: error:` line of a failed run (asserting that it is one)."""
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("quadd: error: "), result.stderr
    assert "Traceback" not in result.output and ".tmp" not in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """tmp_path as the current directory, holding a small good.npz and good.qdd."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (N, C, H, W), dtype=np.uint8)
    np.savez("good.npz", x=x, y=np.arange(N) % 2)
    codes, levels = quantize_array(x.astype(np.float32) / 255, 2, group="tensor")
    write_qdd("good.qdd", codes, levels, np.arange(N) % 2, 2, "tensor", ["a", "b"])
    return tmp_path


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@contextlib.contextmanager
def _deadline(seconds: int):
    """Fail instead of hanging: a blocking open() is interrupted by the alarm."""
    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------ 1. huge labels


def test_label_above_class_limit_is_refused_before_naming_classes(runner, work):
    np.savez("big.npz", x=np.zeros((2, 1, 2, 2), np.uint8), y=np.array([0, 70000]))
    line = error_line(run(runner, "encode", "big.npz", "-b", "4", "-o", "e.qdd"))
    assert "label 70000" in line and "65536" in line
    # 2**40 would need terabytes of default class names: it must fail just as fast.
    with pytest.raises(QddValueError, match="label 1099511627776"):
        validate_source(np.zeros((2, 3), np.float32), np.array([0, 1 << 40]), None)
    assert not Path("e.qdd").exists()


# ------------------------------------------------------------ 2. tampered zarr stores


@pytest.fixture
def store(work) -> Path:
    export_zarr("good.qdd", "s.zarr")
    return work / "s.zarr"


def _edit_json(path: Path, edit) -> None:
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def _no_array_reads(monkeypatch) -> None:
    import zarr

    def read(self, selection):
        raise AssertionError(f"array of shape {self.shape} read before its shape was checked")

    monkeypatch.setattr(zarr.Array, "__getitem__", read)


def test_store_declaring_a_huge_codes_array_fails_before_reading(runner, store, monkeypatch):
    _edit_json(store / "codes" / "zarr.json", lambda m: m.__setitem__("shape", [300000000, 1]))
    _no_array_reads(monkeypatch)
    line = error_line(run(runner, "import", store, "-o", "back.qdd"))
    assert "codes has shape (300000000, 1)" in line and "(8, 4)" in line
    assert not Path("back.qdd").exists()


@pytest.mark.parametrize("keep_file_size, message", [
    # What bounds the reads is the bytes the store holds, with or without file_size.
    (True, "declares shape"),
    (False, "but the store holds 32 bytes"),
])
def test_store_with_consistent_huge_sizes_is_refused_before_reading(
        store, monkeypatch, keep_file_size, message):
    n = 10**6

    def edit(m):
        m["attributes"]["quadd"]["n"] = n
        if not keep_file_size:
            del m["attributes"]["quadd"]["file_size"]

    _edit_json(store / "zarr.json", edit)
    _edit_json(store / "codes" / "zarr.json", lambda m: m.__setitem__("shape", [n, 4]))
    _edit_json(store / "labels" / "zarr.json", lambda m: m.__setitem__("shape", [n]))
    _no_array_reads(monkeypatch)
    with pytest.raises(QddFormatError, match=message):
        import_zarr(store)


def test_zarr_source_declaring_more_than_free_memory_is_refused_before_reading(
        runner, work, monkeypatch):
    # An encode source (not an export): any shape can be declared, and missing chunks
    # read as fill values, so a tiny store could ask for terabytes.
    import zarr

    group = zarr.open_group("src.zarr", mode="w")
    group.create_array("x", shape=(10**7, 1, 64, 64), chunks=(1, 1, 64, 64), dtype="u1")
    group.create_array("y", shape=(10**7,), chunks=(1000,), dtype="i8")
    _no_array_reads(monkeypatch)
    monkeypatch.setattr("quadd_codec.zarr_guard.host_available_memory", lambda: 1 << 30)
    line = error_line(run(runner, "encode", "src.zarr", "-b", "4", "-o", "e.qdd"))
    assert "declares shape" in line and "GiB free" in line
    assert not Path("e.qdd").exists()


def test_store_with_a_malformed_qdd_version(runner, store):
    _edit_json(store / "zarr.json",
               lambda m: m["attributes"]["quadd"].__setitem__("qdd_version", "x"))
    assert "qdd_version must be [major, minor]" in error_line(
        run(runner, "import", store, "-o", "back.qdd"))


# ------------------------------------------------------------ 3. output targets


def test_existing_non_regular_output_is_never_replaced(runner, work):
    os.mkfifo("pipe.qdd")
    line = error_line(run(runner, "encode", "good.npz", "-b", "4", "-o", "pipe.qdd"))
    assert "cannot write pipe.qdd" in line and "FIFO" in line
    codes, levels = quantize_array(np.zeros((2, 3), np.float32), 1)
    with pytest.raises(QddValueError, match="FIFO"):
        write_qdd("pipe.qdd", codes, levels, None, 1, "channel", [])  # distill/subset path
    assert Path("pipe.qdd").is_fifo() and _leftovers(work) == []


@pytest.mark.parametrize(
    "args",
    [["encode", "good.npz", "-b", "4", "-o", "-"], ["decode", "good.qdd", "-o", "-"],
     ["decode", "good.qdd", "-o", "-", "--force"]],
)
def test_dash_is_not_an_output_file(runner, work, args):
    assert "cannot write to '-'" in error_line(run(runner, *args))
    assert not Path("-").exists()


# ------------------------------------------------------------ 4. messages and parents


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["encode", "good.npz", "-b", "4", "-o", "nodir/x.qdd"],
         "cannot write nodir/x.qdd: directory nodir does not exist"),
        (["decode", "good.qdd", "-o", "nodir/x.npz"],
         "cannot write nodir/x.npz: directory nodir does not exist"),
        (["decode", "good.qdd", "-o", "nodir/x.zarr"],
         "cannot write nodir/x.zarr: directory nodir does not exist"),
        (["decode", "good.qdd", "-o", "np1/sub/png"],
         "cannot write np1/sub/png: directory np1/sub does not exist"),
        (["decode", "good.qdd", "-o", "dir.npz"], "cannot write dir.npz: it exists and is a "
                                                  "directory"),
    ],
)
def test_output_errors_name_the_users_path_and_leave_nothing(runner, work, args, message):
    Path("dir.npz").mkdir()
    before = sorted(p.name for p in work.iterdir())
    assert message in error_line(run(runner, *args))
    assert sorted(p.name for p in work.iterdir()) == before


@pytest.mark.parametrize("output", ["out.qdd", "out.npz", "out.zarr", "pngs"])
def test_write_failure_is_reported_against_the_output(runner, work, monkeypatch, output):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(kwargs.get("dir", "")))

    monkeypatch.setattr(os, "fsync", full)
    if output in ("out.zarr", "pngs"):
        import tempfile

        monkeypatch.setattr(tempfile, "mkdtemp", no_space)
    args = (["encode", "good.npz", "-b", "4"] if output.endswith(".qdd")
            else ["decode", "good.qdd"])
    line = error_line(run(runner, *args, "-o", output))
    assert f"cannot write {output}: No space left on device" in line
    assert not Path(output).exists() and _leftovers(work) == []


# ------------------------------------------------------------ 5. current directory


@pytest.mark.parametrize("output", [".", "", "..", "sub/.."])
def test_current_directory_or_an_ancestor_is_not_an_output(runner, work, monkeypatch, output):
    (work / "inner" / "sub").mkdir(parents=True)
    monkeypatch.chdir(work / "inner")
    line = error_line(run(runner, "decode", "../good.qdd", "-o", output, "--force"))
    assert "current directory" in line
    assert _leftovers(work) == [] and _leftovers(work / "inner") == []


def test_failed_replace_leaves_no_old_folder(work, monkeypatch):
    Path("out").mkdir()
    Path("out/0.png").write_text("old")  # only what a decode writes may be replaced
    real = os.replace

    def busy(src, dst):
        if Path(src).name == "out":
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(src))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", busy)
    # The fallback for systems without an atomic exchange of two paths.
    monkeypatch.setattr("quadd_codec.imagefolder._exchange", lambda a, b: False)
    with pytest.raises(OSError, match="cannot write out: Device or resource busy"):
        with atomic_directory("out", replace=True) as tmp:
            (tmp / "new.txt").write_text("new")
    assert _leftovers(work) == [] and Path("out/0.png").read_text() == "old"


# ------------------------------------------------------------ 6. non-regular inputs


@pytest.mark.parametrize("command", [["inspect"], ["verify"], ["decode", "-o", "x.npz"],
                                     ["encode", "-b", "4", "-o", "x.qdd"]])
def test_fifo_input_fails_without_opening_it(runner, work, command):
    os.mkfifo("fifo1")
    with _deadline(20):
        line = error_line(run(runner, command[0], "fifo1", *command[1:]))
    assert "fifo1 is a FIFO" in line


# ------------------------------------------------------------ 7. lying .npy headers


def _lying_npy(path: Path, samples: int) -> None:
    """A .npy whose header claims `samples` samples of 64 float32 but holds 4 of them."""
    np.save(path, np.zeros((4, 1, 8, 8), np.float32))
    data = path.read_bytes()
    path.write_bytes(data.replace(b"(4, 1, 8, 8)", f"({samples}, 1, 8, 8)".encode(), 1))


def test_npy_header_claiming_more_than_the_file_holds_is_truncated(work):
    _lying_npy(work / "lie.npy", 10**6)
    with pytest.raises(QddValueError, match="lie.npy is truncated.*only 1,0.. bytes follow"):
        load_source("lie.npy")
    import zipfile

    with zipfile.ZipFile("lie.npz", "w") as z:
        z.write("lie.npy", "x.npy")
    with pytest.raises(QddValueError, match="array 'x' of lie.npz is truncated"):
        load_source("lie.npz")


# ------------------------------------------------------------ 8. wording, exit codes


def test_summary_says_larger_when_the_output_is_larger(runner, work):
    np.savez_compressed("zeros.npz", x=np.zeros((64, 1, 8, 8), np.uint8))
    result = run(runner, "encode", "zeros.npz", "-b", "32", "-o", "raw.qdd")
    assert result.exit_code == 0, result.output
    assert "x larger than the input" in result.stdout
    assert "smaller than the input" not in result.stdout


@pytest.mark.parametrize(
    "args",
    [["inspect", "."], ["inspect", "missing.qdd"], ["verify", "."],
     ["decode", ".", "-o", "a.npz"], ["import", "good.npz", "-o", "a.qdd"],
     ["import", "missing.zarr", "-o", "a.qdd"], ["encode", "good.npz", "-b", "4", "-o", "."],
     ["encode", "missing.npz", "-b", "4", "-o", "a.qdd"]],
)
def test_path_problems_exit_1_in_every_codec_command(runner, work, args):
    error_line(run(runner, *args), code=1)


def test_an_output_folder_named_with_a_trailing_slash(work):
    # "out/" is the folder out in the current directory, not something inside out.
    from quadd_codec.imagefolder import atomic_directory

    with atomic_directory("fresh/") as tmp:
        (Path(tmp) / "a.txt").write_text("x")
    assert (work / "fresh" / "a.txt").read_text() == "x"
    (work / "empty").mkdir()
    with atomic_directory("empty/") as tmp:
        (Path(tmp) / "b.txt").write_text("y")
    assert (work / "empty" / "b.txt").read_text() == "y" and _leftovers(work) == []

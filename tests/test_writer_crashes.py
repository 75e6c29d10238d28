"""Writers that are killed or stopped, and outputs that touch inputs (issue 27: M6 and
the Low list): the target never goes missing, leftovers are cleaned, a stop deletes the
temp folder, an output never lands inside an input folder."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import msgpack
import numpy as np
import pytest
from conftest import craft, error_line, recraft, run_cli, small_qdd_bytes, split

from quadd_codec import quantize_array, write_qdd
from quadd_codec.imagefolder import atomic_directory
from quadd_codec.zarr_io import MAX_EXTRA_ARRAYS, export_zarr


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    x = np.random.default_rng(0).random((6, 1, 4, 4), dtype=np.float32)
    codes, levels = quantize_array(x, 2)
    write_qdd("d.qdd", codes, levels, np.arange(6) % 2, 2, "channel", ["a", "b"])
    return tmp_path


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_killed_force_swap_never_leaves_the_target_missing(work):
    Path("out").mkdir()
    Path("out/0.png").write_bytes(b"old")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child: killed right after the swap
        import quadd_codec.imagefolder as imagefolder

        imagefolder.shutil.rmtree = lambda *a, **k: os._exit(9)
        try:
            with atomic_directory("out", replace=True) as tmp:
                (tmp / "1.png").write_bytes(b"new")
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 9
    assert sorted(os.listdir("out")) == ["1.png"]  # the new tree, complete
    assert len(_hidden(work)) == 1  # the old tree, left by the killed writer
    with atomic_directory("other"):  # the next writer of the same target cleans up
        pass
    assert len(_hidden(work)) == 1
    with atomic_directory("out", replace=True) as tmp:
        (tmp / "2.png").write_bytes(b"newer")
    assert _hidden(work) == [] and os.listdir("out") == ["2.png"]


def test_temp_files_of_dead_writers_are_cleaned(work):
    stale = work / ".e.npz.999999999.abcdefgh.tmp"  # no such process can exist
    stale.write_bytes(b"half")
    mine = work / ".e.npz.notes"
    mine.write_bytes(b"not a temp file")
    alive = work / f".e.npz.{os.getppid()}.abcdefgh.tmp"
    alive.write_bytes(b"a running writer")
    assert run_cli("decode", "d.qdd", "-o", "e.npz").exit_code == 0
    assert not stale.exists() and mine.exists() and alive.exists()


def test_written_folders_are_flushed(work, monkeypatch):
    flushed = []
    monkeypatch.setattr("quadd_codec.paths.fsync_dir", flushed.append)
    monkeypatch.setattr("quadd_codec.imagefolder.fsync_dir", flushed.append)
    assert run_cli("decode", "d.qdd", "-o", "e.npz").exit_code == 0
    assert run_cli("decode", "d.qdd", "-o", "e.zarr").exit_code == 0
    assert flushed == [".", "."]


def test_sigterm_removes_the_temp_folder(work, monkeypatch):
    def stopped(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr("quadd_codec.imagefolder.write_image_folder", stopped)
    result = run_cli("decode", "d.qdd", "-o", "pngs")
    assert result.exit_code == 143 and "terminated" in result.stderr
    assert _hidden(work) == [] and not Path("pngs").exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_many_extra_sections_are_refused_by_zarr_export_at_once(work):
    # M6: one array per section; 60,000 empty sections made 60,000 folders in 112 s.
    def add(header, payloads):
        payloads.extend((f"x{i}", b"") for i in range(20000))

    Path("many.qdd").write_bytes(recraft(small_qdd_bytes(), add))
    line = error_line(run_cli("decode", "many.qdd", "-o", "m.zarr"))
    assert "20,000 extra sections" in line and str(MAX_EXTRA_ARRAYS) in line
    assert _hidden(work) == [] and not Path("m.zarr").exists()
    assert run_cli("decode", "many.qdd", "-o", "m.npz").exit_code == 0
    assert run_cli("verify", "many.qdd").exit_code == 0


def test_an_output_file_never_lands_inside_an_input_folder(work):
    export_zarr("d.qdd", "s.zarr")
    chunk = Path("s.zarr/codes/c/0/0")
    before = chunk.read_bytes()
    line = error_line(run_cli("import", "s.zarr", "-o", chunk, "--force"))
    assert "lies inside the input s.zarr" in line
    assert chunk.read_bytes() == before


def test_label_errors_name_labels(work):
    export_zarr("d.qdd", "s.zarr")
    import zarr

    labels = zarr.open_array("s.zarr/labels", mode="r+")
    labels[0] = 7
    line = error_line(run_cli("import", "s.zarr", "-o", "back.qdd"))
    assert "labels must lie in 0..1" in line and "bits" not in line


def test_huge_denorm_is_a_header_error_without_warnings(work):
    import warnings

    from quadd_codec import QddFile, QddHeaderError

    header, payloads, _ = split(small_qdd_bytes(shape=(6,), classes=("a",)))
    header["denorm"] = [[1e300], [0.0]]  # a float64: no float32 holds it
    data = craft(header, payloads, header_bytes=msgpack.packb(header, use_bin_type=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(QddHeaderError, match="float32 range"):
            QddFile(data)

"""A file changed on disk under a reader (issue 27: H3, M4, item 3): never wrong samples
or a SIGBUS; one clear `QddChangedError`, from DataLoader workers too."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from quadd_codec import QddChangedError, QddFile, quantize_array, write_qdd

N = 64


def _write(path: Path, seed: int, n: int = N) -> np.ndarray:
    x = np.random.default_rng(seed).random((n, 1, 8, 8), dtype=np.float32)
    codes, levels = quantize_array(x, 4, group="tensor")
    write_qdd(path, codes, levels, np.arange(n) % 3, 4, "tensor", ["a", "b", "c"])
    with QddFile(path) as f:
        return f.read_all()


def _rewrite_in_place(src: Path, dst: Path) -> None:
    """What `cp src dst` does: truncate dst and write into the same inode."""
    ino = dst.stat().st_ino
    shutil.copyfile(src, dst)
    assert dst.stat().st_ino == ino


@pytest.fixture
def files(tmp_path):
    a, b, short = tmp_path / "a.qdd", tmp_path / "b.qdd", tmp_path / "short.qdd"
    return a, _write(a, 0), b, _write(b, 1), short, _write(short, 2, n=8)


def test_small_files_are_read_into_memory_by_default(files):
    a, expect, b, _, short, _ = files
    with QddFile(a) as f:
        assert f._src.in_memory and f._fd == -1  # nothing on disk is touched again
        _rewrite_in_place(short, a)  # shorter: a mapping would SIGBUS here
        np.testing.assert_array_equal(f.read_all(), expect)  # the snapshot, unchanged


@pytest.mark.parametrize("other", ["same size", "shorter"])
def test_positioned_reads_detect_an_in_place_rewrite(files, other):
    a, expect, b, _, short, _ = files
    with QddFile(a, access="pread") as f:
        np.testing.assert_array_equal(f.read(slice(0, 4)), expect[:4])
        _rewrite_in_place(b if other == "same size" else short, a)
        with pytest.raises(QddChangedError, match="changed on disk"):
            f.read([5, 1, 2])
        with pytest.raises(QddChangedError):
            f.verify()


def test_positioned_reads_survive_an_atomic_replace(files):
    a, expect, b, _, _, _ = files
    with QddFile(a, access="pread") as f:
        os.replace(b, a)  # the open inode stays as it was
        np.testing.assert_array_equal(f[[9, 3, 4, 5, 60]], expect[[9, 3, 4, 5, 60]])
        f.verify()


def test_large_files_use_positioned_reads(files, monkeypatch):
    a, expect, *_ = files
    monkeypatch.setattr("quadd_codec.access.IN_MEMORY_MAX", 100)
    with QddFile(a) as f:
        assert not f._src.in_memory
        np.testing.assert_array_equal(f[[3, 2, 1, 40, 41, 42, 3]], expect[[3, 2, 1, 40, 41, 42, 3]])


def _loader(ds, context):
    from torch.utils.data import DataLoader

    return DataLoader(ds, batch_size=8, num_workers=1, multiprocessing_context=context)


def test_spawn_worker_reports_an_atomic_replace(files):
    # M4: the dataset is unpickled in the worker; finding the file replaced there used to
    # kill the worker ("worker exited unexpectedly") with the reason lost.
    pytest.importorskip("torch")
    from quadd_codec.dataset import QddDataset

    a, _, b, _, _, _ = files
    ds = QddDataset(a)
    os.replace(b, a)
    with pytest.raises(QddChangedError, match="changed on disk"):
        next(iter(_loader(ds, "spawn")))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_worker_reports_an_in_place_rewrite(files):
    pytest.importorskip("torch")
    from quadd_codec.dataset import QddDataset

    a, _, b, _, _, _ = files
    ds = QddDataset(a, access="pread")
    _rewrite_in_place(b, a)
    with pytest.raises(QddChangedError, match="changed on disk"):
        next(iter(_loader(ds, "fork")))


def test_a_file_that_cannot_be_mapped_names_its_path(files, monkeypatch):
    # Low: mmap on a file system without mmap support failed with "No such device" alone.
    import errno
    import mmap

    def nodev(*args, **kwargs):
        raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))

    monkeypatch.setattr(mmap, "mmap", nodev)
    a = files[0]
    with pytest.raises(ValueError, match=f"cannot memory-map {a}: No such device"):
        QddFile(a, access="mmap")
    QddFile(a).close()  # the default never maps

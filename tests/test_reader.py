"""Reader behaviour: random access, streams, pickling, fork, DataLoader workers, atomic writes."""

from __future__ import annotations

import io
import os
import pickle
import sys
import threading

import numpy as np
import pytest
import torch
from conftest import expected_decode, section_span, small_qdd_bytes
from torch.utils.data import DataLoader, DistributedSampler

from quadd_codec import (
    Denorm,
    QddDataset,
    QddFile,
    QddFormatError,
    QddValueError,
    atomic_write,
    quantize_array,
    write_qdd,
)

POSIX = os.name == "posix"


@pytest.fixture
def dn_file(qdd_factory):
    """An 11-sample 3-bit channel file with denorm (odd n: DistributedSampler pads)."""
    return qdd_factory(n=11, shape=(3, 3, 5), bits=3,
                       denorm=Denorm([0.5, 0.25, 2.0], [0.1, -0.2, 0.3]))


# ----------------------------------------------------------------- random access


@pytest.mark.parametrize("access", ["auto", "memory", "pread", "mmap"])
def test_random_access(dn_file, access):
    path, inp = dn_file
    ref = expected_decode(inp["codes"], inp["levels"], "channel")
    with QddFile(path, access=access) as f:
        assert f.path == os.fspath(path)
        for k in range(len(f)):
            np.testing.assert_array_equal(f.read(k), ref[k])
            np.testing.assert_array_equal(f[k], ref[k])
            np.testing.assert_array_equal(f.read(k - len(f)), ref[k])  # negative index
            np.testing.assert_array_equal(f.read(np.int64(k)), ref[k])
        assert f.read(3).shape == (3, 3, 5)
        np.testing.assert_array_equal(f[2:7], ref[2:7])
        np.testing.assert_array_equal(f[::-3], ref[::-3])
        np.testing.assert_array_equal(f[-4:], ref[-4:])
        np.testing.assert_array_equal(f[20:30], ref[20:30])  # empty slice, like numpy
        idx = [5, 0, 5, 10, -1]
        np.testing.assert_array_equal(f[idx], ref[idx])
        np.testing.assert_array_equal(f[np.array([5, 0, 10], np.uint8)], ref[[5, 0, 10]])
        np.testing.assert_array_equal(f.indices([1, 2]), inp["codes"][[1, 2]])
        for bad in (11, -12, 10**12, [0, 11], np.array([-12])):
            with pytest.raises(IndexError):
                f.read(bad)
        with pytest.raises(QddValueError):
            f.read(1.0)
        with pytest.raises(QddValueError):
            f.read(np.array([0.5]))


def test_packed_is_the_sample_bytes(dn_file):
    path, _ = dn_file
    data = path.read_bytes()
    start, _ = section_span(data, "codes")
    with QddFile(path) as f:
        size = f.layout.sample_nbytes
        for k in (0, 4, 10, -1):
            kk = k % len(f)
            assert f.packed(k).tobytes() == data[start + kk * size : start + (kk + 1) * size]


def test_read_survives_replacing_the_file(tmp_path, qdd_factory):
    path, inp = qdd_factory(n=4, shape=(2, 3))
    before = QddFile(path).read_all()
    f = QddFile(path)
    other, _ = qdd_factory(n=4, shape=(2, 3), seed=99)
    os.replace(other, path)  # the mapping keeps the old inode
    np.testing.assert_array_equal(f.read_all(), before)
    f.close()


def test_close_keeps_returned_arrays_valid(dn_file):
    path, inp = dn_file
    f = QddFile(path)
    out = f.read_all()
    row = f.packed(0)  # a view into the map: close must not crash while it lives
    f.close()
    f.close()  # idempotent
    np.testing.assert_array_equal(out, expected_decode(inp["codes"], inp["levels"], "channel"))
    assert row.size == f.layout.sample_nbytes


# -------------------------------------------------------------------- streams


class ReadOnly:
    """A stream with nothing but `read`, returning short reads (like a socket)."""

    def __init__(self, data: bytes, step: int = 7) -> None:
        self._buf = io.BytesIO(data)
        self._step = step

    def read(self, size: int = -1) -> bytes:
        return self._buf.read(self._step if size < 0 else min(size, self._step))


def test_read_from_object_with_only_read():
    data = small_qdd_bytes(n=9, bits=5, group="sample-channel")
    f = QddFile(ReadOnly(data))
    np.testing.assert_array_equal(f.read_all(), QddFile(data).read_all())
    np.testing.assert_array_equal(f.labels, QddFile(data).labels)
    assert f.path is None


@pytest.mark.skipif(not POSIX, reason="os.pipe semantics")
@pytest.mark.parametrize("buffering", [0, -1])
def test_read_from_a_pipe(buffering):
    data = small_qdd_bytes(n=40, shape=(3, 7, 5), bits=7)
    r, w = os.pipe()

    def feed() -> None:
        with os.fdopen(w, "wb", buffering=0) as out:
            for i in range(0, len(data), 13):
                out.write(data[i : i + 13])

    thread = threading.Thread(target=feed)
    thread.start()
    with os.fdopen(r, "rb", buffering=buffering) as stream:
        f = QddFile(stream)
        thread.join(timeout=10)
        np.testing.assert_array_equal(f.read_all(), QddFile(data).read_all())
    # A stream is read only to the trailer: bytes after it are left for the next reader.
    two = io.BytesIO(data + data)
    QddFile(two)
    assert two.read() == data


# ------------------------------------------------------------ pickling & fork


def test_pickle_round_trip(dn_file):
    path, inp = dn_file
    for source in (path, path.read_bytes(), io.BytesIO(path.read_bytes())):
        f = QddFile(source)
        g = pickle.loads(pickle.dumps(f))
        np.testing.assert_array_equal(g.read_all(denormalize=True),
                                      f.read_all(denormalize=True))
        np.testing.assert_array_equal(g.labels, inp["labels"])
        assert g.path == f.path and g.denorm == f.denorm
    blob = pickle.dumps(QddFile(path))
    assert len(blob) < 500  # a mapped file pickles as its path, not its bytes


def test_unpickle_detects_a_changed_file(qdd_factory):
    path, _ = qdd_factory(n=4, shape=(2, 3))
    blob = pickle.dumps(QddFile(path))
    other, _ = qdd_factory(n=4, shape=(2, 3), seed=5)
    os.replace(other, path)
    with pytest.raises(QddFormatError, match="changed"):
        pickle.loads(blob)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("access", ["memory", "pread", "mmap"])
def test_child_reads_after_fork(dn_file, qdd_factory, access):
    path, inp = dn_file
    f = QddFile(path, access=access)
    expect = f.read_all()  # the parent has used its mapping before the fork
    other, _ = qdd_factory(n=11, shape=(3, 3, 5), seed=42)
    os.replace(other, path)  # the child must still read the inode the parent opened
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            os.close(r)
            ok = (np.array_equal(f.read_all(), expect) and np.array_equal(f.read(3), expect[3])
                  and np.array_equal(f[[7, 1]], expect[[7, 1]]))
            f.verify()
            os.write(w, b"ok" if ok else b"bad")
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as res:
        answer = res.read()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert answer == b"ok"
    np.testing.assert_array_equal(f.read_all(), expect)  # the parent is unaffected


# ----------------------------------------------------------------- QddDataset


def direct(path, denormalize=True):
    with QddFile(path) as f:
        return f.read_all(denormalize), f.labels


def test_getitems_equals_getitem(dn_file):
    path, inp = dn_file
    ds = QddDataset(path)
    assert len(ds) == 11 and ds.num_classes == 3 and ds.sample_shape == (3, 3, 5)
    idx = [10, 0, 3, 3, 7]
    batch = ds.__getitems__(idx)
    for (x, y), k in zip(batch, idx, strict=True):
        x1, y1 = ds[k]
        assert torch.equal(x, x1) and y == y1 == int(inp["labels"][k])
        assert x.dtype == torch.float32 and isinstance(y, int)
    values, labels = direct(path)
    xs, ys = ds.tensors()
    assert torch.equal(xs, torch.from_numpy(values)) and ys.tolist() == labels.tolist()
    raw = QddDataset(path, denormalize=False)
    assert torch.equal(raw[4][0], torch.from_numpy(direct(path, False)[0][4]))
    assert not torch.equal(raw[4][0], ds[4][0])


def test_dataset_unlabeled_and_transform(qdd_factory):
    path, _ = qdd_factory(n=3, shape=(4,), classes=[])
    ds = QddDataset(path, transform=lambda t: t * 2)
    assert ds.targets.tolist() == [-1, -1, -1]
    x, y = ds[1]
    assert y == -1 and torch.equal(x, torch.from_numpy(direct(path)[0][1]) * 2)
    assert [y for _, y in ds.__getitems__([0, 2])] == [-1, -1]


def _collect(loader):
    xs, ys = [], []
    for x, y in loader:
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)


@pytest.mark.parametrize("context", [
    pytest.param("fork", marks=pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")),
    "spawn",
])
def test_dataloader_workers(dn_file, context):
    path, _ = dn_file
    ds = QddDataset(path)
    ds.file.read_all()  # the parent's mapping is live before workers start
    loader = DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context=context)
    x, y = _collect(loader)
    values, labels = direct(path)
    assert torch.equal(x, torch.from_numpy(values))
    assert y.tolist() == labels.tolist()


def test_distributed_sampler_covers_every_sample(dn_file):
    path, _ = dn_file
    ds = QddDataset(path)
    values, labels = direct(path)
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=3)
        sampler.set_epoch(1)
        order = list(sampler)
        x, y = _collect(DataLoader(ds, batch_size=3, sampler=sampler))
        assert torch.equal(x, torch.from_numpy(values[order]))
        assert y.tolist() == labels[order].tolist()
        seen += order
    assert len(seen) == 12  # 11 samples, padded to an even split
    assert set(seen) == set(range(11))


def test_dataset_pickles(dn_file):
    path, _ = dn_file
    ds = pickle.loads(pickle.dumps(QddDataset(path, denormalize=False)))
    assert not ds.denormalize
    assert torch.equal(ds.tensors()[0], torch.from_numpy(direct(path, False)[0]))


# --------------------------------------------------------------- atomic write


def _write_args(n=5):
    x = np.random.default_rng(0).normal(size=(n, 2, 3)).astype(np.float32)
    codes, levels = quantize_array(x, 2)
    return codes, levels


def _listing(directory):
    return sorted(p.name for p in directory.iterdir())


def test_failed_write_leaves_no_file(tmp_path):
    codes, levels = _write_args()
    path = tmp_path / "out.qdd"
    with pytest.raises(QddValueError):
        write_qdd(path, codes, levels, np.array([0, 1, 2, 3, 9]), 2, "channel", ["a", "b"])
    assert _listing(tmp_path) == []


def test_failure_mid_write_leaves_no_file_and_no_temp(tmp_path, monkeypatch):
    def chunks():
        yield b"x" * 1000
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(tmp_path / "out.qdd", chunks())
    assert _listing(tmp_path) == []

    codes, levels = _write_args()
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("fsync failed")))
    with pytest.raises(OSError, match="fsync"):
        write_qdd(tmp_path / "out.qdd", codes, levels, None, 2, "channel", [])
    assert _listing(tmp_path) == []


def test_failed_overwrite_keeps_the_old_file(tmp_path, monkeypatch):
    codes, levels = _write_args()
    path = tmp_path / "keep.qdd"
    write_qdd(path, codes, levels, np.arange(5) % 2, 2, "channel", ["a", "b"])
    old = path.read_bytes()

    with pytest.raises(QddValueError):  # invalid labels: nothing is written at all
        write_qdd(path, codes, levels, np.arange(5), 2, "channel", ["a", "b"])
    assert path.read_bytes() == old

    import quadd_codec.writer as writer

    def broken_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(writer.os, "replace", broken_replace)
    with pytest.raises(OSError, match="rename"):
        write_qdd(path, codes[:3], levels, None, 2, "channel", [])
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert _listing(tmp_path) == ["keep.qdd"]
    QddFile(path, verify=True)


def test_write_sets_permissions_and_replaces(tmp_path):
    codes, levels = _write_args()
    path = tmp_path / "p.qdd"
    size1 = write_qdd(path, codes, levels, None, 2, "channel", [])
    size2 = write_qdd(path, codes[:2], levels, None, 2, "channel", [])
    assert os.path.getsize(path) == size2 < size1
    if POSIX and sys.platform != "cygwin":
        assert (path.stat().st_mode & 0o777) == 0o644
    assert _listing(tmp_path) == ["p.qdd"]

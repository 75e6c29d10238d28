"""Hostile zarr stores (issue 27: H1, M2): sizes are bounded by the bytes a store really
holds and by the free memory, never by its own attributes; links are never followed;
attribute types are exact; a store that records no checksum is never called identical."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import error_line, run_cli

from quadd_codec import QddFormatError, QddValueError, quantize_array, write_qdd
from quadd_codec.sources import load_source
from quadd_codec.zarr_io import export_zarr, import_zarr, zarr_to_qdd

N = 8


def _edit(path: Path, edit) -> None:
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def _quadd(m):
    return m["attributes"]["quadd"]


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    codes, levels = quantize_array(rng.random((N, 1, 4, 4), dtype=np.float32), 2, group="tensor")
    write_qdd("good.qdd", codes, levels, np.arange(N) % 2, 2, "tensor", ["a", "b"])
    export_zarr("good.qdd", "s.zarr")
    return tmp_path / "s.zarr"


def test_huge_n_with_a_raised_file_size_is_refused_by_the_bytes_on_disk(store):
    # H1: the store's own file_size used to be the bound, so raising it let a 2.5 KB
    # store declare gigabytes.
    n = 10**8

    def edit(m):
        _quadd(m)["n"] = n
        _quadd(m)["file_size"] = 10**12

    _edit(store / "zarr.json", edit)
    _edit(store / "codes" / "zarr.json", lambda m: m.__setitem__("shape", [n, 4]))
    _edit(store / "labels" / "zarr.json", lambda m: m.__setitem__("shape", [n]))
    line = error_line(run_cli("import", store, "-o", "back.qdd"))
    assert "declares shape" in line and "store holds" in line
    assert not Path("back.qdd").exists()


def test_store_without_file_crc32c_is_not_called_identical(store):
    _edit(store / "zarr.json", lambda m: (_quadd(m).pop("file_crc32c"),
                                          _quadd(m).__setitem__("classes", ["x", "y"])))
    result = run_cli("import", store, "-o", "back.qdd")
    assert result.exit_code == 0, result.output
    assert "identical" not in result.output and "not checked" in result.output
    size, checked = zarr_to_qdd(store, "again.qdd")
    assert not checked and size == Path("again.qdd").stat().st_size


def test_a_linked_chunk_is_refused(store, tmp_path):
    secret = tmp_path / "secret.bin"
    chunk = store / "codes" / "c" / "0" / "0"
    secret.write_bytes(chunk.read_bytes())
    chunk.unlink()
    os.symlink(secret, chunk)
    line = error_line(run_cli("import", store, "-o", "back.qdd"))
    assert "symbolic link" in line and "c/0/0" in line
    with pytest.raises(QddFormatError, match="symbolic link"):
        import_zarr(store)


def test_a_linked_encode_source_chunk_is_refused(tmp_path, monkeypatch):
    import zarr

    monkeypatch.chdir(tmp_path)
    group = zarr.open_group("src.zarr", mode="w")
    group.create_array("x", shape=(4, 3), chunks=(4, 3), dtype="f4")[...] = 1.0
    chunk = next(p for p in Path("src.zarr/x").rglob("*") if p.is_file()
                 and p.name != "zarr.json")
    Path("outside").write_bytes(chunk.read_bytes())
    chunk.unlink()
    os.symlink(tmp_path / "outside", chunk)
    with pytest.raises(QddValueError, match="symbolic link"):
        load_source("src.zarr")


@pytest.mark.parametrize("key, value", [("n", "8"), ("n", 8.5), ("n", True), ("bits", 2.0),
                                        ("sample_shape", [1, 4, "4"]), ("upsample", "1"),
                                        ("classes", [1, 2])])
def test_attributes_must_have_exact_types(store, key, value):
    _edit(store / "zarr.json", lambda m: _quadd(m).__setitem__(key, value))
    line = error_line(run_cli("import", store, "-o", "back.qdd"))
    assert f"attribute {key} must" in line
    assert not Path("back.qdd").exists()


def test_compressed_arrays_are_refused_by_import(store):
    # Their decompressed size is a claim the store alone makes.
    _edit(store / "codes" / "zarr.json",
          lambda m: m.__setitem__("codecs", [{"name": "bytes"},
                                             {"name": "zstd", "configuration": {"level": 0}}]))
    assert "is compressed" in error_line(run_cli("import", store, "-o", "back.qdd"))


def test_exported_chunks_of_fill_values_are_written(tmp_path):
    # A one-class file's labels are all 0 (zarr's fill value): the chunk must still exist
    # so import can check the store holds what it declares.
    codes, levels = quantize_array(np.zeros((3, 5), np.float32), 1)
    write_qdd(tmp_path / "one.qdd", codes, levels, np.zeros(3, int), 1, "channel", ["only"])
    export_zarr(tmp_path / "one.qdd", tmp_path / "one.zarr")
    size, checked = zarr_to_qdd(tmp_path / "one.zarr", tmp_path / "back.qdd")
    assert checked and (tmp_path / "back.qdd").read_bytes() == (tmp_path / "one.qdd").read_bytes()


def test_chunk_shape_bomb_is_refused_before_reading(tmp_path, monkeypatch):
    # M2: a tiny array with huge compressed chunks: zarr decodes whole chunks.
    import zarr

    monkeypatch.chdir(tmp_path)
    group = zarr.open_group("bomb.zarr", mode="w")
    group.create_array("x", shape=(4, 1, 8, 8), chunks=(4, 1, 8, 8), dtype="f4")[...] = 0.5
    _edit(Path("bomb.zarr/x/zarr.json"),
          lambda m: m["chunk_grid"]["configuration"].__setitem__("chunk_shape",
                                                                 [10**7, 1, 8, 8]))
    line = error_line(run_cli("encode", "bomb.zarr", "-b", "4", "-o", "e.qdd"))
    assert "declares chunks" in line
    assert not Path("e.qdd").exists()


def test_many_missing_chunks_are_refused(tmp_path, monkeypatch):
    import zarr

    monkeypatch.chdir(tmp_path)
    group = zarr.open_group("sparse.zarr", mode="w")
    group.create_array("x", shape=(10**6, 1, 8, 8), chunks=(1, 1, 8, 8), dtype="f4")
    line = error_line(run_cli("encode", "sparse.zarr", "-b", "4", "-o", "e.qdd"))
    assert "store holds 0 bytes" in line


def test_a_store_with_a_few_fill_chunks_still_encodes(tmp_path, monkeypatch):
    # zarr leaves out chunks of fill values; a handful of them is normal.
    import zarr

    monkeypatch.chdir(tmp_path)
    group = zarr.open_group("ok.zarr", mode="w")
    x = group.create_array("x", shape=(6, 1, 4, 4), chunks=(2, 1, 4, 4), dtype="f4")
    x[2:] = 0.25  # the first chunk stays at the fill value and is not written
    result = run_cli("encode", "ok.zarr", "-b", "2", "-o", "e.qdd")
    assert result.exit_code == 0, result.output

"""Chunk checksums (format 1.3, FORMAT.md 4a; issue 27 item 4): a CRC32C per chunk of
samples, checked when a chunk is first read, so damaged samples are never returned even
when the whole-file check is deferred; `quadd verify --json` names the damaged chunks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import VECTORS, recraft, run_cli, section_span

from quadd_codec import QddChecksumError, QddFile, QddFormatError, quantize_array, write_qdd
from quadd_codec.zarr_io import export_zarr, zarr_to_qdd

N, CHUNK = 10, 4  # chunks of samples 0-3, 4-7, 8-9


@pytest.fixture
def chunked(tmp_path) -> tuple[Path, np.ndarray]:
    x = np.random.default_rng(0).random((N, 1, 4, 4), dtype=np.float32)
    codes, levels = quantize_array(x, 3)
    path = tmp_path / "c.qdd"
    write_qdd(path, codes, levels, np.arange(N) % 2, 3, "channel", ["a", "b"], chunk=CHUNK)
    with QddFile(path) as f:
        return path, f.read_all()


def _damage_sample(path: Path, k: int) -> None:
    data = bytearray(path.read_bytes())
    start, _ = section_span(bytes(data), "codes")
    data[start + k * 6] ^= 0x10  # 16 values at 3 bits: 6 bytes a sample
    path.write_bytes(bytes(data))


def test_written_and_read_back(chunked):
    path, expect = chunked
    with QddFile(path, verify=True) as f:
        assert f.chunk == CHUNK and f.layout.chunks == 3 and f.layout.minor == 3
        assert f.damaged_chunks() == []
        np.testing.assert_array_equal(f.read_all(), expect)


@pytest.mark.parametrize("access", ["memory", "pread", "mmap"])
def test_damaged_chunk_is_caught_on_first_read_without_verify(chunked, access):
    path, expect = chunked
    _damage_sample(path, 5)
    with QddFile(path, access=access) as f:  # opening checks codebooks and labels only
        np.testing.assert_array_equal(f.read([0, 3, 9]), expect[[0, 3, 9]])
        with pytest.raises(QddChecksumError, match=r"chunk 1 of the codes \(samples 4\.\.7\)"):
            f.read(6)  # a good sample of a damaged chunk is refused too
        with pytest.raises(QddChecksumError, match="chunk 1"):
            f.read_all()
        assert f.damaged_chunks() == [1]
        with pytest.raises(QddChecksumError, match="1 of 3 chunks of the codes"):
            f.verify()


def test_verify_json_lists_damaged_chunks(chunked):
    path, _ = chunked
    good = run_cli("verify", "--json", path)
    assert good.exit_code == 0 and json.loads(good.stdout)["damaged_chunks"] == []
    _damage_sample(path, 1)
    _damage_sample(path, 9)
    bad = run_cli("verify", "--json", path)
    report = json.loads(bad.stdout)
    assert bad.exit_code == 1 and not report["ok"]
    assert report["damaged_chunks"] == [0, 2] and report["chunk_samples"] == CHUNK
    assert "checksum" in report["error"]


def test_cli_encode_adds_chunk_checksums(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(1).random((5, 2, 3), np.float32))
    out = tmp_path / "d.qdd"
    assert run_cli("encode", tmp_path / "d.npz", "-b", "2", "-o", out,
               "--chunk-checksums").exit_code == 0
    with QddFile(out) as f:
        assert f.chunk >= 5 and f.layout.chunks == 1


def test_chunk_field_and_section_must_agree():
    data = (VECTORS / "chunked_4bit_crcs.qdd").read_bytes()
    with pytest.raises(QddFormatError, match="must come together"):
        QddFile(recraft(data, lambda h, p: h.pop("chunk"), minor=3))

    def shorter(h, p):
        p[3] = ("chunk_crcs", p[3][1][:-4])

    with pytest.raises(QddFormatError, match="chunk_crcs"):
        QddFile(recraft(data, shorter, minor=3))


def test_zarr_round_trip_keeps_chunk_checksums(chunked, tmp_path):
    path, _ = chunked
    export_zarr(path, tmp_path / "c.zarr")
    size, checked = zarr_to_qdd(tmp_path / "c.zarr", tmp_path / "back.qdd")
    assert checked and (tmp_path / "back.qdd").read_bytes() == path.read_bytes()

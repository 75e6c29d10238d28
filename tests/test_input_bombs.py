"""Inputs whose declared sizes dwarf their bytes (issue 27: M3, M6): refused before
allocating, or handled with bounded work, and never a traceback."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import error_line, run_cli


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_npz_zip_bomb_is_checked_against_free_memory_before_allocating(work, monkeypatch):
    # M3: 8 MiB of zeros deflate to a few KiB; the declared size must fit the free memory
    # (with its float32 copy) before np.load allocates it.
    with zipfile.ZipFile("bomb.npz", "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("x.npy", "w") as member:
            np.save(member, np.zeros((2048, 1, 32, 32), np.float32))
    assert Path("bomb.npz").stat().st_size < 64 << 10
    monkeypatch.setattr("quadd_codec.sources.host_available_memory", lambda: 4 << 20)

    def no_load(*a, **k):
        raise AssertionError("np.load allocated the array before its size was checked")

    monkeypatch.setattr("numpy.lib.npyio.NpzFile.__getitem__", no_load)
    line = error_line(run_cli("encode", "bomb.npz", "-b", "4", "-o", "e.qdd"))
    assert "declares shape (2048, 1, 32, 32)" in line and "free" in line
    assert not Path("e.qdd").exists()


def test_npy_larger_than_free_memory_is_refused(work, monkeypatch):
    np.save("big.npy", np.zeros((64, 1, 16, 16), np.uint8))
    monkeypatch.setattr("quadd_codec.sources.host_available_memory", lambda: 32 << 10)
    assert "free" in error_line(run_cli("encode", "big.npy", "-b", "4", "-o", "e.qdd"))


def test_upsampled_read_all_peaks_near_the_decoded_size(work, monkeypatch):
    # Low: a small file at upsample 16 decodes to 256x its stored values; read_all used
    # to hold a whole 4096-sample chunk's temporaries beside the output (2.4x).
    import tracemalloc

    from quadd_codec import QddFile, downsample_mean, quantize_array, write_qdd

    x = np.random.default_rng(0).random((64, 1, 64, 64), dtype=np.float32)
    stored = downsample_mean(x, 16)
    codes, levels = quantize_array(stored, 4)
    write_qdd("u.qdd", codes, levels, None, 4, "channel", [], upsample=16)
    monkeypatch.setattr("quadd_codec.reader._READ_CHUNK_BYTES", 64 << 10)
    with QddFile("u.qdd") as f:
        f.read(0)  # the decoder's lookup tables: a fixed cost (cached), not per sample
        tracemalloc.start()
        out = f.read_all()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert out.nbytes == 64 * 64 * 64 * 4
    assert peak < 1.3 * out.nbytes, peak / out.nbytes


def test_an_oversized_npy_header_is_not_called_pickled(work):
    with open("big.npy", "wb") as f:
        np.lib.format.write_array_header_2_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (2, 3),
                "pad": "x" * 20000})
        f.write(b"\0" * 24)
    line = error_line(run_cli("encode", "big.npy", "-b", "4", "-o", "e.qdd"))
    assert "header is too large" in line and "pickle" not in line


def test_png_decompression_bomb_is_refused_before_decoding(work):
    # A 9000 x 9000 grey PNG of zeros is ~80 KB on disk but 81 M pixels decoded (Pillow
    # itself only warns below 89 M); only its header is read.
    pytest.importorskip("PIL")
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    side = 9000
    raw = zlib.compress(b"\x00" * ((side + 1) * side), 1)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
    Path("imgs/a").mkdir(parents=True)
    Path("imgs/a/bomb.png").write_bytes(png)
    line = error_line(run_cli("encode", "imgs", "-b", "4", "-o", "e.qdd"))
    assert "declares 9000x9000 pixels" in line


def test_image_folder_larger_than_free_memory_is_refused(work, monkeypatch):
    pytest.importorskip("PIL")
    from PIL import Image

    for i in range(3):
        Path(f"imgs/c{i}").mkdir(parents=True)
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(f"imgs/c{i}/{i}.png")
    monkeypatch.setattr("quadd_codec.zarr_guard.host_available_memory", lambda: 10000)
    assert "GiB free" in error_line(run_cli("encode", "imgs", "-b", "4", "-o", "e.qdd"))

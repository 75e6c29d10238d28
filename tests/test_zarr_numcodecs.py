"""The NBitPack numcodecs codec and the lossless .qdd <-> zarr store conversion."""

from __future__ import annotations

import numcodecs
import numpy as np
import pytest

from quadd_codec import (
    Denorm,
    QddError,
    QddFile,
    QddFormatError,
    QddValueError,
    quantize_array,
    write_qdd,
)
from quadd_codec.bitpack import pack_stream
from quadd_codec.numcodecs_codec import NBitPack
from quadd_codec.zarr_io import export_zarr, import_zarr, zarr_to_qdd

# ----------------------------------------------------------------------- NBitPack


@pytest.mark.parametrize("bits", range(1, 9))
def test_nbitpack_round_trip(bits):
    rng = np.random.default_rng(bits)
    codec = numcodecs.get_codec({"id": "quadd.nbitpack", "bits": bits})
    assert isinstance(codec, NBitPack)
    for count in (0, 1, 7, 8, 9, 13, 1001, 70_003):
        values = rng.integers(0, 1 << bits, count, dtype=np.uint8)
        encoded = codec.encode(values)
        assert encoded[0] == bits and int.from_bytes(encoded[1:9], "little") == count
        assert len(encoded) == 9 + (count * bits + 7) // 8
        if count:
            assert encoded[9:] == pack_stream(values, bits)  # the .qdd bit layout
        assert np.array_equal(codec.decode(encoded), values)
        out = np.empty(count, dtype=np.uint8)
        codec.decode(encoded, out=out)
        assert np.array_equal(out, values)


def test_nbitpack_config_and_errors():
    codec = NBitPack(5)
    assert codec.get_config() == {"id": "quadd.nbitpack", "bits": 5}
    assert NBitPack.from_config(codec.get_config()) == codec
    assert numcodecs.get_codec(codec.get_config()) == codec
    grid = np.arange(30, dtype=np.uint8).reshape(5, 6)
    assert np.array_equal(codec.decode(codec.encode(grid)), grid.reshape(-1))
    with pytest.raises(QddValueError, match="1..8"):
        NBitPack(9)
    with pytest.raises(QddValueError, match="fit"):
        codec.encode(np.array([32], dtype=np.uint8))
    with pytest.raises(QddValueError, match="uint8"):
        codec.encode(np.array([1, 2], dtype=np.int32))
    data = codec.encode(grid)
    with pytest.raises(QddValueError, match="4-bit|5-bit"):
        NBitPack(4).decode(data)
    with pytest.raises(QddValueError, match="needs"):
        codec.decode(data[:-1])
    with pytest.raises(QddValueError, match="header"):
        codec.decode(b"\x05")


# --------------------------------------------------------------------------- zarr


def _make(path, bits, group, cb_dtype="f4", classes=("a", "b", "c"), extras=True, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((12, 3, 4, 5)).astype(np.float32)
    labels = rng.integers(0, len(classes), 12) if classes else None
    if bits == 32:
        codes, levels = x, None
    else:
        codes, levels = quantize_array(x, bits, "uniform", group, cb_dtype)
    kwargs = {}
    if extras:
        kwargs = {"denorm": Denorm([0.5, 0.25, 2.0], [0.1, -0.2, 0.0]),
                  "provenance": {"method": "test", "seed": seed, "lr": 0.01}}
        if classes:
            kwargs["soft_labels"] = rng.random((12, len(classes)))
    write_qdd(path, codes, levels, labels, bits, group, list(classes), codebook_dtype=cb_dtype,
              **kwargs)
    return path


@pytest.mark.parametrize(
    ("bits", "group", "cb_dtype", "classes", "extras"),
    [
        (1, "tensor", "f4", ("a", "b", "c"), True),
        (3, "channel", "f2", ("only",), True),
        (5, "sample-channel", "f4", (), False),
        (8, "channel", "f4", ("x/y", "../z"), False),
        (32, "tensor", "f4", ("a", "b", "c"), True),
    ],
)
def test_zarr_round_trip_is_byte_identical(tmp_path, bits, group, cb_dtype, classes, extras):
    src = _make(tmp_path / "a.qdd", bits, group, cb_dtype, classes, extras)
    export_zarr(src, tmp_path / "a.zarr")
    arrays = import_zarr(tmp_path / "a.zarr")
    with QddFile(src) as f:
        assert arrays.class_names == f.class_names and arrays.denorm == f.denorm
        if bits != 32:
            assert np.array_equal(arrays.codes(), f.indices(slice(None)))
            assert np.array_equal(arrays.levels, f.levels)
    size, checked = zarr_to_qdd(tmp_path / "a.zarr", tmp_path / "b.qdd")
    assert checked
    assert (tmp_path / "b.qdd").read_bytes() == src.read_bytes()
    assert size == src.stat().st_size


def test_zarr_store_layout(tmp_path):
    import zarr

    src = _make(tmp_path / "a.qdd", 4, "channel")
    export_zarr(src, tmp_path / "a.zarr")
    group = zarr.open_group(str(tmp_path / "a.zarr"), mode="r")
    attrs = group.attrs["quadd"]
    assert attrs["bits"] == 4 and attrs["sample_shape"] == [3, 4, 5]
    assert attrs["classes"] == ["a", "b", "c"] and attrs["group"] == "channel"
    assert group["codes"].shape == (12, 30) and group["codes"].dtype == np.uint8
    assert group["levels"].shape == (3, 16)
    assert group["soft_labels"].shape == (12, 3)


def test_tampered_store_is_refused(tmp_path):
    import zarr

    src = _make(tmp_path / "a.qdd", 2, "tensor")
    export_zarr(src, tmp_path / "a.zarr")
    codes = zarr.open_array(str(tmp_path / "a.zarr" / "codes"), mode="r+")
    codes[0, 0] = codes[0, 0] ^ 1
    with pytest.raises(QddFormatError, match="modified or damaged"):
        zarr_to_qdd(tmp_path / "a.zarr", tmp_path / "b.qdd")
    assert not (tmp_path / "b.qdd").exists()
    with pytest.raises(QddError):
        import_zarr(tmp_path)  # not a store


def test_damaged_file_is_not_exported(tmp_path):
    src = _make(tmp_path / "a.qdd", 2, "tensor")
    data = bytearray(src.read_bytes())
    data[-40] ^= 0xFF  # inside the last section, before the trailer
    src.write_bytes(bytes(data))
    with pytest.raises(QddFormatError):
        export_zarr(src, tmp_path / "a.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.qdd"]

"""Odd but well-formed headers and streams (issue 27: M1 and the Low list): one clear
error line or a clean result, never a traceback."""

from __future__ import annotations

import json

import msgpack
import pytest
from conftest import error_line, run_cli, small_qdd_bytes

from quadd_codec import FileSpec, QddFile, QddHeaderError, QddValueError
from quadd_codec.crc import crc32c
from quadd_codec.rules import PREFIX, PREFIX_SIZE


def with_header(data: bytes, edit) -> bytes:
    """`data` with its header bytes replaced by `edit(header bytes)`, prefix fixed."""
    _, major, minor, features, header_len, _ = PREFIX.unpack(data[:PREFIX_SIZE])
    old = data[PREFIX_SIZE : PREFIX_SIZE + header_len]
    new = edit(old)
    # Section offsets are relative to the header's end, so only the trailer's size moves.
    body = data[PREFIX_SIZE + header_len : -12]
    size = PREFIX_SIZE + len(new) + len(body) + 12
    return (PREFIX.pack(b"\x89QDD\r\n\x1a\n", major, minor, features, len(new), crc32c(new))
            + new + body + size.to_bytes(8, "little") + b"QEND")


def add_key(raw: bytes, key: bytes, value: bytes) -> bytes:
    """A header map (a fixmap) with one more entry, given as raw msgpack bytes."""
    assert raw[0] & 0xF0 == 0x80 and raw[0] < 0x8F
    return bytes([raw[0] + 1]) + raw[1:] + key + value


DEEP = b"\x81\xa1a" * 1000 + b"\x00"  # {"a": {"a": ... 1000 deep ... 0}}


@pytest.mark.parametrize("meta", [
    msgpack.packb({b"k": 1, "s": b"\x00\xff"}, use_bin_type=True),  # bytes key and value
    DEEP,
], ids=["bytes-key", "1000-deep"])
def test_odd_meta_never_gives_a_traceback(tmp_path, meta):
    path = tmp_path / "odd.qdd"
    path.write_bytes(with_header(small_qdd_bytes(), lambda raw: add_key(raw, b"\xa4meta", meta)))
    result = run_cli("inspect", "--json", path)
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["n"] == 6 and info["meta"]
    line = error_line(run_cli("decode", path, "-o", tmp_path / "x.zarr"))
    assert "cannot be stored as zarr attributes" in line
    assert not (tmp_path / "x.zarr").exists()
    assert run_cli("decode", path, "-o", tmp_path / "x.npz").exit_code == 0


def test_writers_refuse_meta_no_reader_could_convert():
    deep: list = [1]
    for _ in range(40):
        deep = [deep]
    for meta in ({b"k": 1}, {"a": deep},
                 {"x": float("nan")}, {"x": object()}):
        with pytest.raises(QddValueError, match="meta"):
            FileSpec(["a"], (2,), 2, meta=meta)


def test_duplicate_header_keys_are_refused():
    data = with_header(small_qdd_bytes(), lambda raw: add_key(raw, b"\xa1n", b"\x07"))
    with pytest.raises(QddHeaderError, match="key 'n' twice"):
        QddFile(data)


def test_bytes_after_the_header_map_are_refused():
    data = with_header(small_qdd_bytes(), lambda raw: raw + b"\xc0")
    with pytest.raises(QddHeaderError, match="bytes after its msgpack map"):
        QddFile(data)


def test_too_deep_header_names_the_problem():
    data = with_header(small_qdd_bytes(), lambda raw: add_key(raw, b"\xa1z",
                                                               b"\x91" * 5000 + b"\x00"))
    with pytest.raises(QddHeaderError, match="nested too deep"):
        QddFile(data)


def test_verify_stdin_refuses_trailing_garbage():
    data = small_qdd_bytes()
    assert run_cli("verify", "-", input=data).exit_code == 0
    assert "trailing bytes" in error_line(run_cli("verify", "-", input=data + b"junk"))


def test_writers_refuse_a_header_over_the_cap():
    names = [f"{i:05d}" * 51 for i in range(5000)]  # 255-byte names: about 1.3 MB
    with pytest.raises(QddValueError, match="over the 1,048,576-byte cap"):
        FileSpec(names, (2,), 2).size(1)


def test_levels_at_the_float32_extremes_give_no_overflow_warning():
    # Low: the sortedness check subtracted neighbours, overflowing at -max, +max.
    import warnings

    import numpy as np

    from quadd_codec import encode_qdd

    big = np.float32(3.4028235e38)
    levels = np.array([[-big, big]], np.float32)
    data = b"".join(bytes(c) for c in encode_qdd(np.zeros((2, 3), np.uint8), levels, None, 1,
                                                 "tensor", []))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert QddFile(data).read(0).tolist() == [-big, -big, -big]


def test_denormalized_overflow_is_infinite_without_a_warning():
    # Low (found by the fuzzer): float32 overflow in the de-normalization printed
    # "RuntimeWarning: overflow encountered in multiply"; FORMAT.md 7 gives inf.
    import warnings

    import numpy as np

    from quadd_codec import Denorm, encode_qdd

    big = np.float32(3e38)
    levels = np.array([[-big, big]], np.float32)
    for group, shape in (("sample-channel", (2, 3)), ("tensor", (2, 3))):
        data = b"".join(bytes(c) for c in encode_qdd(
            np.ones((1, *shape), np.uint8), np.repeat(levels, 2 if group != "tensor" else 1, 0),
            None, 1, group, [], denorm=Denorm([4.0, 4.0], [0.0, 0.0])))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert np.isinf(QddFile(data).read_all(denormalize=True)).all()

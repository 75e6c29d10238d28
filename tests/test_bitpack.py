"""Bit packing: round trips and the exact LSB-first bit layout of FORMAT.md section 6."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quadd_codec import QddValueError, pack_rows, packed_nbytes, unpack_rows
from quadd_codec.bitpack import pack_stream, unpack_stream


def reference_pack(row: list[int], bits: int) -> bytes:
    """Slow, obviously-correct packer: value i at stream bits [i*b, (i+1)*b), LSB first."""
    out = bytearray(packed_nbytes(len(row), bits))
    for i, value in enumerate(row):
        for j in range(bits):
            if value >> j & 1:
                pos = i * bits + j
                out[pos // 8] |= 1 << (pos % 8)
    return bytes(out)


@st.composite
def code_matrix(draw, max_bits: int = 8, max_count: int = 100):
    bits = draw(st.integers(1, max_bits))
    rows = draw(st.integers(0, 5))
    count = draw(st.integers(0, max_count))
    seed = draw(st.integers(0, 2**32 - 1))
    values = np.random.default_rng(seed).integers(0, 1 << bits, size=(rows, count))
    # Push extremes in: all-zeros and all-ones patterns catch masking and carry bugs.
    if rows and count and draw(st.booleans()):
        values[0] = (1 << bits) - 1
    return bits, values


@pytest.mark.parametrize("bits", range(1, 9))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_rows_round_trip_and_reference_layout(bits, data):
    rows = data.draw(st.integers(0, 4))
    count = data.draw(st.integers(1, 101))
    seed = data.draw(st.integers(0, 2**32 - 1))
    values = np.random.default_rng(seed).integers(0, 1 << bits, size=(rows, count))
    packed = pack_rows(values, bits)
    assert packed.dtype == np.uint8
    assert packed.shape == (rows, (count * bits + 7) // 8)
    for r in range(rows):
        assert packed[r].tobytes() == reference_pack(values[r].tolist(), bits)
    back = unpack_rows(packed, bits, count)
    assert back.shape == (rows, count)
    np.testing.assert_array_equal(back, values)


@settings(max_examples=60, deadline=None)
@given(code_matrix())
def test_unpack_matches_reference_on_reference_bytes(case):
    """Decode bytes built by the reference packer (not by pack_rows) and padding is zero."""
    bits, values = case
    rows, count = values.shape
    ref = np.frombuffer(b"".join(reference_pack(r.tolist(), bits) for r in values),
                        dtype=np.uint8).reshape(rows, packed_nbytes(count, bits))
    np.testing.assert_array_equal(unpack_rows(ref, bits, count), values)
    # Padding bits of the last byte of every row are zero.
    pad = packed_nbytes(count, bits) * 8 - count * bits
    if rows and pad:
        assert not (pack_rows(values, bits)[:, -1] >> (8 - pad)).any()


def test_format_md_example():
    # FORMAT.md section 6: b = 3, codes 5, 1, 6 -> bytes 0x8D 0x01.
    assert pack_rows(np.array([[5, 1, 6]]), 3).tobytes() == b"\x8d\x01"
    assert unpack_rows(np.frombuffer(b"\x8d\x01", np.uint8).reshape(1, 2), 3, 3).tolist() == [
        [5, 1, 6]
    ]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 16), st.integers(0, 300), st.integers(0, 2**32 - 1))
def test_stream_round_trip_up_to_16_bits(bits, count, seed):
    values = np.random.default_rng(seed).integers(0, 1 << bits, size=count)
    data = pack_stream(values, bits)
    assert isinstance(data, bytes)
    assert data == reference_pack(values.tolist(), bits)
    back = unpack_stream(data, bits, count)
    assert back.dtype == np.int64
    np.testing.assert_array_equal(back, values)


@pytest.mark.parametrize("bits", [1, 3, 8, 16])
def test_pack_rejects_values_that_do_not_fit(bits):
    with pytest.raises(QddValueError):
        pack_rows(np.array([[0, 1 << bits]]), bits)
    with pytest.raises(QddValueError):
        pack_rows(np.array([[-1, 1]]), bits)  # negative codes must not wrap silently


def test_bad_arguments():
    for bits in (0, 17, 2.0):
        with pytest.raises(QddValueError):
            pack_rows(np.zeros((1, 3), np.uint8), bits)
    with pytest.raises(QddValueError):
        unpack_rows(np.zeros((1, 3), np.uint8), 9, 2)
    with pytest.raises(QddValueError):
        pack_rows(np.zeros(3, np.uint8), 3)
    with pytest.raises(QddValueError):
        unpack_rows(np.zeros((1, 3), np.uint8), 3, 9)  # 9 values at 3 bits need 4 bytes
    with pytest.raises(QddValueError):
        unpack_stream(b"\x00", 3, 3)


def test_packed_nbytes():
    assert [packed_nbytes(c, 3) for c in (0, 1, 2, 3, 8)] == [0, 1, 1, 2, 3]
    assert packed_nbytes(10**12, 8) == 10**12

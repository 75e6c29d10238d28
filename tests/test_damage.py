"""Damaged and hostile files: each is rejected fast, with bounded memory, by a typed error."""

from __future__ import annotations

import io
import struct
import tracemalloc

import msgpack
import numpy as np
import pytest
from conftest import craft, recraft, section_span, small_qdd_bytes, split

from quadd_codec import (
    QddChecksumError,
    QddFeatureError,
    QddFile,
    QddFormatError,
    QddHeaderError,
    QddLayoutError,
    QddSignatureError,
    QddTruncatedError,
    QddValueError,
    QddVersionError,
    encode_qdd,
    open_qdd,
)
from quadd_codec.bitpack import pack_stream
from quadd_codec.rules import MAX_HEADER_BYTES, TRAILER_SIZE

BASE = small_qdd_bytes()
EXTRAS = small_qdd_bytes(soft_labels=np.full((6, 3), 0.5, np.float32),
                         provenance={"method": "dm", "seed": 7})


def header_of(data: bytes) -> dict:
    return split(data)[0]


def payloads_of(data: bytes) -> list:
    return split(data)[1]


def set_payload(payloads: list, name: str, data: bytes) -> None:
    for i, (sname, _) in enumerate(payloads):
        if sname == name:
            payloads[i] = (name, data)
            return
    raise KeyError(name)


def open_bytes(data: bytes, **kwargs) -> QddFile:
    return QddFile(data, **kwargs)


@pytest.fixture(scope="module")
def peak_mem():
    """Run a callable under tracemalloc; returns (exception or None, peak bytes)."""

    def run(fn):
        tracemalloc.start()
        try:
            try:
                fn()
                err = None
            except Exception as exc:  # noqa: BLE001 - returned to the test to check
                err = exc
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return err, peak

    return run


def test_recraft_is_identity():
    # The helper itself must not change a valid file, or every case below proves nothing.
    assert recraft(BASE) == BASE
    assert recraft(EXTRAS) == EXTRAS
    QddFile(BASE, verify=True)
    QddFile(EXTRAS, verify=True)


# ------------------------------------------------------------------ truncation


@pytest.mark.parametrize("data", [BASE, EXTRAS], ids=["plain", "extras"])
def test_truncated_at_every_byte_from_bytes_and_stream(data):
    for cut in range(len(data)):
        with pytest.raises(QddTruncatedError):
            QddFile(data[:cut])
        with pytest.raises(QddTruncatedError):
            QddFile(io.BytesIO(data[:cut]))


def test_truncated_at_every_byte_from_path(tmp_path):
    path = tmp_path / "t.qdd"
    for cut in range(len(BASE)):
        path.write_bytes(BASE[:cut])
        with pytest.raises(QddTruncatedError):
            QddFile(path)


def test_empty_file_and_empty_stream(tmp_path):
    (tmp_path / "e.qdd").write_bytes(b"")
    with pytest.raises(QddTruncatedError, match="empty"):
        QddFile(tmp_path / "e.qdd")
    with pytest.raises(QddTruncatedError):
        QddFile(io.BytesIO(b""))
    with pytest.raises(QddTruncatedError):
        QddFile(b"")


def test_trailing_garbage(tmp_path):
    for extra in (b"\x00", b"garbage" * 10, BASE):
        with pytest.raises(QddTruncatedError, match="trailing"):
            QddFile(BASE + extra)
        (tmp_path / "g.qdd").write_bytes(BASE + extra)
        with pytest.raises(QddTruncatedError):
            QddFile(tmp_path / "g.qdd")


def test_trailer_damage():
    bad_magic = BASE[:-4] + b"QENX"
    with pytest.raises(QddTruncatedError, match="end marker"):
        QddFile(bad_magic)
    bad_size = BASE[:-12] + struct.pack("<Q", len(BASE) + 1) + b"QEND"
    with pytest.raises(QddTruncatedError):
        QddFile(bad_size)


# ------------------------------------------------------------------- bit flips


def flipped(data: bytes, pos: int, bit: int) -> bytes:
    out = bytearray(data)
    out[pos] ^= 1 << bit
    return bytes(out)


def test_bit_flips_in_every_byte():
    data = EXTRAS
    reference = QddFile(data).read_all()
    spans = {name: section_span(data, name)
             for name in ("codebooks", "codes", "labels", "soft_labels", "provenance")}
    header_end = spans["codebooks"][0]
    lazy = {"codes", "soft_labels", "provenance"}  # CRC checked on verify / on access
    for pos in range(len(data)):
        region = next((name for name, (a, b) in spans.items() if a <= pos < b), None)
        for bit in range(8):
            bad = flipped(data, pos, bit)
            if pos < 8:
                expect: tuple = (QddSignatureError,)
            elif pos < 10:
                expect = (QddVersionError,)
            elif pos < 12:
                # The minor version is not covered by any CRC; a 1.y reader reads 1.x files.
                f = QddFile(bad, verify=True)
                assert f.layout.minor == 1 << (bit + 8 * (pos - 10))
                np.testing.assert_array_equal(f.read_all(), reference)
                continue
            elif pos == 12 and bit in (0, 1):
                # Bits 0 and 1 are known features (upsample, its linear filter): the
                # header then contradicts them.
                expect = (QddHeaderError,)
            elif pos < 16:
                expect = (QddFeatureError,)
            elif pos < 20:
                expect = (QddHeaderError, QddTruncatedError, QddChecksumError)
            elif pos < header_end:
                expect = (QddChecksumError,)
            elif pos >= len(data) - TRAILER_SIZE:
                expect = (QddTruncatedError,)
            else:
                expect = (QddChecksumError,)
            if region in lazy:
                f = QddFile(bad)  # opening a mapped file must not read every section
                with pytest.raises(QddChecksumError):
                    f.verify()
                with pytest.raises(QddChecksumError):
                    QddFile(bad, verify=True)
                continue
            with pytest.raises(expect):
                QddFile(bad)


def test_flips_in_lazy_sections_surface_on_access():
    a, _ = section_span(EXTRAS, "soft_labels")
    with pytest.raises(QddChecksumError):
        QddFile(flipped(EXTRAS, a, 0)).soft_labels  # noqa: B018
    a, _ = section_span(EXTRAS, "provenance")
    with pytest.raises(QddChecksumError):
        QddFile(flipped(EXTRAS, a, 0)).provenance  # noqa: B018
    a, _ = section_span(EXTRAS, "codes")
    with pytest.raises(QddChecksumError):
        QddFile(io.BytesIO(flipped(EXTRAS, a, 0)))  # streams are always verified


# -------------------------------------------------------- signature & versions


def test_wrong_signature():
    zip_head = b"PK\x03\x04\x14\x00\x00\x00"
    for junk in (zip_head + BASE[8:], b"\x00" * len(BASE), b"hello world, not a qdd file"):
        with pytest.raises(QddSignatureError, match="wrong signature"):
            QddFile(junk)
        with pytest.raises(QddSignatureError):
            QddFile(io.BytesIO(junk))
    seven_bit = bytes([BASE[0] & 0x7F]) + BASE[1:]  # a 7-bit transport stripped the high bit
    with pytest.raises(QddSignatureError, match="signature"):
        QddFile(seven_bit)
    with pytest.raises(QddSignatureError):
        QddFile(b"abc")  # short, but not the start of a signature either


@pytest.mark.parametrize("damage", [
    lambda d: d.replace(b"\r\n", b"\n"),    # dos2unix
    lambda d: d.replace(b"\n", b"\r\n"),    # unix2dos
    lambda d: d.replace(b"\x1a", b""),      # DOS end-of-file byte dropped
])
def test_text_mode_damage_has_a_helpful_message(damage):
    bad = damage(BASE)
    assert bad != BASE
    with pytest.raises(QddSignatureError, match="text mode"):
        QddFile(bad)
    with pytest.raises(QddSignatureError, match="text mode"):
        QddFile(io.BytesIO(bad))


@pytest.mark.parametrize("major", [0, 2, 65535])
def test_unknown_major_version(major):
    with pytest.raises(QddVersionError):
        QddFile(recraft(BASE, major=major))
    with pytest.raises(QddVersionError):
        QddFile(io.BytesIO(recraft(BASE, major=major)))


@pytest.mark.parametrize("features", [4, 8, 1 << 31, 0xFFFFFFFF])
def test_unknown_required_feature(features):
    with pytest.raises(QddFeatureError):
        QddFile(recraft(BASE, features=features))


def test_major_is_checked_before_features_and_header():
    bad = recraft(BASE, major=2, features=1, header_crc=0)
    with pytest.raises(QddVersionError):
        QddFile(bad)


def test_minor_bump_with_unknown_field_and_section_still_reads(tmp_path):
    def future(header, payloads):
        header["future_field"] = {"x": [1, 2, 3], "y": b"\x00\x01"}
        header["meta"] = {"made_by": "quadd 9.9"}
        payloads.append(("future_section", b"\x01\x02\x03 future data"))
        payloads.append(("another", b""))

    data = recraft(EXTRAS, future, minor=7)
    path = tmp_path / "future.qdd"
    path.write_bytes(data)
    for source in (data, io.BytesIO(data), path):
        with QddFile(source, verify=True) as f:
            assert f.layout.minor == 7
            np.testing.assert_array_equal(f.read_all(), QddFile(EXTRAS).read_all())
            np.testing.assert_array_equal(f.labels, QddFile(EXTRAS).labels)
            assert f.provenance == {"method": "dm", "seed": 7}
            assert f.byte_breakdown()["future_section"] == 15
    # The unknown section is still CRC-checked by verify().
    a, _ = section_span(data, "future_section")
    with pytest.raises(QddChecksumError):
        QddFile(flipped(data, a, 3)).verify()


# ------------------------------------------------------------- hostile headers


def hostile(**fields) -> bytes:
    """A tiny file whose header (valid CRC) declares sizes far beyond its real bytes."""
    header = {"n": 4, "shape": [1], "bits": 8, "group": "tensor", "classes": []}
    header.update(fields)
    lengths = fields.pop("_lengths", None)
    header.pop("_lengths", None)
    if lengths is None:
        return craft(header, [("codebooks", b""), ("codes", b""), ("labels", b"")])
    entries, off = [], 0
    for name, length in lengths:
        entries.append([name, off, length, b"\0\0\0\0"])
        off += length
    return craft(header, [], entries=entries)


HOSTILE = {
    "n=2**40 (1 TiB of codes)": (
        {"n": 2**40, "_lengths": [("codebooks", 1024), ("codes", 2**40), ("labels", 0)]},
        QddTruncatedError),
    "huge sample-channel codebooks": (
        {"n": 2**40, "group": "sample-channel", "shape": [4, 4],
         "_lengths": [("codebooks", 2**40 * 4 * 256 * 4), ("codes", 2**44), ("labels", 0)]},
        QddLayoutError),
    "terabyte extra section": (
        {"_lengths": [("codebooks", 1024), ("codes", 4), ("labels", 0), ("x", 2**40)]},
        QddTruncatedError),
    "section length beyond the cap": (
        {"_lengths": [("codebooks", 1024), ("codes", 4), ("labels", 0), ("x", 2**60)]},
        QddLayoutError),
    "n over 2**40": ({"n": 2**40 + 1}, QddHeaderError),
    "n negative": ({"n": -1}, QddHeaderError),
    "huge shape": ({"shape": [2**40, 2**40]}, QddHeaderError),
    "shape product over 2**40": ({"shape": [2**14, 2**14, 2**14]}, QddHeaderError),
    "shape dim over 2**40": ({"shape": [2**41]}, QddHeaderError),
    "shape with 9 dims": ({"shape": [1] * 9}, QddHeaderError),
    "empty shape": ({"shape": []}, QddHeaderError),
    "zero dim": ({"shape": [3, 0]}, QddHeaderError),
    "too many classes": ({"classes": [str(i) for i in range(65537)]}, QddHeaderError),
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_sizes_fail_without_allocating(case, peak_mem, tmp_path):
    fields, error = HOSTILE[case]
    data = hostile(**dict(fields))
    limit = 4 << 20 if "classes" not in case else 64 << 20  # 65537 names are ~0.5 MB of header
    err, peak = peak_mem(lambda: QddFile(data))
    assert isinstance(err, error), repr(err)
    assert peak < limit, peak
    path = tmp_path / "h.qdd"
    path.write_bytes(data)
    err, peak = peak_mem(lambda: QddFile(path))
    assert isinstance(err, error), repr(err)
    assert peak < limit, peak
    # A stream can't be measured first: the declared size is checked against the limit.
    err, peak = peak_mem(lambda: QddFile(io.BytesIO(data)))
    assert isinstance(err, QddFormatError), repr(err)
    assert peak < limit, peak
    err, peak = peak_mem(lambda: QddFile(io.BytesIO(data), stream_limit=2**62))
    assert isinstance(err, QddFormatError), repr(err)
    assert peak < limit, peak


def test_header_len_over_the_cap(peak_mem):
    for header_len in (MAX_HEADER_BYTES + 1, 2**32 - 1):
        bad = recraft(BASE, header_len=header_len)
        with pytest.raises(QddHeaderError, match="cap"):
            QddFile(bad)
        err, peak = peak_mem(lambda b=bad: QddFile(io.BytesIO(b)))
        assert isinstance(err, QddHeaderError) and peak < 1 << 20


def test_header_len_exactly_at_the_cap_is_allowed():
    def pad(header, payloads):
        header["meta"] = {"pad": ""}
        raw = msgpack.packb(header, use_bin_type=True, use_single_float=True)
        header["meta"]["pad"] = "x" * (MAX_HEADER_BYTES - len(raw) - 4)  # str32: 4 more bytes

    data = recraft(BASE, pad)
    assert split(data)[2]["header_len"] == MAX_HEADER_BYTES
    np.testing.assert_array_equal(QddFile(data).read_all(), QddFile(BASE).read_all())


def test_stream_over_the_limit():
    with pytest.raises(QddLayoutError, match="limit"):
        QddFile(io.BytesIO(BASE), stream_limit=len(BASE) - 1)
    QddFile(io.BytesIO(BASE), stream_limit=len(BASE))


def test_stream_declaring_huge_data_reads_only_what_is_there(peak_mem):
    data = hostile(n=2**30, _lengths=[("codebooks", 1024), ("codes", 2**30), ("labels", 0)])
    err, peak = peak_mem(lambda: QddFile(io.BytesIO(data + b"\0" * 5000), stream_limit=2**40))
    assert isinstance(err, QddTruncatedError)
    assert peak < 8 << 20


def test_many_sections_are_not_quadratic():
    # A 1 MiB header can list ~80k (empty) sections: opening and verifying stay linear.
    import time

    data = recraft(BASE, lambda h, p: p.extend((f"s{i}", b"") for i in range(60_000)))
    assert len(data) < MAX_HEADER_BYTES
    start = time.perf_counter()
    QddFile(data, verify=True)
    assert time.perf_counter() - start < 10


# ------------------------------------------------------------ section table


def with_entries(mutate) -> bytes:
    header, payloads, _ = split(EXTRAS)
    entries = [list(e) for e in header["sections"]]
    mutate(entries, payloads)
    return craft(header, payloads, entries=entries)


def _swap(e, i, j):
    e[i], e[j] = e[j], e[i]


TABLE_CASES = {
    "overlap": (lambda e, p: (e[1].__setitem__(1, e[1][1] - 1), e[2].__setitem__(1, e[2][1] - 1),
                              e[3].__setitem__(1, e[3][1] - 1), e[4].__setitem__(1, e[4][1] - 1)),
                QddLayoutError),
    "hole": (lambda e, p: e[4].__setitem__(1, e[4][1] + 1), QddLayoutError),
    "first not at 0": (lambda e, p: e[0].__setitem__(1, 1), QddLayoutError),
    "negative offset": (lambda e, p: e[1].__setitem__(1, -5), QddLayoutError),
    "negative length": (lambda e, p: e[4].__setitem__(2, -1), QddLayoutError),
    "codes before codebooks": (lambda e, p: _swap(e, 0, 1), QddLayoutError),
    "labels before codes": (lambda e, p: _swap(e, 1, 2), QddLayoutError),
    "duplicate extra": (lambda e, p: e.__setitem__(4, ["soft_labels", e[4][1], e[4][2], e[4][3]]),
                        QddLayoutError),
    "duplicate required": (lambda e, p: e.__setitem__(4, ["codes", e[4][1], e[4][2], e[4][3]]),
                           QddLayoutError),
    "missing labels": (lambda e, p: (e.__delitem__(slice(2, None)), p.__delitem__(slice(2, None))),
                       QddLayoutError),
    "empty table": (lambda e, p: (e.clear(), p.clear()), QddLayoutError),
    "entry with 3 fields": (lambda e, p: e[4].pop(), QddHeaderError),
    "3-byte crc": (lambda e, p: e[4].__setitem__(3, b"\0\0\0"), QddHeaderError),
    "string offset": (lambda e, p: e[4].__setitem__(1, "0"), QddHeaderError),
    "bool length": (lambda e, p: e[2].__setitem__(2, True), QddHeaderError),
    "non-string name": (lambda e, p: e[4].__setitem__(0, 5), QddHeaderError),
    "table not a list of lists": (lambda e, p: e.__setitem__(0, "codebooks"), QddHeaderError),
}


@pytest.mark.parametrize("case", list(TABLE_CASES), ids=list(TABLE_CASES))
def test_section_table_damage(case):
    mutate, error = TABLE_CASES[case]
    bad = with_entries(mutate)
    with pytest.raises(error):
        QddFile(bad)
    with pytest.raises(error):
        QddFile(io.BytesIO(bad))


@pytest.mark.parametrize("name,delta", [("codebooks", -4), ("codes", 1), ("labels", 1),
                                        ("soft_labels", -4)])
def test_known_section_length_must_match_the_header(name, delta):
    def mutate(header, payloads):
        for i, (sname, data) in enumerate(payloads):
            if sname == name:
                payloads[i] = (sname, data[:delta] if delta < 0 else data + b"\0" * delta)

    with pytest.raises(QddLayoutError, match=name):
        QddFile(recraft(EXTRAS, mutate))


# ------------------------------------------------------------- section values


def test_labels_out_of_range():
    # 3 classes -> 2-bit labels: a packed 3 is representable but invalid.
    bad = recraft(BASE, lambda h, p: set_payload(p, "labels", pack_stream([0, 1, 2, 3, 0, 1], 2)))
    with pytest.raises(QddLayoutError, match="label"):
        QddFile(bad)
    # 1000 classes -> 10-bit labels: 1023 is out of range.
    names = [f"k{i}" for i in range(1000)]
    data = b"".join(bytes(c) for c in encode_qdd(np.zeros((3, 2), np.uint8),
                                                 np.zeros((1, 2), np.float32),
                                                 np.array([0, 999, 5]), 1, "tensor", names))
    assert QddFile(data).labels.tolist() == [0, 999, 5]
    bad = recraft(data, lambda h, p: set_payload(p, "labels", pack_stream([0, 1023, 5], 10)))
    with pytest.raises(QddLayoutError):
        QddFile(bad)


@pytest.mark.parametrize("cb_dtype", ["f4", "f2"])
@pytest.mark.parametrize("kind", ["unsorted", "nan", "inf", "-inf"])
def test_bad_codebook_levels(cb_dtype, kind):
    dtype = np.dtype("<f4") if cb_dtype == "f4" else np.dtype("<f2")
    levels = np.array([[0.0, 0.5]], dtype)
    data = b"".join(bytes(c) for c in encode_qdd(np.zeros((2, 3), np.uint8),
                                                 levels.astype(np.float32), None, 1, "tensor", [],
                                                 codebook_dtype=cb_dtype))
    bad_levels = {"unsorted": [[0.5, 0.0]], "nan": [[0.0, np.nan]], "inf": [[0.0, np.inf]],
                  "-inf": [[-np.inf, 0.0]]}[kind]
    bad = recraft(data, lambda h, p: set_payload(p, "codebooks",
                                                 np.array(bad_levels, dtype).tobytes()))
    with pytest.raises(QddLayoutError):
        QddFile(bad)


def test_equal_neighbouring_levels_are_allowed():
    data = b"".join(bytes(c) for c in encode_qdd(np.array([[0, 1, 2, 3]], np.uint8),
                                                 np.array([[1.0, 1.0, 1.0, 2.0]], np.float32),
                                                 None, 2, "tensor", []))
    assert QddFile(data).read(0).tolist() == [1.0, 1.0, 1.0, 2.0]


def test_bad_provenance_payload():
    bad = recraft(EXTRAS, lambda h, p: set_payload(p, "provenance", b"\xc1"))
    f = QddFile(bad)
    with pytest.raises(QddFormatError):
        f.provenance  # noqa: B018
    with pytest.raises(QddFormatError):
        f.verify()
    not_map = recraft(EXTRAS, lambda h, p: set_payload(p, "provenance", msgpack.packb([1, 2])))
    with pytest.raises(QddFormatError):
        QddFile(not_map).provenance  # noqa: B018


# ------------------------------------------------------------- header fields


def _set(key, value):
    return lambda h, p: h.__setitem__(key, value)


def _del(key):
    return lambda h, p: h.__delitem__(key)


HEADER_CASES = {
    "missing n": _del("n"),
    "missing shape": _del("shape"),
    "missing bits": _del("bits"),
    "missing group": _del("group"),
    "missing classes": _del("classes"),
    "n as string": _set("n", "6"),
    "n as bool": _set("n", True),
    "n as float": _set("n", 6.0),
    "bits 0": _set("bits", 0),
    "bits 9": _set("bits", 9),
    "bits 16": _set("bits", 16),
    "unknown group": _set("group", "pixel"),
    "unknown cb_dtype": _set("cb_dtype", "f8"),
    "cb_dtype not a string": _set("cb_dtype", 4),
    "duplicate class": _set("classes", ["a", "a", "b"]),
    "empty class name": _set("classes", ["a", "", "b"]),
    "NUL in class name": _set("classes", ["a", "b\x00", "c"]),
    "class name over 256 bytes": _set("classes", ["a", "é" * 129, "c"]),
    "class name not a string": _set("classes", ["a", 1, "c"]),
    "denorm wrong channel count": _set("denorm", [[1.0, 1.0], [0.0, 0.0]]),
    "denorm with ints": _set("denorm", [[1, 1, 1], [0, 0, 0]]),
    "denorm with NaN": _set("denorm", [[1.0, float("nan"), 1.0], [0.0, 0.0, 0.0]]),
    "denorm not a pair": _set("denorm", [[1.0, 1.0, 1.0]]),
    "meta not a map": _set("meta", [1, 2]),
    "sections not a list": _set("sections", {"codes": 1}),
}


@pytest.mark.parametrize("case", list(HEADER_CASES), ids=list(HEADER_CASES))
def test_header_field_damage(case):
    mutate = HEADER_CASES[case]

    def apply(header, payloads):
        mutate(header, payloads)

    header, payloads, _ = split(BASE)
    apply(header, payloads)
    entries = header.pop("sections") if case != "sections not a list" else header["sections"]
    bad = craft(header, payloads, entries=entries)
    with pytest.raises(QddHeaderError):
        QddFile(bad)


@pytest.mark.parametrize("raw", [b"\xc1", b"\x93\x01\x02\x03", b"\x81\xa1n", b"",
                                 msgpack.packb({"n": 1}) + b"\x00",
                                 msgpack.packb({b"n": 1}),
                                 msgpack.packb({1: 2}),
                                 b"\x81\xa2\xff\xfe\x01"])  # invalid UTF-8 key
def test_header_not_a_valid_msgpack_map(raw):
    bad = craft({}, [("codebooks", b""), ("codes", b""), ("labels", b"")], header_bytes=raw)
    with pytest.raises(QddHeaderError):
        QddFile(bad)
    with pytest.raises(QddHeaderError):
        open_qdd(bad)


# ------------------------------------------------------------ paths and names


def test_directory_and_missing_paths(tmp_path):
    with pytest.raises(QddValueError, match="directory"):
        QddFile(tmp_path)
    with pytest.raises(QddValueError):
        QddFile(tmp_path / "missing.qdd")
    with pytest.raises(QddValueError):
        QddFile(12345)  # not a path, bytes or stream


def test_class_names_are_just_strings(tmp_path):
    names = ["../../etc/passwd", "a/b", "..", ".", "C:\\x", "名前", " ", "-rf"]
    codes = np.zeros((len(names), 2), np.uint8)
    data = b"".join(bytes(c) for c in encode_qdd(codes, np.zeros((1, 2), np.float32),
                                                 np.arange(len(names)), 1, "tensor", names))
    f = QddFile(data, verify=True)
    assert f.class_names == names
    assert f.labels.tolist() == list(range(len(names)))
    assert list(tmp_path.iterdir()) == []  # nothing touched the file system

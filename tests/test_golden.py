"""Golden vectors (spec/vectors): committed files must decode to the committed arrays, bit
for bit, and re-encoding the committed inputs must give the committed bytes. Nothing here
regenerates a vector."""

from __future__ import annotations

import hashlib
import io
import json
import math
import struct

import msgpack
import numpy as np
import pytest
from conftest import VECTORS

from quadd_codec import Denorm, QddFile, encode_qdd
from quadd_codec.crc import crc32c

LISTING = json.loads((VECTORS / "vectors.json").read_text())["vectors"]
NAMES = [v["name"] for v in LISTING]
BY_NAME = {v["name"]: v for v in LISTING}


def load(name: str, key: str) -> np.ndarray | None:
    path = VECTORS / f"{name}.{key}.npy"
    return np.load(path, allow_pickle=False) if path.exists() else None


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def test_listing_matches_directory():
    assert len(NAMES) >= 10 and len(set(NAMES)) == len(NAMES)
    listed = {f for v in LISTING for f in v["files"]} | {"vectors.json", "README.md"}
    on_disk = {p.name for p in VECTORS.iterdir()}
    assert on_disk == listed
    readme = (VECTORS / "README.md").read_text()
    for name in NAMES:
        assert f"`{name}.qdd`" in readme


@pytest.mark.parametrize("name", NAMES)
def test_committed_file_is_unchanged(name):
    data = (VECTORS / f"{name}.qdd").read_bytes()
    assert len(data) == BY_NAME[name]["size"]
    assert hashlib.sha256(data).hexdigest() == BY_NAME[name]["sha256"]


@pytest.mark.parametrize("name", NAMES)
def test_decodes_to_committed_arrays(name):
    spec = BY_NAME[name]
    path = VECTORS / f"{name}.qdd"
    decoded = load(name, "decoded")
    labels = load(name, "labels")
    for source in (path, path.read_bytes(), io.BytesIO(path.read_bytes())):
        with QddFile(source, verify=True) as f:
            assert (f.n, list(f.stored_shape), f.bits, f.group) == (
                spec["n"], spec["shape"], spec["bits"], spec["group"])
            assert f.upsample == spec.get("upsample", 1)
            assert f.upsample_filter == spec.get("upsample_filter", "nearest")
            assert f.sample_shape == decoded.shape[1:]
            assert f.layout.codebook_dtype == spec["cb_dtype"]
            assert f.class_names == spec["classes"]
            assert same_bits(f.read_all(), decoded)
            for k in range(f.n):
                assert same_bits(f.read(k), decoded[k])
            if labels is None:
                assert f.labels is None
            else:
                assert same_bits(f.labels.astype(np.int64), labels)
            denormalized = load(name, "denormalized")
            if spec["denorm"] is None:
                assert f.denorm is None and denormalized is None
            else:
                assert [list(f.denorm.scale), list(f.denorm.offset)] == spec["denorm"]
                assert same_bits(f.read_all(denormalize=True), denormalized)
            soft = load(name, "soft_labels")
            if soft is None:
                assert f.soft_labels is None
            else:
                assert same_bits(f.soft_labels, soft)
            assert f.provenance == spec["provenance"]
            assert f.layout.meta == (spec["meta"] or {})
            if spec["bits"] != 32:
                assert same_bits(f.levels, load(name, "levels").astype(np.float32))
                assert same_bits(f.indices(slice(None)), load(name, "codes"))


@pytest.mark.parametrize("name", NAMES)
def test_reencoding_gives_the_same_bytes(name):
    spec = BY_NAME[name]
    denorm = None if spec["denorm"] is None else Denorm(*spec["denorm"])
    chunks = encode_qdd(load(name, "codes"), load(name, "levels"), load(name, "labels"),
                        spec["bits"], spec["group"], spec["classes"], denorm, spec["cb_dtype"],
                        spec["provenance"], load(name, "soft_labels"), spec["meta"],
                        upsample=spec.get("upsample", 1),
                        upsample_filter=spec.get("upsample_filter", "nearest"),
                        chunk=spec.get("chunk", 0))
    assert b"".join(bytes(c) for c in chunks) == (VECTORS / f"{name}.qdd").read_bytes()


# ------------------------------------------------- a reader from FORMAT.md alone


def crc32c_reference(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_crc32c_check_value():
    assert crc32c_reference(b"123456789") == 0xE3069283
    assert crc32c(b"123456789") == 0xE3069283


def read_stream(data: bytes, count: int, bits: int) -> list[int]:
    """FORMAT.md section 6: code i at stream bits [i*b, (i+1)*b), LSB first."""
    out = []
    for i in range(count):
        value = 0
        for j in range(bits):
            pos = i * bits + j
            value |= (data[pos // 8] >> (pos % 8) & 1) << j
        out.append(value)
    # Padding bits are zero.
    for pos in range(count * bits, len(data) * 8):
        assert not data[pos // 8] >> (pos % 8) & 1
    return out


def spec_decode(data: bytes):
    sig, major, _minor, features, header_len, header_crc = struct.unpack("<8sHHIII", data[:24])
    assert sig == b"\x89QDD\r\n\x1a\n" and major == 1 and features in (0, 1, 3)
    raw = data[24 : 24 + header_len]
    assert crc32c_reference(raw) == header_crc
    h = msgpack.unpackb(raw, raw=False)
    d = 24 + header_len
    sections, expected_offset = {}, 0
    for name, offset, length, crc in h["sections"]:
        assert offset == expected_offset
        expected_offset += length
        body = data[d + offset : d + offset + length]
        assert struct.unpack(">I", crc)[0] == crc32c_reference(body)
        sections[name] = body
    assert list(sections)[:3] == ["codebooks", "codes", "labels"]
    assert struct.unpack("<Q4s", data[-12:]) == (len(data), b"QEND")
    assert d + expected_offset + 12 == len(data)

    n, shape, bits, k = h["n"], h["shape"], h["bits"], len(h["classes"])
    v = math.prod(shape)
    c = shape[0] if len(shape) >= 2 else 1
    if bits == 32:
        values = np.frombuffer(sections["codes"], "<f4").reshape(n, *shape)
    else:
        dtype = "<f2" if h.get("cb_dtype", "f4") == "f2" else "<f4"
        levels = np.frombuffer(sections["codebooks"], dtype).astype(np.float32)
        levels = levels.reshape(-1, 1 << bits)
        s = (v * bits + 7) // 8
        assert len(sections["codes"]) == n * s
        values = np.empty((n, v), np.float32)
        for sample in range(n):
            codes = read_stream(sections["codes"][sample * s : (sample + 1) * s], v, bits)
            for i, q in enumerate(codes):
                ch = i // (v // c)
                g = {"tensor": 0, "channel": ch, "sample-channel": sample * c + ch}[h["group"]]
                values[sample, i] = levels[g, q]
        values = values.reshape(n, *shape)
    f = h.get("upsample", 1)
    linear = h.get("upsample_filter") == "linear"
    assert (f != 1) == bool(features & 1) and linear == bool(features & 2)
    assert f == 1 or 2 <= f <= 16 and _minor == (2 if linear else 1)
    labels = None
    if k == 1:
        labels = np.zeros(n, np.int64)
    elif k >= 2:
        width = math.ceil(math.log2(k))
        labels = np.array(read_stream(sections["labels"], n, width), np.int64)
        assert (labels < k).all()
    return h, values, labels


def spec_enlarge(h: dict, values: np.ndarray) -> np.ndarray:
    f, (height, width) = h.get("upsample", 1), values.shape[-2:]
    if f == 1:
        return values
    if h.get("upsample_filter") != "linear":  # 7a: out[..., i, j] = stored[..., i//f, j//f]
        rows = np.arange(height * f) // f
        cols = np.arange(width * f) // f
        return values[..., rows[:, None], cols[None, :]]

    def taps(size):  # 7b, written out from the prose
        t = np.maximum(2 * np.arange(size * f) + 1 - f, 0)
        i0, r = t // (2 * f), t % (2 * f)
        return (i0, np.minimum(i0 + 1, size - 1), (2 * f - r) / (2 * f),
                r / (2 * f))

    i0, i1, w0, w1 = taps(height)
    w0, w1 = w0.astype(np.float32)[:, None], w1.astype(np.float32)[:, None]
    values = w0 * values[..., i0, :] + w1 * values[..., i1, :]
    j0, j1, v0, v1 = taps(width)
    return v0.astype(np.float32) * values[..., j0] + v1.astype(np.float32) * values[..., j1]


@pytest.mark.parametrize("name", NAMES)
def test_spec_reader_agrees(name):
    header, values, labels = spec_decode((VECTORS / f"{name}.qdd").read_bytes())
    assert same_bits(spec_enlarge(header, values.astype(np.float32)), load(name, "decoded"))
    expected_labels = load(name, "labels")
    if expected_labels is None:
        assert labels is None
    else:
        assert same_bits(labels, expected_labels)
    if header.get("denorm") is not None:
        scale, offset = (np.asarray(p, np.float32) for p in header["denorm"])
        per = values.reshape(values.shape[0], len(scale), -1)
        out = (per * scale[None, :, None] + offset[None, :, None]).astype(np.float32)
        assert same_bits(spec_enlarge(header, out.reshape(values.shape)),
                         load(name, "denormalized"))

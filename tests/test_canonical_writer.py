"""A second writer, written from FORMAT.md alone (its own msgpack packer, bit packer and
CRC), must produce every golden vector byte for byte (FORMAT.md section 10, "Canonical
writer"). It shares no code with quadd_codec."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from conftest import VECTORS

LISTING = json.loads((VECTORS / "vectors.json").read_text())["vectors"]


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def pack(value, float64: bool = False) -> bytes:
    """Rule 4: the shortest form of every value; floats float32 unless `float64`."""
    if value is None:
        return b"\xc0"
    if value is True or value is False:
        return b"\xc3" if value else b"\xc2"
    if isinstance(value, int):
        if 0 <= value < 128:
            return bytes([value])
        if value >= 0:
            for tag, fmt, top in ((0xCC, ">B", 1 << 8), (0xCD, ">H", 1 << 16),
                                  (0xCE, ">I", 1 << 32), (0xCF, ">Q", 1 << 64)):
                if value < top:
                    return bytes([tag]) + struct.pack(fmt, value)
        if value >= -32:
            return struct.pack(">b", value)
        for tag, fmt, low in ((0xD0, ">b", -(1 << 7)), (0xD1, ">h", -(1 << 15)),
                              (0xD2, ">i", -(1 << 31)), (0xD3, ">q", -(1 << 63))):
            if value >= low:
                return bytes([tag]) + struct.pack(fmt, value)
    if isinstance(value, float):
        return b"\xcb" + struct.pack(">d", value) if float64 else \
            b"\xca" + struct.pack(">f", value)
    if isinstance(value, str):
        raw = value.encode("utf-8")
        n = len(raw)
        head = (bytes([0xA0 | n]) if n < 32 else b"\xd9" + struct.pack(">B", n) if n < 256
                else b"\xda" + struct.pack(">H", n) if n < 65536 else
                b"\xdb" + struct.pack(">I", n))
        return head + raw
    if isinstance(value, bytes):
        n = len(value)
        return (b"\xc4" + struct.pack(">B", n) if n < 256 else b"\xc5" + struct.pack(">H", n)
                if n < 65536 else b"\xc6" + struct.pack(">I", n)) + value
    if isinstance(value, list):
        n = len(value)
        head = (bytes([0x90 | n]) if n < 16 else b"\xdc" + struct.pack(">H", n) if n < 65536
                else b"\xdd" + struct.pack(">I", n))
        return head + b"".join(pack(v, float64) for v in value)
    if isinstance(value, dict):
        n = len(value)
        head = (bytes([0x80 | n]) if n < 16 else b"\xde" + struct.pack(">H", n) if n < 65536
                else b"\xdf" + struct.pack(">I", n))
        return head + b"".join(pack(k, float64) + pack(v, float64) for k, v in value.items())
    raise TypeError(type(value))


def bitpack(values, bits: int) -> bytes:
    """Section 6: value i at stream bits [i*b, (i+1)*b), LSB first; zero padding."""
    out = bytearray((len(values) * bits + 7) // 8)
    for i, v in enumerate(values):
        for j in range(bits):
            if int(v) >> j & 1:
                bit = i * bits + j
                out[bit // 8] |= 1 << (bit % 8)
    return bytes(out)


def write(v: dict) -> bytes:
    name = v["name"]
    codes = np.load(VECTORS / f"{name}.codes.npy")
    bits, k, n = v["bits"], len(v["classes"]), v["n"]
    if bits == 32:
        codebooks = b""
        code_bytes = codes.astype("<f4").tobytes()
    else:
        levels = np.load(VECTORS / f"{name}.levels.npy")
        codebooks = levels.astype("<f4" if v["cb_dtype"] == "f4" else "<f2").tobytes()
        code_bytes = b"".join(bitpack(sample.reshape(-1), bits) for sample in codes)
    labels = b""
    if k >= 2:
        lab = np.load(VECTORS / f"{name}.labels.npy")
        labels = bitpack(lab, (k - 1).bit_length())
    sections = [("codebooks", codebooks), ("codes", code_bytes), ("labels", labels)]
    chunk = v.get("chunk", 0)
    if chunk:  # section 4a: CRC32C of each run of `chunk` samples, big-endian
        step = chunk * (len(code_bytes) // n)
        sections.append(("chunk_crcs", b"".join(
            struct.pack(">I", crc32c(code_bytes[at : at + step]))
            for at in range(0, len(code_bytes), step))))
    soft = VECTORS / f"{name}.soft_labels.npy"
    if soft.exists():
        sections.append(("soft_labels", np.load(soft).astype("<f4").tobytes()))
    if v["provenance"] is not None:
        sections.append(("provenance", pack(v["provenance"], float64=True)))
    table, offset = [], 0
    for sname, data in sections:
        table.append([sname, offset, len(data), struct.pack(">I", crc32c(data))])
        offset += len(data)
    header = {"n": n, "shape": v["shape"], "bits": bits, "group": v["group"],
              "classes": v["classes"], "sections": table}
    if v["cb_dtype"] != "f4":
        header["cb_dtype"] = v["cb_dtype"]
    if v["denorm"] is not None:
        header["denorm"] = v["denorm"]
    if v["meta"]:
        header["meta"] = v["meta"]
    up, linear = v.get("upsample", 1), v.get("upsample_filter") == "linear"
    if up != 1:
        header["upsample"] = up
    if linear:
        header["upsample_filter"] = "linear"
    if chunk:
        header["chunk"] = chunk
    raw = pack(header)
    features = (1 if up != 1 else 0) | (2 if linear else 0)
    minor = 3 if chunk else 2 if features & 2 else 1 if features & 1 else 0
    body = b"".join(data for _, data in sections)
    size = 24 + len(raw) + len(body) + 12
    prefix = b"\x89QDD\r\n\x1a\n" + struct.pack("<HHIII", 1, minor, features, len(raw),
                                                 crc32c(raw))
    return prefix + raw + body + struct.pack("<Q", size) + b"QEND"


@pytest.mark.parametrize("v", LISTING, ids=[v["name"] for v in LISTING])
def test_second_writer_is_byte_identical(v):
    assert write(v) == (VECTORS / f"{v['name']}.qdd").read_bytes()

"""Fuzz target for the `.qdd` reader: any bytes either read cleanly or raise a `QddError`.

    python fuzz/qdd_fuzz.py [atheris/libFuzzer flags] [CORPUS_DIR ...]
    python fuzz/qdd_fuzz.py --python RUNS [SEED]     (no atheris: a seeded mutation loop)

With atheris installed the first form runs coverage-guided fuzzing (libFuzzer flags such
as `-runs=1000000`, `-max_len=65536`, `-fork=2`), seeded with the golden vectors of
spec/vectors/. Its custom mutator re-fixes every checksum after mutating (header CRC,
section CRCs, trailer size), so mutants get past the CRCs into the header, layout and
decoding code. The second form needs nothing but quadd_codec (the test suite runs a
short one: tests/test_fuzz.py). See docs/fuzzing.md for the long run and its results.

Anything but a clean read or a `QddError` is a finding: the exception propagates (the
fuzzer saves the input as crash-*), as does a read that allocates beyond its budget.
"""

from __future__ import annotations

import random
import struct
import sys
from pathlib import Path

import msgpack
import numpy as np

from quadd_codec import QddError, QddFile
from quadd_codec.crc import crc32c

HERE = Path(__file__).resolve().parent
VECTORS = HERE.parent / "spec" / "vectors"
#: Largest decoded size read whole; larger files are sampled (a 1 MB file at upsample 16
#: may decode to gigabytes, which is legitimate, not a finding).
MAX_DECODED = 16 << 20


def seeds() -> list[bytes]:
    """The golden vectors: every feature of the format, in a few hundred bytes each."""
    return [p.read_bytes() for p in sorted(VECTORS.glob("*.qdd"))]


def check_one(data: bytes) -> None:
    """Read `data` as a `.qdd` every way a user can; only a QddError may escape."""
    try:
        f = QddFile(data, verify=True)
    except QddError:
        return
    with f:
        try:
            per = 4 * int(np.prod(f.sample_shape))
            if f.n * per <= MAX_DECODED:
                f.read_all(denormalize=True)
                f.read_all()
            elif f.n:
                f.read([0, f.n - 1, f.n // 2])
            if f.n and f.bits != 32:
                f.indices([f.n - 1])
            f.soft_labels  # noqa: B018 - decoding is the check
            f.provenance  # noqa: B018
            f.byte_breakdown()
            repr(f)
        except QddError:
            return


# ---------------------------------------------------------------- checksum fixing


def fix_checksums(data: bytes) -> bytes:
    """`data` with its header CRC, section CRCs and trailer size recomputed wherever the
    structure is readable enough to find them; otherwise unchanged."""
    if len(data) < 36 or not data.startswith(b"\x89QDD"):
        return data
    header_len = struct.unpack_from("<I", data, 16)[0]
    if 24 + header_len > len(data):
        return data
    raw = bytearray(data[24 : 24 + header_len])
    try:
        header = msgpack.unpackb(bytes(raw), raw=False, strict_map_key=False)
        entries = header.get("sections") if isinstance(header, dict) else None
    except Exception:  # any garbage: leave the header as it is
        entries = None
    start = 24 + header_len
    if isinstance(entries, list):
        for entry in entries:
            if not (isinstance(entry, list) and len(entry) == 4 and isinstance(entry[3], bytes)
                    and len(entry[3]) == 4 and isinstance(entry[1], int)
                    and isinstance(entry[2], int) and entry[1] >= 0 and entry[2] >= 0):
                continue
            lo, hi = start + entry[1], start + entry[1] + entry[2]
            if hi > len(data) - 12:
                continue
            old = b"\xc4\x04" + entry[3]
            at = raw.find(old)
            if at >= 0:
                raw[at + 2 : at + 6] = struct.pack(">I", crc32c(data[lo:hi]))
    out = bytearray(data)
    out[24 : 24 + header_len] = raw
    out[20:24] = struct.pack("<I", crc32c(bytes(raw)))
    if out[-4:] == b"QEND":
        out[-12:-4] = struct.pack("<Q", len(out))
    return bytes(out)


# ---------------------------------------------------------------- python mutator


def mutate(data: bytes, rng: random.Random, pool: list[bytes], max_size: int = 1 << 16) -> bytes:
    """One random structural or byte-level change, then the checksums re-fixed."""
    buf = bytearray(data)
    choice = rng.randrange(8)
    if choice == 0 and buf:  # flip bits
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
    elif choice == 1 and buf:  # set a byte to an interesting value
        buf[rng.randrange(len(buf))] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, 0xC0, 0xC4, 0xCF])
    elif choice == 2 and buf:  # delete a run
        i = rng.randrange(len(buf))
        del buf[i : i + rng.randint(1, 16)]
    elif choice == 3:  # insert random bytes
        i = rng.randrange(len(buf) + 1)
        buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif choice == 4 and buf:  # overwrite with a little-endian integer
        i = rng.randrange(len(buf))
        value = rng.choice([0, 1, 2, 3, 8, 16, 32, 255, 256, 65535, 1 << 31, (1 << 32) - 1])
        buf[i : i + 4] = struct.pack("<I", value)
    elif choice == 5:  # splice with another seed
        other = rng.choice(pool)
        cut_a, cut_b = rng.randrange(len(buf) + 1), rng.randrange(len(other) + 1)
        buf = buf[:cut_a] + other[cut_b:]
    elif choice == 6:  # edit a header field and re-pack it
        buf = bytearray(_edit_header(bytes(buf), rng))
    else:  # truncate
        buf = buf[: rng.randrange(len(buf) + 1)]
    fixed = fix_checksums(bytes(buf[:max_size]))
    return fixed if rng.random() < 0.9 else bytes(buf[:max_size])


_FIELD_VALUES = [0, 1, 2, 3, 7, 8, 9, 16, 32, 33, -1, 1 << 20, 1 << 40, (1 << 40) + 1, 2.5,
                 "tensor", "channel", "sample-channel", "f2", "f4", "linear", "nearest", "",
                 None, True, [], [1], [1, 1], [3, 4, 4], [0], {}, {"a": 1}, b"\x00" * 4]


def _edit_header(data: bytes, rng: random.Random) -> bytes:
    if len(data) < 24:
        return data
    header_len = struct.unpack_from("<I", data, 16)[0]
    try:
        header = msgpack.unpackb(data[24 : 24 + header_len], raw=False)
    except Exception:
        return data
    if not isinstance(header, dict):
        return data
    keys = ["n", "shape", "bits", "group", "classes", "cb_dtype", "denorm", "meta",
            "upsample", "upsample_filter"]
    key = rng.choice(keys)
    if rng.random() < 0.2:
        header.pop(key, None)
    else:
        header[key] = rng.choice(_FIELD_VALUES)
    try:
        raw = msgpack.packb(header, use_bin_type=True, use_single_float=True)
    except Exception:
        return data
    return data[:16] + struct.pack("<I", len(raw)) + data[20:24] + raw + data[24 + header_len:]


def python_fuzz(runs: int, seed: int = 0) -> int:
    """A seeded mutation loop over the golden vectors; returns the executions run."""
    rng = random.Random(seed)
    pool = seeds()
    corpus = list(pool)
    for i in range(runs):
        data = mutate(rng.choice(corpus), rng, pool)
        check_one(data)
        if i % 16 == 0 and len(corpus) < 4096:
            corpus.append(data)  # stacked mutations reach deeper
    return runs


# ---------------------------------------------------------------- atheris


def _atheris_main(argv: list[str]) -> None:
    import atheris

    def test_one_input(data: bytes) -> None:
        check_one(data)

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        data = atheris.Mutate(data, max_size)
        if seed % 10 == 0:
            return data  # some mutants keep wrong checksums: those paths count too
        return fix_checksums(data)[:max_size]

    corpus_dirs = [a for a in argv[1:] if not a.startswith("-")]
    if not corpus_dirs:
        # libFuzzer reads seeds from, and writes new inputs to, its first corpus folder:
        # a scratch copy of the golden vectors, never spec/vectors itself.
        import shutil
        import tempfile

        scratch = tempfile.mkdtemp(prefix="qdd-corpus-")
        for path in VECTORS.glob("*.qdd"):
            shutil.copy(path, scratch)
        print(f"corpus: {scratch}", file=sys.stderr)
        argv = [*argv, scratch]
    atheris.instrument_all()
    atheris.Setup(argv, test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--python":
        count = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
        start_seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
        print(f"ran {python_fuzz(count, start_seed)} executions without a finding")
    else:
        _atheris_main(sys.argv)

"""Shared helpers: tiny `.qdd` factories and a builder for hand-crafted (damaged) files."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from quadd_codec import encode_qdd, quantize_array, write_qdd
from quadd_codec.crc import crc32c
from quadd_codec.header import pack_trailer
from quadd_codec.rules import PREFIX, PREFIX_SIZE, SIGNATURE, TRAILER_SIZE

REPO = Path(__file__).resolve().parent.parent
VECTORS = REPO / "spec" / "vectors"


def run_cli(*args: object, input: bytes | None = None) -> Any:
    """``quadd ARGS`` run in-process (each argument str()-ed); exceptions propagate."""
    from click.testing import CliRunner

    from quadd_cli.main import main

    return CliRunner().invoke(main, [str(a) for a in args], input=input,
                              catch_exceptions=False)


def error_line(result: Any, code: int = 1) -> str:
    """The single ``quadd: error:`` line of a failed run (asserting that it is one)."""
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("quadd: error: "), result.stderr
    return lines[0]


def craft(
    header: dict[str, Any],
    payloads: Sequence[tuple[str, bytes]],
    *,
    entries: list[list[Any]] | None = None,
    major: int = 1,
    minor: int = 0,
    features: int = 0,
    header_bytes: bytes | None = None,
    header_len: int | None = None,
    header_crc: int | None = None,
    trailer: bytes | None = None,
) -> bytes:
    """Build a file from an arbitrary header dict and section payloads, CRCs all correct.

    `header["sections"]` is filled in from `payloads` (offsets back to back, real CRCs)
    unless `entries` gives the section table verbatim. The trailer states the real size
    unless `trailer` replaces it. `header_bytes`/`header_len`/`header_crc` override the
    encoded header, the prefix's length field and its CRC field.
    """
    header = dict(header)
    if entries is None:
        entries, offset = [], 0
        for name, data in payloads:
            entries.append([name, offset, len(data), struct.pack(">I", crc32c(data))])
            offset += len(data)
    header["sections"] = entries
    raw = header_bytes if header_bytes is not None else msgpack.packb(
        header, use_bin_type=True, use_single_float=True
    )
    body = b"".join(data for _, data in payloads)
    prefix = PREFIX.pack(
        SIGNATURE, major, minor, features,
        len(raw) if header_len is None else header_len,
        crc32c(raw) if header_crc is None else header_crc,
    )
    size = PREFIX_SIZE + len(raw) + len(body) + TRAILER_SIZE
    return prefix + raw + body + (pack_trailer(size) if trailer is None else trailer)


def split(data: bytes) -> tuple[dict[str, Any], list[tuple[str, bytes]], dict[str, int]]:
    """Inverse of `craft` for a valid file: (header dict, [(name, payload)], prefix fields)."""
    _, major, minor, features, header_len, _ = PREFIX.unpack(data[:PREFIX_SIZE])
    header = msgpack.unpackb(data[PREFIX_SIZE : PREFIX_SIZE + header_len], raw=False)
    start = PREFIX_SIZE + header_len
    payloads = [(name, data[start + off : start + off + length])
                for name, off, length, _ in header["sections"]]
    return header, payloads, {"major": major, "minor": minor, "features": features,
                              "header_len": header_len}


def recraft(data: bytes, mutate: Callable[[dict[str, Any], list], Any] | None = None,
            **kwargs: Any) -> bytes:
    """Decode a valid file, let `mutate(header, payloads)` edit it, re-encode with fresh CRCs."""
    header, payloads, _ = split(data)
    if mutate is not None:
        mutate(header, payloads)
    return craft(header, payloads, **kwargs)


def section_span(data: bytes, name: str) -> tuple[int, int]:
    """Absolute [start, stop) byte range of a section in a valid file."""
    header, _, prefix = split(data)
    start = PREFIX_SIZE + prefix["header_len"]
    for sname, off, length, _ in header["sections"]:
        if sname == name:
            return start + off, start + off + length
    raise KeyError(name)


def sample_data(n: int, shape: Sequence[int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *shape)).astype(np.float32)


def small_qdd_bytes(
    n: int = 6,
    shape: Sequence[int] = (3, 2, 3),
    bits: int = 3,
    group: str = "channel",
    classes: Sequence[str] = ("a", "b", "c"),
    seed: int = 0,
    **kwargs: Any,
) -> bytes:
    """A tiny valid file (a few hundred bytes) as bytes."""
    x = sample_data(n, shape, seed)
    codes, levels = quantize_array(x, bits, group=group)
    labels = np.arange(n) % len(classes) if classes else None
    return b"".join(bytes(c) for c in encode_qdd(codes, levels, labels, bits, group,
                                                 list(classes), **kwargs))


@pytest.fixture
def qdd_factory(tmp_path: Path) -> Callable[..., tuple[Path, dict[str, Any]]]:
    """Writes a small `.qdd` and returns (path, inputs) with the codes/levels/labels/data."""
    counter = iter(range(1 << 30))

    def make(n: int = 10, shape: Sequence[int] = (3, 5, 4), bits: int = 4,
             group: str = "channel", classes: Sequence[str] = ("cat", "dog", "eel"),
             codebook: str = "uniform", seed: int = 0, **kwargs: Any):
        x = sample_data(n, shape, seed)
        codes, levels = quantize_array(x, bits, codebook, group)
        labels = (np.arange(n) * 7 + seed) % len(classes) if classes else None
        path = tmp_path / f"f{next(counter)}.qdd"
        write_qdd(path, codes, levels, labels, bits, group, list(classes), **kwargs)
        return path, {"x": x, "codes": codes, "levels": levels, "labels": labels}

    return make


def expected_decode(codes: np.ndarray, levels: np.ndarray, group: str) -> np.ndarray:
    """Independent reference: levels[group_row, code] for every value, float32."""
    n = codes.shape[0]
    c = codes.shape[1] if codes.ndim >= 3 else 1
    per = codes.reshape(n, c, -1).astype(np.int64)
    ks = np.arange(n)[:, None, None]
    cs = np.arange(c)[None, :, None]
    if group == "tensor":
        rows = np.zeros_like(per)
    elif group == "channel":
        rows = np.broadcast_to(cs, per.shape)
    else:
        rows = np.broadcast_to(ks * c + cs, per.shape)
    return levels[rows, per].astype(np.float32).reshape(codes.shape)


def file_size(path: str | os.PathLike) -> int:
    return os.path.getsize(path)


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's 8x8 digits as a DatasetBundle, loaded once per test module."""
    from quadd_train.data import load_dataset  # torch only for the modules that ask

    return load_dataset("digits")


@pytest.fixture
def one_thread():
    """One torch thread for the test: small models run faster and reproducibly so."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """The suite never writes the user's cache folder, and its runs recompute the DM pool
    (each test asserts what a run computes); tests/test_pool_cache.py turns it back on."""
    saved = {k: os.environ.get(k) for k in ("QUADD_CACHE", "QUADD_POOL_CACHE_MAX")}
    os.environ["QUADD_CACHE"] = str(tmp_path_factory.mktemp("quadd-cache"))
    os.environ["QUADD_POOL_CACHE_MAX"] = "0"
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value

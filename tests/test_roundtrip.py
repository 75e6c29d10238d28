"""Encode -> write -> read round trips, codebook properties, sizes and determinism."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
from conftest import expected_decode, sample_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from quadd_codec import (
    Denorm,
    QddFile,
    QddValueError,
    encode_qdd,
    encoded_size,
    max_samples_per_class,
    quantize_array,
    write_qdd,
)
from quadd_codec.rules import group_count

GROUPS = ["tensor", "channel", "sample-channel"]


def group_rows(shape: tuple[int, ...], group: str) -> np.ndarray:
    """Group row of every value of an (n, *sample_shape) array (independent of the codec)."""
    n = shape[0]
    c = shape[1] if len(shape) >= 3 else 1
    ks = np.arange(n)[:, None, None]
    cs = np.arange(c)[None, :, None]
    per = np.empty((n, c, int(np.prod(shape[1:])) // c), dtype=np.int64)
    if group == "tensor":
        per[...] = 0
    elif group == "channel":
        per[...] = cs
    else:
        per[...] = ks * c + cs
    return per.reshape(shape)


sample_shapes = st.one_of(
    st.tuples(st.integers(1, 13)),  # 1-D samples: one channel
    st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5)),  # (C, H, W), odd sizes
)


@settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bits=st.integers(1, 8),
    group=st.sampled_from(GROUPS),
    codebook=st.sampled_from(["uniform", "kmeans"]),
    cb_dtype=st.sampled_from(["f4", "f2"]),
    shape=sample_shapes,
    n=st.integers(1, 5),
    num_classes=st.sampled_from([0, 1, 2, 3, 300]),
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([1e-3, 1.0, 50.0]),
)
def test_encode_decode_round_trip(bits, group, codebook, cb_dtype, shape, n, num_classes, seed,
                                  scale):
    x = sample_data(n, shape, seed) * np.float32(scale)
    codes, levels = quantize_array(x, bits, codebook, group, codebook_dtype=cb_dtype)
    assert codes.shape == x.shape and codes.dtype == np.uint8
    assert levels.shape == (group_count(group, n, shape), 1 << bits)
    assert levels.dtype == np.float32
    assert (np.diff(levels, axis=1) >= 0).all()
    assert int(codes.max()) < 1 << bits

    rows = group_rows(x.shape, group)
    chosen = levels[rows, codes.astype(np.int64)].astype(np.float64)
    # Nearest level: no level of the value's group is strictly closer than the chosen one.
    dist = np.abs(x.astype(np.float64)[..., None] - levels[rows].astype(np.float64))
    np.testing.assert_array_equal(np.abs(x - chosen), dist.min(axis=-1))
    if codebook == "uniform" and cb_dtype == "f4":
        # Levels span min..max of each group exactly: nothing is clipped.
        for g in range(levels.shape[0]):
            vals = x[rows == g]
            assert levels[g, 0] == vals.min() and levels[g, -1] == vals.max()
    if cb_dtype == "f2":
        np.testing.assert_array_equal(levels.astype(np.float16).astype(np.float32), levels)

    classes = [f"c{i}" for i in range(num_classes)]
    labels = np.arange(n) * 37 % num_classes if num_classes else None
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x.qdd")
        written = write_qdd(path, codes, levels, labels, bits, group, classes,
                            codebook_dtype=cb_dtype)
        assert written == os.path.getsize(path)
        assert written == encoded_size(n, shape, bits, group, classes, cb_dtype)
        with QddFile(path, verify=True) as f:
            assert f.file_size == written
            decoded = f.read_all()
            assert decoded.dtype == np.float32 and decoded.shape == x.shape
            ref = expected_decode(codes, levels, group)
            np.testing.assert_array_equal(decoded.view(np.uint32), ref.view(np.uint32))
            np.testing.assert_array_equal(f.levels, levels)
            np.testing.assert_array_equal(f.indices(slice(None)), codes)
            for k in range(n):
                np.testing.assert_array_equal(f.read(k), ref[k])
            if num_classes:
                np.testing.assert_array_equal(f.labels, labels)
            else:
                assert f.labels is None
            assert f.class_names == classes
            assert (f.bits, f.group, f.sample_shape, len(f)) == (bits, group, shape, n)


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("bits", range(1, 9))
def test_every_decode_path(group, bits):
    """Every bits x group on shapes with byte-aligned and unaligned channels (the decoder
    has table fast paths for aligned channels and 1/2/4/8 bits), read whole and gathered."""
    for shape in [(3, 4, 2), (3, 1, 3), (2, 16), (1, 8), (5,), (9,)]:
        x = sample_data(6, shape, seed=bits)
        codes, levels = quantize_array(x, bits, group=group)
        data = b"".join(bytes(c) for c in encode_qdd(codes, levels, None, bits, group, []))
        f = QddFile(data)
        ref = expected_decode(codes, levels, group)
        np.testing.assert_array_equal(f.read_all(), ref)
        np.testing.assert_array_equal(f[[5, 1, 1]], ref[[5, 1, 1]])
        np.testing.assert_array_equal(f[1:4], ref[1:4])
        np.testing.assert_array_equal(f.indices([4, 0]), codes[[4, 0]])


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("bits", [1, 5, 8])
def test_zero_samples(tmp_path, group, bits):
    shape = (3, 2, 1)
    codes = np.zeros((0, *shape), dtype=np.uint8)
    g = group_count(group, 0, shape)
    levels = np.tile(np.linspace(-1, 1, 1 << bits, dtype=np.float32), (g, 1))
    path = tmp_path / "empty.qdd"
    size = write_qdd(path, codes, levels, np.zeros(0, np.int64), bits, group, ["a", "b"])
    assert size == encoded_size(0, shape, bits, group, ["a", "b"]) == os.path.getsize(path)
    with QddFile(path, verify=True) as f:
        assert len(f) == 0
        assert f.read_all().shape == (0, *shape)
        assert f.read(slice(0, 0)).shape == (0, *shape)
        assert f.labels.shape == (0,)
        np.testing.assert_array_equal(f.levels, levels)
        with pytest.raises(IndexError):
            f.read(0)
    if group == "sample-channel":
        c, lv = quantize_array(np.zeros((0, *shape), np.float32), bits, group=group)
        assert c.shape == (0, *shape) and lv.shape == (0, 1 << bits)
    else:
        with pytest.raises(QddValueError):
            quantize_array(np.zeros((0, *shape), np.float32), bits, group=group)


@settings(max_examples=40, deadline=None)
@given(
    x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=4, max_side=4),
                 elements=st.floats(width=32, allow_nan=False, allow_infinity=False)),
    classes=st.sampled_from([[], ["only"], ["a", "b", "c"]]),
)
def test_raw_float32_round_trip(x, classes):
    labels = np.zeros(x.shape[0], np.int64) if classes else None
    data = b"".join(bytes(c) for c in encode_qdd(x, None, labels, 32, "tensor", classes))
    assert len(data) == encoded_size(x.shape[0], x.shape[1:], 32, "tensor", classes)
    f = QddFile(data, verify=True)
    out = f.read_all()
    np.testing.assert_array_equal(out.view(np.uint32), x.view(np.uint32))  # -0.0, subnormals
    assert f.levels.size == 0
    with pytest.raises(QddValueError):
        f.indices(0)


def test_raw_rejects_levels_and_integers():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(QddValueError):
        encode_qdd(x, np.zeros((1, 2), np.float32), None, 32, "tensor", [])
    with pytest.raises(QddValueError):
        encode_qdd(x.astype(np.uint8), None, None, 32, "tensor", [])
    with pytest.raises(QddValueError):
        encode_qdd(np.full((1, 2), np.nan, np.float32), None, None, 32, "tensor", [])


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 300),
    shape=sample_shapes,
    bits=st.sampled_from([1, 2, 3, 5, 8, 32]),
    group=st.sampled_from(GROUPS),
    cb_dtype=st.sampled_from(["f4", "f2"]),
    num_classes=st.sampled_from([0, 1, 2, 10, 1000]),
    denorm=st.booleans(),
    soft=st.booleans(),
    provenance=st.sampled_from([None, {}, {"method": "dm", "ipc": 10, "seed": 3}]),
)
def test_encoded_size_is_exact(n, shape, bits, group, cb_dtype, num_classes, denorm, soft,
                               provenance):
    classes = [f"class-{i}" for i in range(num_classes)]
    c = shape[0] if len(shape) > 1 else 1
    dn = Denorm([0.25] * c, [0.5] * c) if denorm else None
    if bits == 32:
        codes, levels = np.zeros((n, *shape), np.float32), None
    else:
        codes = np.zeros((n, *shape), np.uint8)
        levels = np.zeros((group_count(group, n, shape), 1 << bits), np.float32)
    labels = np.zeros(n, np.int64) if classes else None
    soft_labels = np.zeros((n, num_classes), np.float32) if soft else None
    chunks = encode_qdd(codes, levels, labels, bits, group, classes, dn, cb_dtype, provenance,
                        soft_labels)
    real = sum(len(ch) for ch in chunks)
    assert real == encoded_size(n, shape, bits, group, classes, cb_dtype, dn, provenance, soft)


@settings(max_examples=40, deadline=None)
@given(
    budget=st.integers(0, 200_000),
    shape=sample_shapes,
    bits=st.sampled_from([1, 2, 4, 7, 8, 32]),
    group=st.sampled_from(GROUPS),
    num_classes=st.sampled_from([0, 1, 3, 10, 100]),
)
def test_max_samples_per_class_is_the_largest_that_fits(budget, shape, bits, group,
                                                         num_classes):
    classes = [str(i) for i in range(num_classes)]
    k = max(1, num_classes)
    ipc = max_samples_per_class(budget, shape, bits, classes, group)

    def size(count: int) -> int:
        return encoded_size(count * k, shape, bits, group, classes)

    assert ipc >= 0
    if ipc:
        assert size(ipc) <= budget
    assert size(ipc + 1) > budget


def test_max_samples_per_class_writes_a_file_of_that_size(tmp_path):
    classes = ["a", "b", "c"]
    budget = 5000
    ipc = max_samples_per_class(budget, (3, 4, 4), 2, classes, "channel")
    assert ipc > 0
    x = sample_data(ipc * 3, (3, 4, 4))
    codes, levels = quantize_array(x, 2)
    size = write_qdd(tmp_path / "b.qdd", codes, levels, np.arange(ipc * 3) % 3, 2, "channel",
                     classes)
    assert size <= budget
    assert size == os.path.getsize(tmp_path / "b.qdd")


@pytest.mark.parametrize("codebook", ["uniform", "kmeans"])
@pytest.mark.parametrize("group", GROUPS)
def test_deterministic_bytes(tmp_path, codebook, group):
    def make(name: str) -> bytes:
        x = sample_data(7, (3, 3, 5), seed=11)
        codes, levels = quantize_array(x, 3, codebook, group)
        write_qdd(tmp_path / name, codes, levels, np.arange(7) % 4, 3, group,
                  ["w", "x", "y", "z"], Denorm([0.5, 0.25, 2.0], [0.1, 0.2, 0.3]),
                  provenance={"method": "test", "b": [1, 2]},
                  soft_labels=np.full((7, 4), 0.25, np.float32))
        return (tmp_path / name).read_bytes()

    assert make("one.qdd") == make("two.qdd")


@pytest.mark.parametrize("shape", [(3, 2, 5), (3, 4, 4), (7,), (16,), (2, 3)])
@pytest.mark.parametrize("bits,group", [(b, g) for b in (1, 3, 4, 7, 8) for g in GROUPS]
                         + [(32, "tensor")])
def test_denormalize_per_channel(tmp_path, shape, bits, group):
    n = 4
    c = shape[0] if len(shape) > 1 else 1
    x = sample_data(n, shape, seed=5)
    scale = [0.229, 0.224, 0.225, 1.5, 2.0, 3.0, 4.0][:c]
    offset = [0.485, 0.456, 0.406, -1.0, 0.0, 1.0, 2.0][:c]
    dn = Denorm(scale, offset)
    if bits == 32:
        codes, levels = x, None
    else:
        codes, levels = quantize_array(x, bits, group=group)
    path = tmp_path / "d.qdd"
    write_qdd(path, codes, levels, None, bits, group, [], dn)
    with QddFile(path) as f:
        assert f.denorm == dn
        stored = f.read_all()
        if bits != 32:
            np.testing.assert_array_equal(stored, expected_decode(codes, levels, group))
        out = f.read_all(denormalize=True)
        per_s = stored.reshape(n, c, -1)
        want = np.empty_like(per_s)
        for ch in range(c):
            want[:, ch] = per_s[:, ch] * np.float32(dn.scale[ch]) + np.float32(dn.offset[ch])
        np.testing.assert_array_equal(out, want.reshape(stored.shape))
        np.testing.assert_array_equal(f.read(1, denormalize=True), out[1])
        np.testing.assert_array_equal(f.read([3, 0], denormalize=True), out[[3, 0]])
        assert not np.array_equal(out, stored)


def test_denorm_is_float32_and_validated():
    dn = Denorm([0.1], [1 / 3])
    assert dn.scale == (float(np.float32(0.1)),) and dn.offset == (float(np.float32(1 / 3)),)
    with pytest.raises(QddValueError):
        Denorm([1.0, 2.0], [0.0])
    with pytest.raises(QddValueError):
        Denorm([float("nan")], [0.0])
    with pytest.raises(QddValueError):
        encode_qdd(np.zeros((1, 2, 3), np.uint8), np.zeros((2, 2), np.float32), None, 1,
                   "channel", [], Denorm([1.0], [0.0]))  # 1 channel of denorm, 2 of data


def test_extras_round_trip(tmp_path):
    x = sample_data(5, (2, 3))
    codes, levels = quantize_array(x, 4)
    soft = np.random.default_rng(0).random((5, 3)).astype(np.float32)
    prov = {"method": "dm", "seed": 1, "lr": 0.01, "nested": {"k": [1, 2]}}
    path = tmp_path / "e.qdd"
    write_qdd(path, codes, levels, np.array([0, 1, 2, 0, 1]), 4, "channel", ["a", "b", "c"],
              provenance=prov, soft_labels=soft, meta={"note": "hi", "count": 3})
    with QddFile(path, verify=True) as f:
        np.testing.assert_array_equal(f.soft_labels, soft)
        assert f.provenance == prov
        assert f.layout.meta == {"note": "hi", "count": 3}
        parts = f.byte_breakdown()
        assert sum(parts.values()) == os.path.getsize(path)
        assert parts["soft_labels"] == 5 * 3 * 4


def test_writer_rejects_bad_levels_and_codes():
    codes = np.zeros((2, 4), np.uint8)
    with pytest.raises(QddValueError):  # unsorted
        encode_qdd(codes, np.array([[1.0, 0.0]], np.float32), None, 1, "tensor", [])
    with pytest.raises(QddValueError):  # NaN
        encode_qdd(codes, np.array([[0.0, np.nan]], np.float32), None, 1, "tensor", [])
    with pytest.raises(QddValueError):  # wrong shape
        encode_qdd(codes, np.zeros((1, 4), np.float32), None, 1, "tensor", [])
    with pytest.raises(QddValueError):  # not representable in float16
        encode_qdd(codes, np.array([[0.0, 0.1]], np.float32), None, 1, "tensor", [],
                   codebook_dtype="f2")
    with pytest.raises(QddValueError):  # code too large
        encode_qdd(codes + 2, np.zeros((1, 2), np.float32), None, 1, "tensor", [])
    with pytest.raises(QddValueError):  # missing levels
        encode_qdd(codes, None, None, 1, "tensor", [])
    for bits in (0, 9, 16):
        with pytest.raises(QddValueError):
            encode_qdd(codes, np.zeros((1, 2), np.float32), None, bits, "tensor", [])

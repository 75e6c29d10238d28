"""FileSpec: one value for the header fields; sizes are exact and the wrappers agree."""

from __future__ import annotations

import numpy as np
import pytest

from quadd_codec import (
    Denorm,
    FileSpec,
    QddFile,
    QddValueError,
    check_bits,
    check_labels,
    encode_qdd,
    encoded_size,
    max_samples_per_class,
    quantize_array,
    write_qdd,
)


def _data(n=12, shape=(3, 4, 4), seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)).astype(np.float32), np.arange(n) % 3


@pytest.mark.parametrize("bits, group, upsample, linear", [
    (2, "channel", 1, False), (4, "tensor", 2, False), (3, "sample-channel", 2, True),
    (8, "channel", 1, False),
])
def test_size_is_the_written_size(tmp_path, bits, group, upsample, linear):
    x, y = _data()
    codes, levels = quantize_array(x, bits, "uniform", group)
    spec = FileSpec(["a", "b", "c"], x.shape[1:], bits, group,
                    denorm=Denorm([1, 2, 3], [0, 0.5, 1]), provenance={"method": "test"},
                    upsample=upsample, upsample_filter="linear" if linear else "nearest")
    written = spec.write(tmp_path / "f.qdd", codes, levels, y)
    assert written == spec.size(len(x)) == (tmp_path / "f.qdd").stat().st_size
    with QddFile(tmp_path / "f.qdd", verify=True) as f:
        assert f.provenance == {"method": "test"} and f.upsample == upsample
        assert np.array_equal(f.labels, y)


def test_wrappers_give_the_same_bytes_as_the_spec(tmp_path):
    x, y = _data()
    codes, levels = quantize_array(x, 3, "kmeans", "channel")
    spec = FileSpec(["a", "b", "c"], x.shape[1:], 3, meta={"note": "m"})
    soft = np.full((len(x), 3), 1 / 3, dtype=np.float32)
    chunks = encode_qdd(codes, levels, y, 3, "channel", ["a", "b", "c"], soft_labels=soft,
                        meta={"note": "m"})
    assert b"".join(spec.encode(codes, levels, y, soft)) == b"".join(chunks)
    assert spec.size(len(x), soft_labels=True) == sum(len(c) for c in chunks)
    size = write_qdd(tmp_path / "w.qdd", codes, levels, y, 3, "channel", ["a", "b", "c"])
    assert size == encoded_size(len(x), x.shape[1:], 3, "channel", ["a", "b", "c"])
    assert size == FileSpec(["a", "b", "c"], x.shape[1:], 3).size(len(x))


def test_max_samples_per_class():
    spec = FileSpec(["a", "b"], (3, 8, 8), 2)
    ipc = spec.max_samples_per_class(10_000)
    assert spec.size(2 * ipc) <= 10_000 < spec.size(2 * (ipc + 1))
    assert ipc == max_samples_per_class(10_000, (3, 8, 8), 2, ["a", "b"])
    assert spec.max_samples_per_class(spec.size(2) - 1) == 0
    assert spec.max_samples_per_class(spec.size(2)) == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"bits": 9}, "bits must be 1..8 (or 32 for raw float32)"),
    ({"group": "row"}, "unknown group"),
    ({"codebook_dtype": "f8"}, "codebook dtype"),
    ({"sample_shape": (0, 3)}, "positive dims"),
    ({"class_names": ["a", "a"]}, "appears twice"),
    ({"denorm": Denorm([1], [0])}, "denorm has 1 channels"),
    ({"upsample": 3}, "needs samples of 3 or more dims"),
    ({"upsample_filter": "linear"}, "needs an upsample factor"),
    ({"provenance": {"x": object()}}, "msgpack-serializable"),
])
def test_validation(kwargs, message):
    args = {"class_names": ["a"], "sample_shape": (2, 5), "bits": 4} | kwargs
    with pytest.raises(QddValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FileSpec(**args)


def test_encode_refuses_codes_of_another_shape():
    spec = FileSpec([], (2, 5), 4)
    with pytest.raises(QddValueError, match="codes must be"):
        spec.encode(np.zeros((3, 5, 2), np.uint8), np.zeros((2, 16), np.float32), None)
    with pytest.raises(QddValueError, match="out of range"):
        spec.size(-1)


def test_spec_is_a_frozen_value():
    a = FileSpec(["a"], [2, 5], 4)
    assert a == FileSpec(("a",), (2, 5), 4) and a.sample_shape == (2, 5)
    with pytest.raises(AttributeError):
        a.bits = 5  # type: ignore[misc]


def test_check_bits_and_labels():
    assert check_bits(np.int64(3)) == 3
    assert check_bits(32, raw=True) == 32
    for bad in (0, 9, 32, True, 2.0):
        with pytest.raises(QddValueError):
            check_bits(bad)
    assert check_labels([0, 2, 1], 3).dtype == np.int64
    assert check_labels(np.array([1.0, 0.0])).tolist() == [1, 0]
    with pytest.raises(QddValueError, match="train: y has 2 labels but x has 3 samples"):
        check_labels([0, 1], 3, "train")
    with pytest.raises(QddValueError, match="negative"):
        check_labels([0, -1])
    with pytest.raises(QddValueError, match="integer class indices"):
        check_labels([0.5])
    with pytest.raises(QddValueError, match="must be below 65536"):
        check_labels([70000])

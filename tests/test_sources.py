"""Encoder inputs (quadd_codec.sources) and image folders (quadd_codec.imagefolder)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from quadd_codec import QddValueError
from quadd_codec.imagefolder import (
    atomic_directory,
    class_name_from_folder,
    read_image_folder,
    safe_name,
    write_image_folder,
)
from quadd_codec.sources import load_source, source_kind


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_npz_uint8_is_scaled_and_classes_kept(tmp_path, rng):
    x = rng.integers(0, 256, (6, 1, 4, 4), dtype=np.uint8)
    y = np.array([0, 1, 2, 0, 1, 2])
    np.savez(tmp_path / "d.npz", x=x, y=y, classes=np.array(["a", "b", "c"]))
    gx, gy, names = load_source(tmp_path / "d.npz")
    assert gx.dtype == np.float32 and np.allclose(gx, x / 255.0)
    assert gy.dtype == np.int64 and gy.tolist() == y.tolist()
    assert names == ["a", "b", "c"]


def test_npz_default_class_names_and_npy_unlabeled(tmp_path, rng):
    x = rng.standard_normal((5, 3)).astype(np.float64)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 3, 1, 1, 0]))
    _, _, names = load_source(tmp_path / "d.npz")
    assert names == ["0", "1", "2", "3"]
    np.save(tmp_path / "u.npy", x)
    gx, gy, names = load_source(tmp_path / "u.npy")
    assert gy is None and names == [] and gx.shape == (5, 3) and gx.dtype == np.float32


def test_zarr_group_and_single_array(tmp_path, rng):
    import zarr

    x = rng.random((4, 2, 3)).astype(np.float32)
    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    g.create_array("x", data=x)
    g.create_array("y", data=np.array([1, 0, 1, 0]))
    g.attrs["classes"] = ["no", "yes"]
    gx, gy, names = load_source(tmp_path / "g.zarr")
    assert np.array_equal(gx, x) and gy.tolist() == [1, 0, 1, 0] and names == ["no", "yes"]
    zarr.create_array(str(tmp_path / "a.zarr"), data=x)
    assert source_kind(tmp_path / "a.zarr") == "zarr"
    gx, gy, names = load_source(tmp_path / "a.zarr")
    assert np.array_equal(gx, x) and gy is None and names == []


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"y": np.zeros(3)}, "no array 'x'"),
        ({"x": np.zeros((3, 2)), "y": np.zeros(4, int)}, "4 labels but x has 3"),
        ({"x": np.array([["a", "b"]])}, "dtype"),
        ({"x": np.array([[1.0, np.nan]])}, "NaN"),
        ({"x": np.zeros((0, 3))}, "empty"),
        ({"x": np.zeros(3)}, "shape"),
        ({"x": np.zeros((2, 2)), "y": np.array([0, -1])}, "negative"),
        ({"x": np.zeros((2, 2)), "y": np.array([0, 2]), "classes": np.array(["a"])}, "only 1"),
        ({"x": np.zeros((2, 2)), "classes": np.array(["a"])}, "no labels"),
        ({"x": np.zeros((2, 2)), "y": np.array([0.5, 1])}, "integer"),
        ({"x": np.array([[1e39, 0.0]])}, "float32 range"),
    ],
)
def test_bad_npz_inputs(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(QddValueError, match=message):
        load_source(tmp_path / "bad.npz")


def test_pickled_arrays_are_refused(tmp_path):
    obj = np.array([{"a": 1}, None], dtype=object)
    np.save(tmp_path / "p.npy", obj, allow_pickle=True)
    with pytest.raises(QddValueError, match="pickle"):
        load_source(tmp_path / "p.npy")
    np.savez(tmp_path / "p.npz", x=np.zeros((2, 2)), y=obj)
    with pytest.raises(QddValueError, match="pickle"):
        load_source(tmp_path / "p.npz")


def test_not_an_input(tmp_path):
    (tmp_path / "f.txt").write_text("hello")
    with pytest.raises(QddValueError, match="unknown input kind"):
        load_source(tmp_path / "f.txt")
    (tmp_path / "f.npz").write_text("hello")
    with pytest.raises(QddValueError, match="cannot read"):
        load_source(tmp_path / "f.npz")
    with pytest.raises(QddValueError, match="no such file"):
        load_source(tmp_path / "missing.npz")


# ------------------------------------------------------------------ image folders


def _save(path, arr, mode):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path)


def test_image_folder_round_trip(tmp_path, rng):
    x = rng.integers(0, 256, (5, 3, 4, 6)).astype(np.float32) / 255
    y = np.array([1, 0, 1, 1, 0])
    names = ["dog", "../evil"]
    write_image_folder(x, y, names, tmp_path / "imgs")
    assert sorted(p.name for p in (tmp_path / "imgs").iterdir()) == ["%2E.%2Fevil", "dog"]
    gx, gy, gnames = read_image_folder(tmp_path / "imgs")
    assert gnames == ["../evil", "dog"]  # sorted by folder name: "%2E..." < "dog"
    order = [np.where(y == names.index(n))[0] for n in gnames]
    assert np.allclose(gx, x[np.concatenate(order)], atol=1e-6)
    assert gy.tolist() == [0] * 3 + [1] * 2


def test_image_folder_grayscale_and_jpeg(tmp_path, rng):
    gray = rng.integers(0, 256, (4, 5), dtype=np.uint8)
    _save(tmp_path / "r" / "a" / "1.png", gray, "L")
    _save(tmp_path / "r" / "b" / "2.JPG", gray, "L")
    (tmp_path / "r" / "b" / "notes.txt").write_text("ignored")
    x, y, names = read_image_folder(tmp_path / "r")
    assert x.shape == (2, 1, 4, 5) and names == ["a", "b"] and y.tolist() == [0, 1]
    assert np.allclose(x[0, 0], gray / 255)


def test_image_folder_mismatch_names_the_file(tmp_path, rng):
    _save(tmp_path / "r" / "a" / "1.png", rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), "RGB")
    _save(tmp_path / "r" / "b" / "odd.png", rng.integers(0, 256, (4, 5, 3), dtype=np.uint8), "RGB")
    with pytest.raises(QddValueError, match="odd.png"):
        read_image_folder(tmp_path / "r")
    _save(tmp_path / "s" / "a" / "1.png", rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), "RGB")
    _save(tmp_path / "s" / "a" / "2.png", rng.integers(0, 256, (4, 4), dtype=np.uint8), "L")
    with pytest.raises(QddValueError, match="2.png"):
        read_image_folder(tmp_path / "s")
    (tmp_path / "e").mkdir()
    with pytest.raises(QddValueError, match="no class folders"):
        read_image_folder(tmp_path / "e")


def test_image_writer_refuses_other_shapes(tmp_path):
    with pytest.raises(QddValueError, match="C, H, W"):
        write_image_folder(np.zeros((2, 5, 4, 4)), None, [], tmp_path / "o")


@pytest.mark.parametrize(
    "name", ["../evil", "a/b", "a\\b", ".", "..", ".hidden", "/abs", "con", "x" * 256,
             "100%", "ünï cödé", "a:b*c?"]
)
def test_safe_names_stay_inside(tmp_path, name):
    folder = safe_name(name)
    assert "/" not in folder and "\\" not in folder and not folder.startswith(".")
    assert 0 < len(folder) <= 200
    assert (tmp_path / folder).resolve().parent == tmp_path.resolve()
    if len(name) < 60:
        assert class_name_from_folder(folder) == name


def test_unencoded_folder_names_read_as_is():
    assert class_name_from_folder("100%") == "100%"
    assert class_name_from_folder("a%2fb") == "a%2fb"  # not the canonical (upper-case) form


def test_atomic_directory_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "out") as tmp:
        (tmp / "partial").write_text("x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_directory(tmp_path / "out") as tmp:
        (tmp / "a.png").write_text("1")  # what a decode to a folder writes
    with pytest.raises(QddValueError, match="not empty"), atomic_directory(tmp_path / "out"):
        pass
    with atomic_directory(tmp_path / "out", replace=True) as tmp:
        (tmp / "b").write_text("2")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["b"]

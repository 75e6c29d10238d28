"""Dataset loading: embedded digits, image folders, .npz files, archives, errors."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from quadd_train.data import (
    CIFAR10_CLASSES,
    DatasetNotFoundError,
    UnsafeArchiveError,
    load_dataset,
    safe_extract,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def _write_images(root: Path, classes: list[str], per_class: int, size=(4, 4), mode="RGB"):
    rng = np.random.default_rng(0)
    pixels = {}
    for split in ("train", "test"):
        for cls in classes:
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                shape = (*size, 3) if mode == "RGB" else size
                arr = rng.integers(0, 256, size=shape, dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{i:04d}.png")
                pixels[(split, cls, i)] = arr
    return pixels


# -- digits ---------------------------------------------------------------------------


def test_digits_shapes_range_and_stats():
    b = load_dataset("digits")
    assert b.name == "digits"
    assert b.x_train.shape == (1437, 1, 8, 8) and b.x_test.shape == (360, 1, 8, 8)
    assert b.x_train.dtype == torch.float32 and b.y_train.dtype == torch.int64
    assert 0.0 <= float(b.x_train.min()) and float(b.x_train.max()) <= 1.0
    assert b.class_names == [str(i) for i in range(10)]
    assert b.num_classes == 10 and b.sample_shape == (1, 8, 8) and b.im_size == (8, 8)
    # stratified: every class in the test split in proportion
    counts = torch.bincount(b.y_test, minlength=10)
    assert int(counts.min()) >= 34
    assert torch.allclose(b.mean, b.x_train.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(b.std, b.x_train.std(dim=(0, 2, 3), unbiased=False), atol=1e-5)
    z = b.normalize(b.x_train)
    assert abs(float(z.mean())) < 1e-4 and abs(float(z.std()) - 1) < 1e-3
    assert torch.allclose(b.denormalize(z), b.x_train, atol=1e-6)


def test_digits_split_is_deterministic():
    a, b = load_dataset("digits"), load_dataset("DIGITS")
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)


# -- folders and .npz -------------------------------------------------------------------


def test_image_folder_rgb(tmp_path):
    pixels = _write_images(tmp_path / "toy", ["dog", "cat"], per_class=3)
    b = load_dataset(str(tmp_path / "toy"))
    assert b.name == "toy"
    assert b.class_names == ["cat", "dog"]
    assert b.x_train.shape == (6, 3, 4, 4) and b.x_test.shape == (6, 3, 4, 4)
    assert b.y_train.tolist() == [0, 0, 0, 1, 1, 1]
    expected = pixels[("train", "dog", 1)].transpose(2, 0, 1) / 255.0
    assert np.allclose(b.x_train[4].numpy(), expected, atol=1e-6)
    assert b.mean.shape == (3,) and b.std.shape == (3,)


def test_image_folder_gray_numeric_classes(tmp_path):
    _write_images(tmp_path / "g", ["10", "2", "1"], per_class=1, size=(5, 6), mode="L")
    b = load_dataset(str(tmp_path / "g"))
    assert b.class_names == ["1", "2", "10"]
    assert b.x_train.shape == (3, 1, 5, 6)


def test_folder_without_splits_is_rejected(tmp_path):
    (tmp_path / "flat" / "a").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="train"):
        load_dataset(str(tmp_path / "flat"))


def test_npz_uint8_channels_last(tmp_path):
    rng = np.random.default_rng(1)
    x_tr = rng.integers(0, 256, (6, 5, 5, 3), dtype=np.uint8)
    x_te = rng.integers(0, 256, (4, 5, 5, 3), dtype=np.uint8)
    p = tmp_path / "set.npz"
    np.savez(p, x_train=x_tr, y_train=np.array([0, 1, 2] * 2), x_test=x_te,
             y_test=np.array([0, 1, 2, 0]), class_names=np.array(["a", "b", "c"]))
    b = load_dataset(str(p))
    assert b.name == "set" and b.class_names == ["a", "b", "c"]
    assert b.x_train.shape == (6, 3, 5, 5)
    assert np.allclose(b.x_train.numpy(), x_tr.transpose(0, 3, 1, 2) / 255.0)
    assert np.allclose(b.mean.numpy(), (x_tr / 255.0).mean(axis=(0, 1, 2)), atol=1e-6)


def test_npz_float_channels_first_kept_and_gray_gets_channel(tmp_path):
    x_tr = np.linspace(-2, 2, 4 * 3 * 4 * 4, dtype=np.float32).reshape(4, 3, 4, 4)
    p = tmp_path / "f.npz"
    np.savez(p, x_train=x_tr, y_train=np.array([0, 1, 0, 1]), x_test=x_tr[:2],
             y_test=np.array([1, 0]))
    b = load_dataset(str(p))
    assert torch.equal(b.x_train, torch.from_numpy(x_tr))
    assert b.class_names == ["0", "1"]

    g = tmp_path / "g.npz"
    np.savez(g, x_train=np.zeros((2, 7, 7), np.uint8), y_train=np.array([0, 1]),
             x_test=np.full((1, 7, 7), 255, np.uint8), y_test=np.array([1]))
    bg = load_dataset(str(g))
    assert bg.x_train.shape == (2, 1, 7, 7) and float(bg.x_test.max()) == 1.0


def test_npz_missing_arrays(tmp_path):
    p = tmp_path / "bad.npz"
    np.savez(p, x_train=np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(ValueError, match="lacks"):
        load_dataset(str(p))


# -- named datasets via a data directory -------------------------------------------------


def test_named_from_extracted_folder_with_cifar_order(tmp_path):
    _write_images(tmp_path / "cifar10", sorted(CIFAR10_CLASSES), per_class=1)
    b = load_dataset("cifar10", data_dir=str(tmp_path))
    assert b.name == "cifar10" and b.class_names == CIFAR10_CLASSES
    # label 0 is airplane, whatever the folder listing order
    assert b.y_train.tolist() == list(range(10))


def _make_tarball(src: Path, out: Path) -> None:
    with tarfile.open(out, "w:gz") as tar:
        for child in sorted(src.iterdir()):
            tar.add(child, arcname=child.name)


def test_named_from_tarball_is_cached(tmp_path):
    src = tmp_path / "src"
    _write_images(src, [str(d) for d in range(3)], per_class=2, size=(6, 6), mode="L")
    data = tmp_path / "data"
    data.mkdir()
    _make_tarball(src, data / "mnist-png.tar.gz")
    cache = tmp_path / "cache"
    first = load_dataset("mnist", data_dir=str(data), cache_dir=str(cache))
    assert first.x_train.shape == (6, 1, 6, 6) and first.class_names == ["0", "1", "2"]
    npz = list((cache / "extracted").glob("mnist-*.npz"))
    assert len(npz) == 1
    # Only the decoded .npz stays: the extracted images are removed once it is written,
    # so the second load comes from it.
    assert [p.name for p in (cache / "extracted").iterdir()] == [npz[0].name]
    second = load_dataset("mnist", data_dir=str(data), cache_dir=str(cache))
    assert torch.equal(first.x_train, second.x_train)
    assert torch.equal(first.y_test, second.y_test)
    assert torch.equal(first.std, second.std)


def test_env_data_dir(tmp_path, monkeypatch):
    _write_images(tmp_path / "fashion-mnist", ["a", "b"], per_class=1, mode="L")
    monkeypatch.setenv("QUADD_DATA", str(tmp_path))
    b = load_dataset("fashion_mnist")
    assert b.name == "fashion-mnist" and b.class_names == ["a", "b"]


def test_missing_named_dataset_message(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist", data_dir=str(tmp_path), cache_dir=str(tmp_path / "c"))
    msg = str(info.value)
    assert str(tmp_path) in msg and "--data-dir" in msg and "QUADD_DATA" in msg
    assert isinstance(info.value, ValueError)


def test_unknown_name():
    with pytest.raises(DatasetNotFoundError, match="unknown dataset"):
        load_dataset("no-such-dataset-xyz")



def test_a_corrupt_cache_is_rebuilt(tmp_path):
    src = tmp_path / "src"
    _write_images(src, ["0", "1"], per_class=2, size=(5, 5), mode="L")
    data = tmp_path / "data"
    data.mkdir()
    _make_tarball(src, data / "mnist.tar.gz")
    cache = tmp_path / "cache"
    first = load_dataset("mnist", data_dir=str(data), cache_dir=str(cache))
    (npz,) = (cache / "extracted").glob("mnist-*.npz")
    npz.write_bytes(b"PK not really a zip")
    again = load_dataset("mnist", data_dir=str(data), cache_dir=str(cache))
    assert torch.equal(first.x_train, again.x_train)
    assert load_dataset(str(npz)).class_names == ["0", "1"]  # rewritten whole


# -- the npz reader and writer, the checks -----------------------------------------------


def test_npz_writer_round_trip_and_atomic(tmp_path, monkeypatch):
    from quadd_train.data import npz as npz_mod

    rng = np.random.default_rng(3)
    x_tr = rng.integers(0, 256, (6, 1, 4, 4), dtype=np.uint8)
    x_te = rng.integers(0, 256, (2, 1, 4, 4), dtype=np.uint8)
    y_tr, y_te = np.array([0, 1, 2] * 2), np.array([2, 0])
    path = tmp_path / "sub" / "c.npz"
    npz_mod.write_npz(path, x_tr, y_tr, x_te, y_te, ["a", "b", "c"])
    b = npz_mod.load_npz(path, name="named")
    assert b.name == "named" and b.class_names == ["a", "b", "c"]
    assert np.array_equal(b.x_train.numpy(), x_tr / np.float32(255))
    assert b.y_test.tolist() == [2, 0]
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(npz_mod.np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        npz_mod.write_npz(path, x_tr, y_tr, x_te, y_te, ["a", "b", "c"])
    # The old file stays as it was and no temp file is left beside it.
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["c.npz"]


@pytest.mark.parametrize(
    ("labels", "message"),
    [(np.array(["a", "b"]), "dtype"), (np.array([0.5, 1.0]), "must hold integer class indices"),
     (np.array([0, -1]), "negative"), (np.array([0, 1 << 20]), "at most")],
)
def test_label_checks(labels, message):
    from quadd_train.data.checks import check_labels

    with pytest.raises(ValueError, match=message) as info:
        check_labels(labels, "y_train")
    assert "y_train" in str(info.value)


def test_label_checks_accept_integral_floats_and_bools():
    from quadd_train.data.checks import check_labels

    out = check_labels(np.array([[2.0], [0.0]]), "y")
    assert out.dtype == np.int64 and out.tolist() == [2, 0]
    assert check_labels(np.array([True, False]), "y").tolist() == [1, 0]


def test_every_class_needs_training_samples():
    from quadd_train.data import check_every_class_has_samples
    from quadd_train.data.bundle import make_bundle

    x = np.zeros((3, 1, 2, 2), np.uint8)
    ok = make_bundle("ok", x, np.array([0, 1, 1]), x, np.array([0, 1, 1]), ["a", "b"])
    check_every_class_has_samples(ok)
    gap = make_bundle("gap", x, np.array([0, 0, 2]), x, np.array([0, 1, 2]), ["a", "b", "c"])
    with pytest.raises(ValueError, match="class\\(es\\) b have no training"):
        check_every_class_has_samples(gap)
    with pytest.raises(ValueError, match="outside 0..1"):
        make_bundle("bad", x, np.array([0, 1, 2]), x, np.array([0, 1, 1]), ["a", "b"])

# -- safe extraction --------------------------------------------------------------------


def _tar_with(path: Path, name: str, kind: str = "file") -> None:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        if kind == "symlink":
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
        else:
            data = b"evil"
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize(
    ("member", "kind"),
    [("../evil.txt", "file"), ("train/../../evil.txt", "file"), ("/tmp/evil.txt", "file"),
     ("train/link", "symlink")],
)
def test_safe_extract_rejects_escaping_members(tmp_path, member, kind):
    archive = tmp_path / "bad.tar.gz"
    _tar_with(archive, member, kind)
    dest = tmp_path / "a" / "b"
    with pytest.raises(UnsafeArchiveError):
        safe_extract(archive, dest)
    assert not (tmp_path / "a" / "evil.txt").exists()
    assert not (tmp_path / "evil.txt").exists()
    assert not (dest / "train" / "link").exists()


def test_safe_extract_ok(tmp_path):
    archive = tmp_path / "ok.tar.gz"
    _tar_with(archive, "train/0/x.txt")
    out = safe_extract(archive, tmp_path / "out")
    assert (out / "train" / "0" / "x.txt").read_bytes() == b"evil"


# -- the real shared copy (slow: decodes 70,000 PNGs once; opt in) -------------------------


@pytest.mark.skipif(
    not (SHARED / "mnist-png.tar.gz").is_file() or not os.environ.get("QUADD_SLOW_TESTS"),
    reason="needs ../shared/datasets and QUADD_SLOW_TESTS=1",
)
def test_shared_mnist_tarball(tmp_path):
    b = load_dataset("mnist", data_dir=str(SHARED), cache_dir=str(tmp_path))
    assert b.x_train.shape == (60000, 1, 28, 28) and b.x_test.shape == (10000, 1, 28, 28)
    assert abs(float(b.mean[0]) - 0.1307) < 1e-3 and abs(float(b.std[0]) - 0.3081) < 1e-3

"""Bad input to the training half (datasets, checkpoints, budgets, outputs): one clear
error line and exit 1, before any large allocation and without touching the input."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli.main import main
from quadd_train import checkpoint as checkpoint_mod
from quadd_train import plan as plan_mod
from quadd_train.data import load_dataset

pytestmark = pytest.mark.usefixtures("one_thread")


def _npz(path, **override):
    rng = np.random.default_rng(0)
    x = rng.random((40, 1, 8, 8)).astype(np.float32)
    y = np.arange(40) % 4
    arrays = {"x_train": x, "y_train": y, "x_test": x[:8], "y_test": y[:8]}
    arrays.update(override)
    np.savez(path, **arrays)
    return str(path)


def _run(*args: str):
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def _error(*args: str) -> str:
    code, out = _run(*args)
    assert code == 1, out
    lines = out.strip().splitlines()
    assert lines[-1].startswith("quadd: error: "), out
    assert "Traceback" not in out
    return lines[-1]


@pytest.mark.parametrize("override, message", [
    # Unchecked, a label of 10**9 would size a list of a billion class names.
    ({"y_train": np.where(np.arange(40) % 4 == 3, 10**9, np.arange(40) % 4)},
     "holds label 1000000000; labels must be below 65536"),
    ({"y_train": np.array(list("abcd") * 10)}, "has dtype <U1; expected integer class indices"),
    ({"y_train": np.arange(40) % 4 + 0.5}, "y_train must hold integer class indices"),
    ({"y_train": -(np.arange(40) % 4)}, "negative labels"),
    ({"x_test": np.full((8, 1, 8, 8), np.inf, np.float32)}, "x_test holds NaN or infinite"),
])
def test_a_bad_npz_dataset_is_refused_when_loaded(tmp_path, override, message):
    path = _npz(tmp_path / "d.npz", **override)
    with pytest.raises(ValueError) as err:
        load_dataset(path)
    assert message in str(err.value)
    assert message in _error("plan", "-b", "2KiB", "-d", path)


@pytest.mark.parametrize("labels", [(np.arange(40) % 4).astype(float),
                                    (np.arange(40) % 4).astype(np.uint8)])
def test_integral_float_and_small_integer_labels_are_read_as_classes(tmp_path, labels):
    bundle = load_dataset(_npz(tmp_path / "d.npz", y_train=labels))
    assert bundle.y_train.dtype == torch.int64 and bundle.num_classes == 4


def test_bool_labels_are_two_classes_as_in_encode(tmp_path):
    y = np.arange(40) % 2 == 1
    bundle = load_dataset(_npz(tmp_path / "d.npz", y_train=y, y_test=y[:8]))
    assert bundle.num_classes == 2 and bundle.y_train.sum() == 20


def test_a_class_without_training_samples_stops_plan_and_distill_not_loading(tmp_path):
    path = _npz(tmp_path / "d.npz", y_train=np.where(np.arange(40) % 4 == 3, 0, np.arange(40) % 4))
    assert load_dataset(path).num_classes == 4  # subset and eval can still use it
    assert "class(es) 3 have no training samples" in _error("plan", "-b", "2KiB", "-d", path)
    assert "class(es) 3 have no training samples" in _error(
        "distill", "-b", "2KiB", "-n", "1", "-d", path, "-o", str(tmp_path / "o.qdd"))


def test_feature_vectors_have_a_channel_per_feature_for_subset_and_distill(tmp_path):
    rng = np.random.default_rng(1)
    path = _npz(tmp_path / "f.npz", x_train=rng.random((40, 64)).astype(np.float32),
                x_test=rng.random((8, 64)).astype(np.float32))
    # Per-feature statistics; files store (F, 1) samples: C = F (FORMAT.md).
    assert load_dataset(path).mean.shape == (64,)
    code, out = _run("subset", "-b", "2KiB", "-d", path, "-o", str(tmp_path / "s.qdd"))
    assert code == 0, out
    code, out = _run("distill", "-b", "2KiB", "-n", "1", "-d", path, "-o",
                     str(tmp_path / "d.qdd"))
    assert code == 0, out


@pytest.mark.parametrize("command", ["distill", "subset"])
def test_the_output_may_not_be_the_input_dataset(tmp_path, command):
    path = _npz(tmp_path / "d.npz")
    before = (tmp_path / "d.npz").read_bytes()
    extra = ["-n", "1"] if command == "distill" else []
    assert "is the input dataset" in _error(command, "-b", "2KiB", "-d", path, *extra,
                                            "-o", path)
    assert (tmp_path / "d.npz").read_bytes() == before


def test_the_checkpoint_may_not_be_the_input_dataset(tmp_path):
    path = _npz(tmp_path / "d.npz")
    before = (tmp_path / "d.npz").read_bytes()
    assert "is the input dataset" in _error(
        "distill", "-b", "2KiB", "-d", path, "-n", "2", "--checkpoint-every", "1",
        "--checkpoint", path, "-o", str(tmp_path / "o.qdd"))
    assert (tmp_path / "d.npz").read_bytes() == before


def _resume(tmp_path, ckpt) -> str:
    return _error("distill", "-b", "2KiB", "-n", "2", "-o", str(tmp_path / "r.qdd"),
                  "--resume", "--checkpoint", str(ckpt))


class _Planted:
    def __init__(self, path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))  # unpickling this creates the file


def test_a_checkpoint_is_read_without_running_code(tmp_path):
    evil = tmp_path / "evil.ckpt"
    torch.save({"version": 1, "payload": _Planted(tmp_path / "PLANTED")}, evil)
    line = _resume(tmp_path, evil)
    assert "cannot read checkpoint" in line and "not loaded" in line
    assert not (tmp_path / "PLANTED").exists()


@pytest.mark.parametrize("content, message", [
    (b"", "EOFError"),
    (b"garbage\n", "cannot read checkpoint"),
    (None, "is not a quadd distill checkpoint"),  # a valid torch file of something else
])
def test_a_file_that_is_not_a_checkpoint_is_named_in_one_line(tmp_path, content, message):
    ckpt = tmp_path / "x.ckpt"
    if content is None:
        torch.save([1, 2], ckpt)
    else:
        ckpt.write_bytes(content)
    line = _resume(tmp_path, ckpt)
    assert message in line and "x.ckpt" in line


def test_a_real_checkpoint_still_resumes(tmp_path):
    out = str(tmp_path / "c.qdd")
    code, text = _run("distill", "-b", "2KiB", "-n", "4", "--checkpoint-every", "2",
                      "-o", out)
    assert code == 0, text
    state = checkpoint_mod.load_checkpoint(out + ".ckpt")  # holds NumPy arrays (pool seeds)
    assert isinstance(state["objective"]["pool_seeds"], np.ndarray)
    code, text = _run("distill", "-b", "2KiB", "-n", "6", "--resume", "-o", out)
    assert code == 0 and "6 iterations" in text, text


def test_the_checkpoint_may_not_be_the_output(tmp_path):
    out = str(tmp_path / "c.qdd")
    assert "the checkpoint and the output are the same file" in _error(
        "distill", "-b", "2KiB", "-n", "2", "--checkpoint-every", "1", "-o", out,
        "--checkpoint", out)


def test_a_damaged_dataset_archive_is_one_error_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "mnist-png.tar.gz").write_bytes(b"junk")
    assert "cannot extract archive" in _error(
        "plan", "-b", "2KiB", "-d", "mnist", "--data-dir", str(data))
    # A truncated gzip stream raised EOFError, which click printed as "Aborted!".
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        payload = np.random.default_rng(0).bytes(200_000)
        info = tarfile.TarInfo("mnist/train/0/a.png")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    (data / "mnist-png.tar.gz").write_bytes(buf.getvalue()[:50_000])
    assert "cannot extract archive" in _error(
        "plan", "-b", "2KiB", "-d", "mnist", "--data-dir", str(data))


def test_a_budget_too_large_to_train_is_refused_before_allocating(tmp_path, monkeypatch):
    monkeypatch.setattr(plan_mod, "available_memory", lambda device: 64 << 20)
    line = _error("distill", "-b", "64MiB", "--bits", "1", "-n", "1",
                  "-o", str(tmp_path / "big.qdd"))
    assert "GiB to train" in line and "smaller --ipc or --budget" in line
    assert not (tmp_path / "big.qdd").exists()
    # An --ipc that fits memory runs under the same budget.
    code, out = _run("distill", "-b", "64MiB", "--bits", "1", "-n", "1", "--ipc", "2",
                     "-o", str(tmp_path / "small.qdd"))
    assert code == 0, out


def test_subset_reports_the_samples_it_took_per_class(tmp_path):
    code, out = _run("subset", "-b", "1MiB", "--json", "-o", str(tmp_path / "s.qdd"))
    assert code == 0, out
    res = json.loads(out)
    counts = np.bincount(load_dataset("digits").y_train.numpy())
    assert res["ipc"] == counts.max() and res["n"] == counts.sum()


def test_json_output_is_strict_json(tmp_path):
    code, out = _run("distill", "-b", "2KiB", "-n", "0", "--json",
                     "-o", str(tmp_path / "n0.qdd"))
    assert code == 0, out
    res = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert res["final_loss"] is None


def test_eval_refuses_an_empty_test_split(tmp_path):
    path = _npz(tmp_path / "d.npz", x_test=np.zeros((0, 1, 8, 8), np.float32),
                y_test=np.zeros(0, np.int64))
    qdd = str(tmp_path / "s.qdd")
    assert _run("subset", "-b", "2KiB", "-d", path, "-o", qdd)[0] == 0
    assert "empty test split" in _error("eval", qdd, "-d", path, "--epochs", "1",
                                        "--runs", "1")


def test_plan_says_when_a_budget_affords_more_samples_than_a_class_has():
    code, out = _run("plan", "-b", "64KiB")
    assert code == 0 and "more samples per class than the smallest class has (139)" in out
    code, out = _run("plan", "-b", "2KiB")
    assert code == 0 and "note:" not in out


def test_the_summary_says_what_ran_and_an_interrupt_says_how_to_go_on(tmp_path, monkeypatch):
    out = str(tmp_path / "c.qdd")
    code, text = _run("distill", "-b", "2KiB", "-n", "2", "--checkpoint-every", "2",
                      "--upsample", "2", "-o", out)
    assert code == 0 and "stored 2x smaller per side" in text and "final loss/class" in text
    code, text = _run("distill", "-b", "2KiB", "-n", "4", "--checkpoint-every", "2",
                      "--upsample", "2", "--resume", "-o", out)
    assert code == 0 and "4 iterations, resumed from 2" in text, text

    # --resume without a checkpoint starts over, and says so.
    result = CliRunner().invoke(main, ["distill", "-b", "2KiB", "-n", "1", "--resume",
                                       "-o", str(tmp_path / "new.qdd")])
    assert result.exit_code == 0 and "no checkpoint at" in result.stderr

    # Ctrl-C names the checkpoint to resume from (here the one at iteration 4), but only
    # one this run resumed from or wrote: an older one may hold other settings.
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("quadd_train.loop.distill", interrupted)
    args = ["distill", "-b", "2KiB", "-n", "6", "--checkpoint-every", "2", "--upsample", "2",
            "-o", out]
    result = CliRunner().invoke(main, [*args, "--resume"])
    assert result.exit_code == 130
    assert "checkpoint of iteration 4" in result.stderr and "--resume" in result.stderr
    result = CliRunner().invoke(main, [*args[:-2], "--bits", "2", "-o", out, "--force"])
    assert result.exit_code == 130 and "checkpoint of" not in result.stderr

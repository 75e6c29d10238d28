"""DM's on-disk pool cache: a hit is the recomputed pool byte for byte, every setting that
changes the pool misses, damage is rebuilt, the cap evicts, and `quadd cache ls|clear`."""

from __future__ import annotations

import json
import os

import pytest
import torch
from click.testing import CliRunner

from cli.main import main
from quadd_train import DistillConfig, distill
from quadd_train.objectives.dm import DMObjective
from quadd_train.runtime import resolve_runtime

pytestmark = pytest.mark.usefixtures("one_thread")

POOL = dict(pool_size=3, real_per_class=16)
EAGER = resolve_runtime("cpu", bf16=False, compile=False)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("QUADD_CACHE", str(root))
    monkeypatch.setenv("QUADD_POOL_CACHE_MAX", "64MiB")
    return root


@pytest.fixture
def embeds(monkeypatch):
    """How many times the pool's real means were computed (a list of one count)."""
    count = [0]
    real = DMObjective._real_means

    def counted(self, *args, **kwargs):
        count[0] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(DMObjective, "_real_means", counted)
    return count


def _entries(root):
    return sorted((root / "pools").glob("*.pt"))


def _run(tmp_path, name, digits, **kw):
    opts = {**POOL, **kw.pop("objective_options", {})}
    cfg = DistillConfig(**{"budget_bytes": 2048, "bits": 2, "iterations": 3, "seed": 0,
                           **kw, "objective_options": opts})
    return distill(cfg, digits, tmp_path / name, progress=False)


def _prepared(digits, runtime=None, seed=0, **opts):
    obj = DMObjective(**{**POOL, **opts})
    x = digits.normalize(digits.x_train.float())
    obj.prepare(x, digits.y_train, 10, 2, runtime or EAGER, seed=seed)
    return obj


def test_a_hit_is_the_recomputed_pool_byte_for_byte(tmp_path, cache, embeds, digits):
    first = _run(tmp_path, "a.qdd", digits)
    assert embeds[0] == 3 and not first.report["pool_from_cache"]
    assert len(_entries(cache)) == 1
    again = _run(tmp_path, "b.qdd", digits)
    assert embeds[0] == 3, "a hit embeds nothing"
    assert again.report["pool_from_cache"] and "from cache" in again.summary
    off = _run(tmp_path, "c.qdd", digits, objective_options={"pool_cache": False})
    assert embeds[0] == 6 and not off.report["pool_from_cache"]
    a, b, c = ((tmp_path / n).read_bytes() for n in ("a.qdd", "b.qdd", "c.qdd"))
    assert a == b == c
    # Bits and the budget are not the pool's business: another run shares it.
    other = _run(tmp_path, "d.qdd", digits, bits=3)
    assert other.report["pool_from_cache"] and embeds[0] == 6
    assert len(_entries(cache)) == 1


def test_every_setting_of_the_pool_is_in_its_key(cache, embeds, digits):
    base = _prepared(digits)
    assert embeds[0] == 3 and not base.pool_from_cache
    for change in (dict(seed=1), dict(pool_size=4), dict(real_per_class=8),
                   dict(runtime=resolve_runtime("cpu", bf16=True)), dict(dsa=False),
                   dict(embed_chunk=7)):
        before = embeds[0]
        obj = _prepared(digits, **change)
        assert not obj.pool_from_cache and embeds[0] > before, change
    x = digits.normalize(digits.x_train.float())
    x[0, 0, 0, 0] += 1e-6  # one value of the real data
    other = DMObjective(**POOL)
    other.prepare(x, digits.y_train, 10, 2, EAGER, seed=0)
    assert not other.pool_from_cache
    # The draw order and the synthetic side are not: the same pool.
    same = _prepared(digits, pool_order="random", syn_chunk=5, batch_real=9)
    assert same.pool_from_cache
    assert torch.equal(same._pool_means, base._pool_means)
    assert (same._pool_seeds == base._pool_seeds).all()
    assert len(_entries(cache)) == 8


def test_a_trained_pool_keeps_its_networks(cache, digits):
    opts = dict(pool_train_steps=4, pool_train_batch=32)
    built = _prepared(digits, **opts)
    read = _prepared(digits, **opts)
    assert read.pool_from_cache and not built.pool_from_cache
    for a, b in zip(built._nets, read._nets, strict=True):
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(p, q)
    assert torch.equal(built._pool_means, read._pool_means)
    # Another learning rate trains other networks; an untrained pool never reads it.
    assert not _prepared(digits, **opts, pool_train_lr=0.05).pool_from_cache
    assert not _prepared(digits, pool_train_lr=0.05).pool_from_cache
    assert _prepared(digits, pool_train_lr=0.07).pool_from_cache


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other pool"])
def test_a_damaged_entry_is_rebuilt(cache, embeds, digits, capsys, damage):
    base = _prepared(digits)
    (entry,) = _entries(cache)
    data = entry.read_bytes()
    if damage == "garbage":
        entry.write_bytes(b"not a pool" * 10)
    elif damage == "truncated":
        entry.write_bytes(data[: len(data) // 2])
    else:  # a valid entry under the wrong name
        _prepared(digits, seed=5)
        (a, b) = _entries(cache)
        other = b if a == entry else a
        entry.write_bytes(other.read_bytes())
    capsys.readouterr()
    before = embeds[0]
    again = _prepared(digits)
    err = capsys.readouterr().err
    assert "quadd: warning: pool cache entry" in err and "damaged" in err
    assert len(err.strip().splitlines()) == 1
    assert not again.pool_from_cache and embeds[0] == before + 3
    assert torch.equal(again._pool_means, base._pool_means)
    assert _prepared(digits).pool_from_cache  # stored again


def test_the_least_recently_used_entries_go_beyond_the_cap(cache, monkeypatch, digits):
    _prepared(digits, seed=0)
    (first,) = _entries(cache)
    size = first.stat().st_size + first.with_suffix(".json").stat().st_size
    monkeypatch.setenv("QUADD_POOL_CACHE_MAX", str(int(size * 2.5)))
    _prepared(digits, seed=1)
    os.utime(first, (1, 1))  # long unused
    assert _prepared(digits, seed=0).pool_from_cache  # used now
    second = [p for p in _entries(cache) if p != first][0]
    _prepared(digits, seed=2)  # a third entry: the one least recently used goes
    names = _entries(cache)
    assert len(names) == 2 and first in names and second not in names
    assert not second.with_suffix(".json").exists()
    # An entry larger than the cap alone is not stored, and evicts nothing.
    monkeypatch.setenv("QUADD_POOL_CACHE_MAX", "1KiB")
    assert not _prepared(digits, seed=3).pool_from_cache
    assert _entries(cache) == names


def test_cache_ls_and_clear(tmp_path, cache, digits):
    runner = CliRunner()
    out = tmp_path / "x.qdd"
    args = ["distill", "--dataset", "digits", "--budget", "2KiB", "--bits", "2", "-n", "2",
            "--pool-size", "2", "--real-per-class", "8", "--no-progress", "--force", "-o", str(out)]
    res = runner.invoke(main, [*args, "--no-pool-cache"])
    assert res.exit_code == 0, res.output
    assert "set up in" in res.output and not (cache / "pools").exists()
    res = runner.invoke(main, args)
    assert res.exit_code == 0 and "set up in" in res.output
    res = runner.invoke(main, args)
    assert res.exit_code == 0 and "DM pool 2 x 8 real/class, from cache in" in res.output
    (cache / "extracted").mkdir()
    (cache / "extracted" / "mnist-0123.npz").write_bytes(b"x" * 100)
    (cache / "datasets").mkdir()  # downloaded archives ($QUADD_DATA's default) stay
    (cache / "datasets" / "mnist-png.tar.gz").write_bytes(b"archive")

    res = runner.invoke(main, ["cache", "ls"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith(f"pools in {cache / 'pools'}: 1 entry, ")
    assert lines[0].endswith("of the 64.0 MiB cap")
    assert "digits (1437 x 1x8x8, 10 classes), seed 0: DM pool 2 x 8 real/class" in lines[1]
    assert lines[2] == f"datasets in {cache / 'extracted'}: 1 entry, 100 B"
    assert "mnist-0123.npz" in lines[3] and "decoded dataset" in lines[3]
    res = runner.invoke(main, ["cache", "ls", "--json"])
    rows = [json.loads(line) for line in res.output.splitlines()]
    assert [r.get("kind") for r in rows[:2]] == ["pool", "dataset"] or \
        [r.get("kind") for r in rows[:2]] == ["dataset", "pool"]
    assert rows[-1]["pool_cap_bytes"] == 64 << 20 and rows[-1]["dataset_bytes"] == 100

    res = runner.invoke(main, ["cache", "clear", "--datasets"])
    assert res.exit_code == 0 and "removed 1 entry (100 B) of decoded datasets" in res.output
    assert len(_entries(cache)) == 1
    res = runner.invoke(main, ["cache", "clear"])
    assert res.exit_code == 0 and "removed 1 entry" in res.output and "pools" in res.output
    assert _entries(cache) == [] and (cache / "datasets" / "mnist-png.tar.gz").exists()
    res = runner.invoke(main, ["cache", "ls"])
    assert res.exit_code == 0 and "pools in" in res.output and "0 entries" in res.output

    os.environ["QUADD_POOL_CACHE_MAX"] = "lots"
    res = runner.invoke(main, ["cache", "ls"])
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == [
        "quadd: error: $QUADD_POOL_CACHE_MAX: invalid size 'lots': expected a number with "
        "an optional unit B, KB, MB, GB (x1000) or KiB, MiB, GiB (x1024), e.g. 120KiB"]
    os.environ["QUADD_POOL_CACHE_MAX"] = "0"
    res = runner.invoke(main, ["cache", "ls"])
    assert res.exit_code == 0 and "(the pool cache is off)" in res.output

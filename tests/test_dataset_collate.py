"""`qdd_collate` (issue 27 item 7): DataLoader takes a decoded batch of `QddDataset`
without stacking per-sample copies; the default collate still gets the same values."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader  # noqa: E402

from quadd_codec import QddFile, quantize_array, write_qdd  # noqa: E402
from quadd_codec.dataset import QddBatch, QddDataset, qdd_collate  # noqa: E402


@pytest.fixture
def path(tmp_path):
    x = np.random.default_rng(0).random((37, 3, 4, 4), dtype=np.float32)
    codes, levels = quantize_array(x, 8)
    p = tmp_path / "d.qdd"
    write_qdd(p, codes, levels, np.arange(37) % 3, 8, "channel", ["a", "b", "c"])
    return p


def test_collate_returns_the_decoded_batch_itself(path):
    ds = QddDataset(path)
    batch = ds.__getitems__([3, 1, 2])
    assert isinstance(batch, QddBatch) and len(batch) == 3
    x, y = qdd_collate(batch)
    assert x is batch.x and y.tolist() == [0, 1, 2]
    with QddFile(path) as f:
        np.testing.assert_array_equal(x.numpy(), f.read([3, 1, 2], denormalize=True))


@pytest.mark.parametrize("collate", [None, qdd_collate])
def test_loaders_agree(path, collate):
    ds = QddDataset(path)
    kwargs = {} if collate is None else {"collate_fn": collate}
    xs, ys = zip(*DataLoader(ds, batch_size=8, **kwargs), strict=True)
    with QddFile(path) as f:
        np.testing.assert_array_equal(torch.cat(xs).numpy(), f.read_all(denormalize=True))
        assert torch.cat(ys).tolist() == f.labels.tolist()

"""Device selection and host-to-device copies (the CUDA branch runs only on a GPU)."""

from __future__ import annotations

import pytest
import torch

from quadd_train.runtime import resolve_device, to_device


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_to_device_keeps_values(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no GPU")
    dev = torch.device(device)
    # An expanded (stride-0) view, as the seeded DSA draws are, and a plain one.
    for t in (torch.rand(1).expand(7), torch.arange(12).reshape(3, 4)):
        out = to_device(t, dev, torch.float64)
        assert out.device.type == dev.type and out.dtype == torch.float64
        assert torch.equal(out.cpu(), t.to(torch.float64))

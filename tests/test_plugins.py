"""The trainer's plug points: quantizer and parameterization registries, entry points, and
the doctests of every implementation."""

from __future__ import annotations

import doctest
import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from quadd_train.quantizers import (
    QUANTIZER_REGISTRY,
    QUANTIZERS,
    PluginError,
    Quantizer,
    make_quantizer,
    quantizer_names,
    register_quantizer,
)
from quadd_train.synthetic import (
    PARAMETERIZATION_REGISTRY,
    PARAMETERIZATIONS,
    Parameterization,
    SyntheticSet,
    make_parameterization,
    parameterization_names,
    register_parameterization,
)

IMPLEMENTATIONS = [
    "quadd_train.quantizers.uniform",
    "quadd_train.quantizers.apot",
    "quadd_train.quantizers.learned",
    "quadd_train.quantizers.identity",
    "quadd_train.synthetic.pixels",
    "quadd_train.synthetic.resized",
]


@pytest.mark.parametrize("module", IMPLEMENTATIONS)
def test_doctests(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0


# --- quantizers -----------------------------------------------------------------------


class HalvesQuantizer(Quantizer):
    """A third-party quantizer: fixed levels ``k / 2`` around a learnable shift."""

    name = "test-halves"

    def __init__(self, bits: int, group: str, num_samples: int, num_channels: int,
                 shift: float = 0.0) -> None:
        super().__init__(bits, group, num_samples, num_channels)
        steps = torch.arange(self.num_levels, dtype=torch.float32) / 2
        self.shift = nn.Parameter(torch.full((self.num_groups, 1), float(shift)))
        self.register_buffer("steps", steps[None])

    def table(self) -> Tensor:
        return self.shift + self.steps


@pytest.fixture
def halves() -> Iterator[type[Quantizer]]:
    register_quantizer("test-halves")(HalvesQuantizer)
    yield HalvesQuantizer
    QUANTIZER_REGISTRY.unregister("test-halves")


def test_builtin_quantizers_are_registered() -> None:
    assert QUANTIZERS == ("uniform", "apot", "learned", "none")
    assert set(QUANTIZERS) <= set(QUANTIZER_REGISTRY.registered())
    assert quantizer_names()[:4] == QUANTIZERS


def test_registered_quantizer_works_through_make_quantizer(halves: type) -> None:
    assert "test-halves" in quantizer_names()
    q = make_quantizer("test-halves", 2, "channel", num_samples=3, num_channels=2,
                       shift=-0.5, soft_round_beta=None)
    assert isinstance(q, HalvesQuantizer)
    x = torch.randn(3, 2, 4, requires_grad=True)
    y = q(x)
    y.sum().backward()
    assert q.shift.grad is not None and torch.equal(x.grad, torch.ones_like(x))
    codes, levels = q.export()
    assert levels.tolist() == [[-0.5, 0.0, 0.5, 1.0]] * 2
    dec = np.take_along_axis(levels[None, :, :], codes.reshape(3, 2, -1).astype(np.int64),
                             axis=2)
    assert np.array_equal(dec.reshape(y.shape), y.detach().numpy())


def test_quantizer_registry_errors(halves: type) -> None:
    with pytest.raises(ValueError, match="unknown quantizer 'fancy'.*apot.*test-halves"):
        make_quantizer("fancy", 4)
    with pytest.raises(ValueError, match="does not take option.*wobble.*its options: shift"):
        make_quantizer("test-halves", 2, wobble=1)
    with pytest.raises(ValueError, match="soft_round_beta"):
        make_quantizer("apot", 2, soft_round_beta=2.0)
    with pytest.raises(ValueError, match="bits must be in 1..8 for quantizer 'test-halves'"):
        make_quantizer("test-halves", 0)
    with pytest.raises(ValueError, match="already registered"):
        register_quantizer("uniform")(HalvesQuantizer)
    with pytest.raises(TypeError, match="not a subclass"):
        register_quantizer("test-object")(object)


def test_none_quantizer_takes_any_bits_and_no_options() -> None:
    assert make_quantizer("none", 32, num_samples=2, num_channels=1).bits == 32
    with pytest.raises(ValueError, match="its options: none"):
        make_quantizer("none", 32, soft_round_beta=1.0)


# --- parameterizations ----------------------------------------------------------------


class Halved(Parameterization):
    """A third-party parameterization: stores half of each value."""

    name = "test-halved"

    def __init__(self, stored: Tensor, gain: float = 2.0) -> None:
        super().__init__(stored)
        self.gain = gain

    @classmethod
    def init_stored(cls, x: Tensor, gain: float = 2.0, **options: object) -> Tensor:
        return x / gain

    def decode(self, stored: Tensor) -> Tensor:
        return stored * self.gain

    def file_fields(self) -> dict[str, object]:
        return {"upsample": 1, "upsample_filter": "nearest"}


@pytest.fixture
def halved() -> Iterator[type[Parameterization]]:
    register_parameterization("test-halved")(Halved)
    yield Halved
    PARAMETERIZATION_REGISTRY.unregister("test-halved")


def test_builtin_parameterizations_are_registered() -> None:
    assert PARAMETERIZATIONS == ("pixels", "resized", "vectors")
    assert parameterization_names()[:3] == PARAMETERIZATIONS


def test_registered_parameterization_works(halved: type) -> None:
    x = torch.randn(4, 1, 3, 3)
    p = make_parameterization("test-halved", x, gain=4.0)
    assert torch.equal(p.stored(), x / 4) and torch.equal(p.decode(p.stored()), x)
    y = torch.tensor([0, 1, 0, 1])
    syn = SyntheticSet.from_real(x, y, 2, 2, seed=0, parameterization="test-halved")
    assert isinstance(syn.parameterization, Halved)
    assert list(syn.state_dict()) == ["data", "labels"]
    assert torch.equal(syn.expand(syn.data), syn.data * 2)
    assert syn.file_fields() == {"upsample": 1, "upsample_filter": "nearest"}


def test_parameterization_registry_errors(halved: type) -> None:
    x = torch.randn(2, 1, 4, 4)
    with pytest.raises(ValueError, match="unknown parameterization 'wavelet'.*pixels"):
        make_parameterization("wavelet", x)
    with pytest.raises(ValueError, match="does not take option.*factor.*upsample"):
        make_parameterization("resized", x, factor=2)
    with pytest.raises(ValueError, match="2 or more"):
        make_parameterization("resized", x, upsample=1)


@pytest.mark.parametrize(("upsample", "filt"), [(1, "nearest"), (2, "nearest"), (2, "linear")])
def test_synthetic_set_state_keeps_its_names(upsample: int, filt: str) -> None:
    x = torch.randn(6, 3, 8, 8)
    y = torch.arange(3).repeat(2)
    syn = SyntheticSet.from_real(x, y, 3, 2, seed=1, upsample=upsample, upsample_filter=filt)
    assert syn.upsample == upsample and syn.upsample_filter == filt
    state = syn.state_dict()
    assert list(state) == ["data", "labels"]
    assert state["data"].shape == (6, 3, 8 // upsample, 8 // upsample)
    other = SyntheticSet.from_real(x, y, 3, 2, seed=2, upsample=upsample, upsample_filter=filt)
    other.load_state_dict(state)
    assert torch.equal(other.data, syn.data) and other.data is other.parameterization.data
    assert torch.equal(other.expand(other.data), syn.expand(syn.data))
    with pytest.raises(RuntimeError, match="Missing key"):
        other.load_state_dict({"labels": state["labels"]})


# --- entry points -----------------------------------------------------------------------

_PLUGIN = '''
import torch
from torch import nn
from quadd_train.quantizers import Quantizer
from quadd_train.synthetic import Pixels


class Plugged(Quantizer):
    name = "plugged"

    def __init__(self, bits, group, num_samples, num_channels):
        super().__init__(bits, group, num_samples, num_channels)
        self.levels = nn.Parameter(torch.linspace(-1, 1, self.num_levels).repeat(
            self.num_groups, 1))

    def table(self):
        return self.levels.sort(dim=1).values


class PluggedPixels(Pixels):
    name = "plugged-pixels"


not_a_class = 3
'''


@pytest.fixture
def plugin_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An installed distribution with entry points: working, broken and wrong ones."""
    (tmp_path / "quadd_test_plugin.py").write_text(_PLUGIN)
    info = tmp_path / "quadd_test_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: quadd-test-plugin\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [quadd.quantizers]
        plugged = quadd_test_plugin:Plugged
        broken = quadd_no_such_module_xyz:Thing
        wrong = quadd_test_plugin:not_a_class
        uniform = quadd_test_plugin:Plugged

        [quadd.parameterizations]
        plugged-pixels = quadd_test_plugin:PluggedPixels
        broken-pixels = quadd_test_plugin:Missing
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in ("plugged", "broken", "wrong"):
        QUANTIZER_REGISTRY.unregister(name)
    for name in ("plugged-pixels", "broken-pixels"):
        PARAMETERIZATION_REGISTRY.unregister(name)
    sys.modules.pop("quadd_test_plugin", None)


@pytest.mark.usefixtures("plugin_dist")
def test_entry_point_quantizer_is_found_by_name() -> None:
    names = quantizer_names()
    assert names[:4] == QUANTIZERS and {"plugged", "broken", "wrong"} <= set(names)
    assert "quadd_test_plugin" not in sys.modules  # listed, not loaded
    q = make_quantizer("plugged", 2, "tensor", num_samples=2, num_channels=1)
    assert type(q).__name__ == "Plugged"
    codes, levels = q.export(torch.tensor([[[-1.0, 0.2, 0.9]], [[0.4, -0.3, 1.0]]]))
    assert codes.shape == (2, 1, 3) and levels.shape == (1, 4)
    # A built-in name wins over an entry point of the same name.
    assert type(make_quantizer("uniform", 2)).__name__ == "UniformQuantizer"


@pytest.mark.usefixtures("plugin_dist")
def test_broken_entry_points_are_named() -> None:
    with pytest.raises(PluginError, match=r"quantizer 'broken'.*broken = "
                       r"quadd_no_such_module_xyz:Thing.*quadd-test-plugin.*failed to load"):
        make_quantizer("broken", 2)
    with pytest.raises(PluginError, match="quantizer 'wrong'.*is not a quantizer"):
        make_quantizer("wrong", 2)
    with pytest.raises(PluginError, match="parameterization 'broken-pixels'.*Missing"):
        make_parameterization("broken-pixels", torch.zeros(1, 1, 2, 2))
    # The broken ones stop only the runs that use them.
    assert make_quantizer("plugged", 1).num_levels == 2


@pytest.mark.usefixtures("plugin_dist")
def test_entry_point_parameterization_is_found_by_name() -> None:
    assert "plugged-pixels" in parameterization_names()
    x = torch.randn(4, 1, 2, 2)
    syn = SyntheticSet.from_real(x, torch.tensor([0, 0, 1, 1]), 2, 1, seed=0,
                                 parameterization="plugged-pixels")
    assert type(syn.parameterization).__name__ == "PluggedPixels"
    assert syn.upsample == 1

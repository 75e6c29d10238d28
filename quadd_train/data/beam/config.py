"""The beam dataset's generation parameters (:class:`BeamConfig`) and their defaults.

Contract: a :class:`BeamConfig` fully determines the generated arrays (with the installed
Sionna version); :meth:`BeamConfig.key` is a short digest of every field and the layout
version, used to name cached files. :meth:`BeamConfig.check` raises ``ValueError`` with one
line for an invalid value.

Defaults follow the 3GPP Rel-18 AI/ML beam-management study's FR2 setting (BM-Case 1):
30 GHz carrier, 200 m inter-site distance, 120 kHz subcarrier spacing, 100 MHz (66
resource blocks), 40 dBm gNB transmit power spread evenly over the band, 10 dB UE noise
figure; L1-RSRP is measured on the SSB's 240 subcarriers (20 resource blocks).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

__all__ = ["DEFAULT_DROPS", "LAYOUT_VERSION", "SCENARIOS", "BeamConfig"]

SCENARIOS = ("uma", "umi")
DEFAULT_DROPS = 20_000
#: Bump when the generator's output changes for the same parameters (stale caches).
LAYOUT_VERSION = 2
_BOLTZMANN_DBM_HZ = -174.0  # thermal noise density at 290 K, dBm/Hz


@dataclass(frozen=True)
class BeamConfig:
    """What to generate; see docs/beam.md for the setting these defaults describe."""

    drops: int = DEFAULT_DROPS
    scenario: str = "uma"
    seed: int = 0
    test_fraction: float = 0.2
    #: Reporting quantization of the features in dB (None: unquantized).
    rsrp_step: float | None = None
    carrier_frequency_hz: float = 30e9
    subcarrier_spacing_hz: float = 120e3
    #: Carrier bandwidth in resource blocks (12 subcarriers each): 66 = 100 MHz at 120 kHz.
    bandwidth_rbs: int = 66
    tx_power_dbm: float = 40.0
    noise_figure_db: float = 10.0
    #: Subcarriers of the measured reference signal (the SSB spans 240).
    measured_subcarriers: int = 240
    #: How many of them the channel is evaluated on, evenly spaced (the rest add nothing
    #: a 32-beam power average would notice, and cost time).
    sampled_subcarriers: int = 24
    #: Share of indoor UEs (None: the scenario's TR 38.901 default, 0.8).
    indoor_probability: float | None = None
    #: Inter-site distance in metres: the sector reaches ISD / sqrt(3) from the gNB.
    #: 200 m is the study's dense-urban macro layer (TR 38.913); TR 38.901's own UMa
    #: default is 500 m.
    isd_m: float = 200.0

    def check(self) -> BeamConfig:
        """``self`` if every value is valid, else ``ValueError``."""
        if self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r}: use one of "
                             f"{', '.join(SCENARIOS)}")
        if self.drops < 2:
            raise ValueError(f"--drops must be at least 2, got {self.drops}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"--test-fraction must be in (0, 1), got {self.test_fraction}")
        n_test = self.num_test
        if n_test < 1 or n_test >= self.drops:
            raise ValueError(f"{self.drops} drops with --test-fraction {self.test_fraction} "
                             "leave an empty train or test split")
        if self.rsrp_step is not None and not (self.rsrp_step > 0 and
                                               math.isfinite(self.rsrp_step)):
            raise ValueError(f"--rsrp-step must be a positive number of dB, got "
                             f"{self.rsrp_step}")
        if self.seed < 0:
            raise ValueError(f"--seed must be non-negative, got {self.seed}")
        if self.indoor_probability is not None and not 0 <= self.indoor_probability <= 1:
            raise ValueError(f"indoor probability must be in [0, 1], got "
                             f"{self.indoor_probability}")
        if not self.isd_m > 0:
            raise ValueError(f"the inter-site distance must be positive, got {self.isd_m}")
        if not 1 <= self.sampled_subcarriers <= self.measured_subcarriers:
            raise ValueError("sampled_subcarriers must be in [1, measured_subcarriers]")
        return self

    @property
    def num_test(self) -> int:
        return int(round(self.drops * self.test_fraction))

    @property
    def wavelength(self) -> float:
        return 299_792_458.0 / self.carrier_frequency_hz

    @property
    def re_power_dbm(self) -> float:
        """Transmit power per resource element (the total spread over the band)."""
        return self.tx_power_dbm - 10 * math.log10(12 * self.bandwidth_rbs)

    @property
    def re_noise_dbm(self) -> float:
        """Thermal noise plus noise figure in one subcarrier's bandwidth."""
        return (_BOLTZMANN_DBM_HZ + 10 * math.log10(self.subcarrier_spacing_hz)
                + self.noise_figure_db)

    def as_dict(self) -> dict:
        return asdict(self)

    def key(self) -> str:
        """16 hex digits naming these parameters (and the layout version)."""
        text = json.dumps({"layout": LAYOUT_VERSION, **self.as_dict()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

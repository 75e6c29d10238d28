"""TR 38.901 channels from Sionna (the ``quadd[beam]`` extra): UEs dropped in one sector,
and each UE's frequency response on the gNB array's elements.

Contract:

* :func:`require_sionna` imports Sionna or raises :class:`BeamExtraMissing` (a
  ``ValueError``, so the CLI prints it as one line) saying ``pip install 'quadd[beam]'``.
* :class:`SectorChannel` draws, per call of :meth:`SectorChannel.draw`, ``batch`` independent
  single-sector topologies of ``ues`` UEs each (Sionna's ``gen_single_sector_topology``: a
  gNB at the origin at the scenario's height, downtilted towards the sector centre, UEs
  uniform in the 120-degree sector of
  the configured inter-site distance, indoor with the configured probability), the UMa or
  UMi model with path loss, shadow fading and LoS/NLoS drawn per link, and returns the
  downlink frequency response ``(batch * ues, 32, K)`` complex64 at ``K`` subcarriers
  evenly spread over the measured band. ``|h|**2`` includes path loss, shadow fading,
  O2I loss and the 38.901 element pattern (8 dBi, 65 degrees); transmit power is not in it.
* Randomness: Sionna's global seed (``sionna.phy.config.seed``, which also seeds torch's
  default generator) is set by :meth:`SectorChannel.reseed`; the same seed gives the
  same sequence of draws.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from .codebook import NUM_COLS, NUM_ROWS, zenith_range
from .config import BeamConfig

__all__ = ["BeamExtraMissing", "SectorChannel", "require_sionna"]

#: UT height of the topology's ground-floor UEs (TR 38.901 Table 7.4.1-1), metres.
_UT_HEIGHT = 1.5


class BeamExtraMissing(ValueError):
    """Sionna, which the beam dataset is generated with, is not installed."""


def require_sionna() -> ModuleType:
    """The ``sionna.phy`` module, or :class:`BeamExtraMissing`."""
    try:
        import sionna.phy
        import sionna.phy.channel.tr38901  # noqa: F401
    except ImportError as exc:
        raise BeamExtraMissing(
            "the beam dataset is generated with Sionna (sionna-no-rt, Python >= 3.11), "
            f"which is not installed ({exc}): pip install 'quadd[beam]'"
        ) from None
    return sionna.phy


class SectorChannel:
    """One gNB sector's TR 38.901 channel model (see the module docstring)."""

    def __init__(self, config: BeamConfig, batch: int, ues: int) -> None:
        sionna_phy = require_sionna()
        from sionna.phy.channel.tr38901 import PanelArray, UMa, UMi

        self._phy = sionna_phy
        self.config = config
        self.batch, self.ues = batch, ues
        fc = config.carrier_frequency_hz
        self.bs_array = PanelArray(num_rows_per_panel=NUM_ROWS, num_cols_per_panel=NUM_COLS,
                                   polarization="single", polarization_type="V",
                                   antenna_pattern="38.901", carrier_frequency=fc,
                                   precision="single", device="cpu")
        ut_array = PanelArray(num_rows_per_panel=1, num_cols_per_panel=1,
                              polarization="single", polarization_type="V",
                              antenna_pattern="omni", carrier_frequency=fc,
                              precision="single", device="cpu")
        model = UMa if config.scenario == "uma" else UMi
        self._model = model(carrier_frequency=fc, o2i_model="low", ut_array=ut_array,
                            bs_array=self.bs_array, direction="downlink",
                            enable_pathloss=True, enable_shadow_fading=True,
                            precision="single", device="cpu")
        # Evenly spaced subcarriers over the measured band, centred on the carrier.
        step = config.measured_subcarriers / config.sampled_subcarriers
        idx = (np.arange(config.sampled_subcarriers) + 0.5) * step - config.measured_subcarriers / 2
        self._freqs = (idx * config.subcarrier_spacing_hz).astype(np.float32)

    def reseed(self, seed: int) -> None:
        self._phy.config.seed = int(seed)

    def element_positions(self) -> np.ndarray:
        """(32, 3) element positions in metres, local frame, in the channel's order."""
        return self.bs_array.ant_pos.detach().cpu().numpy().astype(np.float64)

    def zenith_range(self) -> tuple[float, float]:
        """The local zenith range of the sector's ground UEs (see codebook.zenith_range),
        from the scenario's own geometry: gNB height, downtilt, minimum distance and the
        sector's far corner at ISD / sqrt(3)."""
        from sionna.phy.channel.utils import (
            gen_single_sector_topology,
            set_3gpp_scenario_parameters,
        )

        _, bs_loc, _, bs_orient, _, _ = gen_single_sector_topology(
            batch_size=1, num_ut=1, scenario=self.config.scenario, isd=self.config.isd_m,
            precision="single", device="cpu")
        min_distance = float(set_3gpp_scenario_parameters(
            self.config.scenario, precision="single", device="cpu")[0])
        return zenith_range(float(bs_loc[0, 0, 2]), _UT_HEIGHT,
                            float(np.degrees(float(bs_orient[0, 0, 1]))),
                            min_distance, self.config.isd_m / np.sqrt(3.0))

    def draw(self) -> np.ndarray:
        """(batch * ues, 32, K) complex64 downlink frequency responses of fresh drops."""
        import torch
        from sionna.phy.channel.utils import gen_single_sector_topology

        kwargs: dict[str, Any] = {}
        if self.config.indoor_probability is not None:
            kwargs["indoor_probability"] = self.config.indoor_probability
        with torch.no_grad():
            topology = gen_single_sector_topology(
                batch_size=self.batch, num_ut=self.ues, scenario=self.config.scenario,
                isd=self.config.isd_m, precision="single", device="cpu", **kwargs)
            self._model.set_topology(*topology)
            # One time sample: a drop is a snapshot, so the sampling rate is irrelevant.
            a, tau = self._model(1, 1.0)
            # h(f_k) = sum_p a_p exp(-j 2 pi f_k tau_p), as Sionna's cir_to_ofdm_channel,
            # but with one phase per path rather than per path and element: the delays
            # are the same on every element, and this step was a fifth of the run time.
            a = a[:, :, 0, 0, :, :, 0]  # [batch, ut, bs_ant, path]
            angle = (-2 * np.pi) * tau[:, :, 0, :, None] * torch.from_numpy(self._freqs)
            h = a @ torch.polar(torch.ones_like(angle), angle)  # [batch, ut, bs_ant, K]
        return h.reshape(self.batch * self.ues, h.shape[-2], h.shape[-1]).numpy()

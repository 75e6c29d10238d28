"""L1-RSRP of each beam: the true (noiseless) value and the UE's noisy, optionally
quantized report.

Contract:

* :func:`true_rsrp_dbm` is the received power per resource element through each beam,
  averaged over the sampled subcarriers: ``P_RE * mean_k |w_n^H h_k|^2`` in dBm. Labels
  and the ``rsrp_*`` arrays (the within-1-dB metric) use it.
* :func:`measured_rsrp_dbm` is what a UE reports for the given beams: per sampled
  subcarrier the received reference symbol ``sqrt(P_RE) w^H h_k + n_k``, and the power
  averaged over the sampled subcarriers, less the (known) noise power, in dBm. Each
  sampled subcarrier stands for ``R = measured / sampled`` resource elements, so ``n_k``
  is complex Gaussian of the noise power per resource element divided by ``R`` (the mean
  of R elements' noise): the noise is averaged over the full SSB band. With a reporting
  step the value is rounded to it. Reports are clipped to the L1-RSRP reporting range
  [-140, -44] dBm (TS 38.133); an estimate at or below zero power reports -140.
"""

from __future__ import annotations

import numpy as np

from .config import BeamConfig

__all__ = ["REPORT_RANGE_DBM", "beam_gains", "measured_rsrp_dbm", "true_rsrp_dbm"]

REPORT_RANGE_DBM = (-140.0, -44.0)
_FLOOR = 1e-30  # keeps log10 finite for a beam with no power at all


def beam_gains(h: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(N, B, K) complex beamformed channels ``w_n^H h_k`` of ``h`` (N, M, K)."""
    return np.einsum("bm,nmk->nbk", weights.conj(), h, optimize=True)


def true_rsrp_dbm(gains: np.ndarray, config: BeamConfig) -> np.ndarray:
    """(N, B) float32 noiseless RSRP in dBm of the beamformed channels (N, B, K)."""
    power = np.mean(np.abs(gains) ** 2, axis=-1)
    return (10 * np.log10(np.maximum(power, _FLOOR)) + config.re_power_dbm).astype(np.float32)


def measured_rsrp_dbm(gains: np.ndarray, config: BeamConfig,
                      rng: np.random.Generator) -> np.ndarray:
    """(N, B) float32 reported RSRP in dBm of the beamformed channels (N, B, K)."""
    p_re = 10 ** (config.re_power_dbm / 10)
    # Each sampled subcarrier stands for R measured resource elements (the channel barely
    # changes across them): their average carries noise of power sigma^2 / R.
    per_sample = config.measured_subcarriers / config.sampled_subcarriers
    sigma2 = 10 ** (config.re_noise_dbm / 10) / per_sample
    noise = rng.standard_normal((*gains.shape, 2), dtype=np.float32)
    noise = (noise[..., 0] + 1j * noise[..., 1]) * np.float32(np.sqrt(sigma2 / 2))
    received = np.float32(np.sqrt(p_re)) * gains + noise
    # The UE knows its noise level and subtracts it, so the estimate is unbiased; one at or
    # below zero reports the bottom of the range.
    power = np.mean(np.abs(received) ** 2, axis=-1) - sigma2
    rsrp = 10 * np.log10(np.maximum(power, _FLOOR))
    if config.rsrp_step is not None:
        rsrp = np.round(rsrp / config.rsrp_step) * config.rsrp_step
    return np.clip(rsrp, *REPORT_RANGE_DBM).astype(np.float32)

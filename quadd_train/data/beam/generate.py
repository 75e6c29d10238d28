"""The beam dataset itself: drops -> Set A RSRPs -> features, labels and the split, with the
statistics that say whether the task is worth learning.

Contract: :func:`generate_beam` returns a :class:`BeamData` determined by its
:class:`BeamConfig` (same config and Sionna version -> the same arrays, bit for bit, on one
machine). Per UE: ``rsrp`` (32,) float32, the noiseless L1-RSRP of every Set A beam in dBm;
``x`` (8,) float32, the UE's reported L1-RSRP of the Set B beams (noisy, optionally
quantized); ``y`` int64, the index of the best Set A beam by noiseless RSRP. The last
``round(drops * test_fraction)`` drops are the test split (drops are independent, so a
contiguous split is a random one). Drops are simulated up to 1,000 at a time (up to 100
topologies of 10 UEs; a partial last batch is drawn whole and cut), with a tqdm bar on
stderr.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .channel import SectorChannel
from .codebook import NUM_BEAMS, SET_B, beam_directions, beam_names, beam_weights
from .config import BeamConfig
from .rsrp import beam_gains, measured_rsrp_dbm, true_rsrp_dbm

__all__ = ["BeamData", "beam_statistics", "generate_beam"]

_TOPOLOGIES, _UES = 100, 10  # drops per simulated batch: _TOPOLOGIES * _UES


@dataclass
class BeamData:
    """A generated beam dataset (see the module docstring)."""

    config: BeamConfig
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    rsrp_train: np.ndarray
    rsrp_test: np.ndarray
    class_names: list[str]
    stats: dict[str, Any] = field(default_factory=dict)


def generate_beam(config: BeamConfig, progress: bool = True) -> BeamData:
    """Simulate ``config.drops`` UEs (see the module docstring)."""
    import torch

    config.check()
    # Seeding Sionna reseeds torch's global generator: the caller's stream is put back.
    torch_state = torch.random.get_rng_state()
    try:
        return _generate(config, progress)
    finally:
        torch.random.set_rng_state(torch_state)


def _generate(config: BeamConfig, progress: bool) -> BeamData:
    from tqdm import tqdm

    start = time.perf_counter()
    topologies = min(_TOPOLOGIES, -(-config.drops // _UES))
    channel = SectorChannel(config, topologies, _UES)
    directions = beam_directions(*channel.zenith_range())
    weights = beam_weights(channel.element_positions(), config.wavelength, directions)
    channel.reseed(config.seed)
    # A stream of its own for the measurement noise, apart from Sionna's.
    rng = np.random.default_rng([config.seed, 1])
    set_b = np.array(SET_B)
    per_batch = topologies * _UES
    xs, ys, rsrps = [], [], []
    done = 0
    with tqdm(total=config.drops, desc="beam drops", unit="UE", disable=not progress,
              leave=False) as bar:
        while done < config.drops:
            gains = beam_gains(channel.draw(), weights)
            take = min(per_batch, config.drops - done)
            gains = gains[:take]
            rsrp = true_rsrp_dbm(gains, config)
            xs.append(measured_rsrp_dbm(gains[:, set_b], config, rng))
            ys.append(np.argmax(rsrp, axis=1).astype(np.int64))
            rsrps.append(rsrp)
            done += take
            bar.update(take)
    x, y, rsrp = np.concatenate(xs), np.concatenate(ys), np.concatenate(rsrps)
    cut = config.drops - config.num_test
    data = BeamData(config, x[:cut], y[:cut], x[cut:], y[cut:], rsrp[:cut], rsrp[cut:],
                    beam_names())
    data.stats = beam_statistics(x, y, rsrp, config)
    data.stats["seconds"] = round(time.perf_counter() - start, 2)
    return data


def beam_statistics(x: np.ndarray, y: np.ndarray, rsrp: np.ndarray,
                    config: BeamConfig) -> dict[str, Any]:
    """How hard the task is, over all drops: how often the best Set A beam is in Set B,
    how often the strongest reported Set B beam is the best Set A beam (the no-learning
    baseline's top-1), the class balance and the best beam's SNR."""
    set_b = np.array(SET_B)
    counts = np.bincount(y, minlength=NUM_BEAMS)
    share = counts / max(len(y), 1)
    snr = rsrp.max(axis=1) - config.re_noise_dbm
    return {
        "drops": int(len(y)),
        "train": int(len(y) - config.num_test),
        "test": int(config.num_test),
        "best_in_set_b": round(float(np.isin(y, set_b).mean()), 4),
        "set_b_argmax_top1": round(float((set_b[np.argmax(x, axis=1)] == y).mean()), 4),
        "classes_present": int((counts > 0).sum()),
        "min_class_share": round(float(share.min()), 4),
        "max_class_share": round(float(share.max()), 4),
        "best_beam_snr_db_median": round(float(np.median(snr)), 1),
        "best_beam_snr_db_p10": round(float(np.percentile(snr, 10)), 1),
    }

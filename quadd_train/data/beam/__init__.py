"""The beam-management dataset (3GPP Rel-18 AI/ML, BM-Case 1 spatial-domain beam
prediction) generated from TR 38.901 channels with Sionna, the ``quadd[beam]`` extra.

A gNB with a 4 x 8 planar array serves one UMa or UMi sector at 30 GHz; each UE reports
the L1-RSRP (dBm) of the 8 Set B beams (the features) and the label is the best of the 32
Set A beams. See docs/beam.md for the setting and the measured statistics.

Modules, one job each:

* :mod:`.config` -- :class:`BeamConfig`, the parameters, their defaults and cache key;
* :mod:`.codebook` -- the array, the Set A codebook and the Set B subset;
* :mod:`.channel` -- Sionna: topologies and per-element frequency responses;
* :mod:`.rsrp` -- true and reported (noisy, quantized) L1-RSRP per beam;
* :mod:`.generate` -- drops -> features, labels, split and statistics;
* :mod:`.store` -- the ``.npz`` file and the cached default dataset.

Importing this package does not import Sionna; generating does.
"""

from __future__ import annotations

from .channel import BeamExtraMissing, require_sionna
from .codebook import NUM_BEAMS, SET_B, beam_names
from .config import DEFAULT_DROPS, SCENARIOS, BeamConfig
from .generate import BeamData, beam_statistics, generate_beam
from .store import cached_beam_npz, write_beam_npz

__all__ = [
    "DEFAULT_DROPS",
    "NUM_BEAMS",
    "SCENARIOS",
    "SET_B",
    "BeamConfig",
    "BeamData",
    "BeamExtraMissing",
    "beam_names",
    "beam_statistics",
    "cached_beam_npz",
    "generate_beam",
    "require_sionna",
    "write_beam_npz",
]

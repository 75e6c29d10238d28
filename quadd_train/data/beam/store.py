"""The beam dataset on disk: the ``.npz`` file and the cached default dataset.

Contract:

* :func:`write_beam_npz` writes, atomically (a reader sees the old file or the whole new
  one), ``x_train`` (N, 8) float32 dBm, ``y_train`` int64, ``x_test``, ``y_test``,
  ``class_names`` (``"beam00"`` .. ``"beam31"``; the key :mod:`quadd_train.data.npz`
  reads), ``rsrp_train`` / ``rsrp_test`` (N, 32) float32 dBm (every Set A beam's noiseless
  RSRP, for the within-1-dB metric), ``set_b`` (8,) int64 (the Set A index of each
  feature) and ``beam_config`` (the generation parameters as JSON text). Plain arrays
  only: it loads with ``allow_pickle=False``.
* :func:`cached_beam_npz` is the path of the dataset for a :class:`BeamConfig` in the
  cache's decoded-datasets folder (``<cache>/extracted/beam-<key>.npz``, so ``quadd cache
  ls|clear`` see it), generating it first when it is not there. The key covers every
  parameter, the layout version and the Sionna version.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .channel import require_sionna
from .codebook import SET_B
from .config import BeamConfig
from .generate import BeamData, generate_beam

__all__ = ["cached_beam_npz", "write_beam_npz"]


def write_beam_npz(path: str | Path, data: BeamData) -> None:
    """Write ``data`` to ``path`` (see the module docstring)."""
    from quadd_codec.paths import atomic_open

    path = Path(path)
    with atomic_open(path) as fh:
        # Uncompressed: 20,000 drops are 3 MB, and loading speed matters more.
        np.savez(fh, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test,
                 y_test=data.y_test, class_names=np.array(data.class_names),
                 rsrp_train=data.rsrp_train, rsrp_test=data.rsrp_test,
                 set_b=np.array(SET_B, dtype=np.int64),
                 beam_config=np.array(json.dumps(data.config.as_dict(), sort_keys=True)))


def cached_beam_npz(cache_dir: Path, config: BeamConfig | None = None,
                    progress: bool = True) -> Path:
    """The cached ``.npz`` of ``config`` (default: :class:`BeamConfig`'s defaults),
    generated on first use."""
    from ..archive import EXTRACTED

    config = (config or BeamConfig()).check()
    path = cache_dir / EXTRACTED / f"beam-{_cache_key(config)}.npz"
    if path.is_file():
        return path
    require_sionna()
    print(f"quadd: generating the beam dataset ({config.drops} drops, "
          f"{config.scenario}, seed {config.seed}) into {path} (once)",
          file=sys.stderr, flush=True)
    data = generate_beam(config, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_beam_npz(path, data)
    return path


def _cache_key(config: BeamConfig) -> str:
    import hashlib
    from importlib.metadata import PackageNotFoundError, version

    try:
        sionna = version("sionna-no-rt")
    except PackageNotFoundError:
        sionna = "unknown"
    return hashlib.sha256(f"{config.key()}-{sionna}".encode()).hexdigest()[:16]

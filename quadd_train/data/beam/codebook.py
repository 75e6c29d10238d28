"""The gNB array and its beams: Set A, a 2-D DFT-type codebook of 32 narrow beams that
tiles the served sector, and Set B, the 8 of them a UE measures.

Contract:

* The array is a 4 x 8 (rows x columns) uniform planar array of single-polarized elements
  at half-wavelength spacing in the y-z plane of the gNB's local frame (boresight +x),
  the TR 38.901 panel layout Sionna's ``PanelArray`` builds. :func:`beam_weights` takes
  the element positions (metres, local frame) so it never guesses Sionna's element order.
* Set A beam ``n = 8 * row + col``: ``row`` 0..3 steers in zenith (0 highest, towards the
  far cell edge; 3 lowest, towards the near edge), ``col`` 0..7 in azimuth (0 at one
  sector edge, 7 at the other). Steering directions are the centres of equal bins in the
  direction cosines: ``sin(phi)`` over the sector's +-60 degrees, ``cos(theta)`` over the
  zenith range the sector's UEs occupy in the local frame (:func:`zenith_range`). A
  beam's weights are the conjugate-matched array response, normalized to unit power, so
  the total radiated power does not depend on the beam.
* Set B (:data:`SET_B`) holds two beams per zenith row and one per azimuth column
  (rows 0..3 take columns {0,4}, {2,6}, {1,5}, {3,7}): a spread, Latin-style subset
  that covers every azimuth once and every zenith twice.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["NUM_BEAMS", "NUM_COLS", "NUM_ROWS", "SET_B", "beam_directions", "beam_names",
           "beam_weights", "zenith_range"]

NUM_ROWS = 4
NUM_COLS = 8
NUM_BEAMS = NUM_ROWS * NUM_COLS
#: Half-width of the served sector in azimuth (a three-sector site), degrees.
SECTOR_HALF_WIDTH_DEG = 60.0
#: Set A indices of the Set B beams, in feature order.
SET_B: tuple[int, ...] = tuple(
    NUM_COLS * row + col
    for row, cols in enumerate(((0, 4), (2, 6), (1, 5), (3, 7)))
    for col in cols
)


def beam_names() -> list[str]:
    """The class names of the Set A beams: ``"beam00"`` .. ``"beam31"``."""
    return [f"beam{n:02d}" for n in range(NUM_BEAMS)]


def zenith_range(bs_height: float, ut_height: float, downtilt_deg: float,
                 min_distance: float, max_distance: float) -> tuple[float, float]:
    """``(lowest, highest)`` local zenith angle in degrees of a ground UE seen from the
    array: at ``max_distance`` (the far edge, closest to the horizon) and at
    ``min_distance`` (the near edge, steepest), for an array mechanically tilted down by
    ``downtilt_deg``."""
    if not 0 < min_distance < max_distance:
        raise ValueError(f"need 0 < min_distance < max_distance, got {min_distance}, "
                         f"{max_distance}")
    drop = bs_height - ut_height

    def local(distance: float) -> float:
        return 90.0 + math.degrees(math.atan2(drop, distance)) - downtilt_deg

    return local(max_distance), local(min_distance)


def beam_directions(zenith_lo_deg: float, zenith_hi_deg: float) -> np.ndarray:
    """(32, 2) steering directions ``(theta, phi)`` in radians, local frame, Set A order."""
    if not 0 < zenith_lo_deg < zenith_hi_deg < 180:
        raise ValueError(f"bad zenith range {zenith_lo_deg}..{zenith_hi_deg} degrees")
    # Bin centres in direction-cosine space: equal spacing there is equal spacing in the
    # array's own (DFT) beam space, so neighbouring beams overlap alike across the sector.
    s = math.sin(math.radians(SECTOR_HALF_WIDTH_DEG))
    u = s * (2 * np.arange(NUM_COLS) + 1 - NUM_COLS) / NUM_COLS
    c_hi, c_lo = math.cos(math.radians(zenith_lo_deg)), math.cos(math.radians(zenith_hi_deg))
    v = c_hi - (c_hi - c_lo) * (2 * np.arange(NUM_ROWS) + 1) / (2 * NUM_ROWS)
    theta = np.arccos(v)
    phi = np.arcsin(u)
    grid = np.stack(np.meshgrid(theta, phi, indexing="ij"), axis=-1)  # (rows, cols, 2)
    return grid.reshape(NUM_BEAMS, 2)


def beam_weights(element_positions: np.ndarray, wavelength: float,
                 directions: np.ndarray) -> np.ndarray:
    """(32, M) complex unit-norm weights ``w``; beam ``n``'s gain on a channel vector
    ``h`` (M,) is ``|w[n].conj() @ h|**2``.

    ``element_positions`` is (M, 3) in metres (local frame); ``directions`` (B, 2) from
    :func:`beam_directions`.
    """
    theta, phi = directions[:, 0], directions[:, 1]
    r = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)],
                 axis=-1)
    # TR 38.901 (7.5-22): element m's phase is exp(j 2 pi r.d_m / lambda).
    phase = 2 * np.pi / wavelength * (r @ np.asarray(element_positions, dtype=np.float64).T)
    m = element_positions.shape[0]
    return (np.exp(1j * phase) / math.sqrt(m)).astype(np.complex64)

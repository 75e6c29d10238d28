"""The codes section of an open `.qdd` file as packed rows, with its chunk checksums.

`CodeRows` is a part of `QddFile` (a mixin): it reads the packed bytes of samples
(from memory, or by positioned reads), and in a file with chunk checksums (FORMAT.md
4a) checks each chunk's CRC32C the first time any of its samples is read, so damaged
samples are never returned even when the whole-file check is deferred.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .crc import crc32c
from .errors import QddChecksumError


class CodeRows:
    """Packed-row access for `QddFile`; expects `layout`, `_read`, `_codes` (the codes
    section in memory, or None), `_chunk_crcs` and `_chunk_ok`."""

    layout: Any
    _codes: np.ndarray | None
    _chunk_crcs: np.ndarray
    _chunk_ok: np.ndarray

    def _read(self, offset: int, length: int) -> memoryview | bytes:
        raise NotImplementedError

    def _chunk_bytes(self, c: int) -> memoryview | bytes:
        lay = self.layout
        section = lay.section("codes")
        assert section is not None
        size = lay.sample_nbytes
        first, last = c * lay.chunk, min(lay.n, (c + 1) * lay.chunk)
        return self._read(lay.data_start + section.offset + first * size, (last - first) * size)

    def damaged_chunks(self) -> list[int]:
        """Indices of the chunks of samples whose checksum does not match (FORMAT.md 4a);
        empty for a file without chunk checksums. Chunk c holds samples
        [c * chunk, (c + 1) * chunk)."""
        bad = [c for c in range(self._chunk_crcs.size)
               if crc32c(self._chunk_bytes(c)) != int(self._chunk_crcs[c])]
        self._chunk_ok[:] = True
        self._chunk_ok[bad] = False
        return bad

    def _check_chunks(self, start: int, stop: int) -> None:
        chunk = self.layout.chunk
        for c in range(start // chunk, (stop - 1) // chunk + 1):
            if not self._chunk_ok[c]:
                if crc32c(self._chunk_bytes(c)) != int(self._chunk_crcs[c]):
                    last = min(self.layout.n, (c + 1) * chunk) - 1
                    raise QddChecksumError(
                        f"checksum mismatch in chunk {c} of the codes (samples {c * chunk}.."
                        f"{last}): the file is damaged")
                self._chunk_ok[c] = True

    def _rows(self, start: int, stop: int, check: bool = True) -> np.ndarray:
        """Packed samples [start, stop) as a (stop - start, bytes per sample) uint8 array."""
        if check and self._chunk_crcs.size and stop > start:
            self._check_chunks(start, stop)
        size = self.layout.sample_nbytes
        if self._codes is not None:
            return self._codes[start * size : stop * size].reshape(stop - start, size)
        section = self.layout.section("codes")
        assert section is not None
        at = self.layout.data_start + section.offset + start * size
        data = self._read(at, (stop - start) * size)
        return np.frombuffer(data, dtype=np.uint8).reshape(stop - start, size)


    def _raw_rows(self, ids: np.ndarray) -> np.ndarray:
        if not ids.size:
            return np.empty((0, self.layout.sample_nbytes), dtype=np.uint8)
        if ids[-1] - ids[0] == ids.size - 1 and (np.diff(ids) == 1).all():
            return self._rows(int(ids[0]), int(ids[-1]) + 1)  # a contiguous run: no gather
        if self._codes is not None:
            if self._chunk_crcs.size:
                for c in np.unique(ids // self.layout.chunk).tolist():
                    self._check_chunks(c * self.layout.chunk, c * self.layout.chunk + 1)
            return self._rows(0, self.layout.n, check=False)[ids]
        # Positioned reads: one read per run of consecutive indices, in sorted order.
        out = np.empty((ids.size, self.layout.sample_nbytes), dtype=np.uint8)
        order = np.argsort(ids, kind="stable")
        ordered = ids[order]
        breaks = np.flatnonzero(np.diff(ordered) != 1) + 1
        at = 0
        for run in np.split(ordered, breaks):
            out[order[at : at + run.size]] = self._rows(int(run[0]), int(run[-1]) + 1)
            at += run.size
        return out


"""`NBitPack`: a numcodecs codec that bit-packs small unsigned codes (the `.qdd` bit layout).

Encoded form (self-describing, so `decode` needs nothing but the bytes)::

    offset  size  field
    0       1     bits (1..8), must equal the codec's `bits`
    1       8     count: number of values, uint64 little-endian
    9       ...   ceil(count * bits / 8) bytes: the values as one LSB-first bit stream
                  (value i in stream bits [i*bits, (i+1)*bits), stream bit j is bit j % 8
                  of byte j // 8), zero-padded to a whole byte

The stream is exactly `quadd_codec.bitpack.pack_stream` of the values, i.e. the layout
of one row of a `.qdd` codes section. Input must be a uint8 buffer whose values are all
< 2**bits; `decode` returns a flat uint8 array of `count` values.

Importing this module registers the codec under ``codec_id = "quadd.nbitpack"``, so
``numcodecs.get_codec({"id": "quadd.nbitpack", "bits": 4})`` works afterwards.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
from numcodecs.abc import Codec
from numcodecs.compat import ensure_contiguous_ndarray, ndarray_copy
from numcodecs.registry import register_codec

from .bitpack import pack_rows, packed_nbytes, unpack_rows
from .errors import QddValueError
from .rules import check_bits

_HEADER = struct.Struct("<BQ")
#: Values per packing row: a multiple of 8, so every row packs to whole bytes with no
#: padding and the rows concatenate into one continuous stream.
_ROW = 8 * 4096


class NBitPack(Codec):
    """Pack uint8 codes < 2**bits into a bit stream (see the module docstring for the format)."""

    codec_id = "quadd.nbitpack"

    def __init__(self, bits: int) -> None:
        try:
            self.bits = check_bits(bits)
        except QddValueError:
            raise QddValueError(f"NBitPack bits must be an integer in 1..8, got {bits!r}") from None

    def encode(self, buf: Any) -> bytes:
        arr = ensure_contiguous_ndarray(buf)
        if arr.dtype != np.uint8:
            raise QddValueError(f"NBitPack encodes uint8 codes, got dtype {arr.dtype}")
        values = arr.reshape(-1)
        count = values.size
        nbytes = packed_nbytes(count, self.bits)
        # Pad to whole rows with zeros: zero values are zero bits, the stream's own padding.
        if count == 0:
            return _HEADER.pack(self.bits, 0)
        rows = -(-count // _ROW)
        padded = np.zeros(rows * _ROW, dtype=np.uint8)
        padded[:count] = values
        packed = pack_rows(padded.reshape(rows, _ROW), self.bits).reshape(-1)[:nbytes]
        return _HEADER.pack(self.bits, count) + packed.tobytes()

    def decode(self, buf: Any, out: Any = None) -> np.ndarray:
        data = ensure_contiguous_ndarray(buf).view(np.uint8).reshape(-1)
        if data.size < _HEADER.size:
            raise QddValueError("NBitPack data is shorter than its 9-byte header")
        bits, count = _HEADER.unpack(data[: _HEADER.size].tobytes())
        if bits != self.bits:
            raise QddValueError(f"NBitPack data holds {bits}-bit values; codec is {self.bits}-bit")
        body = data[_HEADER.size :]
        nbytes = packed_nbytes(count, bits)
        if body.size != nbytes:
            raise QddValueError(
                f"NBitPack data of {count} values needs {nbytes} bytes after the header, "
                f"got {body.size}"
            )
        if count == 0:
            return ndarray_copy(np.zeros(0, dtype=np.uint8), out)
        rows = -(-count // _ROW)
        row_bytes = _ROW * bits // 8
        padded = np.zeros(rows * row_bytes, dtype=np.uint8)
        padded[:nbytes] = body
        values = unpack_rows(padded.reshape(rows, row_bytes), bits, _ROW).reshape(-1)[:count]
        return ndarray_copy(np.ascontiguousarray(values), out)

    def get_config(self) -> dict[str, Any]:
        return {"id": self.codec_id, "bits": self.bits}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> NBitPack:
        # Accept get_config()'s output as is (with "id"), as well as the registry's form.
        config = {k: v for k, v in config.items() if k != "id"}
        return cls(**config)

    def __repr__(self) -> str:
        return f"NBitPack(bits={self.bits})"


register_codec(NBitPack)

"""CRC32C (Castagnoli), the checksum of every header and section."""

from __future__ import annotations

import crc32c as _crc32c


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC32C of any buffer (mmap slices included, without a copy), continuing from `value`."""
    return int(_crc32c.crc32c(data, value))

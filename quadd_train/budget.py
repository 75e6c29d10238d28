"""Byte budgets: parsing human sizes and asking the codec how many samples fit.

The trainer never re-derives file sizes; every size comes from ``quadd_codec`` so the
budget check and the written file cannot disagree.
"""

from __future__ import annotations

import re

__all__ = ["UNITS", "format_size", "parse_size"]

UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}

_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*$")


def parse_size(text: str | int) -> int:
    """``"120KiB"`` -> 122880. Accepts B, KB/MB/GB (powers of 1000), KiB/MiB/GiB
    (powers of 1024) and plain numbers (bytes); units are case-insensitive.

    Fractional values are allowed when they come to a whole number of bytes
    (``"1.5KiB"``); anything else raises ``ValueError`` with the accepted forms.
    """
    if isinstance(text, bool):
        raise ValueError(f"invalid size {text!r}")
    if isinstance(text, int):
        if text <= 0:
            raise ValueError(f"size must be positive, got {text}")
        return text
    m = _SIZE_RE.match(str(text))
    if not m:
        raise ValueError(
            f"invalid size {text!r}: expected a number with an optional unit "
            "B, KB, MB, GB (x1000) or KiB, MiB, GiB (x1024), e.g. 120KiB"
        )
    number, unit = m.group(1), m.group(2).lower()
    if unit not in UNITS:
        raise ValueError(
            f"invalid size unit {m.group(2)!r} in {text!r}: expected one of "
            "B, KB, MB, GB, KiB, MiB, GiB"
        )
    value = float(number) * UNITS[unit]
    if value != int(value):
        raise ValueError(f"size {text!r} is not a whole number of bytes")
    if value <= 0:
        raise ValueError(f"size must be positive, got {text!r}")
    if value >= 2**63:  # FORMAT.md records sizes as 64-bit integers
        raise ValueError(f"size {text!r} is larger than any file can be")
    return int(value)


def format_size(n: int) -> str:
    """Bytes as a short human string (binary units), for messages."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor:
            return f"{n / factor:.2f} {unit} ({n} B)"
    return f"{n} B"

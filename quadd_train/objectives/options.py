"""An objective's options: building them from a mapping, and parsing ``KEY=VALUE`` text.

The field metadata an ``Options`` dataclass may carry (``help``, ``flag``, ``choices``,
``min``, ``show_default``) is described in the package docstring; the command line
turns it into flags (``quadd_cli``), this module only reads and checks values.

>>> from dataclasses import dataclass, field
>>> @dataclass
... class Opts:
...     steps: int = 3
...     rate: float | None = None
>>> parse_option_text(Opts, "steps=5"), parse_option_text(Opts, "rate=none")
(('steps', 5), ('rate', None))
>>> build_options(Opts, {"steps": 2}, "demo")
Opts(steps=2, rate=None)
>>> build_options(Opts, {"stpes": 2}, "demo")
Traceback (most recent call last):
...
ValueError: unknown demo option(s): stpes; known: rate, steps
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

__all__ = ["build_options", "option_fields", "parse_option_text"]


def option_fields(options_cls: type) -> list[dataclasses.Field[Any]]:
    """The fields of an ``Options`` dataclass, in declaration order."""
    return list(dataclasses.fields(options_cls))


def build_options(options_cls: type, values: Mapping[str, Any], owner: str) -> Any:
    """``options_cls(**values)``, with an unknown name named in a ``ValueError``."""
    known = {f.name for f in option_fields(options_cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {owner} option(s): {', '.join(sorted(unknown))}; known: "
                         f"{', '.join(sorted(known))}")
    return options_cls(**values)


def _field_types(options_cls: type, name: str) -> tuple[type, ...]:
    """The types a field's value may have (NoneType included for ``X | None``)."""
    hint = typing.get_type_hints(options_cls)[name]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return tuple(typing.get_args(hint))
    return (hint,)


def parse_option_text(options_cls: type, text: str) -> tuple[str, Any]:
    """``"key=value"`` -> ``(key, value)``, the value parsed by the field's type."""
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    names = [f.name for f in option_fields(options_cls)]
    if key not in names:
        raise ValueError(f"unknown option {key!r}; known: {', '.join(sorted(names))}")
    kinds = _field_types(options_cls, key)
    raw = raw.strip()
    if type(None) in kinds and raw.lower() in ("none", "null", ""):
        return key, None
    for kind in kinds:
        if kind is bool:
            low = raw.lower()
            if low in ("1", "true", "yes", "on"):
                return key, True
            if low in ("0", "false", "no", "off"):
                return key, False
        elif kind in (int, float, str):
            try:
                return key, kind(raw)
            except ValueError:
                continue
    wanted = " or ".join("none" if k is type(None) else getattr(k, "__name__", str(k))
                         for k in kinds)
    raise ValueError(f"option {key}={raw!r}: expected {wanted}")

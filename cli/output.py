"""What the commands print for machines (one JSON object per line), and the `--force`
option every command that writes a file shares (the rule itself is
`quadd_codec.paths.check_output`)."""

from __future__ import annotations

import json
import math
from typing import Any

import click

#: An existing output is refused without it, as in gzip.
force_opt = click.option(
    "--force", is_flag=True,
    help="Replace an existing output (a folder only if it holds nothing but what "
    "quadd decode writes).",
)


def json_line(record: dict[str, Any]) -> str:
    """``record`` as one line of strict JSON: a float that is not finite (the loss of a
    run of no iterations) becomes null, which every JSON parser reads."""
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(record), allow_nan=False)


def json_ready(value: Any, depth: int = 32) -> Any:
    """`value` (a decoded msgpack value from a file) in a form `json.dumps` always takes:
    keys that are not strings and bytes become text, nesting deeper than `depth` becomes
    the string "...". A file's free-form `meta` may hold anything msgpack can."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict | list | tuple) and depth <= 0:
        return "..."
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else
                 k.decode("utf-8", "backslashreplace") if isinstance(k, bytes) else repr(k)):
                json_ready(v, depth - 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v, depth - 1) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)

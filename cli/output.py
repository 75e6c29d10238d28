"""What the commands print for machines: one JSON object per line."""

from __future__ import annotations

import json
import math
from typing import Any


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

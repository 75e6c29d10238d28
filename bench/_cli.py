"""The command-line tail the variant benches share (``pool_reuse.py``, ``pool_heldout.py``).

Scripts run as ``python bench/NAME.py`` have this folder on ``sys.path``, so they import
it as ``_cli``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def report_or_run(ap: argparse.ArgumentParser, variant: Callable[[str], Any],
                  run: Callable[[argparse.Namespace], None],
                  report: Callable[[list[str]], str]) -> None:
    """Parse; with ``--report FILES`` print the report, else check every variant, then run."""
    args = ap.parse_args()
    if args.report is not None:
        print(report(args.report))
        return
    for v in args.variants:
        try:
            variant(v)
        except argparse.ArgumentTypeError as exc:
            ap.error(str(exc))
    run(args)

"""What several benches share: the variant benches' command-line tail (``pool_reuse.py``,
``pool_heldout.py``) and the synthetic set a DM measurement starts from (``grad_noise.py``,
``pool_heldout.py``).

Scripts run as ``python bench/NAME.py`` have this folder on ``sys.path``, so they import
it as ``_shared``.
"""

from __future__ import annotations

import argparse
import os
import sys
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


def start_set(source: str | None, bundle: Any, x_real: Any, ipc: int, seed: int) -> tuple:
    """``(x, y, description)``: a distilled ``.qdd`` (``source``, unquantized or not, read
    in the space it was trained in) or ``ipc`` real images per class, class-major with an
    equal count per class, as DM's losses expect. Exits with a message otherwise."""
    import numpy as np
    import torch

    from quadd_codec import QddDataset
    from quadd_train.synthetic import SyntheticSet

    if source is None:
        syn = SyntheticSet.from_real(x_real, bundle.y_train, bundle.num_classes, ipc, seed)
        return syn.data.detach().clone(), syn.labels.clone(), f"{ipc} real img/class"
    ds = QddDataset(source, denormalize=False)
    if ds.file.upsample != 1:
        sys.exit(f"{source}: stored at 1/{ds.file.upsample} size; pass a file written "
                 "without --upsample")
    x = torch.from_numpy(ds.file.read_all(denormalize=False)).float()
    y = torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)
    order = torch.argsort(y, stable=True)
    x, y = x[order], y[order]
    counts = torch.bincount(y, minlength=bundle.num_classes)
    if y.min() < 0 or len(counts) != bundle.num_classes or not bool((counts == counts[0]).all()):
        sys.exit(f"{source}: expected the same number of samples in each of "
                 f"{bundle.num_classes} classes, found {counts.tolist()}")
    return x, y, f"{os.path.basename(source)} ({int(counts[0])} img/class)"

"""Options and helpers the training commands (distill, subset, plan) share."""

from __future__ import annotations

import os
from typing import Any

import click

from quadd_codec import GROUPS, UPSAMPLE_FILTERS

__all__ = ["SIZE", "budget_opt", "check_train_output", "data_dir_opt", "dataset_opt",
           "group_for", "group_opt", "load_bundle", "out_opt", "train_errors",
           "upsample_filter_opt", "upsample_opt", "upsample_option"]


class _SizeType(click.ParamType):
    """A byte size such as 120KiB, 1MB or 4096 (bad values are usage errors, exit 2)."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from quadd_train.budget import parse_size

        try:
            return parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SIZE = _SizeType()

dataset_opt = click.option(
    "--dataset", "-d", default="digits", show_default=True,
    help="digits (built in), mnist, fashion-mnist, cifar10, beam (generated), or a path "
    "(folder with train/ and test/, or .npz).",
)
data_dir_opt = click.option(
    "--data-dir", type=click.Path(file_okay=False), default=None,
    help="Folder with the dataset archives/folders (default: $QUADD_DATA, else "
    "~/.cache/quadd/datasets).",
)
budget_opt = click.option(
    "--budget", "-b", type=SIZE, required=True,
    help="Size limit of the output file: bytes, or with a unit B, KB, MB (x1000), "
    "KiB, MiB (x1024), e.g. 120KiB.",
)
out_opt = click.option(
    "--output", "-o", "output", type=click.Path(dir_okay=False), required=True,
    help="Output .qdd file (written atomically).",
)


def upsample_option(how: str) -> Any:
    return click.option(
        "--upsample", type=click.IntRange(1, 16), default=1, show_default=True,
        help=f"Store images this many times smaller per side; readers enlarge them again "
        f"({how}), so about upsample^2 times as many samples fit the budget.",
    )


upsample_opt = upsample_option("--upsample-filter")
upsample_filter_opt = click.option(
    "--upsample-filter", type=click.Choice(UPSAMPLE_FILTERS), default="nearest",
    show_default=True,
    help="How --upsample images are enlarged, in the loop and by readers: repeat each "
    "value (nearest) or interpolate bilinearly (linear; .qdd 1.2).",
)
group_opt = click.option(
    "--group", type=click.Choice(GROUPS), default=None,
    help="What one codebook covers (feature vectors: channel = one per feature).  "
    "[default: channel for images, tensor for feature vectors]",
)


def group_for(group: str | None, bundle: Any) -> str:
    """--group, or the data's default when not given."""
    from quadd_train.plan import default_group

    return group or default_group(tuple(bundle.sample_shape))


def check_train_output(output: str, force: bool, dataset: str) -> None:
    """Before any slow work: an existing output is refused without --force, and the
    dataset file always (`quadd_codec.paths.check_output`)."""
    from quadd_codec.paths import check_output

    _not_the_dataset(dataset, output)
    check_output(output, force)


def _not_the_dataset(dataset: str, *outputs: str | None) -> None:
    from quadd_codec.paths import same_file

    # Writing over the dataset being read would replace it with the result.
    source = os.path.expanduser(dataset)
    for target in filter(None, outputs):
        if os.path.exists(source) and same_file(source, target):
            raise ValueError(f"{target} is the input dataset; write the result elsewhere")


def load_bundle(dataset: str, data_dir: str | None, *outputs: str | None) -> Any:
    from quadd_train.data import load_dataset

    _not_the_dataset(dataset, *outputs)
    return load_dataset(dataset, data_dir)


def train_errors() -> tuple[type[BaseException], ...]:
    # RuntimeError too: torch raises it for unreadable checkpoints, and the distiller for
    # a broken size invariant. The quadd group handles Ctrl-C (exit 130) and the rest.
    from quadd_codec import QddError

    return (QddError, ValueError, OSError, RuntimeError, MemoryError)



"""The `quadd` command: codec tools (encode, decode, inspect, verify) and training tools
(distill, subset, plan, eval). Every subcommand fails the same way (see `quadd_cli.errors`)."""

from __future__ import annotations

import click

from .codec_commands import register as register_codec_commands
from .errors import QuaddGroup
from .eval_command import eval_command
from .train_commands import distill_command, plan_command, subset_command


@click.group(cls=QuaddGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="quadd", prog_name="quadd")
def main() -> None:
    """Quantization-aware dataset distillation and the bit-packed .qdd dataset format."""


register_codec_commands(main)
main.add_command(distill_command, "distill")
main.add_command(subset_command, "subset")
main.add_command(plan_command, "plan")
main.add_command(eval_command, "eval")


if __name__ == "__main__":
    main()

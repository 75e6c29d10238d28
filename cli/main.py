"""The `quadd` command: codec tools (encode, decode, inspect, verify, import) and training
tools (distill, subset, plan, eval). Every subcommand fails the same way (see
`quadd_cli.errors`).

Subcommands are imported when they run, so `quadd --help` and the codec commands never
import PyTorch: `COMMANDS` maps each name to "module:attribute" and the one-line help
that `quadd --help` lists (a test keeps it equal to the command's own).
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from .errors import QuaddGroup

#: name -> ("module:attribute" of the click command, short help for `quadd --help`).
COMMANDS: dict[str, tuple[str, str]] = {
    "encode": ("quadd_cli.codec_commands:encode_command",
               "Quantize IN and write it as a bit-packed .qdd file."),
    "decode": ("quadd_cli.codec_commands:decode_command",
               'Decode IN.qdd ("-" reads stdin) to arrays, a zarr store or images.'),
    "inspect": ("quadd_cli.codec_commands:inspect_command",
                'Show what IN.qdd ("-" reads stdin) holds and where its bytes go.'),
    "verify": ("quadd_cli.codec_commands:verify_command",
               'Check every checksum and structural rule of IN.qdd ("-" reads stdin).'),
    "import": ("quadd_cli.codec_commands:import_command",
               "Rebuild the .qdd file that `quadd decode -o IN.zarr` exported, byte for byte."),
    "distill": ("quadd_cli.distill_command:distill_command",
                "Distill --dataset into OUTPUT.qdd, at most --budget bytes, with quantization "
                "in the loop (QuADD): samples and quantization levels are optimized together."),
    "subset": ("quadd_cli.train_commands:subset_command",
               "Baseline: random real samples per class, quantized to --bits, as many as fit "
               "--budget, written to OUTPUT.qdd."),
    "plan": ("quadd_cli.train_commands:plan_command",
             "How many samples per class `quadd distill` fits into --budget at each bit "
             "width, and the exact size of the file it would write (header, codebooks, "
             "labels and provenance included). Nothing is trained or written."),
    "baseline": ("quadd_cli.baseline_command:baseline_command",
                 "Baseline: random real images per class as JPEG or WebP, as many as fit "
                 "--budget, in one ZIP archive OUTPUT."),
    "eval": ("quadd_cli.eval_command:eval_command",
             "Evaluate the distilled set FILE.qdd with the standard protocol."),
    "show": ("quadd_cli.show_command:show_command", "Draw IN.qdd as a PNG grid, a row per class."),
    "cache": ("quadd_cli.cache_command:cache_command",
              "List or clear the cache of DM pools and decoded datasets."),
    "dataset": ("quadd_cli.dataset_command:dataset_command",
                "Generate a dataset as an .npz that --dataset takes (beam: 3GPP beam management)."),
    "sweep": ("quadd_cli.sweep_command:sweep_command",
              "Distill and evaluate every (budget, bits, upsample) point and the baselines "
              "at the same budgets; plot accuracy against bits and name the best point."),
}


class LazyGroup(QuaddGroup):
    """A group whose subcommands are imported on first use, from `COMMANDS`."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in self.lazy:
            module, attr = self.lazy[cmd_name][0].split(":")
            command = getattr(importlib.import_module(module), attr)
            self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            command = self.commands.get(name)
            if command is None:  # listed from COMMANDS, not imported
                command = click.Command(name, help=self.lazy[name][1])
            if not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, lazy=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="quadd", prog_name="quadd")
def main() -> None:
    """Quantization-aware dataset distillation and the bit-packed .qdd dataset format."""


if __name__ == "__main__":
    main()

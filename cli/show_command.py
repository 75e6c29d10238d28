"""`quadd show`: a `.qdd` file of images drawn as a PNG grid, a row per class.

Needs the base install and Pillow (the `images` extra); the drawing is in
`quadd_codec.grid`.
"""

from __future__ import annotations

from pathlib import Path

import click

from .codec_commands import _STDIN, _label, _open_qdd, _shape
from .output import force_opt

__all__ = ["show_command"]


def _check_png_output(output: Path, force: bool, source: str) -> None:
    """Refuse a bad output before reading anything: not a PNG name, or an existing file
    without --force (the atomic writer checks the rest again)."""
    from quadd_codec.paths import check_output

    if output.suffix.lower() != ".png":
        raise click.BadParameter(f"{output}: show writes a PNG; name it *.png",
                                 param_hint="'-o'")
    check_output(output, force, inputs=[] if source == _STDIN else [source])


@click.command("show")
@click.argument("source", metavar="IN.qdd", type=click.Path(allow_dash=True))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="The PNG to write (atomically; its folder must exist).")
@click.option("--per-class", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="Samples drawn per class: the first ones in the file (fewer if a class "
                   "has fewer).")
@click.option("--scale", type=click.IntRange(1, 64), default=None,
              help="Magnification: each value becomes SCALE x SCALE pixels "
                   "[default: enough for tiles of at least 64 pixels].")
@force_opt
def show_command(source: str, output: Path, per_class: int, scale: int | None,
                 force: bool) -> None:
    """Draw IN.qdd as a PNG grid, a row per class.

    The first --per-class samples of each class, the class name at the row's left;
    IN.qdd may be "-" (stdin).

    Samples are decoded as `quadd decode` does (dequantized, in the source value space,
    enlarged by the file's upsampling) and drawn as `quadd decode -o folder/` writes them:
    [0, 1] pixels, clipped (0..255 values are divided by 255, other ranges stretched, and
    the command says so). Files of 1, 2 (gray + alpha), 3 (RGB) or 4 (RGBA) channels.
    """
    import PIL  # noqa: F401 - a missing Pillow is named before the file is read

    from quadd_codec.grid import file_grid
    from quadd_codec.paths import atomic_open

    _check_png_output(output, force, source)
    with _open_qdd(source, verify=True) as f:
        image, grid, note = file_grid(f, per_class, scale)
        shape = _shape(f.sample_shape)
    with atomic_open(output) as out:
        image.save(out, format="PNG", optimize=True)
    if note:
        click.echo(f"quadd show: {_label(source)}: {note}", err=True)
    width, height = grid.size
    rows = f"{grid.rows} row" + ("s" if grid.rows != 1 else "")
    click.echo(f"wrote {output}: {rows} x up to {grid.cols} samples of {shape}, "
               f"drawn at {grid.scale}x, {width}x{height} pixels")

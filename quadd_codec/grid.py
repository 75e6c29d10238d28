"""A picture of a `.qdd` file of images: its decoded samples as a grid, one row per class
with the class name at the row's left (what `quadd show` draws).

Samples are decoded as `quadd decode` does (dequantized, de-normalized to the source value
space, enlarged by the file's upsampling filter) and turned into pixels with the same
conversion as `quadd decode -o folder/` (`imagefolder.to_uint8_images`: [0, 1], clipped).
Each tile is the sample magnified by an integer factor (every value repeated, so a tile's
pixels are exactly the decoded sample's). Needs Pillow (the `images` extra), not torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import QddValueError
from .imagefolder import to_uint8_images

__all__ = ["Grid", "default_scale", "display_range", "file_grid", "first_per_class",
           "render_grid"]

#: A tile is magnified until its longer side is at least this many pixels (by default).
TILE_MIN = 64
#: Pixels between tiles, and around the grid.
GAP = 4
#: Pixels left and right of a class name.
LABEL_PAD = 8
#: Longer class names are cut to this many characters (and end in "...").
LABEL_MAX_CHARS = 24
#: Largest grid drawn, in pixels: a bigger one would be a memory problem, not a picture.
MAX_PIXELS = 1 << 27
_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
#: Opaque black in each mode, for the labels.
_BLACK = {1: 0, 2: (0, 255), 3: (0, 0, 0), 4: (0, 0, 0, 255)}


@dataclass(frozen=True)
class Grid:
    """Where everything goes in the picture: `rows` x `cols` tiles of `tile_h` x `tile_w`
    pixels (samples magnified `scale` times) after a label column `label_width` wide."""

    rows: int
    cols: int
    tile_h: int
    tile_w: int
    scale: int
    label_width: int
    gap: int = GAP

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the picture in pixels."""
        width = self.label_width + self.cols * self.tile_w + (self.cols + 1) * self.gap
        height = self.rows * self.tile_h + (self.rows + 1) * self.gap
        return width, height

    def origin(self, row: int, col: int) -> tuple[int, int]:
        """(x, y) of the top-left pixel of the tile at `row`, `col`."""
        return (self.label_width + self.gap + col * (self.tile_w + self.gap),
                self.gap + row * (self.tile_h + self.gap))


def default_scale(height: int, width: int) -> int:
    """The smallest magnification that makes a tile's longer side at least `TILE_MIN`."""
    return max(1, math.ceil(TILE_MIN / max(height, width, 1)))


def first_per_class(labels: np.ndarray | None, num_classes: int, n: int,
                    per_class: int) -> list[np.ndarray]:
    """Indices of the first `per_class` samples of each class, a list per class (one list
    of the first samples for an unlabeled file)."""
    if labels is None:
        return [np.arange(min(n, per_class), dtype=np.int64)]
    labels = np.asarray(labels)
    return [np.flatnonzero(labels == k)[:per_class] for k in range(num_classes)]


def display_range(x: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Values mapped to [0, 1] pixels, and a note when they were not pixels already.

    Values within [-0.5, 1.5] are [0, 1] pixels (a distilled set's samples may overshoot a
    little) and are only clipped, as `quadd decode -o folder/` does; values in [0, 255]
    that reach above 127 are 8-bit pixels stored as floats and are divided by 255; any
    other range is stretched from its minimum to its maximum.
    """
    if x.size == 0:
        return x, None
    lo, hi = float(x.min()), float(x.max())
    if lo >= -0.5 and hi <= 1.5:
        return x, None
    if lo >= 0.0 and 127.0 < hi <= 255.0:
        return x / np.float32(255.0), f"values span {lo:.4g}..{hi:.4g}: drawn as 0..255 pixels"
    span = hi - lo if hi > lo else 1.0
    return ((x - np.float32(lo)) / np.float32(span),
            f"values span {lo:.4g}..{hi:.4g}: stretched to black..white")


def _image_shape(sample_shape: Sequence[int]) -> tuple[int, int, int]:
    """(channels, height, width) of an image sample shape; a clear error for the rest."""
    shape = tuple(int(d) for d in sample_shape)
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) == 3 and shape[0] in _MODES:
        return shape  # type: ignore[return-value]
    what = "x".join(map(str, shape)) or "scalar"
    if len(shape) == 3:
        raise QddValueError(
            f"samples are {what}, {shape[0]} channels: only 1 (gray), 2 (gray + alpha), "
            "3 (RGB) or 4 (RGBA) channels can be drawn"
        )
    raise QddValueError(
        f"samples are {what}, not images: only samples shaped channels x height x width "
        "(or height x width) can be drawn"
    )


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1 or no FreeType: the small bitmap font
        return ImageFont.load_default()


def _label(name: str) -> str:
    name = " ".join(name.split()) or "(no name)"
    return name if len(name) <= LABEL_MAX_CHARS else name[: LABEL_MAX_CHARS - 3] + "..."


def _measure(draw: Any, text: str, font: Any) -> tuple[str, tuple[int, int, int, int]]:
    """`text` as it can be drawn with `font` (the bitmap font knows only Latin-1), and
    its bounding box when drawn at (0, 0)."""
    try:
        box = draw.textbbox((0, 0), text, font=font)
    except UnicodeEncodeError:
        text = text.encode("ascii", "backslashreplace").decode("ascii")
        box = draw.textbbox((0, 0), text, font=font)
    return text, box


def render_grid(pixels: np.ndarray, rows: Sequence[np.ndarray], names: Sequence[str],
                scale: int) -> tuple[Any, Grid]:
    """Draw `pixels` (uint8 (N, H, W, C), C in 1..4) as a grid: row r holds the samples
    `rows[r]` (indices into `pixels`) after the label `names[r]`. Returns the Pillow image
    and its `Grid`."""
    from PIL import Image, ImageDraw

    _, h, w, c = pixels.shape
    if c not in _MODES:
        raise QddValueError(f"cannot draw samples of {c} channels")
    if len(rows) != len(names):
        raise QddValueError(f"{len(rows)} rows but {len(names)} row names")
    cols = max([len(r) for r in rows] + [1])
    tile_h, tile_w = h * scale, w * scale
    font = _font(max(8, min(16, (tile_h * 3) // 5)))
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    labels = [_measure(measure, _label(name), font) for name in names]
    label_width = max([box[2] for _, box in labels] + [0]) + 2 * LABEL_PAD
    grid = Grid(len(rows), cols, tile_h, tile_w, scale, label_width)
    width, height = grid.size
    if width * height > MAX_PIXELS:
        raise QddValueError(f"the grid would be {width}x{height} pixels; ask for fewer "
                            "samples per class (--per-class) or a smaller --scale")
    canvas = np.empty((height, width, c), dtype=np.uint8)
    canvas[...] = 255  # white, and opaque where there is alpha
    for r, ids in enumerate(rows):
        for col, k in enumerate(ids):
            x0, y0 = grid.origin(r, col)
            tile = pixels[int(k)].repeat(scale, axis=0).repeat(scale, axis=1)
            canvas[y0 : y0 + tile_h, x0 : x0 + tile_w] = tile
    mode = _MODES[c]
    image = Image.fromarray(canvas[:, :, 0] if c == 1 else canvas, mode=mode)
    draw = ImageDraw.Draw(image)
    black: Any = _BLACK[c]
    for r, (text, box) in enumerate(labels):
        _, y0 = grid.origin(r, 0)
        # Centred on the row by its box (the bitmap font takes no anchor argument).
        top = y0 + (tile_h - (box[3] - box[1])) // 2 - box[1]
        draw.text((LABEL_PAD, top), text, fill=black, font=font)
    return image, grid


def file_grid(f: Any, per_class: int = 10, scale: int | None = None,
              ) -> tuple[Any, Grid, str | None]:
    """The grid of an open `QddFile`: the first `per_class` samples of each class, decoded
    as `quadd decode` does. Returns (Pillow image, `Grid`, a note on the value range or
    None). Raises `QddValueError` for a file whose samples are not images."""
    if per_class < 1:
        raise QddValueError("per_class must be at least 1")
    c, h, w = _image_shape(f.sample_shape)
    rows = first_per_class(f.labels, f.num_classes, f.n, per_class)
    names = f.class_names if f.labels is not None else ["(unlabeled)"]
    ids = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    x = f.read(ids, denormalize=True).reshape(ids.size, c, h, w)
    x, note = display_range(x)
    pixels = to_uint8_images(x)
    # Row r's samples sit at consecutive places of `pixels`, in the order of `ids`.
    starts = np.cumsum([0] + [len(r) for r in rows])
    positions = [np.arange(starts[i], starts[i + 1]) for i in range(len(rows))]
    image, grid = render_grid(pixels, positions, names, scale or default_scale(h, w))
    return image, grid, note

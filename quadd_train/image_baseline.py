"""The baselines a practitioner would send instead: random real images as JPEG or WebP.

A baseline file is one ZIP archive (entries stored, not deflated: the images are already
compressed) whose size on disk is the budget measure, labels included. It holds either one
mosaic per class (``<k>.jpg``: the class's images tiled in a near-square grid, row by row,
unused cells grey) or one image per sample (``<k>/<i>.jpg``), where ``k`` is the class's
index, plus ``m.json``, the few facts a receiver needs to decode it: the codec, the stored
tile size, the enlargement factor, the class names in label order and the image count of
each class. ``.webp`` replaces ``.jpg`` for WebP.

``scale=2`` stores every image box-downsampled to half size per side; the reader enlarges
it back to the dataset's full size by bilinear interpolation (half-pixel centred, edges
held: ``quadd_codec.upsample_linear``, the ``.qdd`` "linear" filter).

How a point is chosen, as a practitioner would with a byte limit: for each quality of a
small grid, the most images per class that fit (found by a search that encodes for real
and measures the whole archive), in whichever layout fits more; without ``quality``,
:func:`write_image_baseline` takes the highest quality of the grid that fits as many images
per class as quality 75 (the libjpeg/Pillow default) does, else, where 75 fits none, the
highest quality that fits one. Which point trains best is an accuracy question:
:func:`image_baseline_grid` returns every point so a sweep can evaluate them.
Encoders are set for size, as one would for a byte limit: JPEG with optimized Huffman
tables (4:2:0 chroma, Pillow's default), WebP lossy at method 6.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from quadd_codec import downsample_mean, upsample_linear
from quadd_codec.paths import atomic_open

from .plan import check_dir

__all__ = [
    "CODECS",
    "QUALITIES",
    "ImageBaselinePoint",
    "ImageBaselineResult",
    "image_baseline_grid",
    "is_image_baseline",
    "read_image_baseline",
    "write_image_baseline",
]

#: codec name -> file extension of its images.
CODECS = {"jpeg": "jpg", "webp": "webp"}
#: The qualities tried when none is given.
QUALITIES = (10, 20, 30, 50, 75, 90)
#: The quality whose image count the default choice must keep.
REFERENCE_QUALITY = 75
MANIFEST = "m.json"
_FORMAT = "quadd-image-baseline/1"
# A fixed entry date keeps the archive's bytes reproducible.
_DATE = (1980, 1, 1, 0, 0, 0)
_FILL = 128


@dataclass(frozen=True)
class ImageBaselinePoint:
    """One candidate: ``ipc`` images per class at ``quality`` fit in ``file_bytes``."""

    codec: str
    scale: int
    quality: int
    layout: str
    ipc: int
    n: int
    file_bytes: int


@dataclass
class ImageBaselineResult:
    path: str
    codec: str
    scale: int
    quality: int
    layout: str
    ipc: int
    n: int
    file_bytes: int
    budget_bytes: int
    #: Every point weighed (one per quality of the grid that fits), the written one included.
    candidates: list[ImageBaselinePoint] = field(default_factory=list)


def image_baseline_grid(
    bundle: Any,
    budget_bytes: int,
    codec: str = "jpeg",
    scale: int = 1,
    seed: int = 0,
    qualities: tuple[int, ...] = QUALITIES,
    progress: bool = False,
    layout: str | None = None,
) -> list[ImageBaselinePoint]:
    """For each quality, the layout and the most images per class that fit the budget,
    each point with the exact size of its archive. Qualities where not even one image
    per class fits are left out (an empty list when none fits). ``layout`` ("mosaic" or
    "separate") forces one layout instead of the better of the two."""
    return [p for p, _ in _search(bundle, budget_bytes, codec, scale, seed, qualities,
                                  progress, layout)]


def write_image_baseline(
    bundle: Any,
    budget_bytes: int,
    out_path: str | os.PathLike[str],
    codec: str = "jpeg",
    scale: int = 1,
    seed: int = 0,
    quality: int | None = None,
    progress: bool = False,
    layout: str | None = None,
) -> ImageBaselineResult:
    """Write random real samples of ``bundle.x_train`` as a JPEG/WebP archive of at most
    ``budget_bytes`` to ``out_path``: the most images per class that fit at ``quality``,
    or, with ``quality=None``, at the quality chosen by the rule in the module docstring.

    ``scale=2`` stores images at half size per side (box-downsampled); the reader enlarges
    them back by bilinear interpolation. ``layout`` as for :func:`image_baseline_grid`.
    Raises ``ValueError`` when not even one image per
    class fits, or for data that are not 8-bit-representable images (1 or 3 channels,
    values in [0, 1]).
    """
    out_path = os.fspath(out_path)
    check_dir(out_path)
    qualities = QUALITIES if quality is None else (_check_quality(quality),)
    found = _search(bundle, budget_bytes, codec, scale, seed, qualities, progress, layout)
    if not found:
        at = "any quality of " + ", ".join(map(str, qualities)) if quality is None \
            else f"quality {quality}"
        raise ValueError(f"{budget_bytes} B does not fit one {codec} image per class at "
                         f"{at} (scale {scale}); raise the budget or use --scale 2")
    point, data = _choose(found)
    with atomic_open(out_path) as f:
        f.write(data)
    size = os.path.getsize(out_path)
    if size > budget_bytes or size != point.file_bytes:
        raise RuntimeError(f"wrote {size} B to {out_path}; measured {point.file_bytes} B "
                           f"for a {budget_bytes} B budget")
    return ImageBaselineResult(out_path, codec, scale, point.quality, point.layout,
                               point.ipc, point.n, size, budget_bytes, [p for p, _ in found])


def is_image_baseline(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` starts like a ZIP archive (a `.qdd` never does)."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def read_image_baseline(
    path: str | os.PathLike[str],
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode a baseline archive as a receiver would: ``x`` float32 (N, C, H, W) in [0, 1]
    at the dataset's full size (bilinear enlargement for ``scale`` > 1), ``y`` int64 (N,)
    and the class names. Raises ``ValueError`` for an archive this module did not write."""
    from PIL import Image

    shown = os.fspath(path)
    try:
        with zipfile.ZipFile(shown) as zf:
            m = json.loads(zf.read(MANIFEST))
            if m.get("format") != _FORMAT:
                raise ValueError("unknown format")
            th, tw = (int(v) for v in m["tile"])
            channels, scale, ext = int(m["channels"]), int(m["scale"]), CODECS[m["codec"]]
            xs, ys = [], []
            for k, count in enumerate(int(c) for c in m["counts"]):
                names = ([f"{k}.{ext}"] if m["layout"] == "mosaic"
                         else [f"{k}/{i}.{ext}" for i in range(count)])
                tiles = []
                for name in names:
                    with Image.open(io.BytesIO(zf.read(name))) as im:
                        arr = _pixels(im, channels)
                    tiles.append(_split(arr, th, tw)[:count] if m["layout"] == "mosaic"
                                 else arr[None])
                xs.append(np.concatenate(tiles) if tiles else
                          np.zeros((0, channels, th, tw), np.uint8))
                ys.append(np.full(count, k, np.int64))
            classes = [str(c) for c in m["classes"]]
    except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{shown} is not a readable JPEG/WebP baseline archive "
                         f"({exc.__class__.__name__}: {exc})") from None
    x = np.concatenate(xs).astype(np.float32) / np.float32(255)
    return upsample_linear(x, scale) if scale > 1 else x, np.concatenate(ys), classes


def evaluate_image_baseline(path: str | os.PathLike[str], bundle: Any,
                            **kwargs: Any) -> dict[str, Any]:
    """The ``.qdd`` evaluation protocol on a decoded baseline archive (``kwargs`` as for
    ``quadd_train.eval.evaluate_tensors``)."""
    from .eval import evaluate_tensors

    x, y, classes = read_image_baseline(path)
    if classes != list(bundle.class_names):
        raise ValueError(f"{os.fspath(path)} has classes {classes[:8]}, but dataset "
                         f"{bundle.name} has {list(bundle.class_names)[:8]}")
    result = evaluate_tensors(x, y, bundle, **kwargs)
    result["file"] = os.fspath(path)
    result["file_bytes"] = os.path.getsize(path)
    return result


# -- the search -------------------------------------------------------------------------


def _search(bundle: Any, budget: int, codec: str, scale: int, seed: int,
            qualities: tuple[int, ...], progress: bool, layout: str | None = None,
            ) -> list[tuple[ImageBaselinePoint, bytes]]:
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; expected one of {', '.join(CODECS)}")
    if scale not in (1, 2):
        raise ValueError(f"scale must be 1 or 2, not {scale}")
    layouts = ("mosaic", "separate") if layout is None else (layout,)
    if not set(layouts) <= {"mosaic", "separate"}:
        raise ValueError(f"layout must be mosaic or separate, not {layout!r}")
    pools, classes = _pools(bundle, scale, seed)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(layouts) * len(qualities), desc=f"{codec} x{scale}", unit="point",
                   leave=False)
    found = []
    try:
        for q in qualities:
            best = None
            for lay in layouts:
                packer = _Packer(pools, classes, codec, scale, q, lay)
                ipc, data = _most_that_fit(packer, budget)
                if ipc and (best is None or (ipc, -len(data)) > (best[0].ipc, -best[0].file_bytes)):
                    n = sum(min(ipc, len(p)) for p in pools)
                    best = (ImageBaselinePoint(codec, scale, q, lay, ipc, n, len(data)), data)
                if bar is not None:
                    bar.update()
            if best is not None:
                found.append(best)
    finally:
        if bar is not None:
            bar.close()
    return found


def _choose(found: list[tuple[ImageBaselinePoint, bytes]]) -> tuple[ImageBaselinePoint, bytes]:
    ref = [f for f in found if f[0].quality == REFERENCE_QUALITY]
    need = ref[0][0].ipc if ref else 1
    return max((f for f in found if f[0].ipc >= need), key=lambda f: f[0].quality)


def _most_that_fit(packer: _Packer, budget: int) -> tuple[int, bytes]:
    """The largest images-per-class count whose archive fits (0 when one does not),
    with that archive. Sizes grow with the count, so a doubling then a bisection find it;
    every size is that of the archive really built."""
    top = packer.most
    fits: dict[int, bytes | None] = {}

    def fit(ipc: int) -> bytes | None:
        if ipc not in fits:
            data = packer.archive(ipc)
            fits[ipc] = data if len(data) <= budget else None
        return fits[ipc]

    if fit(1) is None:
        return 0, b""
    lo, hi = 1, None
    while hi is None:
        nxt = min(2 * lo, top)
        if nxt == lo:
            return lo, fit(lo)  # type: ignore[return-value]
        if fit(nxt) is None:
            hi = nxt
        else:
            lo = nxt
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fit(mid) is not None else (lo, mid)
    return lo, fit(lo)  # type: ignore[return-value]


class _Packer:
    """Builds the archive of the first ``ipc`` images of each class's random order."""

    def __init__(self, pools: list[np.ndarray], classes: list[str], codec: str, scale: int,
                 quality: int, layout: str) -> None:
        self.pools, self.classes = pools, classes
        self.codec, self.scale, self.quality, self.layout = codec, scale, quality, layout
        self.ext = CODECS[codec]
        self.most = max(len(p) for p in pools)
        self._single: dict[tuple[int, int], bytes] = {}

    def archive(self, ipc: int) -> bytes:
        counts = [min(ipc, len(p)) for p in self.pools]
        tile = self.pools[0].shape[-2:]
        entries: list[tuple[str, bytes]] = []
        manifest = {"format": _FORMAT, "codec": self.codec, "layout": self.layout,
                    "tile": list(tile), "channels": int(self.pools[0].shape[1]),
                    "scale": self.scale, "classes": self.classes, "counts": counts}
        entries.append((MANIFEST, json.dumps(manifest, separators=(",", ":")).encode()))
        for k, (pool, count) in enumerate(zip(self.pools, counts, strict=True)):
            if self.layout == "mosaic":
                entries.append((f"{k}.{self.ext}", self._encode(_mosaic(pool[:count]))))
            else:
                entries.extend((f"{k}/{i}.{self.ext}", self._one(k, i)) for i in range(count))
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            for name, data in entries:
                zf.writestr(zipfile.ZipInfo(name, _DATE), data)
        return buf.getvalue()

    def _one(self, k: int, i: int) -> bytes:
        # A separate image does not depend on the count: encode it once per search.
        if (k, i) not in self._single:
            self._single[k, i] = self._encode(self.pools[k][i])
        return self._single[k, i]

    def _encode(self, chw: np.ndarray) -> bytes:
        return _encoder(self.codec)(chw, self.quality)


def _encoder(codec: str) -> Callable[[np.ndarray, int], bytes]:
    from PIL import Image

    def encode(chw: np.ndarray, quality: int) -> bytes:
        im = Image.fromarray(chw[0] if chw.shape[0] == 1 else chw.transpose(1, 2, 0))
        buf = io.BytesIO()
        if codec == "jpeg":
            im.save(buf, "JPEG", quality=quality, optimize=True)
        else:
            im.save(buf, "WEBP", quality=quality, method=6)
        return buf.getvalue()

    return encode


# -- pixels -----------------------------------------------------------------------------


def _pools(bundle: Any, scale: int, seed: int) -> tuple[list[np.ndarray], list[str]]:
    """Each class's training images as uint8 (n, C, h, w) at stored size, in the random
    order the baseline takes them (the same draw as ``quadd_train.baselines.subset``)."""
    x = bundle.x_train.cpu().numpy()
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"JPEG/WebP baselines need gray or RGB images, not samples of "
                         f"shape {tuple(x.shape[1:])}")
    if float(x.min()) < 0 or float(x.max()) > 1:
        raise ValueError("JPEG/WebP baselines need pixel values in [0, 1]; "
                         f"{bundle.name} holds {float(x.min()):g}..{float(x.max()):g}")
    labels = bundle.y_train.cpu().numpy()
    rng = np.random.default_rng([int(seed), 2])
    pools = []
    for c in range(len(bundle.class_names)):
        idx = rng.permutation(np.flatnonzero(labels == c))
        xs = downsample_mean(np.ascontiguousarray(x[idx], dtype=np.float32), scale)
        pools.append(np.clip(np.rint(xs * 255), 0, 255).astype(np.uint8))
    return pools, [str(c) for c in bundle.class_names]


def _mosaic(tiles: np.ndarray) -> np.ndarray:
    """(n, C, h, w) tiles in a grid of ceil(sqrt(n)) columns, row by row, as (C, H, W)."""
    n, c, h, w = tiles.shape
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    grid = np.full((rows * cols, c, h, w), _FILL, np.uint8)
    grid[:n] = tiles
    return grid.reshape(rows, cols, c, h, w).transpose(2, 0, 3, 1, 4).reshape(
        c, rows * h, cols * w)


def _split(chw: np.ndarray, h: int, w: int) -> np.ndarray:
    """The tiles of a mosaic, row by row: (rows * cols, C, h, w)."""
    c, big_h, big_w = chw.shape
    rows, cols = big_h // h, big_w // w
    return chw.reshape(c, rows, h, cols, w).transpose(1, 3, 0, 2, 4).reshape(-1, c, h, w)


def _pixels(im: Any, channels: int) -> np.ndarray:
    """A decoded image as uint8 (C, H, W) with the dataset's channel count."""
    arr = np.asarray(im.convert("L" if channels == 1 else "RGB"))
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def _check_quality(quality: int) -> int:
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be 1..100, not {quality}")
    return int(quality)

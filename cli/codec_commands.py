"""`quadd encode | decode | inspect | verify | import`: the `.qdd` codec on the command line.

They need only the base install; zarr stores and image folders need the `zarr` and
`images` extras, which are imported only when such an input or output is used.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import click

from quadd_codec.rules import CODEBOOKS, GROUPS, MAX_UPSAMPLE, UPSAMPLE_FILTERS, check_bits

from .output import force_opt, json_ready

__all__ = ["decode_command", "encode_command", "import_command", "inspect_command",
           "verify_command"]

#: Codebooks up to this many values in total are listed by `inspect`.
_SHOW_LEVELS_MAX = 256
_STDIN = "-"


class _Bits(click.ParamType):
    """1..8 bits per value, or 32 for raw float32 samples."""

    name = "1..8|32"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        try:
            bits = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not an integer", param, ctx)
        try:
            return check_bits(bits, raw=True)
        except ValueError:
            self.fail(f"{bits} is not 1..8 (or 32 for raw float32)", param, ctx)


def _progress_default(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


def _progress_option(func: Any) -> Any:
    return click.option(
        "--progress/--no-progress", default=None,
        help="Progress bars on stderr (default: when stderr is a terminal).",
    )(func)


def _open_qdd(source: str, verify: bool) -> Any:
    from quadd_codec import QddFile

    if source == _STDIN:
        from quadd_codec import QddTruncatedError
        from quadd_codec.header import read_stream
        from quadd_codec.reader import DEFAULT_STREAM_LIMIT

        # Read to the trailer, every size checked against the header before reading on.
        data = read_stream(sys.stdin.buffer, DEFAULT_STREAM_LIMIT)
        if sys.stdin.buffer.read(1):  # FORMAT.md section 8: no bytes after the trailer
            raise QddTruncatedError("<stdin> has trailing bytes after the end of the file")
        return QddFile(data, verify=verify)
    return QddFile(source, verify=verify)


def _label(source: str) -> str:
    return "<stdin>" if source == _STDIN else source


def _shape(shape: tuple[int, ...] | list[int]) -> str:
    return "x".join(str(d) for d in shape)


def _compared(size: float, other: float) -> str:
    """`size` against `other`: "3.20x smaller", or "1.50x larger" (never "0.67x smaller")."""
    if not size or not other:
        return "n/a"
    if size > other:
        return f"{size / other:.2f}x larger"
    return f"{other / size:.2f}x smaller"


def _check_output(output: Path, kind: str, force: bool, source: str | Path) -> None:
    """Refuse a bad output path before any slow work (the writers check it again): an
    existing output without --force, and an output that is or holds the input."""
    from quadd_codec.paths import check_output, check_output_dir

    inputs = [] if source == _STDIN else [source]
    if kind in ("zarr", "dir"):
        check_output_dir(output, replace=force, inputs=inputs)
    else:
        check_output(output, force, inputs=inputs)


# ------------------------------------------------------------------------ encode


@click.command("encode")
@click.argument("source", metavar="IN", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="The .qdd file to write (its folder must exist).")
@click.option("-b", "--bits", required=True, type=_Bits(),
              help="Bits per value: 1..8 (2**bits levels), or 32 to store raw float32.")
@click.option("--codebook", type=click.Choice(CODEBOOKS), default="uniform",
              show_default=True, help="How levels are fitted.")
@click.option("--group", type=click.Choice(GROUPS), default="channel", show_default=True,
              help="Which values share one level table.")
@click.option("--codebook-dtype", type=click.Choice(["f4", "f2"]), default="f4",
              show_default=True, help="Storage type of the levels (float32 or float16).")
@click.option("--upsample", type=click.IntRange(1, MAX_UPSAMPLE), default=1, show_default=True,
              help="Store images this many times smaller per side (block means); "
                   "readers enlarge them by repetition (.qdd 1.1).")
@click.option("--upsample-filter", type=click.Choice(UPSAMPLE_FILTERS), default="nearest",
              show_default=True,
              help="How readers enlarge --upsample images: repeat each value (nearest) or "
                   "interpolate bilinearly (linear, .qdd 1.2).")
@click.option("--chunk-checksums", is_flag=True,
              help="Add a CRC32C per chunk of about 64 KiB of samples (.qdd 1.3): readers "
                   "check each chunk when first read, and `quadd verify --json` names "
                   "damaged chunks.")
@force_opt
@_progress_option
def encode_command(source: Path, output: Path, bits: int, codebook: str, group: str,
                   codebook_dtype: str, upsample: int, upsample_filter: str,
                   chunk_checksums: bool, force: bool, progress: bool | None) -> None:
    """Quantize IN and write it as a bit-packed .qdd file.

    IN is a .npz (x, optional y and classes), a .npy (x only), a zarr store (group with
    x, optional y and attribute classes; or one array) or an image folder
    IN/<class>/*.png|jpg|jpeg. uint8 data counts as pixels and is scaled to [0, 1].
    The same input and options always give the same bytes.
    """
    from tqdm import tqdm

    from quadd_codec import downsample_mean, quantize_array, write_qdd
    from quadd_codec.sources import input_nbytes, load_source

    show = _progress_default(progress)
    if output.suffix.lower() in (".npz", ".npy", ".zarr"):
        raise click.BadParameter(f"{output} looks like a decode output; encode writes a .qdd",
                                 param_hint="'-o'")
    if upsample_filter != "nearest" and upsample == 1:
        raise click.BadParameter("needs --upsample 2 or more", param_hint="'--upsample-filter'")
    _check_output(output, "qdd", force, source)
    x, y, class_names = load_source(source, progress=show)
    n, decoded_shape, decoded_values = x.shape[0], x.shape[1:], x.size
    x = downsample_mean(x, upsample)
    if bits == 32:
        # No codebooks: group and level type mean nothing; FORMAT.md 10 fixes the values.
        codes, levels, group, codebook_dtype = x, None, "tensor", "f4"
    else:
        codes, levels = quantize_array(x, bits, codebook, group, codebook_dtype)
    chunk = 0
    if chunk_checksums:
        from quadd_codec.layout import sample_nbytes
        from quadd_codec.rules import CHUNK_TARGET_BYTES

        chunk = max(1, CHUNK_TARGET_BYTES // sample_nbytes(math.prod(x.shape[1:]), bits))
    with tqdm(total=n, desc="packing", unit="sample", disable=not show, leave=False,
              file=sys.stderr) as bar:
        size = write_qdd(output, codes, levels, y, bits, group, class_names,
                         codebook_dtype=codebook_dtype, progress=bar.update, upsample=upsample,
                         upsample_filter=upsample_filter, chunk=chunk)
    in_bytes = input_nbytes(source)
    stored = f" (stored as {_shape(x.shape[1:])})" if upsample > 1 else ""
    click.echo(
        f"wrote {output}: {n} samples of {_shape(decoded_shape)}{stored}, {bits} bits, "
        f"{len(class_names)} classes, {size:,} bytes; "
        f"{_compared(size, decoded_values * 4)} than float32, "
        f"{_compared(size, in_bytes)} than the input ({in_bytes:,} bytes)"
    )


# ------------------------------------------------------------------------ decode


def _output_kind(output: Path) -> str:
    suffix = output.suffix.lower()
    if suffix in (".npz", ".npy", ".zarr"):
        return suffix[1:]
    if suffix == ".qdd":
        raise click.BadParameter(
            "decode writes .npz, .npy, .zarr or an image directory, not .qdd", param_hint="'-o'"
        )
    return "dir"


@click.command("decode")
@click.argument("source", metavar="IN.qdd", type=click.Path(allow_dash=True))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="OUT.npz (x, y, classes), OUT.npy (x), OUT.zarr (lossless store) or a "
              "directory of PNGs OUT/<class>/<index>.png; its parent folder must exist.")
@force_opt
@_progress_option
def decode_command(source: str, output: Path, force: bool, progress: bool | None) -> None:
    """Decode IN.qdd ("-" reads stdin) to arrays, a zarr store or images.

    Arrays and images hold the dequantized samples in the source value space (the file's
    de-normalization applied); a .zarr store keeps the packed codes, so it converts back
    to the identical .qdd. Output appears atomically: a failure leaves none behind.
    """
    import numpy as np

    from quadd_codec.imagefolder import atomic_directory, write_image_folder
    from quadd_codec.paths import atomic_open

    kind = _output_kind(output)
    show = _progress_default(progress)
    _check_output(output, kind, force, source)
    with _open_qdd(source, verify=True) as f:
        if kind == "zarr":
            from quadd_codec.zarr_io import export_zarr

            export_zarr(f, output, replace=force)
            click.echo(f"wrote {output}: zarr store of {f.n} samples (packed {f.bits}-bit codes)")
            return
        x = f.read_all(denormalize=True)
        labels, names = f.labels, f.class_names
    if kind == "npz":
        arrays: dict[str, Any] = {"x": x}
        if labels is not None:
            arrays["y"] = labels
            arrays["classes"] = np.array(names, dtype=str)
        with atomic_open(output) as out:
            np.savez(out, **arrays)
    elif kind == "npy":
        with atomic_open(output) as out:
            np.save(out, x)
    else:
        with atomic_directory(output, replace=force) as tmp:
            write_image_folder(x, labels, names, tmp, progress=show)
    what = "images" if kind == "dir" else "samples"
    click.echo(f"wrote {output}: {x.shape[0]} {what} of {_shape(x.shape[1:])}")


# ----------------------------------------------------------------------- inspect


def inspect_info(f: Any, label: str) -> dict[str, Any]:
    """Everything `quadd inspect` reports about an open QddFile, as a JSON-ready dict."""
    import numpy as np

    from quadd_codec import MAJOR

    lay = f.layout
    parts = f.byte_breakdown()
    required = ("prefix+header", "codebooks", "codes", "labels", "trailer")
    extras = {k: v for k, v in parts.items() if k not in required}
    breakdown = {"prefix+header": parts["prefix+header"], "codebooks": parts["codebooks"],
                 "codes": parts["codes"], "labels": parts["labels"],
                 "extras": sum(extras.values()), "trailer": parts["trailer"]}
    counts = (np.bincount(f.labels, minlength=f.num_classes).tolist()
              if f.labels is not None else [0] * f.num_classes)
    # Per decoded value: what a user of the file gets back, upsampling included.
    per_sample = math.prod(lay.output_shape)
    values = lay.n * per_sample
    show_levels = lay.groups * lay.num_levels <= _SHOW_LEVELS_MAX
    return {
        "path": label,
        "format_version": f"{MAJOR}.{lay.minor}",
        "n": lay.n,
        "sample_shape": list(lay.output_shape),
        "values_per_sample": per_sample,
        "stored_shape": list(lay.sample_shape),
        "upsample": lay.upsample,
        "upsample_filter": lay.upsample_filter,
        "bits": lay.bits,
        "raw_float32": lay.bits == 32,
        "group": lay.group,
        "codebook_dtype": lay.codebook_dtype,
        "num_codebooks": lay.groups,
        "levels_per_codebook": lay.num_levels,
        "levels": f.levels.tolist() if show_levels else None,
        "num_classes": f.num_classes,
        "classes": [{"name": name, "count": int(c)}
                    for name, c in zip(f.class_names, counts, strict=True)],
        "denorm": None if lay.denorm is None else
        {"scale": list(lay.denorm.scale), "offset": list(lay.denorm.offset)},
        "file_size": lay.file_size,
        "bytes": breakdown,
        "extra_sections": extras,
        "bits_per_value": lay.file_size * 8 / values if values else None,
        "compression_vs_float32": values * 4 / lay.file_size,
        "meta": json_ready(lay.meta) if lay.meta else None,
    }


def _format_info(info: dict[str, Any]) -> str:
    lines = [
        f"file            {info['path']}",
        f"format          .qdd {info['format_version']}",
        f"samples         {info['n']} x {_shape(info['sample_shape'])} "
        f"({info['values_per_sample']} values each)",
    ]
    if info["upsample"] != 1:
        how = ("linear interpolation" if info["upsample_filter"] == "linear"
               else "repetition")
        lines.append(f"stored as       {_shape(info['stored_shape'])}, upsampled "
                     f"{info['upsample']}x by {how}")
    if info["raw_float32"]:
        lines.append("bits            32 (raw float32, no codebook)")
    else:
        lines.append(f"bits            {info['bits']} ({info['levels_per_codebook']} levels)")
        lines.append(f"codebooks       {info['num_codebooks']} ({info['group']} groups, "
                     f"{info['codebook_dtype']})")
        for g, row in enumerate(info["levels"] or []):
            lines.append(f"  levels[{g}]     " + " ".join(f"{v:.6g}" for v in row))
    classes = info["classes"]
    if classes:
        listed = ", ".join(f"{c['name']} ({c['count']})" for c in classes[:20])
        more = f", ... {len(classes) - 20} more" if len(classes) > 20 else ""
        lines.append(f"classes         {len(classes)}: {listed}{more}")
    else:
        lines.append("classes         none (unlabeled)")
    if info["denorm"]:
        d = info["denorm"]
        lines.append(f"denorm          scale {d['scale']} offset {d['offset']}")
    lines.append(f"file size       {info['file_size']:,} bytes")
    for name, size in info["bytes"].items():
        lines.append(f"  {name:<14}{size:>14,}")
    bpv = info["bits_per_value"]
    lines.append(f"bits per value  {bpv:.4f}" if bpv is not None else "bits per value  n/a")
    lines.append(f"vs float32      {_compared(1.0, info['compression_vs_float32'])}")
    return "\n".join(lines)


@click.command("inspect")
@click.argument("source", metavar="IN.qdd", type=click.Path(allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def inspect_command(source: str, as_json: bool) -> None:
    """Show what IN.qdd ("-" reads stdin) holds and where its bytes go."""
    with _open_qdd(source, verify=False) as f:
        info = inspect_info(f, _label(source))
    click.echo(json.dumps(info, default=repr) if as_json else _format_info(info))


# ------------------------------------------------------------------------ verify


def verify_report(source: str) -> dict[str, Any]:
    """What `quadd verify --json` prints: whether the file is sound, and for a file with
    chunk checksums which chunks of samples are damaged (to fetch just those again)."""
    from quadd_codec import QddError

    report: dict[str, Any] = {"path": _label(source), "ok": False, "error": None,
                              "chunk_samples": None, "chunks": None, "damaged_chunks": None,
                              "n": None, "file_size": None}
    try:
        with _open_qdd(source, verify=False) as f:
            if f.chunk:
                report.update(chunk_samples=f.chunk, chunks=f.layout.chunks,
                              damaged_chunks=f.damaged_chunks())
            f.verify()
            report.update(ok=True, n=f.n, file_size=f.file_size)
    except QddError as exc:
        report["error"] = str(exc)
    return report


@click.command("verify")
@click.argument("source", metavar="IN.qdd", type=click.Path(allow_dash=True))
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object (ok, error, damaged_chunks); exit 1 if not ok.")
def verify_command(source: str, as_json: bool) -> None:
    """Check every checksum and structural rule of IN.qdd ("-" reads stdin)."""
    if as_json:
        report = verify_report(source)
        click.echo(json.dumps(report))
        if not report["ok"]:
            sys.exit(1)
        return
    with _open_qdd(source, verify=True) as f:
        click.echo(
            f"OK {_label(source)}: {f.n} samples of {_shape(f.sample_shape)}, {f.bits} bits, "
            f"{f.num_classes} classes, {f.file_size:,} bytes, all checksums match"
        )


@click.command("import")
@click.argument("source", metavar="IN.zarr", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="The .qdd file to rebuild (written atomically; its folder must exist).")
@force_opt
def import_command(source: Path, output: Path, force: bool) -> None:
    """Rebuild the .qdd file that `quadd decode -o IN.zarr` exported, byte for byte.

    Fails (exit 1) if the store was modified: the rebuilt bytes must match the size and
    CRC32C of the exported file, which the store records (a store that records none is
    rebuilt but not called identical).
    """
    from quadd_codec.zarr_io import zarr_to_qdd

    _check_output(output, "qdd", force, source)
    size, checked = zarr_to_qdd(source, output)
    click.echo(f"wrote {output}: {size:,} bytes, identical to the exported file" if checked
               else f"wrote {output}: {size:,} bytes; not checked against the exported file "
               "(the store records no file_crc32c)")


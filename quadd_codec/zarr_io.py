"""`.qdd` <-> zarr v3 store, losslessly: a store rebuilds the byte-identical `.qdd` file.

Store layout (a zarr v3 group)::

    codes        (n, sample_nbytes) uint8   each sample's packed bytes, exactly as in the
                                            .qdd codes section (LSB-first, see FORMAT.md);
                                            no zarr codec: already dense, and any zarr
                                            reader can open it
    levels       (G, 2**bits) float32       level tables (absent for raw bits=32 files)
    labels       (n,) int64                 class indices (absent when the file has no classes)
    soft_labels  (n, K) float32             only if the file has them
    provenance   (len,) uint8               the provenance section's msgpack bytes, if any
    extra_<i>    (len,) uint8               any other extra section, raw
    attrs["quadd"]                          bits, group, sample_shape, classes, denorm, ...
                                            (everything else the header holds)

The packed bytes are stored rather than level indices so the store is as small as the
file and the rebuild is exact. `quadd_codec.numcodecs_codec.NBitPack` is the standalone
codec for the same bit layout (registered on import).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import numcodecs_codec  # noqa: F401 - registers the NBitPack codec with numcodecs
from .bitpack import pack_stream, unpack_rows
from .crc import crc32c
from .errors import QddFormatError, QddValueError
from .filespec import FileSpec
from .imagefolder import atomic_directory
from .layout import label_bits, sample_nbytes
from .paths import atomic_write, check_output_file
from .reader import QddFile
from .rules import MAJOR, RAW_BITS, Denorm, group_count, meta_problem
from .zarr_guard import check_store, check_tree

STORE_FORMAT = "quadd.qdd-zarr"
STORE_VERSION = 1
#: Most extra sections a store holds, each as its own array.
MAX_EXTRA_ARRAYS = 64
#: Target size of one `codes` chunk.
_CHUNK_BYTES = 4 << 20
#: Every chunk is written, even one of fill values only: `import_zarr` checks that the
#: store holds on disk the bytes its arrays declare.
_ALL_CHUNKS = {"write_empty_chunks": True}


def _open(qdd: QddFile | str | os.PathLike) -> tuple[QddFile, bool]:
    if isinstance(qdd, QddFile):
        return qdd, False
    return QddFile(qdd), True


def export_zarr(
    qdd: QddFile | str | os.PathLike, store_path: str | os.PathLike, replace: bool = False
) -> Path:
    """Write a `.qdd` (open file or path) as a zarr v3 store at `store_path`, atomically.

    Every section checksum is verified first, so a damaged file is never exported. The
    store is built beside `store_path` and renamed into place; an existing non-empty
    store is replaced only with `replace=True`.
    """
    import zarr

    f, owned = _open(qdd)
    try:
        f.verify()
        lay = f.layout
        extras = [s.name for s in lay.sections if s.name not in ("codebooks", "codes", "labels")]
        if len(extras) > MAX_EXTRA_ARRAYS:
            # One array (a folder and its metadata) per section: 60,000 empty sections
            # in a 1 MB file would make 60,000 folders.
            raise QddValueError(
                f"the file has {len(extras):,} extra sections; a zarr export keeps at most "
                f"{MAX_EXTRA_ARRAYS} (decode to .npz or .npy instead)")
        attrs: dict[str, Any] = {
            "format": STORE_FORMAT,
            "store_version": STORE_VERSION,
            "qdd_version": [MAJOR, lay.minor],
            "n": lay.n,
            "sample_shape": list(lay.sample_shape),
            "upsample": lay.upsample,
            "upsample_filter": lay.upsample_filter,
            "chunk": lay.chunk,
            "bits": lay.bits,
            "group": lay.group,
            "codebook_dtype": lay.codebook_dtype,
            "classes": list(lay.class_names),
            "denorm": None if lay.denorm is None else
            {"scale": list(lay.denorm.scale), "offset": list(lay.denorm.offset)},
            "meta": _json_safe(lay.meta, "header meta"),
            "sample_nbytes": lay.sample_nbytes,
            "extra_sections": [],
            "file_size": lay.file_size,
            "file_crc32c": f.file_crc32c(),
        }
        with atomic_directory(store_path, replace=replace) as tmp:
            group = zarr.open_group(str(tmp), mode="w")
            rows = max(1, min(lay.n, _CHUNK_BYTES // lay.sample_nbytes))
            codes = group.create_array("codes", shape=(lay.n, lay.sample_nbytes),
                                       chunks=(rows, lay.sample_nbytes), dtype="uint8",
                                       compressors=None, config=_ALL_CHUNKS)
            if lay.n:
                codes[...] = f.packed_codes()
            if lay.bits != RAW_BITS:
                _put(group, "levels", f.levels)
            if f.labels is not None:
                _put(group, "labels", f.labels.astype(np.int64))
            for i, name in enumerate(extras):
                raw = np.frombuffer(f.section_bytes(name), dtype=np.uint8)
                if name == "soft_labels":
                    array_name, data = name, raw.view("<f4").reshape(lay.n, len(lay.class_names))
                else:
                    array_name, data = ("provenance" if name == "provenance" else f"extra_{i}"), raw
                _put(group, array_name, data)
                attrs["extra_sections"].append([name, array_name])
            group.attrs["quadd"] = attrs
        return Path(store_path)
    finally:
        if owned:
            f.close()


def _put(group: Any, name: str, data: np.ndarray) -> None:
    chunks = tuple(max(1, d) for d in data.shape)
    arr = group.create_array(name, shape=data.shape, chunks=chunks, dtype=data.dtype,
                             compressors=None, config=_ALL_CHUNKS)
    if data.size:
        arr[...] = data


def _json_safe(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    import json

    problem = meta_problem(value)  # bytes keys, deep nesting: no TypeError or RecursionError
    if problem:
        raise QddValueError(f"{what} cannot be stored as zarr attributes: {problem}")
    try:
        if json.loads(json.dumps(value)) != value:
            raise TypeError("changes through JSON")
    except (TypeError, ValueError) as exc:
        raise QddValueError(f"{what} cannot be stored as zarr attributes: {exc}") from None
    return dict(value)


@dataclass
class QddArrays:
    """Everything a `.qdd` file holds, as arrays (what `import_zarr` returns)."""

    packed: np.ndarray  # (n, sample_nbytes) uint8
    levels: np.ndarray | None  # (G, 2**bits) float32; None for raw bits=32
    labels: np.ndarray | None  # (n,) int64; None without classes
    sample_shape: tuple[int, ...]
    bits: int
    group: str
    codebook_dtype: str
    class_names: list[str]
    denorm: Denorm | None
    meta: dict[str, Any] = field(default_factory=dict)
    minor: int = 0
    extra_sections: list[tuple[str, bytes]] = field(default_factory=list)
    upsample: int = 1
    upsample_filter: str = "nearest"
    chunk: int = 0
    recorded_size: int | None = None  # the exported file's size and CRC32C, if recorded
    recorded_crc: int | None = None

    @property
    def n(self) -> int:
        return self.packed.shape[0]

    def codes(self) -> np.ndarray:
        """Level indices (uint8, (n, *sample_shape)); float32 samples for raw files."""
        if self.bits == RAW_BITS:
            return self.packed.view("<f4").astype(np.float32).reshape(self.n, *self.sample_shape)
        values = int(np.prod(self.sample_shape))
        return unpack_rows(self.packed, self.bits, values).reshape(self.n, *self.sample_shape)

    def to_chunks(self) -> list[bytes]:
        """The `.qdd` file these arrays describe, as byte chunks."""
        spec = FileSpec(self.class_names, self.sample_shape, self.bits, self.group,
                        self.codebook_dtype, self.denorm, None, self.upsample,
                        self.upsample_filter, self.meta, self.chunk)
        spec.sections(self.n)  # checks the sample count
        if self.bits == RAW_BITS:
            codebooks = b""
        else:
            assert self.levels is not None
            dtype = "<f4" if self.codebook_dtype == "f4" else "<f2"
            codebooks = np.ascontiguousarray(self.levels, dtype=np.float32).astype(dtype).tobytes()
        k = len(self.class_names)
        if k and self.labels is None:
            raise QddFormatError("the store names classes but has no labels")
        if k and self.n and (self.labels.min() < 0 or self.labels.max() >= k):
            raise QddFormatError(f"the store's labels must lie in 0..{k - 1} for its {k} "
                                 f"classes, got {int(self.labels.min())}..{int(self.labels.max())}")
        lbits = label_bits(k)
        labels = pack_stream(self.labels, lbits) if k and lbits else b""
        packed = memoryview(np.ascontiguousarray(self.packed)).cast("B")  # no copy
        payloads = [("codebooks", codebooks), ("codes", packed),
                    ("labels", labels), *self.extra_sections]
        return spec.frame(self.n, [(name, [data]) for name, data in payloads],
                          minor=self.minor)


def import_zarr(store_path: str | os.PathLike) -> QddArrays:
    """Read a store written by `export_zarr` back into arrays (checked for consistency).

    Every array's declared shape and type is checked against the store's attributes
    before any array is read, and its size against what the store really holds: a
    store's metadata can declare any shape, and reading it would allocate all of it. The
    arrays must be uncompressed (as `export_zarr` writes them) and hold on disk the bytes
    they declare, together within the free memory; no link is followed
    (`quadd_codec.zarr_guard`). The store's own `file_size` bounds nothing.
    """
    import zarr

    where = os.fspath(store_path)
    if not os.path.isdir(where):
        problem = "no such directory" if not os.path.lexists(where) else "not a directory"
        raise QddValueError(f"{where}: {problem}; expected a zarr store exported by quadd")
    check_tree(where)  # before zarr opens anything: no link is followed
    try:
        group = zarr.open_group(where, mode="r")
    except Exception as exc:  # zarr raises many types for a missing or broken store
        raise QddValueError(f"{where}: cannot open zarr group: {exc}") from None
    attrs = group.attrs.get("quadd")
    if not isinstance(attrs, dict) or attrs.get("format") != STORE_FORMAT:
        raise QddFormatError(f"{where}: not a quadd zarr export (no 'quadd' attributes)")
    if attrs.get("store_version") != STORE_VERSION:
        version = attrs.get("store_version")
        raise QddFormatError(f"{where}: unsupported store version {version}")
    try:
        fields = _store_fields(attrs, where)
        nodes = _store_nodes(group, fields, where)
        packed = np.ascontiguousarray(nodes["codes"][...], dtype=np.uint8)
        levels = (np.asarray(nodes["levels"][...], dtype=np.float32)
                  if "levels" in nodes else None)
        labels = np.asarray(nodes["labels"][...], dtype=np.int64) if "labels" in nodes else None
        extras = []
        for name, array_name in fields["extra_sections"]:
            data = np.asarray(nodes[array_name][...])
            extras.append((name, data.astype("<f4").tobytes() if name == "soft_labels"
                           else data.astype(np.uint8).tobytes()))
    except QddFormatError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise QddFormatError(f"{where}: store is incomplete or inconsistent: {exc!r}") from None
    del fields["extra_sections"], fields["n"]
    return QddArrays(packed=packed, levels=levels, labels=labels, extra_sections=extras,
                     recorded_size=_recorded(attrs, "file_size", where),
                     recorded_crc=_recorded(attrs, "file_crc32c", where), **fields)


def _recorded(attrs: Mapping[str, Any], key: str, where: str) -> int | None:
    value = attrs.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                              or value < 0):
        raise QddFormatError(f"{where}: attribute {key} must be a non-negative integer")
    return value


def _store_fields(attrs: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The header fields a store's attributes hold, type-checked and range-checked."""
    try:
        denorm_raw = attrs.get("denorm")
        classes = attrs.get("classes", [])
        meta = attrs.get("meta") or {}
        extra_raw = attrs.get("extra_sections", [])
        if not isinstance(classes, list) or not isinstance(meta, dict) or \
                not isinstance(extra_raw, list):
            raise TypeError("classes and extra_sections must be lists, meta a map")
        fields: dict[str, Any] = {
            "n": _int(attrs["n"], "n"),
            "sample_shape": tuple(_int(d, "sample_shape") for d in _list(attrs["sample_shape"],
                                                                         "sample_shape")),
            "bits": _int(attrs["bits"], "bits"),
            "group": _str(attrs["group"], "group"),
            "codebook_dtype": _str(attrs.get("codebook_dtype", "f4"), "codebook_dtype"),
            "class_names": [_str(c, "classes") for c in classes],
            "denorm": None if denorm_raw is None else _denorm(denorm_raw),
            "meta": dict(meta),
            "minor": _store_minor(attrs.get("qdd_version", [MAJOR, 0]), where),
            "upsample": _int(attrs.get("upsample", 1), "upsample"),
            "upsample_filter": _str(attrs.get("upsample_filter", "nearest"), "upsample_filter"),
            "chunk": _int(attrs.get("chunk", 0), "chunk"),
            "extra_sections": [(_str(name, "extra_sections"), _str(array_name, "extra_sections"))
                               for name, array_name in extra_raw],
        }
        if len(fields["extra_sections"]) > MAX_EXTRA_ARRAYS:
            raise TypeError(f"more than {MAX_EXTRA_ARRAYS} extra sections")
        FileSpec(fields["class_names"], fields["sample_shape"], fields["bits"], fields["group"],
                 fields["codebook_dtype"], fields["denorm"], None, fields["upsample"],
                 fields["upsample_filter"], None, fields["chunk"]).sections(fields["n"])
    except QddFormatError:
        raise
    except QddValueError as exc:
        raise QddFormatError(f"{where}: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise QddFormatError(f"{where}: store is incomplete or inconsistent: {exc!r}") from None
    return fields


def _int(value: Any, key: str) -> int:
    # int("3") and int(3.5) would accept what no exporter writes.
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"attribute {key} must hold integers, got {value!r}")
    return value


def _str(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"attribute {key} must hold strings, got {value!r}")
    return value


def _list(value: Any, key: str) -> list:
    if not isinstance(value, list):
        raise TypeError(f"attribute {key} must be a list, got {value!r}")
    return value


def _denorm(raw: Any) -> Denorm:
    if not isinstance(raw, dict):
        raise TypeError(f"attribute denorm must be a map, got {raw!r}")
    parts = [_list(raw["scale"], "denorm"), _list(raw["offset"], "denorm")]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for p in parts for v in p):
        raise TypeError("attribute denorm must hold numbers")
    return Denorm(*parts)


def _store_minor(version: Any, where: str) -> int:
    ok = (isinstance(version, list) and len(version) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) for v in version))
    if not ok:
        raise QddFormatError(f"{where}: qdd_version must be [major, minor], got {version!r}")
    major, minor = version
    if major != MAJOR or not 0 <= minor <= 0xFFFF:  # the prefix holds minor as a u16
        raise QddFormatError(f"{where}: unsupported .qdd version {major}.{minor}")
    return minor


def _store_nodes(group: Any, fields: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The store's arrays, opened but not read, after checking their declared shapes."""
    import zarr

    n, shape, bits = fields["n"], fields["sample_shape"], fields["bits"]
    k = len(fields["class_names"])
    present = set(group.array_keys())
    # name -> (expected shape or None for any 1-D length, allowed dtype kinds)
    want: dict[str, tuple[tuple[int, ...] | None, str]] = {
        "codes": ((n, sample_nbytes(math.prod(shape), bits)), "u"),
    }
    if bits != RAW_BITS:
        want["levels"] = ((group_count(fields["group"], n, shape), 1 << bits), "f")
    if k or "labels" in present:
        want["labels"] = ((n,), "iu")
    for name, array_name in fields["extra_sections"]:
        want[array_name] = ((n, k), "f") if name == "soft_labels" else (None, "u")

    nodes: dict[str, Any] = {}
    for name, (expected, kinds) in want.items():
        if name not in present:
            raise QddFormatError(f"{where}: the store has no array {name!r}")
        node = group[name]
        if not isinstance(node, zarr.Array):
            raise QddFormatError(f"{where}: {name!r} is not an array")
        got = tuple(int(d) for d in node.shape)
        if (got != expected) if expected is not None else len(got) != 1:
            wanted = f"({', '.join(map(str, expected))})" if expected else "one dimension"
            raise QddFormatError(f"{where}: {name} has shape {got}, attributes imply {wanted}")
        if node.dtype.kind not in kinds or (kinds == "u" and node.dtype.itemsize != 1):
            raise QddFormatError(f"{where}: {name} has dtype {node.dtype}")
        nodes[name] = node
    # What bounds the reads is what the store holds on disk and the free memory, never
    # its attributes: they, file_size included, are as easy to edit as the shapes.
    check_store(where, nodes, raw=True)
    return nodes


def zarr_to_qdd(store_path: str | os.PathLike, out_qdd: str | os.PathLike) -> tuple[int, bool]:
    """Rebuild the `.qdd` file a store was exported from; returns (its size, whether it
    was checked identical to the exported file).

    The rebuilt bytes are checked against the size and CRC32C of the exported file that
    the store records, and parsed as a `.qdd`, before anything is written. A store that
    records no CRC32C (not one `export_zarr` wrote) rebuilds a valid file that cannot be
    called identical: the second value is False.
    """
    check_output_file(out_qdd)  # before reading the store, not after
    arrays = import_zarr(store_path)
    chunks = arrays.to_chunks()
    size = sum(len(c) for c in chunks)
    crc = 0
    for chunk in chunks:
        crc = crc32c(chunk, crc)
    recorded = (arrays.recorded_size, arrays.recorded_crc)
    if arrays.recorded_crc is not None and (size, crc) != recorded:
        raise QddFormatError(
            f"{store_path}: the store does not rebuild the exported file (size {size:,} vs "
            f"{arrays.recorded_size}, or checksum differs): it was modified or damaged"
        )
    whole = b"".join(chunks)
    del chunks
    QddFile(whole, verify=True).close()  # a hand-made store must still parse
    return atomic_write(out_qdd, [whole]), arrays.recorded_crc is not None

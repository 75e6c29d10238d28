#!/usr/bin/env python
"""Codec benchmark for `.qdd`: decode throughput, DataLoader speed, container overhead,
determinism. Prints a markdown report; `--json OUT` also writes the raw numbers.

    python bench/codec_bench.py [--quick] [--json OUT] [--samples N] [--repeats R]

Not part of the test suite. Timings on a shared machine are noisy, so every speed is a
ratio against a baseline measured in the same run, with the trials of the candidates
interleaved (A B C A B C ...) and the best trial of each kept.

Data: CIFAR-10 (JPEG copy) from `shared/datasets/cifar10-jpg.tar.gz`, extracted once to
`~/.cache/quadd/` (override with QUADD_CACHE); smooth synthetic images if it is missing.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import json
import os
import platform
import shlex
import statistics
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from quadd_codec import Denorm, QddDataset, QddFile, encode_qdd, quantize_array, write_qdd  # noqa: E402
from quadd_codec.dataset import qdd_collate  # noqa: E402
from quadd_codec.dequantize import byte_tables, dequantize_rows  # noqa: E402

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
CACHE = Path(os.environ.get("QUADD_CACHE", Path.home() / ".cache" / "quadd"))
ARCHIVE_CANDIDATES = [ROOT.parent / "shared" / "datasets" / "cifar10-jpg.tar.gz",
                      ROOT / "shared" / "datasets" / "cifar10-jpg.tar.gz"]
BATCH = 256


# --------------------------------------------------------------------------- helpers

def interleaved(candidates: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict]:
    """Time each candidate `repeats` times, interleaved; best and median seconds."""
    times: dict[str, list[float]] = {k: [] for k in candidates}
    for fn in candidates.values():  # warm-up (caches, lazily built tables, allocator)
        fn()
    for _ in range(repeats):
        for name, fn in candidates.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: {"best_s": min(v), "median_s": statistics.median(v)} for k, v in times.items()}


def machine_info(argv: Sequence[str], data_source: str) -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load = "n/a"
    return {
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "command": "python " + " ".join(shlex.quote(a) for a in argv),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "loadavg_at_start": load,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "data": data_source,
    }


# ------------------------------------------------------------------------------ data

def _find_archive() -> Path | None:
    for p in ARCHIVE_CANDIDATES:
        if p.is_file():
            return p
    return None


def load_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """(n, 3, 32, 32) uint8 images and int64 labels; CIFAR-10 train (JPEG copy) if found."""
    cached = CACHE / "bench" / "cifar10_train_u8.npz"
    if not cached.exists():
        archive = _find_archive()
        if archive is not None:
            _decode_archive(archive, cached)
    if cached.exists():
        data = np.load(cached)
        images, labels = data["images"], data["labels"]
        pick = np.sort(np.random.default_rng(seed).permutation(len(images))[:n])
        src = f"CIFAR-10 (JPEG copy), {n} train images (fixed random subset, seed {seed})"
        return images[pick], labels[pick].astype(np.int64), src
    return (*_synthetic(n, seed), f"synthetic smooth 3x32x32 images ({n}); CIFAR archive not found")


def _decode_archive(archive: Path, out: Path) -> None:
    from PIL import Image

    out.parent.mkdir(parents=True, exist_ok=True)
    images, labels = [], []
    with tarfile.open(archive) as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.endswith(".jpg")
                          and "train/" in m.name), key=lambda m: m.name)
        for m in members:
            cls = Path(m.name).parent.name
            with Image.open(io.BytesIO(tar.extractfile(m).read())) as im:
                images.append(np.asarray(im.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1))
            labels.append(CIFAR_CLASSES.index(cls))
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, images=np.stack(images), labels=np.asarray(labels, dtype=np.int16))
    os.replace(tmp, out)


def _synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, 32), np.linspace(0, 1, 32), indexing="ij")
    out = np.empty((n, 3, 32, 32), dtype=np.float32)
    for start in range(0, n, 1024):
        m = min(1024, n - start)
        f = rng.uniform(0.5, 3.0, (m, 3, 2, 1, 1))
        ph = rng.uniform(0, 2 * np.pi, (m, 3, 2, 1, 1))
        img = (np.sin(2 * np.pi * f[:, :, 0] * xx + ph[:, :, 0])
               + np.cos(2 * np.pi * f[:, :, 1] * yy + ph[:, :, 1]))
        out[start:start + m] = 0.5 + 0.25 * img
    images = np.clip(out * 255 + rng.normal(0, 4, out.shape), 0, 255).astype(np.uint8)
    return images, rng.integers(0, 10, n).astype(np.int64)


def normalize(images: np.ndarray) -> np.ndarray:
    mean = np.asarray(CIFAR_MEAN, dtype=np.float32)[None, :, None, None]
    std = np.asarray(CIFAR_STD, dtype=np.float32)[None, :, None, None]
    return (images.astype(np.float32) / 255 - mean) / std


CIFAR_DENORM = Denorm(scale=CIFAR_STD, offset=CIFAR_MEAN)


# ----------------------------------------------------------------- 1. decode speed

def bench_decode(x: np.ndarray, labels: np.ndarray, tmp: Path, repeats: int) -> list[dict]:
    n = x.shape[0]
    values = int(np.prod(x.shape[1:]))
    channels = x.shape[1]
    src = np.ones((n, values), dtype=np.float32)
    dst = np.empty_like(src)
    rows = []
    ref = interleaved({"copyto": lambda: np.copyto(dst, src), "fresh": lambda: src.copy()},
                      repeats)
    fresh_ratio = ref["copyto"]["best_s"] / ref["fresh"]["best_s"]
    for bits in range(1, 9):
        for group in ("tensor", "channel"):
            codes, levels = quantize_array(x, bits, "uniform", group)
            path = tmp / f"dec_{bits}_{group}.qdd"
            write_qdd(path, codes, levels, labels, bits, group, CIFAR_CLASSES, CIFAR_DENORM)
            f = QddFile(path)
            raw = f.packed_codes()  # (n, bytes per sample), the rows read() decodes
            ids = np.arange(n, dtype=np.int64)
            tables = byte_tables(f.levels, bits)
            # Bit-exact check against a direct gather from the levels.
            want = np.take_along_axis(
                np.broadcast_to(f.levels[None], (n, *f.levels.shape)) if group == "channel"
                else np.broadcast_to(f.levels[None], (n, 1, f.levels.shape[1])),
                codes.reshape(n, channels if group == "channel" else 1, -1).astype(np.intp),
                axis=2).reshape(n, values)
            got = dequantize_rows(raw, ids, bits, group, f.levels, channels, values, tables)
            exact = bool(np.array_equal(got, want))
            del got, want

            def deq_batches(raw=raw, ids=ids, bits=bits, group=group, f=f, tables=tables):
                for s in range(0, n, BATCH):
                    dequantize_rows(raw[s:s + BATCH], ids[s:s + BATCH], bits, group, f.levels,
                                    channels, values, tables)

            def deq_one(raw=raw, ids=ids, bits=bits, group=group, f=f, tables=tables):
                dequantize_rows(raw, ids, bits, group, f.levels, channels, values, tables)

            def read_batches(f=f):
                for s in range(0, n, BATCH):
                    f.read(slice(s, s + BATCH))

            t = interleaved({
                "memcpy": lambda: np.copyto(dst, src),
                "deq_batches": deq_batches,
                "read_batches": read_batches,
                "deq_one_call": deq_one,
            }, repeats)
            mem = t["memcpy"]["best_s"]
            row = {"bits": bits, "group": group, "bit_exact": exact,
                   "memcpy_ms": mem * 1e3}
            for k in ("deq_batches", "read_batches", "deq_one_call"):
                row[f"{k}_ms"] = t[k]["best_s"] * 1e3
                row[f"{k}_x_memcpy"] = mem / t[k]["best_s"]
                row[f"{k}_median_x_memcpy"] = t["memcpy"]["median_s"] / t[k]["median_s"]
            row["target_x_memcpy"] = 0.5 if bits in (1, 2, 4, 8) else 0.25
            row["met"] = row["read_batches_x_memcpy"] >= row["target_x_memcpy"]
            row["fresh_copy_x_memcpy"] = fresh_ratio
            rows.append(row)
            f.close()
            path.unlink()
            print(f"  decode b={bits} {group:7s}: read {row['read_batches_x_memcpy']:.2f}x "
                  f"deq {row['deq_batches_x_memcpy']:.2f}x one-call "
                  f"{row['deq_one_call_x_memcpy']:.2f}x memcpy (memcpy {mem * 1e3:.1f} ms)",
                  file=sys.stderr, flush=True)
    return rows


# --------------------------------------------------------------- 2. DataLoader speed

class PngFolder(Dataset):
    """The minimal image-folder baseline: open each PNG with Pillow, to a float tensor."""

    def __init__(self, files: list[str], labels: np.ndarray) -> None:
        self.files = files
        self.labels = labels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        with Image.open(self.files[i]) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
        x = torch.from_numpy(arr).permute(2, 0, 1).float().div_(255)
        return x, int(self.labels[i])


def _epoch(loader: DataLoader) -> int:
    seen = 0
    for xb, _yb in loader:
        seen += xb.shape[0]
    return seen


def bench_loader(x: np.ndarray, images: np.ndarray, labels: np.ndarray, tmp: Path,
                 epochs: int, png_n: int, bit_list: Sequence[int]) -> dict:
    n = x.shape[0]
    out: dict = {"samples": n, "batch": BATCH, "epochs": epochs, "rows": []}
    # PNG folder baseline (fewer samples; samples/s is what is compared).
    png_dir = tmp / "png"
    png_dir.mkdir()
    from PIL import Image

    files = []
    for i in range(png_n):
        p = png_dir / f"{i:06d}.png"
        Image.fromarray(images[i].transpose(1, 2, 0)).save(p)
        files.append(str(p))
    png_loader = DataLoader(PngFolder(files, labels[:png_n]), batch_size=BATCH, shuffle=True,
                            num_workers=0)
    for bits in bit_list:
        codes, levels = quantize_array(x, bits, "uniform", "channel")
        path = tmp / f"dl_{bits}.qdd"
        write_qdd(path, codes, levels, labels, bits, "channel", CIFAR_CLASSES, CIFAR_DENORM)
        qds = QddDataset(path)
        decoded, targets = qds.tensors()
        tds = TensorDataset(decoded, targets)
        g = torch.Generator().manual_seed(0)
        # qdd_collate takes each decoded batch as it is: no per-sample stack copy.
        q_loader = DataLoader(qds, batch_size=BATCH, shuffle=True, num_workers=0, generator=g,
                              collate_fn=qdd_collate)
        t_loader = DataLoader(tds, batch_size=BATCH, shuffle=True, num_workers=0, generator=g)
        cands = {"qdd": lambda q=q_loader: _epoch(q), "tensor": lambda t=t_loader: _epoch(t)}
        if bits == bit_list[0]:
            cands["png"] = lambda: _epoch(png_loader)
        t = interleaved(cands, epochs)
        row = {"bits": bits, "group": "channel",
               "qdd_sps": n / t["qdd"]["best_s"], "tensor_sps": n / t["tensor"]["best_s"],
               "qdd_median_sps": n / t["qdd"]["median_s"],
               "tensor_median_sps": n / t["tensor"]["median_s"]}
        if "png" in t:
            out["png_sps"] = png_n / t["png"]["best_s"]
            out["png_median_sps"] = png_n / t["png"]["median_s"]
            out["png_samples"] = png_n
        row["qdd_x_tensor"] = row["qdd_sps"] / row["tensor_sps"]
        row["qdd_x_png"] = row["qdd_sps"] / out["png_sps"]
        row["met"] = row["qdd_x_tensor"] >= 0.8 and row["qdd_x_png"] >= 20
        out["rows"].append(row)
        print(f"  loader b={bits}: qdd {row['qdd_sps']:.0f}/s tensor {row['tensor_sps']:.0f}/s "
              f"png {out['png_sps']:.0f}/s", file=sys.stderr, flush=True)
        del qds, decoded, tds, q_loader, t_loader
        path.unlink()
    return out


# ----------------------------------------------------------- 3. container overhead

def _overhead_case(name: str, shape: tuple[int, ...], n: int, class_names: list[str],
                   bits: int, group: str, denorm: Denorm | None) -> dict:
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 1 << bits, (n, *shape), dtype=np.uint8)
    g = {"tensor": 1, "channel": shape[0] if len(shape) > 1 else 1}[group]
    levels = np.sort(rng.standard_normal((g, 1 << bits)).astype(np.float32), axis=1)
    labels = np.arange(n) % len(class_names)
    blob = b"".join(bytes(c) for c in encode_qdd(codes, levels, labels, bits, group,
                                                 class_names, denorm))
    f = QddFile(blob)
    parts = f.byte_breakdown()
    payload = parts["codes"] + parts["codebooks"] + parts["labels"]
    row = {"case": name, "n": n, "shape": "x".join(map(str, shape)), "bits": bits,
           "group": group, "classes": len(class_names), "denorm": denorm is not None,
           "file_bytes": len(blob), "payload_bytes": payload, "overhead_bytes": len(blob) - payload,
           "header_bytes": parts["prefix+header"], "trailer_bytes": parts["trailer"]}
    f.close()
    return row


def bench_overhead() -> list[dict]:
    mnist = [str(d) for d in range(10)]
    thousand = [f"n{i:08d}" for i in range(1000)]  # WordNet-id-like names, 9 chars each
    cases = [
        ("CIFAR-10-like, 10 img/class", (3, 32, 32), 100, CIFAR_CLASSES, 4, "channel", None),
        ("CIFAR-10-like, 10 img/class + Denorm", (3, 32, 32), 100, CIFAR_CLASSES, 4, "channel",
         CIFAR_DENORM),
        ("CIFAR-10-like, 50 img/class + Denorm", (3, 32, 32), 500, CIFAR_CLASSES, 2, "channel",
         CIFAR_DENORM),
        ("CIFAR-10-like, 1 img/class + Denorm", (3, 32, 32), 10, CIFAR_CLASSES, 8, "tensor",
         CIFAR_DENORM),
        ("CIFAR-10-like, 5000 img/class (full train size) + Denorm", (3, 32, 32), 50000,
         CIFAR_CLASSES, 1, "tensor", CIFAR_DENORM),
        ("MNIST-like, 10 img/class", (1, 28, 28), 100, mnist, 1, "tensor", None),
        ("MNIST-like, 10 img/class + Denorm", (1, 28, 28), 100, mnist, 4, "channel",
         Denorm([0.3081], [0.1307])),
        ("1000-class (names n00000000..), 1 img/class", (3, 32, 32), 1000, thousand, 4,
         "channel", None),
    ]
    return [_overhead_case(*c) for c in cases]


# ------------------------------------------------------------------- 4. determinism

def bench_determinism(x: np.ndarray, labels: np.ndarray, tmp: Path) -> list[dict]:
    rows = []
    sub = x[:512]
    for bits, codebook, group in ((4, "uniform", "channel"), (3, "kmeans", "channel"),
                                  (1, "kmeans", "tensor"), (8, "uniform", "sample-channel")):
        blobs, files = [], []
        for k in range(2):
            codes, levels = quantize_array(sub.copy(), bits, codebook, group)
            blobs.append(b"".join(bytes(c) for c in encode_qdd(
                codes, levels, labels[:512], bits, group, CIFAR_CLASSES, CIFAR_DENORM,
                provenance={"method": "bench"})))
            p = tmp / f"det_{k}.qdd"
            write_qdd(p, codes, levels, labels[:512], bits, group, CIFAR_CLASSES, CIFAR_DENORM,
                      provenance={"method": "bench"})
            files.append(p.read_bytes())
        rows.append({"bits": bits, "codebook": codebook, "group": group,
                     "encode_identical": blobs[0] == blobs[1],
                     "files_identical": files[0] == files[1] == blobs[0]})
    return rows


# ------------------------------------------------------------------------- report

def report(info: dict, dec: list[dict], dl: dict, ovh: list[dict], det: list[dict]) -> str:
    yn = {True: "yes", False: "**no**"}
    L = ["# quadd codec benchmark", ""]
    L += [f"- date: {info['date']}", f"- command: `{info['command']}`",
          f"- CPU: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), "
          f"load average at start {info['loadavg_at_start']}",
          f"- Python {info['python']}, numpy {info['numpy']}, torch {info['torch']} "
          f"({info['torch_threads']} intra-op threads), {info['platform']}",
          f"- data: {info['data']}", ""]
    n = info["decode_samples"]
    L += ["## 1. Decode throughput (packed codes -> float32)", "",
          f"{n} samples of 3x32x32 ({n * 3072 * 4 / 1e6:.0f} MB of float32 output). "
          f"Baseline: one `np.copyto` of a float32 array that size (memcpy). "
          f"`read` = `QddFile.read(slice)` over the file in contiguous batches of {BATCH} "
          f"(what targets are judged on); `deq` = `dequantize_rows` alone, same batches; "
          f"`one call` = `dequantize_rows` on all {n} samples at once: its fresh "
          f"{n * 3072 * 4 / 1e6:.0f} MB output must be page-faulted in; a plain copy into a fresh "
          f"array (`src.copy()`) runs at {dec[0]['fresh_copy_x_memcpy']:.2f}x memcpy here, "
          f"which bounds that column. Ratios are "
          f"throughput relative to memcpy (higher is better), best of "
          f"{info['repeats']} interleaved trials (median-based ratio in brackets). "
          f"Target: >= 0.5x for b in {{1,2,4,8}}, >= 0.25x for b in {{3,5,6,7}}.", "",
          "| bits | group | memcpy ms | read ms | read x memcpy | deq x memcpy | one call x memcpy "
          "| bit-exact | target | met |",
          "|---:|---|---:|---:|---:|---:|---:|---|---:|---|"]
    for r in dec:
        L.append(f"| {r['bits']} | {r['group']} | {r['memcpy_ms']:.1f} "
                 f"| {r['read_batches_ms']:.1f} "
                 f"| {r['read_batches_x_memcpy']:.2f} ({r['read_batches_median_x_memcpy']:.2f}) "
                 f"| {r['deq_batches_x_memcpy']:.2f} ({r['deq_batches_median_x_memcpy']:.2f}) "
                 f"| {r['deq_one_call_x_memcpy']:.2f} | {yn[r['bit_exact']]} "
                 f"| {r['target_x_memcpy']} | {yn[r['met']]} |")
    L += ["", "## 2. DataLoader samples/s (batch 256, shuffle=True, num_workers=0)", "",
          f"{dl['samples']} CIFAR-shaped samples, best of {dl['epochs']} interleaved epochs "
          f"(median in brackets). `QddDataset` (channel group, denormalize=True) vs "
          f"`TensorDataset` of the same decoded values, and a Pillow PNG folder "
          f"({dl['png_samples']} PNGs: {dl['png_sps']:.0f} samples/s, median "
          f"{dl['png_median_sps']:.0f}). Target: QddDataset >= 0.8x TensorDataset and >= 20x PNG.",
          "", "| bits | QddDataset /s | TensorDataset /s | x TensorDataset | x PNG | met |",
          "|---:|---:|---:|---:|---:|---|"]
    for r in dl["rows"]:
        L.append(f"| {r['bits']} | {r['qdd_sps']:.0f} ({r['qdd_median_sps']:.0f}) "
                 f"| {r['tensor_sps']:.0f} ({r['tensor_median_sps']:.0f}) "
                 f"| {r['qdd_x_tensor']:.2f} | {r['qdd_x_png']:.1f} | {yn[r['met']]} |")
    L += ["", "## 3. Container overhead", "",
          "Overhead = file bytes - (packed codes + codebook tables + packed labels): prefix, "
          "msgpack header (shape, class names, section table with CRCs, Denorm) and trailer. "
          "Target: <= 256 bytes for CIFAR-10-like files.", "",
          "| file | n | bits/group | file bytes | payload | overhead | target met |",
          "|---|---:|---|---:|---:|---:|---|"]
    for r in ovh:
        met = yn[r["overhead_bytes"] <= 256] if r["case"].startswith("CIFAR") else "n/a"
        L.append(f"| {r['case']} | {r['n']} | {r['bits']}/{r['group']} | {r['file_bytes']} "
                 f"| {r['payload_bytes']} | {r['overhead_bytes']} | {met} |")
    L += ["", "## 4. Determinism", "",
          "Same input quantized and encoded twice (`quantize_array` + `encode_qdd`, and "
          "`write_qdd` to disk), 512 samples, with Denorm and provenance.", "",
          "| bits | codebook | group | encode byte-identical | written files identical |",
          "|---:|---|---|---|---|"]
    for r in det:
        L.append(f"| {r['bits']} | {r['codebook']} | {r['group']} | {yn[r['encode_identical']]} "
                 f"| {yn[r['files_identical']]} |")
    return "\n".join(L) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples and trials (~1 min)")
    ap.add_argument("--json", metavar="OUT", help="also write the raw results as JSON")
    ap.add_argument("--samples", type=int, help="samples for the decode and loader benches")
    ap.add_argument("--repeats", type=int, help="interleaved trials per decode measurement")
    args = ap.parse_args(argv)
    n = args.samples or (4000 if args.quick else 20000)
    repeats = args.repeats or (3 if args.quick else 7)
    epochs = 2 if args.quick else 4
    png_n = 1000 if args.quick else 2000
    bit_list = (4,) if args.quick else (1, 3, 4, 8)

    images, labels, source = load_images(n)
    x = normalize(images)
    info = machine_info(["bench/codec_bench.py", *argv], source)
    info.update(decode_samples=n, repeats=repeats)
    with tempfile.TemporaryDirectory(prefix="quadd-bench-") as d:
        tmp = Path(d)
        dec = bench_decode(x, labels, tmp, repeats)
        dl = bench_loader(x, images, labels, tmp, epochs, png_n, bit_list)
        ovh = bench_overhead()
        det = bench_determinism(x, labels, tmp)
    text = report(info, dec, dl, ovh, det)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"info": info, "decode": dec, "loader": dl, "overhead": ovh, "determinism": det},
            indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

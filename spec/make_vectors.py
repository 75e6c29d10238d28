"""Write the golden `.qdd` vectors of spec/vectors/ and the arrays they must decode to.

    python spec/make_vectors.py [OUT_DIR]      (default: spec/vectors next to this file)

The committed vectors are the reference: tests/test_golden.py decodes them and compares
with the committed arrays; it never regenerates them. Rerun this script only to *add* a
vector (k-means fits may differ across library versions, so regenerating can change
existing files; the tests re-encode from the stored codes and levels, not from data).

For each vector NAME the directory holds:
  NAME.qdd               the file
  NAME.codes.npy         encoder input: uint8 codes (n, *shape), or float32 samples (bits 32)
  NAME.levels.npy        encoder input: float32 levels (G, 2**bits); absent for bits 32
  NAME.decoded.npy       expected float32 stored values (n, *shape), i.e. levels[g, code]
  NAME.denormalized.npy  expected float32 source values, only for files with denorm
  NAME.labels.npy        expected int64 labels (n,); absent for unlabeled files
  NAME.soft_labels.npy   encoder input and expected soft labels; only where present
and vectors.json lists every vector with the other encoder arguments and its SHA-256.
The expected arrays are computed here from the inputs by FORMAT.md section 7 directly,
not by the reader, and the reader is checked against them before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from quadd_codec import Denorm, QddFile, encode_qdd, quantize_array

HERE = Path(__file__).resolve().parent
IMAGENET_STD = [0.229, 0.224, 0.225]
IMAGENET_MEAN = [0.485, 0.456, 0.406]


def reference_decode(codes: np.ndarray, levels: np.ndarray, group: str) -> np.ndarray:
    """FORMAT.md sections 5 and 7: value -> levels[group row][code], float32."""
    n = codes.shape[0]
    c = codes.shape[1] if codes.ndim >= 3 else 1
    per = codes.reshape(n, c, -1).astype(np.int64)
    out = np.empty(per.shape, dtype=np.float32)
    for k in range(n):
        for ch in range(c):
            row = {"tensor": 0, "channel": ch, "sample-channel": k * c + ch}[group]
            out[k, ch] = levels[row][per[k, ch]]
    return out.reshape(codes.shape)


def reference_denorm(values: np.ndarray, denorm: Denorm) -> np.ndarray:
    n = values.shape[0]
    c = len(denorm.scale)
    per = values.reshape(n, c, -1).copy()
    for ch in range(c):
        per[:, ch] = per[:, ch] * np.float32(denorm.scale[ch]) + np.float32(denorm.offset[ch])
    return per.reshape(values.shape)


def reference_linear(values: np.ndarray, f: int) -> np.ndarray:
    """FORMAT.md 7b, one output value at a time: height first, then width, float32."""

    def taps(size: int) -> list[tuple[int, int, np.float32, np.float32]]:
        out = []
        for i in range(size * f):
            t = max(2 * i + 1 - f, 0)
            i0, r = divmod(t, 2 * f)
            out.append((i0, min(i0 + 1, size - 1), np.float32(r / (2 * f)),
                        np.float32((2 * f - r) / (2 * f))))
        return out

    lead, (h, w) = values.shape[:-2], values.shape[-2:]
    flat = values.reshape(-1, h, w)
    tall = np.empty((flat.shape[0], h * f, w), np.float32)
    for i, (i0, i1, w1, w0) in enumerate(taps(h)):
        tall[:, i, :] = w0 * flat[:, i0, :] + w1 * flat[:, i1, :]
    out = np.empty((flat.shape[0], h * f, w * f), np.float32)
    for j, (j0, j1, w1, w0) in enumerate(taps(w)):
        out[:, :, j] = w0 * tall[:, :, j0] + w1 * tall[:, :, j1]
    return out.reshape(*lead, h * f, w * f)


def reference_enlarge(values: np.ndarray, f: int, linear: bool) -> np.ndarray:
    if linear:  # section 7b, applied after de-normalization
        return reference_linear(values, f)
    # section 7a: each stored value repeated into an f x f block
    return values.repeat(f, axis=-2).repeat(f, axis=-1)


def specs() -> list[dict[str, Any]]:
    """The vectors: encoder inputs and a one-line description each."""
    rng = np.random.default_rng(20240601)
    out: list[dict[str, Any]] = []

    def quantized(name, desc, x, bits, group, classes, labels, codebook="uniform",
                  cb_dtype="f4", **extra):
        codes, levels = quantize_array(x, bits, codebook, group, codebook_dtype=cb_dtype)
        out.append(dict(name=name, description=desc, codes=codes, levels=levels, bits=bits,
                        group=group, classes=classes, labels=labels, codebook=codebook,
                        cb_dtype=cb_dtype, **extra))

    quantized("tensor_1bit", "1-bit, one codebook for everything, 1-D samples, 2 classes",
              rng.normal(size=(4, 5)), 1, "tensor", ["neg", "pos"], np.array([0, 1, 1, 0]))
    quantized("channel_3bit_denorm",
              "3-bit per-channel (C,H,W)=(3,3,3) (27 bits a channel: unaligned), ImageNet denorm",
              rng.normal(size=(3, 3, 3, 3)), 3, "channel", ["a", "b", "c", "d"],
              np.array([3, 0, 2]), denorm=Denorm(IMAGENET_STD, IMAGENET_MEAN))
    quantized("channel_4bit_aligned", "4-bit per-channel, byte-aligned channels, 2 classes",
              rng.uniform(0, 1, size=(3, 2, 2, 2)), 4, "channel", ["x", "y"],
              np.array([1, 0, 1]))
    quantized("samplechannel_5bit_kmeans", "5-bit sample-channel groups, k-means codebooks",
              rng.normal(size=(2, 2, 3, 5)), 5, "sample-channel", ["cat", "dog"],
              np.array([1, 0]), codebook="kmeans")
    quantized("tensor_6bit", "6-bit, one codebook, (3,3) samples", rng.normal(size=(2, 3, 3)),
              6, "tensor", ["p", "q", "r"], np.array([2, 1]))
    quantized("channel_7bit_one_class", "7-bit per-channel, one class (0-bit labels, empty)",
              rng.normal(size=(3, 2, 3)), 7, "channel", ["only"], np.zeros(3, np.int64))
    quantized("channel_8bit_f2", "8-bit, float16 codebook, one channel (1,4,4)",
              rng.normal(size=(2, 1, 4, 4)), 8, "channel", ["u", "v", "w"], np.array([0, 2]),
              cb_dtype="f2")
    quantized("unlabeled_2bit", "2-bit per-channel 1-D samples, no classes, no labels",
              rng.normal(size=(5, 7)), 2, "channel", [], None)
    quantized("classes1000_10bit_labels",
              "1000 classes: labels packed at 10 bits (file > 2 KB: the names)",
              rng.normal(size=(12, 2)), 4, "tensor", [str(i) for i in range(1000)],
              np.array([0, 999, 512, 511, 1, 998, 256, 768, 3, 500, 997, 2]))
    quantized("extras_soft_provenance", "4-bit channel with soft_labels, provenance and meta",
              rng.normal(size=(3, 1, 2, 2)), 4, "channel", ["a", "b", "c"],
              np.array([2, 0, 1]),
              soft_labels=np.array([[0.1, 0.2, 0.7], [0.8, 0.1, 0.1], [0.0, 1.0, 0.0]],
                                   np.float32),
              provenance={"method": "dm", "ipc": 1, "seed": 0, "source": "synthetic",
                          "lr": 0.5},
              meta={"note": "golden vector"})
    raw = np.array([[[0.0, -0.0], [1.5, -2.25]],
                    [[1e-45, 3.4028235e38], [-3.4028235e38, 1.1754944e-38]],
                    [[0.1, 1 / 3], [np.pi, -np.e]]], dtype=np.float32)
    out.append(dict(name="raw_f32", description="raw float32 (bits 32): -0.0, subnormal, max",
                    codes=raw, levels=None, bits=32, group="tensor", classes=["a", "b", "c"],
                    labels=np.array([0, 1, 2]), codebook=None, cb_dtype="f4"))
    quantized("channel_2bit_upsample2",
              "2-bit per-channel stored (2,2,3), upsample 2: decodes to (2,4,6) (feature bit 0)",
              rng.normal(size=(3, 2, 2, 3)), 2, "channel", ["a", "b"], np.array([1, 0, 1]),
              denorm=Denorm([0.5, 0.25], [0.5, 0.125]), upsample=2)
    quantized("channel_3bit_linear3",
              "3-bit per-channel stored (2,2,3), upsample 3, linear: decodes to (2,6,9) "
              "(feature bits 0 and 1)",
              rng.normal(size=(2, 2, 2, 3)), 3, "channel", ["a", "b"], np.array([0, 1]),
              denorm=Denorm([0.25, 2.0], [0.5, -1.0]), upsample=3, upsample_filter="linear")
    quantized("tensor_2bit_linear2",
              "2-bit stored (1,3,2), upsample 2, linear: decodes to (1,6,4), exact weights",
              rng.normal(size=(2, 1, 3, 2)), 2, "tensor", ["a", "b"], np.array([1, 0]),
              upsample=2, upsample_filter="linear")
    # Feature vectors (FORMAT.md section 3, "Feature vectors"): F features as shape [F]
    # are one channel, so every group shares one codebook; as shape [F, 1] each feature
    # is a channel, and group "channel" gives each feature its own codebook.
    quantized("vector_4bit_shape_f", "feature vectors as shape (8,): one channel, one "
              "codebook for all features under group channel",
              rng.normal(size=(4, 8)) * np.arange(1, 9), 4, "channel", ["a", "b"],
              np.array([0, 1, 1, 0]))
    quantized("vector_3bit_shape_f1", "feature vectors as shape (6, 1): six channels, one "
              "codebook per feature under group channel, per-feature denorm",
              rng.normal(size=(5, 6, 1)) * np.arange(1, 7)[:, None], 3, "channel",
              ["a", "b", "c"], np.array([2, 0, 1, 1, 0]),
              denorm=Denorm([0.5, 1.0, 2.0, 4.0, 0.25, 1.5], [0.0, -1.0, 1.0, 0.5, 2.0, -0.5]))
    quantized("chunked_4bit_crcs", "4-bit with a CRC32C per chunk of 3 samples (8 samples: "
              "chunks of 3, 3, 2; version 1.3, section 4a)",
              rng.normal(size=(8, 2, 3)), 4, "channel", ["a", "b"],
              np.array([0, 1, 0, 1, 1, 0, 0, 1]), chunk=3)
    return out


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    listing = []
    for spec in specs():
        name = spec["name"]
        denorm = spec.get("denorm")
        chunks = encode_qdd(spec["codes"], spec["levels"], spec["labels"], spec["bits"],
                            spec["group"], spec["classes"], denorm, spec["cb_dtype"],
                            spec.get("provenance"), spec.get("soft_labels"), spec.get("meta"),
                            upsample=spec.get("upsample", 1),
                            upsample_filter=spec.get("upsample_filter", "nearest"),
                            chunk=spec.get("chunk", 0))
        data = b"".join(bytes(c) for c in chunks)
        if spec["bits"] == 32:
            decoded = spec["codes"].astype(np.float32)
        else:
            decoded = reference_decode(spec["codes"], spec["levels"], spec["group"])
        up = spec.get("upsample", 1)
        linear = spec.get("upsample_filter", "nearest") == "linear"
        source = None if denorm is None else reference_denorm(decoded, denorm)
        if up != 1:
            decoded = reference_enlarge(decoded, up, linear)
            source = None if source is None else reference_enlarge(source, up, linear)
        arrays = {"codes": spec["codes"], "levels": spec["levels"], "decoded": decoded,
                  "labels": None if spec["labels"] is None else spec["labels"].astype(np.int64),
                  "soft_labels": spec.get("soft_labels"), "denormalized": source}
        f = QddFile(data, verify=True)  # the reader must agree before anything is written
        assert np.array_equal(f.read_all().view(np.uint32), decoded.view(np.uint32)), name
        if denorm is not None:
            assert np.array_equal(f.read_all(True), arrays["denormalized"]), name
        (out_dir / f"{name}.qdd").write_bytes(data)
        files = [f"{name}.qdd"]
        for key, value in arrays.items():
            if value is not None:
                np.save(out_dir / f"{name}.{key}.npy", value, allow_pickle=False)
                files.append(f"{name}.{key}.npy")
        listing.append({
            "name": name, "description": spec["description"], "files": files,
            "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "bits": spec["bits"], "group": spec["group"], "codebook": spec["codebook"],
            "cb_dtype": spec["cb_dtype"], "classes": spec["classes"],
            "n": int(spec["codes"].shape[0]),
            "shape": [int(d) for d in spec["codes"].shape[1:]],
            "denorm": None if denorm is None else [list(denorm.scale), list(denorm.offset)],
            "provenance": spec.get("provenance"), "meta": spec.get("meta"),
            **({"upsample": up} if up != 1 else {}),
            **({"upsample_filter": "linear"} if linear else {}),
            **({"chunk": spec["chunk"]} if spec.get("chunk") else {}),
        })
        print(f"{name:28s} {len(data):6d} bytes")
    # One vector a line: readable diffs, and the 1000 class names stay on one line.
    lines = ",\n".join(json.dumps(v, ensure_ascii=False) for v in listing)
    (out_dir / "vectors.json").write_text('{"vectors": [\n' + lines + "\n]}\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "vectors")

"""Every golden vector's header validates against spec/header.schema.json."""

from __future__ import annotations

import copy
import json

import msgpack
import pytest
from conftest import REPO, VECTORS, small_qdd_bytes, split

jsonschema = pytest.importorskip("jsonschema")

SCHEMA_PATH = REPO / "spec" / "header.schema.json"
pytestmark = pytest.mark.skipif(not SCHEMA_PATH.exists(), reason="spec/header.schema.json missing")


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA_PATH.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def vector_headers():
    out = []
    for path in sorted(VECTORS.glob("*.qdd")):
        out.append(pytest.param(split(path.read_bytes())[0], id=path.stem))
    return out


@pytest.mark.parametrize("header", vector_headers())
def test_vector_header_validates(validator, header):
    errors = list(validator.iter_errors(header))
    assert not errors, [e.message for e in errors]


def test_writer_headers_validate(validator):
    import numpy as np

    data = small_qdd_bytes(codebook_dtype="f4", meta={"k": 1.5},
                           provenance={"a": 1}, soft_labels=np.zeros((6, 3), np.float32))
    validator.validate(split(data)[0])


def _base():
    return split((VECTORS / "channel_3bit_denorm.qdd").read_bytes())[0]


def _mutations():
    def s(key, value):
        def f(h):
            h[key] = value
        return f

    def d(key):
        def f(h):
            del h[key]
        return f

    def swap(h):
        h["sections"][0], h["sections"][1] = h["sections"][1], h["sections"][0]

    return {
        "missing n": d("n"), "missing sections": d("sections"), "n negative": s("n", -1),
        "n too big": s("n", 2**40 + 1), "bits 9": s("bits", 9), "bits 0": s("bits", 0),
        "bits 16": s("bits", 16), "bad group": s("group", "pixel"),
        "bad cb_dtype": s("cb_dtype", "f8"), "shape empty": s("shape", []),
        "shape 9 dims": s("shape", [1] * 9), "shape zero": s("shape", [3, 0]),
        "duplicate classes": s("classes", ["a", "a"]), "empty class": s("classes", [""]),
        "NUL class": s("classes", ["a\x00"]), "denorm single": s("denorm", [[1.0]]),
        "meta list": s("meta", [1]), "sections swapped": swap,
        "two sections": lambda h: h["sections"].pop(),
        "negative offset": lambda h: h["sections"][1].__setitem__(1, -1),
    }


@pytest.mark.parametrize("case", list(_mutations()))
def test_schema_rejects_bad_headers(validator, case):
    header = copy.deepcopy(_base())
    validator.validate(header)
    _mutations()[case](header)
    assert list(validator.iter_errors(header)), case


def test_msgpack_header_types_map_to_json_types():
    # The header holds only maps, arrays, strings, ints, float32s and 4-byte bins.
    def walk(value):
        if isinstance(value, dict):
            assert all(isinstance(k, str) for k in value)
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        else:
            assert isinstance(value, (str, int, float, bytes, type(None))), type(value)
            if isinstance(value, bytes):
                assert len(value) == 4

    for path in VECTORS.glob("*.qdd"):
        header = split(path.read_bytes())[0]
        walk(header)
        assert msgpack.unpackb(msgpack.packb(header, use_bin_type=True), raw=False) == header

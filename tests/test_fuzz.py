"""A short run of the `.qdd` fuzz target (fuzz/qdd_fuzz.py; issue 27 item 6): seeded
with the golden vectors, checksums re-fixed after each mutation, only `QddError` may
escape. The long, coverage-guided run is documented in docs/fuzzing.md."""

from __future__ import annotations

import importlib.util
import random
import struct

from conftest import REPO

from quadd_codec import QddFile

_spec = importlib.util.spec_from_file_location("qdd_fuzz", REPO / "fuzz" / "qdd_fuzz.py")
qdd_fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(qdd_fuzz)


def test_fixing_checksums_leaves_valid_files_alone():
    for data in qdd_fuzz.seeds():
        assert qdd_fuzz.fix_checksums(data) == data


def test_the_mutator_gets_past_the_checksums():
    # A flipped bit in a codes section is caught by its CRC; after fixing, the file reads.
    data = bytearray(qdd_fuzz.seeds()[0])
    data[-14] ^= 0x01
    fixed = qdd_fuzz.fix_checksums(bytes(data))
    QddFile(fixed, verify=True).close()
    header_len = struct.unpack_from("<I", fixed, 16)[0]
    assert fixed[24 + header_len :] != qdd_fuzz.seeds()[0][24 + header_len :]


def test_short_fuzz_run_finds_nothing():
    assert qdd_fuzz.python_fuzz(4000, seed=27) == 4000


def test_mutants_reach_past_the_checks():
    rng, pool = random.Random(1), qdd_fuzz.seeds()
    opened = 0
    for _ in range(500):
        try:
            QddFile(qdd_fuzz.mutate(rng.choice(pool), rng, pool), verify=True).close()
            opened += 1
        except qdd_fuzz.QddError:
            pass
    assert opened >= 25  # a fuzzer stuck at the checksums would open none

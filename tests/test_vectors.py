"""Conformance: the shipped vectors and freshly generated ones (reference harness)."""

import json
import subprocess
import sys
from collections import Counter

from secsync_jupyter.vectors import run_vectors

from .conftest import ROOT, VECTORS

SECTIONS = (
    "hash",
    "canonicalize",
    "parentSnapshotProof",
    "snapshots",
    "snapshotProofChain",
    "updates",
    "ephemeralMessages",
    "negative",
    "quirks",
)


def test_shipped_vectors_all_pass():
    data = json.loads(VECTORS.read_text())
    outcomes = run_vectors(data)
    failures = [o for o in outcomes if not o.ok]
    assert failures == []
    # every vector of the file runs, the quirks included (68 in the shipped file)
    assert len(outcomes) == sum(len(data[s]) for s in SECTIONS) == 68
    by_section = Counter(o.section for o in outcomes)
    assert by_section == {s: len(data[s]) for s in SECTIONS}
    assert [o.name for o in outcomes if o.section == "quirks"] == [
        q["name"] for q in data["quirks"]
    ]


def test_each_quirk_vector_checks_what_it_documents():
    data = json.loads(VECTORS.read_text())
    # the reference's non-byte-safe plaintext must not be reproduced by a corrupted record
    data["quirks"][0]["decryptedPlaintextLength"] = data["quirks"][0]["expectedByteSafeLength"]
    data["quirks"][1]["hashOfDecodedBytes"] = data["quirks"][1]["snapshotCiphertextHash"]
    data["quirks"].append({"name": "a quirk nobody wrote a runner for"})
    failed = {o.name: o.detail for o in run_vectors(data) if not o.ok}
    assert set(failed) == {q["name"] for q in data["quirks"]}
    assert "reference plaintext length" in failed[data["quirks"][0]["name"]]
    assert "hash of bytes" in failed[data["quirks"][1]["name"]]
    assert "unknown quirk" in failed["a quirk nobody wrote a runner for"]


def test_cli_prints_summary_and_exit_code(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "secsync_jupyter", "vectors", str(VECTORS)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "68 passed, 0 failed"


def test_cli_reports_a_corrupted_vector(tmp_path):
    data = json.loads(VECTORS.read_text())
    # corrupt the expected content of one update and one negative code
    data["updates"][0]["expected"]["content"] = "AAAA"
    data["negative"][0]["expected"]["error"] = "SECSYNC_ERROR_101"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    proc = subprocess.run(
        [sys.executable, "-m", "secsync_jupyter", "vectors", str(bad)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "66 passed, 2 failed"
    assert sum(line.startswith("FAIL") for line in lines) == 2


def test_fresh_seed_vectors_from_reference(harness_run, tmp_path):
    for seed in ("pytest-fresh-1", "holdout"):
        out = tmp_path / f"{seed}.json"
        proc = harness_run("make-vectors.mjs", "--seed", seed, "--out", out)
        assert proc.returncode == 0, proc.stderr
        data = json.loads(out.read_text())
        assert data["meta"]["seed"] == seed
        outcomes = run_vectors(data)
        assert [o for o in outcomes if not o.ok] == []
        assert len(outcomes) == sum(len(data[s]) for s in SECTIONS) == 68

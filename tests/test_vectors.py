"""Conformance: the shipped vectors and freshly generated ones (reference harness)."""

import json
import subprocess
import sys

from secsync_jupyter.vectors import run_vectors

from .conftest import ROOT, VECTORS


def test_shipped_vectors_all_pass():
    outcomes = run_vectors(json.loads(VECTORS.read_text()))
    failures = [o for o in outcomes if not o.ok]
    assert len(outcomes) == 67
    assert failures == []


def test_cli_prints_summary_and_exit_code(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "secsync_jupyter", "vectors", str(VECTORS)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "67 passed, 0 failed"


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
    assert lines[-1] == "65 passed, 2 failed"
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
        assert len(outcomes) == 67

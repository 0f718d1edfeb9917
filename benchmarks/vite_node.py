"""Running a TypeScript bench script on node with the labextension's own code (vite-node, from
labextension/, so that ``./src/secsync/…`` imports resolve): shared by membership_bench.py,
browser_link_join_bench.py and browser_log_load_bench.py."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import tempfile
from typing import Any

LABEXT = pathlib.Path(__file__).resolve().parents[1] / "labextension"
VITE_NODE = LABEXT / "node_modules" / ".bin" / "vite-node"


def available() -> bool:
    """Whether labextension/node_modules (vite-node) is installed."""
    return VITE_NODE.exists()


def run_ts(source: str, payload: Any, name: str, timeout: float) -> Any:
    """Run ``source`` (written to ``labextension/.<name>-<pid>.ts`` and removed after) with the
    path of a JSON file of ``payload`` as its argument; the JSON of its last output line."""
    if not available():
        raise SystemExit("labextension/node_modules is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        data = pathlib.Path(tmp) / "payload.json"
        data.write_text(json.dumps(payload))
        script = LABEXT / f".{name}-{os.getpid()}.ts"
        script.write_text(source)
        try:
            out = subprocess.run(
                [str(VITE_NODE), str(script), str(data)],
                cwd=LABEXT,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        finally:
            script.unlink()
    if out.returncode != 0:
        raise RuntimeError(f"the TypeScript bench failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])

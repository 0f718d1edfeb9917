"""What a membership log adds to a load in the browser engine (issue 11): load_bench case (a)
(one snapshot) through the TypeScript SyncEngine on node (labextension/src/secsync, the module
the JupyterLab extension runs; libsodium-wrappers as in the browser), as a document without a
log and with a 50-entry log — on a first open (the whole log verified: parse, chain, roles and
50 Ed25519 checks) and on a reload with the remembered state (the verified log from
localStorage: parsed and its chain and roles checked again, no signatures; the relay sends
only the entries after its head, none here).

    .venv/bin/python benchmarks/load_bench.py          # once: builds the cached Yjs data
    cd benchmarks && ../.venv/bin/python browser_log_load_bench.py [--repeat 40] [--entries 50]

Variants are interleaved; each load builds the engine (the remembered log is adopted there),
parses the frame's JSON and receives it. Printed: CPU time of node (process.cpuUsage, GC
included) and elapsed time, best / median, and the ratio to the document without a log.
Goal (issue 11): membership checks add ≤ 5 % to load (a). Prints ``uptime``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import load_bench as lb
import membership_load_bench as mlb
from vite_node import run_ts

TS = """
import fs from 'node:fs';
import * as Y from 'yjs';
import { ready } from './src/secsync/sodium';
import { createSignatureKeyPair } from './src/secsync/crypto';
import { SyncEngine } from './src/secsync/engine';
import { YDocAdapter } from './src/secsync/yjsContent';
const payload = JSON.parse(fs.readFileSync(process.argv[2], 'utf-8'));
const { variants, key, seed, expected, repeat } = payload;
await ready();
const signer = createSignatureKeyPair(Uint8Array.from(seed));
const docKey = Uint8Array.from(key);
const out: Record<string, { cpu: number[]; wall: number[] }> = {};
for (let r = 0; r < repeat + 3; r++) {
  for (const v of variants) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const doc = new Y.Doc();
    const engine = new SyncEngine(v.docId, docKey, new YDocAdapter(doc), signer, {
      remembered: v.remembered ?? null
    });
    engine.connecting();
    engine.connected();
    engine.receive(JSON.parse(v.frame));
    const wall = performance.now() - t0;
    const c = process.cpuUsage(c0);
    if (engine.documentState !== 'complete' || doc.getText('content').toString() !== expected) {
      const why = String(engine.errors[0]);
      throw new Error(`${v.name}: not loaded (${engine.documentState}) ${why}`);
    }
    if (r >= 3) {
      // (the first rounds warm the JIT)
      const o = (out[v.name] ??= { cpu: [], wall: [] });
      o.cpu.push((c.user + c.system) / 1000);
      o.wall.push(wall);
    }
  }
}
console.log(JSON.stringify(out));
"""


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=40)
    ap.add_argument("--entries", type=int, default=50)
    args = ap.parse_args(argv)
    cached = lb.cache_dir() / "data-all.json"
    data = lb.build(None) if not cached.exists() else json.loads(cached.read_text())
    state, entries = mlb.make_log(args.entries)
    head = state.head.to_json()
    log_frame = mlb.frames(data, state.doc_id, head, entries)["a"]
    n = args.entries
    variants = [
        {"name": "no log", "docId": lb.DOC_ID, "frame": mlb.frames(data, lb.DOC_ID)["a"]},
        {"name": f"log of {n}, first open", "docId": state.doc_id, "frame": log_frame},
        {
            "name": f"log of {n}, remembered state",
            "docId": state.doc_id,
            # the relay answers knownLogSeq/knownLogHash with the entries after the head: none
            "frame": json.dumps({**json.loads(log_frame), "log": [], "logFrom": n}),
            "remembered": {"snapshot": None, "logHead": head, "log": entries},
        },
    ]
    payload = {
        "variants": variants,
        "key": list(lb.KEY),
        "seed": list(lb.SIGNER.seed),
        "expected": data["expected"],
        "repeat": args.repeat,
    }
    print("uptime:", uptime())
    results = run_ts(TS, payload, "browser-log-load-bench", 1200)
    import statistics

    base = results["no log"]
    print(f"TypeScript SyncEngine on node, load (a), best / median of {args.repeat}")
    for name, r in results.items():
        parts = []
        for what in ("cpu", "wall"):
            best, med = min(r[what]), statistics.median(r[what])
            b0, m0 = min(base[what]), statistics.median(base[what])
            parts.append(f"{what} {best:7.2f} / {med:7.2f} ms  x{best / b0:.3f} / x{med / m0:.3f}")
        print(f"{name:<30} " + "   ".join(parts))
    print("uptime:", uptime())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Browser typing latency, A's screen -> B's screen, and where each keystroke waits (issue 15).

Real JupyterLab (the built labextension, the embedded relay on a real SQLite file), two Chromium
contexts A and B, as tests/e2e/test_browser.py; an encrypted notebook and a stock RTC ``.ipynb``
measured in the same lab, alternated round by round. A types a marker (one key every 40 ms:
"paced"; Playwright's fastest: "burst"); the latency is from A's keydown of the marker's last key
to the marker in B's DOM. Instrumented from outside the extension (an init script wraps the
pages' ``WebSocket``; no product code changes), per keystroke:

  sent      key -> A's WebSocket sends the update that carries it (A: merge, encrypt, sign)
  received  key -> B's page gets that update (the server: verify, store, fan out; stock: the
            jupyter-collaboration room)
  handled   how long B's message handler took (B: verify, decrypt, apply, editor update)
  visible   key -> the marker is in B's DOM
  ack       key -> A gets the relay's update-saved (encrypted only: after the durable commit)

A keystroke slower than twice the stock median is counted under the stage it spent longest in
("A", "server", "B"). The relay's warnings about write transactions over 100 ms (SQLite commit,
i.e. the fsync of the WAL) are counted from the server log. The relay's SQLite ``synchronous``
mode can be varied (``--synchronous full,normal``: one lab each) to see what the durable commit
costs; ``full`` is the default and the only mode with durable acknowledgements after power loss.
The relay's checkpoints over 100 ms are counted too (docs/relay.md "Checkpoints").

    .venv/bin/python benchmarks/browser_typing_bench.py [--rounds 2] [--paced 25] [--burst 12]
        [--synchronous full]

Needs the built labextension (``make labextension``) and Chromium (``make browser``). On a
machine where others rebuild the extension, measure a copy taken under the build lock:
``flock /tmp/team/build.lock cp -r secsync_jupyter/labextension /tmp/ext`` and
``SECSYNC_E2E_EXTENSION_DIR=/tmp/ext`` (tests/e2e/helpers.py); ``SECSYNC_E2E_LAB_ARGS`` is
extended with the relay's ``synchronous`` setting.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.helpers import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    NB,
    TOKEN,
    _focus_end_of_cell,
    _lab_session,
    _new_page,
    _share_with,
    _wait_app,
    _wait_cell_text,
    _with_token,
    notebook_json,
)
from tests.e2e.test_browser import INIT_SCRIPT  # noqa: E402

# WebSocket send / receive timestamps (secsync relay and stock collaboration rooms), the time
# each message handler of the secsync client took, and long tasks.
PROBE = r"""
(() => {
  const now = () => performance.timeOrigin + performance.now();
  window.__ws = [];
  window.__lt = [];
  try {
    new PerformanceObserver(l => { for (const e of l.getEntries()) {
      window.__lt.push([performance.timeOrigin + e.startTime, e.duration]); } })
      .observe({type: 'longtask', buffered: true});
  } catch (e) {}
  const info = (d) => {
    if (typeof d !== 'string') {
      let u = null;
      if (d instanceof ArrayBuffer) { u = new Uint8Array(d); }
      else if (ArrayBuffer.isView(d)) { u = new Uint8Array(d.buffer, d.byteOffset, d.byteLength); }
      if (!u) { return ['bin', -1]; }
      return [u[0] === 0 && u[1] === 2 ? 'y-update' : 'y-other', -1];
    }
    const m = /"type":"([^"]+)"/.exec(d.slice(0, 200));
    const type = m ? m[1] : (d.includes('"refSnapshotId"') ? 'update-out' : 'other-out');
    const c = /"clock":(\d+)/.exec(d);
    return [type, c ? Number(c[1]) : -1];
  };
  const Orig = window.WebSocket;
  const watched = (url) => /\/secsync\/|\/collaboration\/room/.test(String(url));
  class W extends Orig {
    constructor(url, p) {
      super(url, p);
      this.__w = watched(url);
      if (this.__w) {
        this.addEventListener('message', ev => {
          const [t, c] = info(ev.data); window.__ws.push([now(), 'in', t, c, 0]);
        });
      }
    }
    send(d) {
      if (this.__w) { const [t, c] = info(d); window.__ws.push([now(), 'out', t, c, 0]); }
      return super.send(d);
    }
  }
  const desc = Object.getOwnPropertyDescriptor(Orig.prototype, 'onmessage');
  Object.defineProperty(W.prototype, 'onmessage', {
    get() { return desc.get.call(this); },
    set(fn) {
      if (!this.__w || typeof fn !== 'function') { desc.set.call(this, fn); return; }
      desc.set.call(this, (ev) => {
        const t = now(); const r = fn.call(this, ev);
        const [ty, c] = info(ev.data);
        window.__ws.push([t, 'handled', ty, c, now() - t]);
        return r;
      });
    }
  });
  window.WebSocket = W;
})();
"""

SLOW_LOG = re.compile(
    r"\[W (\S+ \S+) ServerApp\.secsync_relay\] slow write transaction: .* (\d+) ms commit"
)
SLOW_CHECKPOINT_LOG = re.compile(
    r"\[W (\S+ \S+) ServerApp\.secsync_relay\] slow checkpoint: (\d+) ms"
)


def _p(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def _fmt(values: list[float]) -> str:
    if not values:
        return "     -/     -"
    return f"{statistics.median(values):6.1f}/{_p(values, 0.9):6.1f}"


def _stages(t0: float, visible: float, wa: list, wb: list) -> dict:
    """The stages of the keystroke at t0 from the pages' WebSocket logs."""
    out: dict = {"visible": visible - t0}
    sent = next(
        (e for e in wa if e[1] == "out" and e[2] in ("update-out", "y-update") and e[0] >= t0 - 1),
        None,
    )
    if sent is None:
        return out
    out["sent"] = sent[0] - t0
    if sent[2] == "y-update":  # stock: the first document update B gets after A sent it
        match = [e for e in wb if e[2] == "y-update" and e[0] >= sent[0]]
    else:
        match = [e for e in wb if e[2] == "update" and e[3] == sent[3]]
        ack = next(
            (e for e in wa if e[1] == "in" and e[2] == "update-saved" and e[3] >= sent[3]), None
        )
        if ack is not None:
            out["ack"] = ack[0] - t0
    recv = next((e for e in match if e[1] == "in"), None)
    handled = next((e for e in match if e[1] == "handled"), None)
    if recv is not None:
        out["received"] = recv[0] - t0
    if handled is not None:
        out["handled"] = handled[4]
    return out


def measure(a, b, label: str, rnd: int, paced: int, burst: int) -> dict[str, list[dict]]:
    """Typing A -> B on the notebook open in both; per series, the stages of each sample."""
    out: dict[str, list[dict]] = {}
    _focus_end_of_cell(a, 0)
    for series, delay, samples in (("paced", 40, paced), ("burst", 0, burst)):
        rows = []
        for i in range(samples):
            marker = f" k{label[0]}{series[0]}{rnd}{i:02d}q"
            name = f"{series}-{label}-{rnd}-{i}"
            for page in (a, b):
                page.evaluate("() => { window.__ws.length = 0; window.__lt.length = 0; }")
            b.evaluate(
                "([s, m, n]) => window.__watchText(s, m, n)", [f"{NB} .jp-Cell", marker, name]
            )
            a.keyboard.type(marker, delay=delay)
            t0 = a.evaluate(
                "() => { const ks = window.__lat.keys.filter(x => x[0] === 'q');"
                " return ks[ks.length - 1][1]; }"
            )
            deadline = time.monotonic() + 30
            visible = None
            while visible is None and time.monotonic() < deadline:
                visible = b.evaluate("(n) => window.__lat.results[n]", name)
                if visible is None:
                    time.sleep(0.01)
            if visible is None:
                raise RuntimeError(f"{name}: not seen in B within 30 s")
            wa, wb = a.evaluate("() => window.__ws"), b.evaluate("() => window.__ws")
            row = _stages(t0, visible, wa, wb)
            row["longtasks"] = sum(
                1
                for lt in a.evaluate("() => window.__lt") + b.evaluate("() => window.__lt")
                if lt[0] + lt[1] >= t0 - 100 and lt[0] <= visible
            )
            rows.append(row)
            time.sleep(0.05)
        out[series] = rows
    return out


def _create_plain(lab) -> None:
    lab.api(
        "PUT",
        "api/contents/plain.ipynb",
        {"type": "notebook", "format": "json", "content": notebook_json("x = 'plaincanary'", "")},
    )


def _show(page, path: str) -> None:
    """Open `path` in `page`, or bring its tab to the front."""
    page.evaluate(
        "async (p) => { await window.jupyterapp.commands.execute('docmanager:open', {path: p}); }",
        path,
    )


def run_lab(args, synchronous: str, results: dict, loads: list) -> tuple[list[int], list[int]]:
    """One lab with the relay in `synchronous` mode; returns the slow commits and the slow
    checkpoints (ms) it logged."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="typing-browser-"))
    extra = os.environ.get("SECSYNC_E2E_LAB_ARGS", "")
    os.environ["SECSYNC_E2E_LAB_ARGS"] = (
        f"{extra} --SecsyncRelayExtension.synchronous={synchronous}"
    )
    try:
        return _run_lab(args, base, synchronous, results, loads)
    finally:
        os.environ["SECSYNC_E2E_LAB_ARGS"] = extra


def _run_lab(
    args, base: pathlib.Path, synchronous: str, results: dict, loads: list
) -> tuple[list[int], list[int]]:
    from playwright.sync_api import sync_playwright

    with _lab_session(base, artifact_prefix="typing-bench") as lab, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        logs: list[str] = []
        _, a = _new_page(browser, "A", logs, init_script=INIT_SCRIPT + PROBE)
        _, b = _new_page(browser, "B", logs, init_script=INIT_SCRIPT + PROBE)
        a.goto(f"{lab.url}lab/workspaces/a?token={TOKEN}")
        _wait_app(a)
        a.click("#jp-MainMenu >> text=Encryption")
        a.click(".lm-Menu-content >> text=New Encrypted Notebook")
        a.wait_for_selector(f"{NB} .jp-Cell .cm-content", timeout=30_000)
        a.wait_for_selector(".jp-secsync-StatusItem[data-state='synced']", timeout=30_000)
        secnb = next(p.name for p in lab.root.glob("*.secnb"))
        _focus_end_of_cell(a, 0)
        a.keyboard.type("x = 'canary'")
        link = _share_with(lab, a, b)
        b.goto(_with_token(link))
        _wait_app(b)
        _wait_cell_text(b, 0, "canary", timeout=60_000)
        _create_plain(lab)
        for r in range(args.rounds):
            order = ("encrypted", "stock") if r % 2 == 0 else ("stock", "encrypted")
            for kind in order:
                for page in (a, b):  # both stay open; the measured one in front
                    _show(page, "plain.ipynb" if kind == "stock" else secnb)
                    _wait_cell_text(page, 0, "plaincanary" if kind == "stock" else "canary", 60_000)
                b.wait_for_timeout(1000)
                loads.append(os.getloadavg()[0])
                got = measure(a, b, kind, r, args.paced, args.burst)
                for series, rows in got.items():
                    results.setdefault((synchronous, kind, series), []).extend(rows)
        browser.close()
        log = (base / "lab.log").read_text(errors="replace")
    return (
        [int(m.group(2)) for m in SLOW_LOG.finditer(log)],
        [int(m.group(2)) for m in SLOW_CHECKPOINT_LOG.finditer(log)],
    )


def report(results: dict, loads: list, slow: dict) -> None:
    print(
        f"load average (1 min) during the runs: {min(loads):.1f}-{max(loads):.1f}"
        f" on {os.cpu_count()} cores"
    )
    for sync, (commits, checkpoints) in slow.items():
        print(
            f"relay synchronous={sync}: {len(commits)} write transactions over 100 ms"
            + (f" (commit up to {max(commits)} ms)" if commits else "")
            + f", {len(checkpoints)} checkpoints over 100 ms"
            + (f" (up to {max(checkpoints)} ms)" if checkpoints else "")
        )
    print("\nA's screen -> B's screen, ms after the last key, p50/p90 (n samples)")
    print(f"{'relay':8} {'series':6} {'encrypted':>13} {'stock':>13} {'ratio p50/p90':>14}")
    syncs = sorted({k[0] for k in results})
    for sync in syncs:
        for series in ("paced", "burst"):
            enc = [r["visible"] for r in results.get((sync, "encrypted", series), [])]
            stock = [r["visible"] for r in results.get((sync, "stock", series), [])]
            if not enc or not stock:
                continue
            r50 = statistics.median(enc) / statistics.median(stock)
            ratio = f"{r50:.2f}/{_p(enc, 0.9) / _p(stock, 0.9):.2f}"
            print(
                f"{sync:8} {series:6} {_fmt(enc):>13} {_fmt(stock):>13} {ratio:>14}"
                f"   (n={len(enc)}/{len(stock)})"
            )
    print("\nStages, ms after the last key, p50/p90 (handled: duration of B's handler)")
    print(
        f"{'relay':8} {'notebook':9} {'series':6} "
        + " ".join(f"{k:>13}" for k in ("sent", "ack", "received", "handled", "visible"))
    )
    for (sync, kind, series), rows in sorted(results.items()):
        cols = [
            _fmt([r[k] for r in rows if k in r])
            for k in ("sent", "ack", "received", "handled", "visible")
        ]
        print(f"{sync:8} {kind:9} {series:6} " + " ".join(f"{c:>13}" for c in cols))
    print(
        "\nSlow keystrokes (over twice the stock median of the series),"
        " by the stage they waited in longest"
    )
    for (sync, kind, series), rows in sorted(results.items()):
        stock = [r["visible"] for r in results.get((sync, "stock", series), [])]
        if not stock:
            continue
        limit = 2 * statistics.median(stock)
        where = {"A": 0, "server": 0, "B": 0, "?": 0}
        with_longtask = 0
        slow_rows = [r for r in rows if r["visible"] > limit]
        for r in slow_rows:
            if "sent" not in r or "received" not in r:
                where["?"] += 1
                continue
            spans = {
                "A": r["sent"],
                "server": r["received"] - r["sent"],
                "B": r["visible"] - r["received"],
            }
            where[max(spans, key=spans.get)] += 1
            with_longtask += r["longtasks"] > 0
        print(
            f"{sync:8} {kind:9} {series:6} over {limit:5.1f} ms:"
            f" {len(slow_rows):2} of {len(rows):2}"
            f"  A {where['A']}, server {where['server']}, B {where['B']}, unknown {where['?']};"
            f" {with_longtask} with a long task (>50 ms) in a page"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--paced", type=int, default=25)
    parser.add_argument("--burst", type=int, default=12)
    parser.add_argument("--synchronous", default="full", help="relay SQLite modes, comma-separated")
    args = parser.parse_args()
    results: dict = {}
    loads: list[float] = []
    slow: dict[str, tuple[list[int], list[int]]] = {}
    print(os.popen("uptime").read().strip())
    for sync in args.synchronous.split(","):
        slow[sync] = run_lab(args, sync, results, loads)
    print(os.popen("uptime").read().strip())
    report(results, loads, slow)


if __name__ == "__main__":
    main()

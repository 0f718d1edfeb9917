"""Key rotation in a real browser (issue 12 goal: rotation for 100 members ≤ 200 ms in the
browser), next to the same code on node in the same run.

    .venv/bin/python benchmarks/browser_rotation_bench.py [--members 100] [--runs 30]
                                                          [--warmup 5] [--no-relay]

benchmarks/browser/rotation_entry.ts imports the labextension's own code (src/secsync:
membership.ts builds a log of one admin adding ``--members`` − 1 editors with fixed seeds,
as membership_bench.rotation_state; lockbox.ts ``createRotation``; libsodium-wrappers from
labextension/node_modules) and is bundled into one IIFE by esbuild (``npx esbuild@0.24.0``,
cached in a temporary directory by the entry's and the sources' modification times). The
bundle is loaded into a blank page of headless Chromium (Debian's /usr/bin/chromium through
Playwright, never a downloaded browser) and, built for node, run by ``node`` in the same run.

Rows (ms, after ``--warmup`` untimed runs): ``createRotation`` on the verified state — a fresh
key, one sealed box per member, the lockbox-set hash, key check and signed ``rotate-key`` — and,
unless ``--no-relay``, the browser client's whole rotation through our standalone relay on
loopback (SQLite, ``--open``): ``client.rotateKey()`` until saved, then the new epoch's
snapshot until saved (``synced()``). Prints min / median / p90 and ``uptime``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.server
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import threading

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
LABEXT = REPO / "labextension"
ENTRY = HERE / "browser" / "rotation_entry.ts"
sys.path.insert(0, str(HERE))

CHROMIUM = os.environ.get("SECSYNC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ESBUILD = "esbuild@0.24.0"
#: page.evaluate has no timeout of its own: a stuck run fails after 10 minutes
_RACE = (
    "Promise.race([%s, "
    "new Promise((_, no) => setTimeout(() => no(new Error('timed out')), 600000))])"
)
WITHIN = "([n, r, w]) => " + _RACE
WITHIN_RELAY = "([b, n, r, w]) => " + _RACE


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def bundle(platform: str) -> pathlib.Path:
    """The entry bundled into one IIFE (``platform`` browser or node), cached by the
    modification times of the entry and the labextension's sources."""
    sources = [ENTRY, *sorted((LABEXT / "src" / "secsync").rglob("*.ts"))]
    stamp = hashlib.sha256(
        "".join(f"{p}:{p.stat().st_mtime_ns};" for p in sources).encode() + platform.encode()
    ).hexdigest()[:16]
    cache = pathlib.Path(tempfile.gettempdir()) / "secsync-rotation-bench"
    cache.mkdir(exist_ok=True)
    out = cache / f"rotation-{platform}-{stamp}.js"
    if not out.exists():
        tmp = out.with_suffix(f".{os.getpid()}.tmp.js")
        subprocess.run(
            [
                "npx",
                "--yes",
                ESBUILD,
                str(ENTRY),
                "--bundle",
                "--format=iife",
                f"--platform={platform}",
                "--log-level=error",
                f"--outfile={tmp}",
            ],
            cwd=LABEXT,
            # the entry lives outside labextension/: its own imports (yjs) resolve there too
            env={**os.environ, "NODE_PATH": str(LABEXT / "node_modules")},
            check=True,
            timeout=600,
        )
        tmp.replace(out)
    return out


@contextlib.contextmanager
def page_server(script: pathlib.Path):
    """A loopback HTTP server for a blank page with the bundle: Chromium's local-network-access
    checks block a page of about:blank from our relay's loopback WebSocket, one served from
    loopback may use it (as JupyterLab served from localhost does)."""
    body = b"<!doctype html><meta charset=utf-8><title>rotation bench</title>"
    js = script.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            data, kind = (
                (js, "text/javascript") if self.path == "/bundle.js" else (body, "text/html")
            )
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def on_node(js: pathlib.Path, call: str) -> list[float]:
    """``call`` (a promise of the times) after loading the node bundle. Node 20 has no global
    WebSocket: the labextension's ``ws`` stands in (as in membership_bench)."""
    ws = json.dumps(str(LABEXT / "node_modules" / "ws"))
    script = (
        f"globalThis.WebSocket ??= require({ws});\n"
        f"require({json.dumps(str(js))});\n"
        f"{call}.then((t) => console.log(JSON.stringify(t)))"
    )
    out = subprocess.run(
        ["node", "-e", script], capture_output=True, text=True, timeout=1200, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"node failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def row(label: str, ms: list[float]) -> None:
    p90 = statistics.quantiles(ms, n=10)[-1] if len(ms) > 1 else ms[0]
    print(
        f"{label:<52} min {min(ms):7.1f}  median {statistics.median(ms):7.1f}  "
        f"p90 {p90:7.1f} ms  (n={len(ms)})",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=100)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--no-relay", action="store_true", help="skip the rotation via our relay")
    args = ap.parse_args(argv)
    n, runs, warm = args.members, args.runs, args.warmup
    browser_js, node_js = bundle("browser"), bundle("node")
    print("uptime:", uptime(), flush=True)

    from playwright.sync_api import sync_playwright

    relay = None
    tmp = tempfile.TemporaryDirectory()
    try:
        base = None
        if not args.no_relay:
            from link_join_bench import start_relay

            relay, base = start_relay(pathlib.Path(tmp.name))
        with page_server(browser_js) as origin, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.set_default_timeout(600_000)
                page.goto(f"{origin}/")
                page.add_script_tag(url=f"{origin}/bundle.js")
                version = browser.version
                chrome = page.evaluate(WITHIN % "rotationBench.rotation(n, r, w)", [n, runs, warm])
                chrome_relay = None
                if base:
                    chrome_relay = page.evaluate(
                        WITHIN_RELAY % "rotationBench.rotationViaRelay(b, n, r, w)",
                        [base, n, runs, warm],
                    )
            finally:
                browser.close()
        node = on_node(node_js, f"rotationBench.rotation({n}, {runs}, {warm})")
        node_relay = None
        if base:
            node_relay = on_node(
                node_js, f"rotationBench.rotationViaRelay({json.dumps(base)}, {n}, {runs}, {warm})"
            )
    finally:
        if relay is not None:
            relay.terminate()
            relay.wait(timeout=10)
        tmp.cleanup()

    node_version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout
    print(f"Chromium {version} (headless), node {node_version.strip()}; {n} members")
    row(f"createRotation, Chromium, {n} members", chrome)
    row(f"createRotation, node, {n} members", node)
    if chrome_relay:
        row("client.rotateKey() + snapshot via relay, Chromium", chrome_relay)
    if node_relay:
        row("client.rotateKey() + snapshot via relay, node", node_relay)
    med = statistics.median(chrome)
    print(
        f"goal: rotation for {n} members <= 200 ms in the browser: Chromium createRotation "
        f"median {med:.1f} ms"
        + (
            f", whole rotation via our relay median {statistics.median(chrome_relay):.1f} ms"
            if chrome_relay
            else ""
        )
    )
    print("uptime:", uptime())
    return 0


if __name__ == "__main__":
    sys.exit(main())

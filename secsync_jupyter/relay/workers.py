"""``secsync-relay --processes N``: N relay processes on one port and one PostgreSQL database.

The parent migrates the database (as a single relay does), reserves the port, then starts N
workers: the same command with ``--processes 1 --port PORT --reuse-port``. Each worker is a
complete relay; they listen on one port with ``SO_REUSEPORT``, so the kernel spreads new
connections over the workers that are listening (Linux: by a hash of the connection's
addresses). Their clients see each other's messages through the database
(:mod:`.fanout`). A worker that dies (a crash, SIGKILL, the OOM killer) stops getting new
connections at once; its clients reconnect, to the others, and resume in delta mode; the
parent starts a new worker (after 1 s, at most one restart per second). SIGTERM / SIGINT to the
parent: every worker finishes its writes in flight and closes its connections (1001), as a
single relay does, then the parent exits. In Hub mode (``--auth hub``) the workers share the
service's cookie signing key (``SECSYNC_RELAY_COOKIE_SECRET``, or one made at start).

Only with a PostgreSQL store: SQLite has no fan-out (workers on one SQLite file would not see
each other's messages live).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time

log = logging.getLogger("secsync_jupyter.relay.workers")

#: hub.py's cookie signing key (hex), shared by the workers
COOKIE_SECRET_ENV = "SECSYNC_RELAY_COOKIE_SECRET"

#: seconds between two restarts of a worker
RESTART_DELAY = 1.0


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound (not listening) to ``host:port`` with ``SO_REUSEPORT``: the port (a free
    one for 0) stays this relay's while its workers come and go."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((host, port))
    return s


def supervise(argv: list[str], args: argparse.Namespace) -> int:
    """Run ``args.processes`` workers of the command ``argv`` until SIGTERM / SIGINT."""
    try:
        reserved = reserve_port(args.host, args.port)
    except OSError as exc:
        print(
            f"secsync-relay: error: cannot listen on {args.host}:{args.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 1
    port = reserved.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "secsync_jupyter.relay.standalone",
        *argv,
        "--processes",
        "1",
        "--host",
        args.host,
        "--port",
        str(port),
        "--reuse-port",
    ]
    stopping = False
    # in Hub mode the workers sign the service's OAuth cookies with one key (an OAuth dance
    # may start on one worker and end on another): the configured one, else one per start
    env = dict(os.environ)
    env.setdefault(COOKIE_SECRET_ENV, secrets.token_hex(32))

    def start() -> subprocess.Popen | None:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if "listening on" not in line:
            proc.wait()
            return None
        log.info("worker %d listening on port %d", proc.pid, port)
        if stopping:  # SIGTERM came while it started
            proc.send_signal(signal.SIGTERM)
        return proc

    def stop(_sig=None, _frame=None) -> None:
        nonlocal stopping
        stopping = True
        for w in workers:
            if w is not None and w.poll() is None:
                w.send_signal(signal.SIGTERM)

    workers: list[subprocess.Popen | None] = []
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(args.processes):
        w = start()
        if w is None:
            stop()
            print("secsync-relay: error: a worker did not start (see above)", file=sys.stderr)
            return 1
        workers.append(w)
    host = f"[{args.host}]" if ":" in args.host else args.host
    base = "/" + args.base_path.strip("/") if args.base_path.strip("/") else ""
    log.info("%d workers on port %d (pids %s)", len(workers), port, [w.pid for w in workers])
    print(
        f"secsync-relay listening on ws://{host}:{port}{base} ({len(workers)} processes)",
        flush=True,
    )
    last_restart = 0.0
    while True:
        if stopping:
            for w in workers:
                if w is not None:
                    w.wait()
            break
        for i, w in enumerate(workers):
            if w is not None and w.poll() is None:
                continue
            if w is not None:
                log.warning("worker %d exited (%s); starting another", w.pid, w.returncode)
                workers[i] = None
            if time.monotonic() - last_restart >= RESTART_DELAY:
                last_restart = time.monotonic()
                workers[i] = start()
        time.sleep(0.2)
    reserved.close()
    return 0

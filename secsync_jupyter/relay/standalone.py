"""``secsync-relay``: the relay without Jupyter.

An asyncio server that speaks WebSocket through the sans-I/O protocol of the ``websockets``
package (handshake, framing, ping/pong, close) and the shared relay core. Outgoing frames are
queued per connection and written once per event-loop turn; a broadcast frame is encoded once
and the same bytes are written to every connection.

URL: ``ws://HOST:PORT[/BASE]/<docId>?sessionKey=…&mode=…&knownSnapshotId=…&knownSnapshotUpdateClocks=…``
exactly as the reference client builds it. ``GET /health`` answers ``ok``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Iterable

from websockets.exceptions import PayloadTooBig
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from . import config, query
from .admission import CLOSE_GOING_AWAY, CLOSE_TRY_AGAIN, document_error
from .core import Relay
from .hub import HubConfigError, HubDecision, HubServiceAuth, service_address
from .outbox import (
    CLOSE_SLOW_CONSUMER,
    HIGH_WATER,
    LOW_WATER,
    SLOW_CONSUMER_CLOSE_TIMEOUT,
    SLOW_CONSUMER_REASON,
)
from .policy import AllowedAuthorsPolicy, Identity
from .room import spawn
from .session import Session
from .store import StoreError, redact_url
from .transport import RelayConnection

log = logging.getLogger("secsync_jupyter.relay.standalone")

_ws_log = logging.getLogger("secsync_jupyter.relay.websocket")
_ws_log.setLevel(logging.WARNING)

CLOSE_TIMEOUT = 5.0
#: keep-alive defaults (seconds): a ping every PING_INTERVAL to every connection; one whose
#: pong has not come back PING_TIMEOUT after its ping is closed (1011) and dropped
PING_INTERVAL = 20.0
PING_TIMEOUT = 20.0
CLOSE_KEEPALIVE = 1011
OP_TEXT, OP_BINARY, OP_CONT, OP_PONG = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.PONG


class WebSocketConnection(RelayConnection, asyncio.Protocol):
    """One TCP connection: HTTP upgrade, then WebSocket frames to and from a relay session."""

    relay_log = log

    def __init__(self, server: StandaloneRelay):
        self.server = server
        self.transport: asyncio.Transport | None = None
        limits = server.relay.limits
        self.ws = ServerProtocol(max_size=limits.max_frame_bytes, logger=_ws_log)
        self.session: Session | None = None
        self._joining = False
        self._early: list[tuple[bool, bytes]] = []
        self._loop = asyncio.get_running_loop()
        self.start_outbox(limits.max_send_buffer_bytes)
        self._closed = False
        self._fragments: list[bytes] = []
        self._fragment_opcode = None
        self._told_too_big = False
        #: loop time of the unanswered keep-alive ping (None: no ping outstanding)
        self._ping_sent: float | None = None
        self._ping_data = b""

    # ---------------------------------------------------------------- asyncio callbacks
    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
        server = self.server
        #: over the relay's connection cap: answered with a refusal, then closed
        self._over_cap = not server.relay.admission.connection_allowed(len(server.connections))
        server.connections.add(self)
        #: a connection that does not complete its handshake in time is dropped
        self._handshake_timer: asyncio.TimerHandle | None = self._loop.call_later(
            server.relay.limits.handshake_timeout, self._handshake_expired
        )

    def _handshake_expired(self) -> None:
        self._handshake_timer = None
        log.debug("dropping a connection that did not complete its WebSocket handshake in time")
        self._abort()

    def data_received(self, data: bytes) -> None:
        self.ws.receive_data(data)
        self._process_events()

    def eof_received(self):
        self.ws.receive_eof()
        self._process_events()
        return None

    def connection_lost(self, exc) -> None:
        self._closed = True
        self.outbox.discard()
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        self.server.connections.discard(self)
        if self.session is not None:
            self.session.on_close()

    def pause_writing(self) -> None:
        self.outbox.pause()

    def resume_writing(self) -> None:
        self.outbox.resume()

    # ---------------------------------------------------------------- events
    def _process_events(self) -> None:
        ws = self.ws
        for event in ws.events_received():
            if isinstance(event, Request):
                self._handshake(event)
            elif isinstance(event, Frame):
                self._frame(event)
        if isinstance(ws.parser_exc, PayloadTooBig) and not self._told_too_big:
            self._told_too_big = True
            self.outbox.send(self.frame_too_large(self.server.relay.limits.max_frame_bytes))
        self._write_protocol_data()

    def _write_protocol_data(self, close_timeout: float = CLOSE_TIMEOUT) -> None:
        """Write what the WebSocket protocol has to send (pongs, pings, the close frame).
        Control frames go between whole frames, so the outbox keeps its queue, except before
        the close frame: everything queued goes first, nothing after."""
        data = self.ws.data_to_send()
        if not data:
            return
        if self.ws.state is not OPEN:
            self.outbox.finish()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        eof = False
        for chunk in data:
            if chunk:
                transport.write(chunk)
            else:
                eof = True
        if eof:
            transport.close()
        elif self.ws.close_expected():
            self._loop.call_later(close_timeout, self._abort)

    def _abort(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def _handshake(self, request: Request) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        server = self.server
        ws = self.ws
        path, _, query = request.path.partition("?")
        if "upgrade" not in request.headers.get("Connection", "").lower():
            if self._over_cap:
                response = ws.reject(503, "too many connections\n")
            elif path == "/health":
                response = ws.reject(200, "ok\n")
            elif server.hub is not None and server.hub.handles(path):
                spawn(self._http(request))  # the Hub's OAuth routes (hub.py)
                return
            else:
                response = ws.reject(404, "not found: connect with a WebSocket to /<docId>\n")
            ws.send_response(response)
            return
        if not path.startswith(server.base_path):
            ws.send_response(ws.reject(404, "not found\n"))
            return
        doc_id = path[len(server.base_path) :]
        if server.hub is not None:  # ask the Hub first (hub.py), then go on in _accept
            self._joining = True
            if self.transport is not None:
                self.transport.pause_reading()
            spawn(self._hub_handshake(request, doc_id, query))
            return
        self._accept(request, doc_id, query, server.authenticate(query))

    async def _hub_handshake(self, request: Request, doc_id: str, query_string: str) -> None:
        try:
            decision = await self.server.hub.authenticate(request, query_string)
        except Exception:
            log.exception("Hub authentication failed")
            decision = HubDecision(500, reason="internal error\n")
        self._joining = False
        if self._closed:
            return
        if self.transport is not None:
            self.transport.resume_reading()
        if decision.status:
            log.info("refused a Hub connection to %s: %s", doc_id, decision.reason.strip())
            self.ws.send_response(self.ws.reject(decision.status, decision.reason))
            self._write_protocol_data()
            return
        log.info("Hub user %s connected to %s (%s)", decision.user, doc_id, decision.via)
        identity = Identity(decision.user, session_key=query.session_key(query_string))
        self._accept(request, doc_id, query_string, identity)

    async def _http(self, request: Request) -> None:
        response = await self.server.hub.respond(self.ws, request)
        if self._closed:
            return
        self.ws.send_response(response)
        self._write_protocol_data()

    def _accept(self, request: Request, doc_id: str, query: str, identity) -> None:
        server = self.server
        ws = self.ws
        response = ws.accept(request)
        ws.send_response(response)
        if response.status_code != 101:
            return
        self._write_protocol_data()  # the 101 response goes before any frame
        if self._over_cap:
            limit = server.relay.limits.max_connections
            document_error(
                self,
                CLOSE_TRY_AGAIN,
                "too many connections",
                "too-many-connections",
                message=f"the relay has the maximum number of connections ({limit})",
            )
            return
        self._joining = True
        if self.transport is not None:
            self.transport.pause_reading()
        spawn(self._join(doc_id, query, identity))

    async def _join(self, doc_id: str, query: str, identity: Identity | None) -> None:
        try:
            session = await self.server.relay.connect(
                self, doc_id, query, identity, require_session_key=True
            )
        except Exception:
            log.exception("connect failed")
            session = None
            self.close(1011, "internal error")
        self._joining = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()  # also to read the close handshake when refused
        if session is None:
            self._early = []
            return
        if self._closed:
            session.on_close()
            return
        self.session = session
        early, self._early = self._early, []
        for text, data in early:
            self.deliver(text, data)

    def keepalive(self, now: float, timeout: float) -> None:
        """Called every ping interval: ping, or drop the connection when the last ping went
        unanswered for ``timeout`` seconds (a dead peer, or a cut TCP path)."""
        if self._closed or self.ws.state is not OPEN:
            return
        if self._ping_sent is not None:
            if now - self._ping_sent >= timeout:
                log.info("closing a connection that did not answer a ping for %.0f s", timeout)
                self.close(CLOSE_KEEPALIVE, "keepalive ping timeout")
                self._abort()
            return
        self._ping_sent = now
        self._ping_data = os.urandom(4)
        self.ws.send_ping(self._ping_data)
        self._write_protocol_data()

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is OP_PONG:
            if frame.data == self._ping_data:
                self._ping_sent = None
            return
        if opcode is OP_TEXT or opcode is OP_BINARY:
            if not frame.fin:
                self._fragment_opcode = opcode
                self._fragments = [frame.data]
                return
            self._message(opcode is OP_TEXT, frame.data)
        elif opcode is OP_CONT:
            self._fragments.append(frame.data)
            if frame.fin:
                data = b"".join(self._fragments)
                self._fragments = []
                self._message(self._fragment_opcode is OP_TEXT, data)

    def _message(self, text: bool, data: bytes) -> None:
        if self.session is None:
            if self._joining:
                self._early.append((text, data))
            return
        self.deliver(text, data)

    # ---------------------------------------------------------------- transport
    def _ws_write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _ws_open(self) -> bool:
        return self.ws.state is OPEN

    def _ws_close_slow_consumer(self) -> None:
        self.ws.send_close(CLOSE_SLOW_CONSUMER, SLOW_CONSUMER_REASON)
        self._write_protocol_data(SLOW_CONSUMER_CLOSE_TIMEOUT)

    def close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        if self.ws.state is OPEN:
            self.ws.send_close(code, reason)
            self._write_protocol_data()
        elif self.transport is not None:
            self.outbox.finish()
            self.transport.close()

    def is_closed(self) -> bool:
        return self._closed or self.ws.state is not OPEN


class StandaloneRelay:
    """The standalone server: a :class:`Relay` behind an asyncio WebSocket listener."""

    def __init__(
        self,
        relay: Relay,
        *,
        session_keys: Iterable[str] | None = None,
        open_access: bool = False,
        base_path: str = "/",
        ping_interval: float | None = PING_INTERVAL,
        ping_timeout: float = PING_TIMEOUT,
        hub: HubServiceAuth | None = None,
    ):
        if session_keys is None and not open_access and hub is None:
            raise ValueError("give session_keys, open_access=True or hub")
        #: JupyterHub service authentication (hub.py); then the base path is the service prefix
        self.hub = hub
        if hub is not None:
            base_path = hub.prefix
        #: seconds between keep-alive pings (None or 0: no pings)
        self.ping_interval = ping_interval or None
        self.ping_timeout = ping_timeout
        self._keepalive: asyncio.TimerHandle | None = None
        self.relay = relay
        self.session_keys = None if open_access else frozenset(session_keys or ())
        self.base_path = "/" + base_path.strip("/") + "/" if base_path.strip("/") else "/"
        self.connections: set[WebSocketConnection] = set()
        self._server: asyncio.base_events.Server | None = None

    def authenticate(self, query_string: str) -> Identity | None:
        key = query.session_key(query_string)
        if key is None:
            return Identity("anonymous")  # the core answers document-error (missing sessionKey)
        if self.session_keys is not None and key not in self.session_keys:
            return None
        return Identity("session", session_key=key)

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        """Open the store and listen; returns the bound port (``reuse_port``: shared with the
        other workers of ``--processes``)."""
        await self.relay.start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: WebSocketConnection(self), host, port, reuse_address=True, reuse_port=reuse_port
        )
        if self.ping_interval:
            self._keepalive = loop.call_later(self.ping_interval, self._ping_all)
        return self._server.sockets[0].getsockname()[1]

    def _ping_all(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for conn in list(self.connections):
            conn.keepalive(now, self.ping_timeout)
        assert self.ping_interval
        self._keepalive = loop.call_later(self.ping_interval, self._ping_all)

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop listening, finish in-flight writes, close every connection with 1001."""
        if self._server is not None:
            self._server.close()
        if self._keepalive is not None:
            self._keepalive.cancel()
        await self.relay.stop(close_store=False)
        for conn in list(self.connections):
            conn.close(CLOSE_GOING_AWAY, "relay shutting down")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn._abort()
        await self.relay.store.close()


def load_session_keys(path: str) -> list[str]:
    """One accepted session key per line; blank lines and lines starting with # are ignored."""
    with open(path, encoding="utf-8") as f:
        keys = [line.strip() for line in f]
    return [k for k in keys if k and not k.startswith("#")]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="secsync-relay",
        description=(
            "Blind Secsync relay: stores and forwards end-to-end encrypted snapshots and "
            "updates (SQLite), never sees a document key. Clients connect to "
            "ws://HOST:PORT/<docId>?sessionKey=KEY."
        ),
        epilog="See docs/relay.md for the storage schema, limits, policies and backups.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help="TCP port, 0 for any free one (default: 8765; --auth hub: JUPYTERHUB_SERVICE_URL's)",
    )
    auth = p.add_mutually_exclusive_group()
    auth.add_argument(
        "--session-keys",
        metavar="FILE",
        help="accept only the sessionKey values listed in FILE (one per line)",
    )
    auth.add_argument(
        "--open",
        action="store_true",
        help="accept any sessionKey (the query parameter is still required)",
    )
    p.add_argument(
        "--auth",
        choices=["hub"],
        help="hub: run as a JupyterHub service; every WebSocket is authenticated with the Hub "
        "(token or the service's OAuth cookie, access scope access:services!service=NAME); "
        "address and URL prefix come from the Hub's environment (docs/deployment.md)",
    )
    p.add_argument(
        "--base-path", default="/", help="URL path before /<docId> (default: %(default)s)"
    )
    config.add_arguments(p)  # limits, store, durability, access policy: config.py
    p.add_argument(
        "--ping-interval",
        type=float,
        default=PING_INTERVAL,
        metavar="SECONDS",
        help="send a WebSocket ping to every connection this often, so that idle connections "
        "survive proxies and dead peers are noticed; 0 disables (default: %(default)s)",
    )
    p.add_argument(
        "--ping-timeout",
        type=float,
        default=PING_TIMEOUT,
        metavar="SECONDS",
        help="close (1011) and drop a connection whose pong has not arrived this long after "
        "the ping (default: %(default)s)",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="run N relay processes on one port (SO_REUSEPORT: the kernel spreads connections) "
        "and one PostgreSQL store (--db postgresql://…), restarted when one dies "
        "(default: %(default)s; docs/relay.md 'Fan-out across relay processes')",
    )
    p.add_argument(
        "--reuse-port",
        action="store_true",
        help="listen with SO_REUSEPORT (what --processes gives its workers)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log level on stderr (default: %(default)s)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    limits, options = config.from_args(p, args)
    if args.ping_interval < 0:
        p.error("--ping-interval must be 0 (off) or more")
    if args.ping_timeout <= 0:
        p.error("--ping-timeout must be more than 0")
    if args.auth is None and not (args.open or args.session_keys):
        p.error("one of the arguments --session-keys --open is required (or --auth hub)")
    if args.auth is not None and (args.open or args.session_keys):
        p.error("--auth hub authenticates with the Hub: no --open or --session-keys with it")
    hub = None
    if args.auth == "hub":
        try:
            hub = HubServiceAuth()
        except (HubConfigError, ImportError) as exc:
            p.error(str(exc))
        host, port = service_address()
        if args.port is None and port is not None:
            args.port = port
        if host is not None and args.host == p.get_default("host"):
            args.host = host
    if args.port is None:
        args.port = 8765
    if not 0 <= args.port <= 65535:
        p.error("--port must be between 0 and 65535")
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    keys = None
    if args.session_keys:
        try:
            keys = load_session_keys(args.session_keys)
        except OSError as exc:
            p.error(f"cannot read --session-keys {args.session_keys}: {exc.strerror}")
        if not keys:
            p.error(f"--session-keys {args.session_keys} lists no key")
    if options.access_policy == AllowedAuthorsPolicy.name and not options.allowed_authors_file:
        p.error("--policy allowed-authors needs --allowed-authors FILE")
    try:
        policy = config.build_policy(options)
    except (OSError, ValueError, TypeError, ImportError, AttributeError) as exc:
        p.error(f"cannot build the access policy: {exc}")
    try:
        store = config.open_store(options)
    except ValueError as exc:
        p.error(f"--store: {exc}")
    if args.processes < 1:
        p.error("--processes must be at least 1")
    if args.processes > 1 and type(store).__name__ != "PostgresStore":
        p.error("--processes needs a PostgreSQL store (--db postgresql://…): fan-out")
    try:
        store.open_sync()
    except StoreError as exc:
        print(f"secsync-relay: error: {exc}", file=sys.stderr)
        return 1
    if args.processes > 1:  # workers.py: this command N times on one port
        from .workers import supervise

        return supervise(sys.argv[1:] if argv is None else argv, args)
    try:
        retention = config.parse_retention(options.retention)
        return asyncio.run(_serve(args, store, policy, limits, keys, hub, retention))
    except KeyboardInterrupt:
        return 0


async def _serve(args, store, policy, limits, keys, hub=None, retention=None) -> int:
    relay = Relay(store, policy, limits, retention=retention)
    server = StandaloneRelay(
        relay,
        session_keys=keys,
        open_access=args.open,
        base_path=args.base_path,
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
        hub=hub,
    )
    try:
        port = await server.start(args.host, args.port, reuse_port=args.reuse_port)
    except OSError as exc:
        print(
            f"secsync-relay: error: cannot listen on {args.host}:{args.port}: {exc.strerror}",
            file=sys.stderr,
        )
        await store.close()
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    host = f"[{args.host}]" if ":" in args.host else args.host
    log.info(
        "listening on ws://%s:%d%s<docId> (store %s, pid %d)",
        host,
        port,
        server.base_path,
        redact_url(config.store_url(config.RelayOptions(store=args.store, db=args.db))),
        os.getpid(),
    )
    print(
        f"secsync-relay listening on ws://{host}:{port}{server.base_path.rstrip('/')}", flush=True
    )
    await stop.wait()
    log.info("shutting down: finishing in-flight writes")
    await server.stop()
    log.info("stopped")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The relay inside Jupyter Server: the ``secsync_jupyter`` server extension.

* ``<base_url>secsync/<docId>`` — the relay WebSocket (reference query parameters; ``sessionKey``
  is optional here, Jupyter's login authenticates). Requires a Jupyter login (cookie + XSRF as
  JupyterLab sends it, or a token) and Jupyter's authorizer: ``read`` on resource ``secsync`` to
  connect, ``write`` to send snapshots, updates and ephemeral messages.
* ``<base_url>secsync/open/<docId>[?relay=…]`` — share-link landing page: redirects to
  ``<base_url>lab?secsync-doc=<docId>[&secsync-relay=…]`` (the key stays in the URL fragment,
  which the browser keeps across the redirect and never sends).

Configuration (``jupyter server --SecsyncRelayExtension.db_path=…`` or a config file):
see docs/relay.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
from functools import partial
from urllib.parse import urlencode

from jupyter_core.paths import jupyter_data_dir
from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketHandler, WebSocketProtocol13
from traitlets import Bool, default

from ..protocol import DOC_ID_PATTERN, is_doc_id
from . import config, query
from .core import Relay
from .outbox import (
    CLOSE_SLOW_CONSUMER,
    HIGH_WATER,
    LOW_WATER,
    SLOW_CONSUMER_CLOSE_TIMEOUT,
    SLOW_CONSUMER_REASON,
)
from .policy import AccessPolicy, Identity
from .store import redact_url
from .transport import RelayConnection

AUTH_RESOURCE = "secsync"


class SecsyncRelayExtension(ExtensionApp):
    """End-to-end encrypted collaboration: the blind Secsync relay inside Jupyter Server."""

    name = "secsync_jupyter"
    description = "Blind Secsync relay for end-to-end encrypted notebooks"
    load_other_extensions = True

    # limits, store, durability and access policy: the one table of config.py
    locals().update(config.jupyter_traits())
    enabled = Bool(True, config=True, help="Serve the relay endpoints.")

    @default("db_path")
    def _default_db_path(self) -> str:
        return os.path.join(jupyter_data_dir(), "secsync", "relay.sqlite")

    def make_policy(self) -> AccessPolicy:
        return config.build_policy(config.from_traits(self)[1])

    def initialize_settings(self) -> None:
        if not self.enabled:
            return
        limits, options = config.from_traits(self)
        log = relay_log(self.serverapp.log)
        if not options.store and "://" not in options.db:  # a file path, not a store URL
            os.makedirs(os.path.dirname(os.path.abspath(options.db)), exist_ok=True)
        store = config.open_store(options, log=log)
        store.open_sync()  # a bad path fails the server start with a clear StoreError
        self.relay = Relay(
            store,
            config.build_policy(options),
            limits,
            log=log,
            retention=config.parse_retention(options.retention),
        )
        self._relay_started: asyncio.Future | None = None
        self.settings["secsync_relay_extension"] = self
        self.log.info("Secsync relay: store %s", redact_url(config.store_url(options)))

    def initialize_handlers(self) -> None:
        if not self.enabled:
            return
        self.handlers.extend(
            [
                (rf"/secsync/open/({DOC_ID_PATTERN})", OpenDocumentHandler),
                (r"/secsync/([^/]+)", RelayWebSocketHandler),
            ]
        )

    async def get_relay(self) -> Relay:
        if self._relay_started is None:
            self._relay_started = asyncio.ensure_future(self.relay.start())
        await asyncio.shield(self._relay_started)
        return self.relay

    async def stop_extension(self) -> None:
        relay = getattr(self, "relay", None)
        if relay is not None:
            await relay.stop()


def relay_log(server_log: logging.Logger | logging.LoggerAdapter) -> logging.Logger:
    """The relay's logger inside Jupyter Server: a child of the server app's log, so that its
    records get Jupyter's handlers and format (level, timestamp, name)."""
    parent = getattr(server_log, "logger", server_log)
    return logging.getLogger(f"{parent.name}.secsync_relay")


class OpenDocumentHandler(JupyterHandler):
    """``GET <base_url>secsync/open/<docId>[?relay=ws(s)://…]`` → JupyterLab with the document."""

    auth_resource = AUTH_RESOURCE

    @web.authenticated
    @authorized
    def get(self, doc_id: str) -> None:
        params = {"secsync-doc": doc_id}
        relay = self.get_argument("relay", None)
        if relay:
            if not relay.startswith(("ws://", "wss://")) or len(relay) > 2048:
                raise web.HTTPError(400, "relay must be a ws:// or wss:// URL")
            params["secsync-relay"] = relay
        self.redirect(url_path_join(self.base_url, "lab") + "?" + urlencode(params))


def _tornado_protocol_hooks_available() -> bool:
    """Whether this tornado has the (private) protocol internals :class:`RelayProtocol`
    builds on (tornado 6.x); without them the stock protocol is used."""
    return all(
        callable(getattr(WebSocketProtocol13, name, None))
        for name in ("_handle_message", "_run_callback", "_write_frame", "close")
    )


class RelayProtocol(WebSocketProtocol13):
    """Tornado's RFC 6455 protocol with the relay's answers to two kinds of bad input.

    * A text frame that is not UTF-8: stock tornado drops the TCP connection without a close
      frame; here the session answers ``invalid-utf8`` and the connection stays open, as in the
      standalone relay.
    * A frame over ``max_message_size``: tornado closes with 1009 before reading the payload;
      here the ``frame-too-large`` error frame goes out first (then the same 1009 close).
    """

    def _handle_message(self, opcode: int, data: bytes):
        if opcode in (0x1, 0x2) and not getattr(self, "_frame_compressed", True):
            if self.client_terminated:
                return None
            return self._run_callback(self.handler.deliver, opcode == 0x1, data)
        return super()._handle_message(opcode, data)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if code == 1009 and not self.server_terminated and self.stream is not None:
            handler = self.handler
            if handler.outbox is not None:
                handler.outbox.finish()  # what is queued goes before the answer and the close
            try:
                self.stream.write(handler.frame_too_large(self.params.max_message_size))
            except Exception:  # the stream is gone: nothing to tell
                pass
        super().close(code, reason)
        if code == CLOSE_SLOW_CONSUMER and self._waiting is not None:
            # a slow consumer gets longer than tornado's 5 s to read up to the close frame
            loop = self.stream.io_loop
            loop.remove_timeout(self._waiting)
            self._waiting = loop.add_timeout(loop.time() + SLOW_CONSUMER_CLOSE_TIMEOUT, self._abort)


class RelayWebSocketHandler(WebSocketMixin, WebSocketHandler, JupyterHandler, RelayConnection):
    """The relay WebSocket; also the core's :class:`~.core.Transport` (see
    :class:`~.transport.RelayConnection`). Frames are written to tornado's stream as whole
    frames, so tornado's own control frames (pings, close) fall between them."""

    auth_resource = AUTH_RESOURCE
    _can_write = False
    #: bytes handed to tornado's stream and not yet written to the socket
    _in_stream = 0

    def set_default_headers(self) -> None:
        """No JupyterHandler default headers on a WebSocket upgrade."""

    def get_compression_options(self):
        return None  # frames are ciphertext: compression would only cost CPU

    @property
    def extension(self) -> SecsyncRelayExtension:
        return self.settings["secsync_relay_extension"]

    @property
    def relay_log(self) -> logging.Logger:  # type: ignore[override]
        return self.extension.relay.log

    @property
    def max_message_size(self) -> int:  # tornado closes with 1009 above this
        return self.extension.relay.limits.max_frame_bytes

    def get_websocket_protocol(self):
        protocol = super().get_websocket_protocol()
        if type(protocol) is WebSocketProtocol13 and _tornado_protocol_hooks_available():
            protocol.__class__ = RelayProtocol
        return protocol

    @ws_authenticated
    async def get(self, doc_id: str, *args, **kwargs):
        user = self.current_user
        if not await ensure_async(self.authorizer.is_authorized(self, user, "read", AUTH_RESOURCE)):
            raise web.HTTPError(403)
        self._can_write = bool(
            await ensure_async(self.authorizer.is_authorized(self, user, "write", AUTH_RESOURCE))
        )
        if not is_doc_id(doc_id):
            raise web.HTTPError(404, "invalid document id")
        return await super().get(doc_id, *args, **kwargs)

    async def open(self, doc_id: str, *args, **kwargs) -> None:  # type: ignore[override]
        super().open()  # WebSocketMixin: keep-alive pings
        user = self.current_user
        identity = Identity(
            getattr(user, "username", None) or str(user),
            session_key=query.session_key(self.request.query),
            can_write=self._can_write,
        )
        relay = await self.extension.get_relay()
        self.start_outbox(relay.limits.max_send_buffer_bytes)
        self.session = await relay.connect(self, doc_id, self.request.query, identity)

    def on_message(self, message) -> None:
        """Messages tornado decoded itself (when :class:`RelayProtocol` is not in use)."""
        session = self.session
        if session is None:
            return
        if isinstance(message, bytes):
            session.on_binary(message)
        else:
            session.on_text(message)

    def on_close(self) -> None:
        if self.outbox is not None:
            self.outbox.discard()
        if self.session is not None:
            self.session.on_close()

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if self.outbox is not None:
            self.outbox.finish()  # what is queued goes before the close frame
        WebSocketHandler.close(self, code, reason)

    def is_closed(self) -> bool:
        return self.ws_connection is None or self.ws_connection.is_closing()

    # -- RelayConnection
    def _ws_write(self, data: bytes) -> None:
        ws = self.ws_connection
        if ws is None or ws.is_closing():
            return
        try:
            written = ws.stream.write(data)
        except StreamClosedError:
            return
        self._in_stream += len(data)
        if self._in_stream > HIGH_WATER and self.outbox is not None:
            self.outbox.pause()
        written.add_done_callback(partial(self._written, len(data)))

    def _written(self, size: int, future) -> None:
        if not future.cancelled():
            future.exception()  # a peer that left is not an error (nothing to log)
        self._in_stream -= size
        outbox = self.outbox
        if outbox is not None and outbox.paused and self._in_stream <= LOW_WATER:
            outbox.resume()

    def _ws_open(self) -> bool:
        return not self.is_closed()

    def _ws_close_slow_consumer(self) -> None:
        WebSocketHandler.close(self, CLOSE_SLOW_CONSUMER, SLOW_CONSUMER_REASON)

"""Slow and many clients: limits on what one connection may hold, and on how many there are.

uvicorn (with httptools, as `serve` runs it) bounds none of these: a client
may send headers or a body one byte a minute, connect and send nothing at
all, send a megabyte of headers or ten thousand of them, and open
connections until the process runs out of file descriptors — after which
the apiserver cannot connect either. Its own `limit_concurrency` only answers
503 to requests that arrive over the limit; the connections stay open.

`limited_protocol(limits)` is uvicorn's httptools protocol with:

* **a header deadline** (`header_timeout`): from the moment a connection is
  made, or a request's first byte arrives on a kept-alive one, its request
  line and headers must be complete within that many seconds, else `408`
  and the connection is closed. A connection that never sends is closed
  too;
* **a body deadline** (`body_timeout`): from the end of the headers the
  whole body must arrive within that many seconds, else `408` and close (the
  handler waiting for the body sees a disconnect and is ended quietly, see
  `quiet_disconnects`);
* **header limits**: at most `max_headers` header fields and
  `max_header_bytes` bytes of request target plus header names and values,
  else `431` and close, before the request reaches the app;
* **a connection cap** (`max_connections`): a connection over the cap first
  evicts the longest-idle kept-alive connection (one that has waited at
  least `EVICT_AFTER_IDLE` between requests, which its client reopens at no
  cost); if none is, the new connection is closed at once. Every connection costs a file descriptor:
  the default cap stays below the process's descriptor limit, leaving room
  for the ledger, the policy files and the apiserver's connections.

The deadlines are checked by one sweep per event loop, every `SWEEP_EVERY`
seconds, so a deadline may fire up to that much late: a timer per request
cost a heap push and a cancel twice per request on the hot path, where a
connection now only stamps when its deadline falls due.

Each limit is a `serve` flag. The deadlines are what bound the cap's
weakness: a flood of slow connections can fill it, but each lasts at most
`header_timeout` + `body_timeout`; only mutual TLS (or a NetworkPolicy)
keeps strangers from connecting at all.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import weakref
from dataclasses import dataclass
from typing import Any

import httptools
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from quotalang.server.clientauth import OPEN_PATHS, ClientAuth, unauthorized

LOG = logging.getLogger("quotalang.server")

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 10.0  # the apiserver's default webhook timeout: past it nobody waits for the answer
DEFAULT_MAX_HEADERS = 100
DEFAULT_MAX_HEADER_BYTES = 32 * 1024
DESCRIPTOR_RESERVE = 64  # kept free for everything else the process opens
# Only a connection idle this long is evicted: a busy client (the apiserver) is idle for milliseconds
# between requests, and a flood of new connections must not be able to cut it off.
EVICT_AFTER_IDLE = 1.0
# How late a deadline may fire: 2.5 % of the default ones; a sweep of 1,000 connections takes ~0.2 ms, so four
# a second cost under a millisecond a second.
SWEEP_EVERY = 0.25


def default_max_connections() -> int:
    """1,000, or fewer when the descriptor limit is lower: the limit minus a reserve (at least 16)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1000
    return max(16, min(1000, soft - DESCRIPTOR_RESERVE))


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    max_headers: int = DEFAULT_MAX_HEADERS
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_connections: int = 1000


def _response(status: bytes, message: str) -> bytes:
    body = message.encode()
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
    )


REFUSAL_LOG_EVERY = 5.0  # seconds: a flood of connections must not become a flood of log lines
_refusals: dict[str, list[float]] = {}  # what -> [count since the last line, when it was logged]


def _note_refusal(what: str, now: float, detail: str) -> None:
    counted = _refusals.setdefault(what, [0, -1e9])
    counted[0] += 1
    if now - counted[1] >= REFUSAL_LOG_EVERY:
        LOG.warning("refused %d %s(s): %s", counted[0], what, detail)
        counted[0], counted[1] = 0, now


class _Sweep:
    """The deadline check of one event loop: every SWEEP_EVERY seconds while it has connections open.

    It keeps a set of its own rather than uvicorn's `connections`, which is
    per server: `serve` runs the admission and API servers on one loop. It
    holds them weakly and not the loop, so that a loop's entry in `_sweeps`
    goes with the loop (tests run many), and stops once the last has gone.
    """

    def __init__(self) -> None:
        self.connections: weakref.WeakSet[LimitedProtocol] = weakref.WeakSet()
        self.running = False

    def watch(self, connection: LimitedProtocol) -> None:
        self.connections.add(connection)
        if not self.running:
            self.running = True
            connection.loop.call_later(SWEEP_EVERY, self.sweep, connection.loop)

    def sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for connection in list(self.connections):
            if connection._due is not None and connection._due <= now:
                connection._expired(connection._waiting_for)
        self.running = bool(self.connections)
        if self.running:
            loop.call_later(SWEEP_EVERY, self.sweep, loop)


_sweeps: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Sweep] = weakref.WeakKeyDictionary()


def _sweep_of(loop: asyncio.AbstractEventLoop) -> _Sweep:
    sweep = _sweeps.get(loop)
    if sweep is None:
        sweep = _sweeps[loop] = _Sweep()
    return sweep


class _Refused(Exception):
    """Raised inside a parser callback to stop httptools feeding the rest of the data."""


class LimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of the module docstring (set by `limited_protocol`)."""

    limits = ConnectionLimits()
    client_auth: ClientAuth | None = None  # mutual TLS (server/clientauth.py)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._due: float | None = None  # loop.time() past which the sweep answers 408; None: nothing due
        self._waiting_for = "the request headers"
        self._header_count = 0
        self._header_bytes = 0
        self._refused = False
        self._idle_since: float | None = None  # between requests on a kept-alive connection: since when
        self._client_problem: str | None = None  # why this connection may not call protected paths

    # --------------------------------------------------------------- cap
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections and not self._evict_idle():
            self._refused = True
            _note_refusal("connection", self.loop.time(),
                          f"{len(self.connections) - 1} open, the --max-connections cap")
            transport.abort()  # no answer: writing one would cost what the cap saves
            return
        if self.client_auth is not None:
            self._client_problem = self.client_auth.problem(transport.get_extra_info("peercert"))
        self._arm(self.limits.header_timeout, "the request headers")
        _sweep_of(self.loop).watch(self)

    def _evict_idle(self) -> bool:
        settled = self.loop.time() - EVICT_AFTER_IDLE
        idle = [c for c in self.connections
                if isinstance(c, LimitedProtocol) and c._idle_since is not None and c._idle_since <= settled]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c._idle_since or 0.0)
        oldest.transport.close()
        self.connections.discard(oldest)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._due = None
        _sweep_of(self.loop).connections.discard(self)
        super().connection_lost(exc)

    # --------------------------------------------------------- deadlines
    def _arm(self, seconds: float, what: str) -> None:
        self._due = self.loop.time() + seconds
        self._waiting_for = what

    def _expired(self, what: str) -> None:
        self._due = None
        if self.transport.is_closing():
            return
        self._refuse(b"408 Request Timeout", f"{what} did not arrive in time")

    def _refuse(self, status: bytes, message: str) -> None:
        """Answer `status` and close, unless the app has started answering (then just close)."""
        self._refused = True
        self._due = None
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(_response(status, message))
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        """uvicorn's, except that a request refused here (431) is not also logged and answered as a bad one."""
        if self._refused:
            return
        self._idle_since = None
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:  # our _Refused arrives wrapped as a parser callback error
            if not self._refused:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    # ---------------------------------------------------- parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = self._header_bytes = 0
        if self._due is None:  # the first request's deadline runs from the connection
            self._arm(self.limits.header_timeout, "the request headers")

    def on_url(self, url: bytes) -> None:
        self._count(len(url), 0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value), 1)
        super().on_header(name, value)

    def _count(self, size: int, fields: int) -> None:
        self._header_bytes += size
        self._header_count += fields
        if self._header_count > self.limits.max_headers:
            self._refuse(b"431 Request Header Fields Too Large",
                         f"more than {self.limits.max_headers} header fields")
            raise _Refused
        if self._header_bytes > self.limits.max_header_bytes:
            self._refuse(b"431 Request Header Fields Too Large",
                         f"request target and headers over {self.limits.max_header_bytes} bytes")
            raise _Refused

    def on_headers_complete(self) -> None:
        if self._client_problem is not None and httptools.parse_url(self.url).path.decode() not in OPEN_PATHS:
            self._refused = True
            self._due = None
            _note_refusal("unauthenticated request", self.loop.time(), self._client_problem)
            self.transport.write(unauthorized(self._client_problem))
            self.transport.close()
            raise _Refused  # the app never sees it
        self._arm(self.limits.body_timeout, "the request body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._due = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._idle_since = self.loop.time()


def limited_protocol(limits: ConnectionLimits, client_auth: ClientAuth | None = None) -> type[LimitedProtocol]:
    """A protocol class for `uvicorn.Config(http=...)` with these limits (and mutual TLS, if given)."""
    return type("LimitedHttpToolsProtocol", (LimitedProtocol,), {"limits": limits, "client_auth": client_auth})


def quiet_disconnects(app: ASGIApp) -> ASGIApp:
    """End a handler whose client went away (a deadline closed it) without an error log.

    Starlette raises `ClientDisconnect` into the handler reading the body;
    uvicorn would log it as "Exception in ASGI application" — a log line per
    slow client, for whoever sends them.
    """

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await app(scope, receive, send)
        except ClientDisconnect:
            return

    return wrapped


__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_MAX_HEADERS",
    "DEFAULT_MAX_HEADER_BYTES",
    "EVICT_AFTER_IDLE",
    "SWEEP_EVERY",
    "ConnectionLimits",
    "LimitedProtocol",
    "default_max_connections",
    "limited_protocol",
    "quiet_disconnects",
]

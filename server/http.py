"""The HTTP plumbing both ports share: JSON answers, Status errors, bounded bodies, the 500 handler.

The admission app (`app`), the API app (`api`) and the namespaces webhook
(`exemptions`) answer the same way; keeping these few functions here is what
makes a 413, a 400 `Status` or a logged-but-never-shown internal error look
the same on every route.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from quotalang.server.admission import BadReview, too_large
from quotalang.server.logs import log_event
from quotalang.server.responses import status_body

JSON = "application/json"


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON)


def error_response(status: int, message: str) -> Response:
    """A Kubernetes `Status` naming the problem."""
    return Response(status_body(status, message), status_code=status, media_type=JSON)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) as soon as it is known to be over `limit` bytes."""
    body = await receive_body(request.scope, request.receive, limit)
    if body is None:
        raise ClientDisconnect
    return body


async def receive_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """`read_body` for a raw ASGI endpoint: None if the client went away first."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                size = int(value)
            except ValueError:
                raise BadReview(f"Content-Length {value.decode('latin-1')!r} is not a number",
                                reason="invalid") from None
            if size > limit:
                raise too_large(size, limit)
            break
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            raise too_large(received, limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_json(send: Send, status: int, body: bytes) -> None:
    """A raw ASGI endpoint's whole answer: what `Response(body, status, media_type=JSON)` sends."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def _host_of(header: str) -> str:
    """The host of a `Host` header, without its port (`[::1]:8444` → `::1`), lower-cased."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def host_allowed(header: str, names: frozenset[str]) -> bool:
    """A `Host` a browser can only send for this server: an IP literal, a loopback name, or one of `names`.

    DNS rebinding points a name the attacker owns at this server; the browser
    then sends that name as `Host`. An IP literal cannot be rebound (its origin
    is the address itself), so only names need to be known.
    """
    host = _host_of(header)
    if host in LOOPBACK_NAMES or host in names:
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class HostCheck:
    """ASGI middleware: a request whose `Host` is not this server's is a 421, before anything reads it."""

    def __init__(self, app: ASGIApp, names: Iterable[str]) -> None:
        self.app = app
        self.names = frozenset(n.strip().lower().rstrip(".") for n in names if n.strip())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
            if not host_allowed(header.rstrip("."), self.names):
                body = status_body(421, f"Host {header[:100]!r} is not served here: use an address of this "
                                        "server, or name it with serve --api-hostname")
                await send_json(send, 421, body)
                return
        await self.app(scope, receive, send)


def internal_error(log: logging.Logger, path: str, exc: Exception) -> bytes:
    """A bug: logged with its detail; the answer (a 500 `Status`) names the exception's type only."""
    log_event(log, logging.ERROR, "internal error", path=path, error=f"{type(exc).__name__}: {exc}")
    return status_body(500, f"internal error: {type(exc).__name__}")


def internal_error_handler(log: logging.Logger) -> Callable[[Request, Exception], Awaitable[Response]]:
    """A bug is logged with its detail and answered 500 with the exception's type only: no traceback."""

    async def handler(request: Request, exc: Exception) -> Response:
        return Response(internal_error(log, request.url.path, exc), status_code=500, media_type=JSON)

    return handler

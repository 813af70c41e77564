"""The HTTP plumbing both ports share: JSON answers, Status errors, bounded bodies, the 500 handler.

The admission app (`app`), the API app (`api`) and the namespaces webhook
(`exemptions`) answer the same way; keeping these few functions here is what
makes a 413, a 400 `Status` or a logged-but-never-shown internal error look
the same on every route.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

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
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BadReview(f"Content-Length {declared!r} is not a number", reason="invalid") from None
        if size > limit:
            raise too_large(size, limit)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large(received, limit)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def internal_error_handler(log: logging.Logger) -> Callable[[Request, Exception], Awaitable[Response]]:
    """A bug is logged with its detail and answered 500 with the exception's type only: no traceback."""

    async def internal_error(request: Request, exc: Exception) -> Response:
        error = f"{type(exc).__name__}: {exc}"
        log_event(log, logging.ERROR, "internal error", path=request.url.path, error=error)
        return error_response(500, f"internal error: {type(exc).__name__}")

    return internal_error

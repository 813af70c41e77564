"""Slow and many clients: each limit of server/limits.py against a real uvicorn on 127.0.0.1, over raw sockets.

The deadlines are short here (0.4 s) so that the tests are quick; the
clients are raw sockets because an HTTP client will not send half a request.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from quotalang.server import limits
from quotalang.server.cli import build_parser
from quotalang.server.limits import (
    EVICT_AFTER_IDLE,
    SWEEP_EVERY,
    ConnectionLimits,
    default_max_connections,
    limited_protocol,
    quiet_disconnects,
)

FAST = 0.4
REQUEST = b"POST /validate HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok"


async def echo(request: Request) -> Response:
    return Response(str(len(await request.body())))


APP = Starlette(routes=[Route("/validate", echo, methods=["POST"])])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(**options: float) -> Iterator[int]:
    limits = ConnectionLimits(**{"header_timeout": FAST, "body_timeout": FAST, **options})  # type: ignore[arg-type]
    port = free_port()
    config = uvicorn.Config(quiet_disconnects(APP), host="127.0.0.1", port=port, http=limited_protocol(limits),
                            log_config=None, lifespan="off", timeout_keep_alive=100, loop="asyncio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return sock


def answer(sock: socket.socket) -> bytes:
    """Everything until the server closes (or 5 s pass)."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (ConnectionResetError, TimeoutError):
        pass
    return b"".join(chunks)


def closed(sock: socket.socket) -> bool:
    """Whether the server closed this connection (an open one has nothing to say: the read times out)."""
    sock.settimeout(1)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def one_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = int(next(line.split(b":")[1] for line in lines if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_a_well_behaved_request_passes() -> None:
    with serving() as port, connect(port) as sock:
        sock.sendall(REQUEST)
        assert one_response(sock).startswith(b"HTTP/1.1 200")


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout() -> None:
    with serving() as port, connect(port) as sock:
        began = time.monotonic()
        reply = answer(sock)
        assert reply.startswith(b"HTTP/1.1 408") and b"the request headers did not arrive in time" in reply
        assert FAST <= time.monotonic() - began < FAST + 2


def test_slow_headers_get_408() -> None:
    with serving() as port, connect(port) as sock:
        sock.sendall(b"POST /validate HTTP/1.1\r\nHost: t\r\n")
        time.sleep(FAST / 2)
        sock.sendall(b"X-Slow: 1\r\n")  # still trickling: the deadline counts from the connection, not the byte
        assert answer(sock).startswith(b"HTTP/1.1 408")


def test_a_slow_body_gets_408_and_no_error_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO), serving() as port, connect(port) as sock:
        sock.sendall(b"POST /validate HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
        reply = answer(sock)
        time.sleep(0.1)  # let the handler see the disconnect
    assert reply.startswith(b"HTTP/1.1 408") and b"the request body did not arrive in time" in reply
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_a_kept_alive_connection_gets_a_fresh_header_deadline_per_request() -> None:
    with serving() as port, connect(port) as sock:
        sock.sendall(REQUEST)
        assert one_response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(FAST * 2)  # idle between requests: the keep-alive timeout governs, not the header deadline
        sock.sendall(REQUEST)
        assert one_response(sock).startswith(b"HTTP/1.1 200")


def test_a_kept_alive_connection_schedules_no_timer_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deadlines schedule nothing per request (a timer each cost a heap push and a cancel): only the sweep's."""
    scheduled = 0
    call_at = asyncio.BaseEventLoop.call_at  # call_later goes through it too

    def counting(loop: asyncio.BaseEventLoop, when: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal scheduled
        if getattr(callback, "__module__", None) == limits.__name__:  # not uvicorn's keep-alive or asyncio's own
            scheduled += 1
        return call_at(loop, when, callback, *args, **kwargs)

    monkeypatch.setattr(asyncio.BaseEventLoop, "call_at", counting)
    with serving() as port:
        began = time.monotonic()
        with connect(port) as sock:
            for _ in range(100):
                sock.sendall(REQUEST)
                assert one_response(sock).startswith(b"HTTP/1.1 200")
            counted, elapsed = scheduled, time.monotonic() - began
    assert counted <= 2 + elapsed / SWEEP_EVERY, (counted, elapsed)  # the sweep's, however many requests


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        (b"".join(b"X-%d: a\r\n" % i for i in range(101)), b"more than 100 header fields"),
        (b"X-Big: " + b"a" * 40_000 + b"\r\n", b"request target and headers over 32768 bytes"),
    ],
    ids=["count", "size"],
)
def test_too_many_or_too_large_headers_get_431(
    headers: bytes, message: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with serving() as port, connect(port) as sock:
        sock.sendall(b"POST /validate HTTP/1.1\r\nHost: t\r\n" + headers + b"Content-Length: 2\r\n\r\nok")
        reply = answer(sock)
    assert reply.startswith(b"HTTP/1.1 431") and reply.endswith(message)
    assert "Invalid HTTP request" not in caplog.text  # answered once, as what it is


def test_a_long_url_counts_toward_the_header_bytes() -> None:
    with serving(max_header_bytes=1000) as port, connect(port) as sock:
        sock.sendall(b"POST /validate?" + b"a" * 2000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        assert answer(sock).startswith(b"HTTP/1.1 431")


def test_over_the_cap_the_longest_idle_connection_makes_room() -> None:
    with serving(max_connections=2, header_timeout=30) as port:
        first, second = connect(port), connect(port)
        for sock in (first, second):  # both answered once, now idle between requests
            sock.sendall(REQUEST)
            assert one_response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(EVICT_AFTER_IDLE + 0.1)
        second.sendall(REQUEST)  # busy again: only `first` has been idle long enough to be evicted
        assert one_response(second).startswith(b"HTTP/1.1 200")
        with connect(port) as third:
            third.sendall(REQUEST)
            assert one_response(third).startswith(b"HTTP/1.1 200")
        assert [closed(first), closed(second)] == [True, False]  # the longest idle made room
        first.close()
        second.close()


def test_over_the_cap_with_none_idle_the_new_connection_is_closed() -> None:
    with serving(max_connections=2, header_timeout=30) as port:
        busy = [connect(port), connect(port)]
        for sock in busy:
            sock.sendall(b"POST /validate HTTP/1.1\r\n")  # mid-request: not idle, nothing to evict
        time.sleep(0.1)
        with connect(port) as third:
            third.sendall(REQUEST)
            began = time.monotonic()
            assert answer(third) == b""  # closed at once, unanswered
            assert time.monotonic() - began < 2
        for sock in busy:
            sock.close()


def test_the_default_cap_stays_below_the_descriptor_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _: (256, 4096))
    assert default_max_connections() == 192
    monkeypatch.setattr(resource, "getrlimit", lambda _: (65536, 65536))
    assert default_max_connections() == 1000
    monkeypatch.setattr(resource, "getrlimit", lambda _: (40, 40))
    assert default_max_connections() == 16


def test_every_limit_is_a_serve_flag() -> None:
    args = build_parser().parse_args([
        "serve", "--policy", "p", "--header-timeout", "3", "--body-timeout", "4", "--max-headers", "50",
        "--max-header-bytes", "8192", "--max-connections", "200",
    ])
    assert (args.header_timeout, args.body_timeout, args.max_headers, args.max_header_bytes,
            args.max_connections) == (3.0, 4.0, 50, 8192, 200)
    defaults = build_parser().parse_args(["serve", "--policy", "p"])
    assert (defaults.header_timeout, defaults.body_timeout, defaults.max_headers, defaults.max_header_bytes,
            defaults.max_connections) == (10.0, 10.0, 100, 32768, None)

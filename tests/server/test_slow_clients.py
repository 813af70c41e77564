"""Slow clients holding connections do not slow a well-behaved one: `quotalang serve` as a process, real sockets.

The well-behaved client is what the apiserver is: one kept-alive connection
sending AdmissionReviews one after another. Its latency is measured idle,
then while SLOW_HEADERS connections trickle their headers and SLOW_BODIES
connections trickle a body (a byte per connection every TRICKLE seconds,
each connection held open through the whole measurement: the deadlines are
set longer than the test), then idle again. The assertion: the median
admission latency under the slow clients stays within 2x of the idle
median (of both idle runs together, which bracket the attack, so that the
machine's drift in between counts on both sides). The
figures are printed (`pytest -s`).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson

from quotalang.server.serve import ServeOptions
from tests.server.webhook_helpers import POLICY, deployment, review

ROOT = Path(__file__).resolve().parents[2]
SLOW_HEADERS = 100
SLOW_BODIES = 100
TRICKLE = 0.2
SAMPLES = 400


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def api_args() -> list[str]:
    """A free port for the JSON API once it has one of its own (`--api-port`), so that servers never collide."""
    return ["--api-port", str(free_port())] if "api_port" in ServeOptions.__dataclass_fields__ else []


def latencies(conn: http.client.HTTPConnection, bodies: list[bytes]) -> list[float]:
    out = []
    for body in bodies:
        began = time.perf_counter()
        conn.request("POST", "/validate", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        answer = orjson.loads(response.read())
        out.append(time.perf_counter() - began)
        assert response.status == 200 and answer["response"]["allowed"], answer
    return out


def figures(name: str, values: list[float]) -> str:
    cuts = statistics.quantiles(values, n=100)
    return f"{name:<13} p50 {cuts[49] * 1e3:6.2f} ms  p90 {cuts[89] * 1e3:6.2f} ms  p99 {cuts[98] * 1e3:6.2f} ms"


class SlowClients:
    """SLOW_HEADERS + SLOW_BODIES connections trickling on their own event loop, in a thread."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.open = 0
        self.closed_early = 0
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),), daemon=True)

    async def _one(self, body: bool, opened: list[int]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        if body:
            writer.write(b"POST /validate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000000\r\n\r\n{")
        else:
            writer.write(b"POST /validate HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        await writer.drain()
        self.open += 1
        opened.append(1)
        try:
            while not self.stop.is_set():
                await asyncio.sleep(TRICKLE)
                if reader.at_eof():
                    self.closed_early += 1
                    return
                writer.write(b" " if body else b"a")
                await writer.drain()
        except ConnectionError:
            self.closed_early += 1
        finally:
            self.open -= 1
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _main(self) -> None:
        opened: list[int] = []
        tasks = [asyncio.create_task(self._one(i % 2 == 1, opened)) for i in range(SLOW_HEADERS + SLOW_BODIES)]
        while len(opened) < len(tasks) and not any(t.done() for t in tasks):
            await asyncio.sleep(0.01)
        self.ready.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    def start(self) -> None:
        self.thread.start()
        assert self.ready.wait(30), "the slow clients did not connect"

    def finish(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(timeout=30)
        self.loop.close()


def test_slow_header_and_body_clients_leave_admission_latency_within_2x(tmp_path: Path) -> None:
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "org.quota").write_text(POLICY)
    port = free_port()
    with (tmp_path / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "quotalang.server.cli", "serve", "--policy", str(tmp_path / "policy"),
             "--insecure-http", "--port", str(port), "--state", str(tmp_path / "ledger.sqlite3"), *api_args(),
             "--header-timeout", "300", "--body-timeout", "300", "--log-level", "warning"],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "XDG_STATE_HOME": str(tmp_path)},
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/readyz")
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    break
                conn.close()
            except OSError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.05)
        # Ten Deployments re-submitted in turn: a full decision each (group, usage, check, ledger).
        bodies = [orjson.dumps(review(deployment(f"web-{i % 10}", "ml", cpu="1"))) for i in range(SAMPLES)]
        latencies(conn, bodies[:100])  # warm-up: caches, the ledger's first writes
        before = latencies(conn, bodies)
        slow = SlowClients(port)
        slow.start()
        try:
            time.sleep(1)  # every slow connection has trickled a few times
            under = latencies(conn, bodies)
            held = slow.open
        finally:
            slow.finish()
        after = latencies(conn, bodies)
        conn.close()
    finally:
        process.terminate()
        process.wait(timeout=20)
    idle = statistics.median(before + after)
    print(f"\nslow clients: {SLOW_HEADERS} trickling headers + {SLOW_BODIES} trickling bodies "
          f"(a byte each every {TRICKLE} s), {held} held open during the measurement, {slow.closed_early} closed")
    for name, values in (("idle before", before), ("slow clients", under), ("idle after", after)):
        print(figures(name, values))
    print(f"median under slow clients / idle median: {statistics.median(under) / idle:.2f}x")
    assert held == SLOW_HEADERS + SLOW_BODIES and slow.closed_early == 0  # they really held their connections
    assert statistics.median(under) <= 2 * idle


def test_300_idle_connections_under_a_256_descriptor_limit_leave_admission_working(tmp_path: Path) -> None:
    """The finding of issue 15: with `ulimit -n 256`, 300 connections that send nothing made admission fail."""
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "org.quota").write_text(POLICY)
    port = free_port()

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    with (tmp_path / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "quotalang.server.cli", "serve", "--policy", str(tmp_path / "policy"),
             "--insecure-http", "--port", str(port), "--state", str(tmp_path / "ledger.sqlite3"), *api_args(),
             "--header-timeout", "3"],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "XDG_STATE_HOME": str(tmp_path)},
            preexec_fn=limit,
        )
    idle: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/readyz")
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    break
                conn.close()
            except OSError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.05)
        body = orjson.dumps(review(deployment("web", "ml", cpu="1")))
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(300)]
        time.sleep(0.5)
        assert len(latencies(conn, [body] * 20)) == 20  # the kept-alive client is never cut off
        refused = 0
        for sock in idle:  # over the cap (256 - 64 = 192 connections) they were closed at once
            sock.setblocking(False)
            try:
                refused += sock.recv(1) == b""
            except BlockingIOError:
                pass
            except ConnectionResetError:
                refused += 1
        assert refused >= 300 - 192
        time.sleep(3.5)  # the header deadline closes the rest: room for new clients again
        fresh = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        assert len(latencies(fresh, [body] * 5)) == 5
        fresh.close()
        conn.close()
        print(f"\n300 idle connections, descriptor limit 256: {refused} refused at once, "
              "the kept-alive client answered throughout, new clients again after the header deadline")
        assert process.poll() is None
        assert "refused" in (tmp_path / "serve.log").read_text()
    finally:
        for sock in idle:
            sock.close()
        process.terminate()
        process.wait(timeout=20)

"""kill -9 under load: `quotalang serve` (standalone, SQLite) loses no admitted usage and counts nothing twice.

One server process at a time, on plain HTTP, its ledger in this test's
folder. Eight client threads send CREATE reviews (a fresh Deployment of one
2-cpu pod each, in group `ml`, which may use 40 cpu: twenty fit) and DELETE
reviews of Deployments that were answered allowed (in standalone mode a
DELETE review releases). At a random moment the server is killed with
SIGKILL; it is restarted on the same file, and this repeats (ROUNDS times).

What the test knows of each Deployment is what the clients heard:

* CREATE answered allowed → recorded; answered denied → not recorded;
* DELETE answered → not recorded;
* no answer (the connection died with the server) → unknown: the request may
  have committed before the kill or not.

The assertion after every kill, per Deployment, is exact: the set R the
database holds satisfies `heard_recorded ⊆ R ⊆ heard_recorded ∪ unknown`
and `R ∩ heard_not_recorded = ∅`. So recorded usage is the sum of the
admissions answered allowed (minus the deletions answered) plus the sum of
some subset of the unanswered requests — exactly one of those sums, never
anything else. The unknowns are then settled from R (they are facts now), and
the restarted server must report `used = 2 cpu × |R|` for the group (the
mirror rebuilt from the file agrees with the file) and never more than 40.
"""

from __future__ import annotations

import http.client
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.server.webhook_helpers import POLICY, deployment, review

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 30
THREADS = 8
CPU_EACH = 2  # cpu per Deployment; `ml` may use 40


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.policy = folder / "policy"
        self.policy.mkdir()
        (self.policy / "org.quota").write_text(POLICY)
        self.ledger = folder / "ledger.sqlite3"
        self.port = free_port()
        self.api_port = free_port()  # /api/groups: the API port's
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        started = time.monotonic()
        with (self.folder / "serve.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "quotalang.server.cli", "serve", "--policy", str(self.policy),
                 "--insecure-http", "--host", "127.0.0.1", "--port", str(self.port), "--state", str(self.ledger),
                 "--api-port", str(self.api_port), "--log-level", "warning"],
                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                env={**os.environ, "XDG_STATE_HOME": str(self.folder / "state")},
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited {self.process.returncode}: {self.log_tail()}")
            try:
                if self.get("/readyz")[0] == 200:
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.02)
        raise AssertionError(f"serve did not become ready: {self.log_tail()}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def get(self, path: str, *, api: bool = False) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.api_port if api else self.port, timeout=5)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, orjson.loads(response.read() or b"null")
        finally:
            conn.close()

    def log_tail(self) -> str:
        return (self.folder / "serve.log").read_text(errors="replace")[-2000:]


class Book:
    """What the clients heard, per Deployment name: 'recorded', 'absent' or 'unknown'."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.state: dict[str, str] = {}
        self.busy: set[str] = set()  # a request is in flight for it: no second one
        self.names = iter(range(10**9))
        self.answered = {"allowed": 0, "denied": 0, "deleted": 0, "lost": 0}

    def next_request(self, rng: random.Random) -> tuple[str, str]:
        with self.lock:
            idle = [n for n, s in self.state.items() if s == "recorded" and n not in self.busy]
            if idle and rng.random() < 0.45:
                name = rng.choice(idle)
                operation = "DELETE"
            else:
                name = f"w{next(self.names)}"
                operation = "CREATE"
            self.busy.add(name)
            return operation, name

    def heard(self, operation: str, name: str, allowed: bool | None) -> None:
        with self.lock:
            self.busy.discard(name)
            if allowed is None:
                self.state[name] = "unknown"
                self.answered["lost"] += 1
            elif operation == "DELETE":
                self.state[name] = "absent"
                self.answered["deleted"] += 1
            else:
                self.state[name] = "recorded" if allowed else "absent"
                self.answered["allowed" if allowed else "denied"] += 1


def client(port: int, book: Book, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        while not stop.is_set():
            operation, name = book.next_request(rng)
            obj = deployment(name, "ml", cpu=str(CPU_EACH))
            body = review(obj) if operation == "CREATE" else review(None, "DELETE", old=obj)
            try:
                conn.request("POST", "/validate", orjson.dumps(body), {"Content-Type": "application/json"})
                response = conn.getresponse()
                answer = orjson.loads(response.read())
                assert response.status == 200, answer
                book.heard(operation, name, bool(answer["response"]["allowed"]))
            except (OSError, http.client.HTTPException):
                book.heard(operation, name, None)  # the server died before answering: unknown
                return
    finally:
        conn.close()


def recorded(ledger: Path) -> dict[str, str]:
    """Name → the groups every Deployment the file holds is charged to (read only after the server is dead)."""
    db = sqlite3.connect(ledger)
    try:
        rows = db.execute("SELECT name, held FROM objects WHERE kind = 'Deployment'")
        return {name: ",".join(sorted(orjson.loads(held))) for name, held in rows}
    finally:
        db.close()


def test_kill_9_under_concurrent_admissions_loses_nothing_and_counts_nothing_twice(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("QUOTALANG_CRASH_SEED", "15")))
    server = Server(tmp_path)
    book = Book()
    began = time.monotonic()
    restarts: list[float] = []
    settled = [0, 0]  # unanswered requests found not recorded / recorded after the kill
    try:
        restarts.append(server.start())
        for round_ in range(ROUNDS):
            stop = threading.Event()
            threads = [threading.Thread(target=client, args=(server.port, book, stop, rng.random()), daemon=True)
                       for _ in range(THREADS)]
            for thread in threads:
                thread.start()
            time.sleep(rng.uniform(0.05, 0.6))  # somewhere in the middle of requests
            server.kill()
            stop.set()
            for thread in threads:
                thread.join(timeout=15)
                assert not thread.is_alive()

            held = recorded(server.ledger)
            assert all(group == "ml" for group in held.values())
            with book.lock:
                must = {n for n, s in book.state.items() if s == "recorded"}
                may = {n for n, s in book.state.items() if s == "unknown"}
                never = {n for n, s in book.state.items() if s == "absent"}
                assert must <= held.keys(), f"round {round_}: answered allowed but lost: {sorted(must - held.keys())}"
                assert held.keys() <= must | may, f"round {round_}: recorded but never sent or answered denied"
                assert not held.keys() & never, f"round {round_}: answered denied or deleted, yet recorded"
                for name in may:  # settled: what the file holds is now a fact
                    book.state[name] = "recorded" if name in held else "absent"
                    settled[name in held] += 1
            assert len(held) * CPU_EACH <= 40

            restarts.append(server.start())
            status, group = server.get("/api/groups/ml", api=True)
            assert status == 200
            used = {row["key"]: row["used"] for row in group["limits"]}
            assert used["requests.cpu"] == str(CPU_EACH * len(held)), (round_, used, len(held))
            assert group["objects"] == len(held)
    finally:
        server.stop()
    took = time.monotonic() - began
    print(f"\ncrash test: {ROUNDS} kills in {took:.1f} s; answers heard: {book.answered} "
          f"(of the lost, {settled[1]} had been recorded, {settled[0]} not); "
          f"restart to ready: median {sorted(restarts)[len(restarts) // 2]:.2f} s, max {max(restarts):.2f} s")
    assert book.answered["allowed"] > ROUNDS and book.answered["deleted"] > 0 and book.answered["lost"] > 0


@pytest.mark.parametrize("signum", [signal.SIGTERM])
def test_a_graceful_stop_keeps_the_full_group_full(tmp_path: Path, signum: int) -> None:
    """The finding of issue 15: after a restart a full 40-cpu group admitted another 40."""
    server = Server(tmp_path)
    try:
        server.start()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        for i in range(20):
            conn.request("POST", "/validate", orjson.dumps(review(deployment(f"f{i}", "ml", cpu="2"))))
            assert orjson.loads(conn.getresponse().read())["response"]["allowed"]
        conn.close()
        assert server.process is not None
        server.process.send_signal(signum)
        assert server.process.wait(timeout=20) == 0
        server.start()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("POST", "/validate", orjson.dumps(review(deployment("one-more", "ml", cpu="2"))))
        answer = orjson.loads(conn.getresponse().read())["response"]
        conn.close()
        assert not answer["allowed"]
        assert "used 40 of 40" in answer["status"]["message"]
    finally:
        server.stop()

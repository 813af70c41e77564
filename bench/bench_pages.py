"""The tree page at scale: server-side render time and weight for a 1,000-group policy.

Run: `python bench/bench_pages.py [--groups 1000] [--workloads 5000] [--rounds 20]`.
Prints figures; asserts nothing. The budget (issue 17): the tree page renders
in under 200 ms and weighs under 1 MB.

In one run, on this machine, calling the ASGI app directly (one `asyncio`
loop, no client library, no socket, no TLS: the server's own time to answer):

1. the 1,000-group policy of bench_server.py (root → platforms → teams, every
   key carved, 16 keys and a cash budget per group), with `--workloads`
   Deployments admitted into the memory ledger;
2. GET / (the tree page), GET /pages/tree.json (what the page polls), and two
   baselines measured the same way: GET /api/groups (the JSON API's list of
   the same tree) and `quotalang tree --format json`'s data (`tree_json`, every
   group's rows, serialised with orjson, no HTTP); also what `kubectl get
   quotagroups` asks the aggregated API for (a Table of every group) and the
   subtree sums alone (`usage_below`, once per page);
3. with `--lending`, every platform and team lends all of each key and may
   borrow as much again (`KEY Q lend Q borrow Q`): every row then carries the
   borrowing figures (`quotalang.lent`) and the second bar, the worst case;
4. with `--borrowing` (the --lending policy), usage is set by a resync rather than admitted: every
   other team holds 1.5 × its hard of every key (borrowing half as much again from its ancestors), the
   rest a quarter of it, so that about half the tree's rows draw their borrowing line;
5. the median of `--rounds` requests each, as milliseconds and as ratios to
   the baselines (absolute times drift on a shared machine; ratios in one run
   do not).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from starlette.types import ASGIApp, Message

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_server import generate_policy, workloads  # a sibling script, not a package

from quotalang.compiler import compile_policy
from quotalang.controller import MemoryLedger, ObjectKey
from quotalang.policy import usage_below
from quotalang.server.aggregated import PREFIX as AGGREGATED
from quotalang.server.aggregated import create_aggregated_app
from quotalang.server.api import create_api_app
from quotalang.server.engine import Engine, ask_for
from quotalang.server.pages.views import own_usage
from quotalang.server.reload import PolicyHolder
from quotalang.tree import tree_json


async def asgi_get(app: ASGIApp, path: str, accept: bytes = b"*/*") -> tuple[int, bytes]:
    """GET `path` from the app as a server would call it; the status and the body."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"bench"), (b"accept", accept)], "client": ("127.0.0.1", 1),
             "server": ("bench", 80)}
    status = 0
    chunks: list[bytes] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


def median_ms(run: Callable[[], int], rounds: int) -> tuple[float, int]:
    """Median wall time of `run` in ms, and the size it returned (bytes)."""
    size = run()  # warm: template compile, caches
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        size = run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), size


def lend_everything(path: Path) -> None:
    """Every limit of every group but the root: `KEY Q lend Q borrow Q` (cash never lends)."""
    out, root = [], False
    for line in path.read_text().splitlines():
        if line.startswith("group "):
            root = " in " not in line
        words = line.split()
        if not root and line.startswith("  ") and len(words) == 2 and not words[0].startswith(("cash", "mode")):
            line = f"{line} lend {words[1]} borrow {words[1]}"
        out.append(line)
    path.write_text("\n".join(out) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--workloads", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--lending", action="store_true", help="every group below the root lends and borrows")
    parser.add_argument("--borrowing", action="store_true",
                        help="--lending, and every other team uses 1.5 x its hard (set by a resync, not admitted)")
    args = parser.parse_args()
    args.lending = args.lending or args.borrowing
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as folder:
        teams = generate_policy(Path(folder), args.groups)
        if args.lending:
            lend_everything(Path(folder) / "org.quota")
        policy = compile_policy([folder])
    ledger = MemoryLedger()
    if args.borrowing:
        ledger.resync({team: {ObjectKey("apps", "Deployment", team, "load"): {
            key: hard * (3 if i % 2 == 0 else 1) // (2 if i % 2 == 0 else 4)
            for key, hard in policy.groups[team].hard.items()}} for i, team in enumerate(teams)})
        admitted = 0
    else:
        admitted = sum(ledger.reserve(ask_for(policy, obj, "CREATE")).allowed
                       for obj in workloads(teams, args.workloads))
    holder = PolicyHolder(policy)
    app = create_api_app(holder, ledger, hosts=["bench"])  # the Host asgi_get sends
    aggregated = create_aggregated_app(holder, ledger, Engine(holder, ledger))
    loop = asyncio.new_event_loop()

    def get(path: str, on: ASGIApp = app, accept: bytes = b"*/*") -> Callable[[], int]:
        def run() -> int:
            status, body = loop.run_until_complete(asgi_get(on, path, accept))
            assert status == 200, body[:300]
            return len(body)
        return run

    def core() -> int:
        return len(orjson.dumps(tree_json(policy, ledger)))

    figures = {
        "GET / (tree page)": median_ms(get("/"), args.rounds),
        "GET /pages/tree.json (poll)": median_ms(get("/pages/tree.json"), args.rounds),
        "GET /api/groups (baseline)": median_ms(get("/api/groups"), args.rounds),
        "kubectl get quotagroups (Table)": median_ms(
            get(f"{AGGREGATED}/quotagroups", aggregated, b"application/json;as=Table;v=v1;g=meta.k8s.io"),
            args.rounds),
        "usage_below (subtree sums)": median_ms(lambda: len(usage_below(policy, own_usage(ledger))), args.rounds),
        "tree_json + orjson (baseline)": median_ms(core, args.rounds),
    }
    usage = (f"every other team at 1.5 x its hard, the rest at 0.25 x (a resync of {len(teams)} Deployments)"
             if args.borrowing else f"{admitted} of {args.workloads} Deployments admitted")
    print(f"{len(policy.groups)} groups{' lending and borrowing every key' if args.lending else ''}, {usage}, "
          f"median of {args.rounds} rounds, the ASGI app called directly")
    api_ms, _ = figures["GET /api/groups (baseline)"]
    core_ms, core_size = figures["tree_json + orjson (baseline)"]
    print(f"{'':32} {'ms':>8} {'bytes':>10} {'× api ms':>9} {'× core ms':>10} {'× core bytes':>13}")
    for name, (ms, size) in figures.items():
        print(f"{name:32} {ms:8.1f} {size:10,d} {ms / api_ms:9.2f} {ms / core_ms:10.2f} {size / core_size:13.2f}")
    page_ms, page_size = figures["GET / (tree page)"]
    print(f"tree page: {page_ms:.0f} ms (budget 200 ms: {'within' if page_ms < 200 else 'OVER'}), "
          f"{page_size / 1e6:.2f} MB (budget 1 MB: {'within' if page_size < 1e6 else 'OVER'})")


if __name__ == "__main__":
    main()

"""What the SQLite store costs per admission against the memory store, in one process, no HTTP.

Run: `python bench/bench_ledger.py [--groups 1000] [--workloads 10000] [--rounds 5]`.
Prints figures; asserts nothing.

`bench_server.py` measures the whole webhook, where HTTP, TLS and JSON
dominate and a busy machine adds noise; this measures only what differs
between the stores — `admit` — on the same policy and objects (the server
bench's 1,000-group policy, 10,000 Deployments preloaded). Both stores run
standalone, as `serve` does with no cluster. Three mixes, each per store, in
alternating rounds so that drift hits both alike; the best round is kept:

* `create`: re-submitted CREATEs of admitted Deployments (the server bench's
  default load) — nothing changes, so the SQLite store writes nothing;
* `update`: UPDATEs that flip a Deployment between 1 and 2 replicas — every
  one a change, one SQLite transaction each;
* `new`: CREATEs of fresh names — an insert each (deleted again, untimed,
  after each round).

CPU time (user + system, `time.process_time`) is shown beside wall time: on
a shared machine it is the steadier of the two.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_server import deployment, generate_policy, workloads

from quotalang.compiler import compile_policy
from quotalang.controller.ledger.base import ObjectKey
from quotalang.controller.ledger.memory import MemoryLedger
from quotalang.controller.ledger.sqlite import SqliteLedger
from tests.asks import admit

Store = MemoryLedger | SqliteLedger
Request = tuple[dict[str, Any], str, dict[str, Any] | None]


def requests(objects: list[dict[str, Any]], mix: str, count: int, round_: int) -> list[Request]:
    out: list[Request] = []
    for i in range(count):
        base = objects[(i * 37) % len(objects)]
        if mix == "create":
            out.append((base, "CREATE", None))
        elif mix == "update":
            one, two = (dict(base, spec={**base["spec"], "replicas": n}) for n in (1, 2))
            out.append((two, "UPDATE", one) if i % 2 == 0 else (one, "UPDATE", two))
        else:
            team = base["metadata"]["namespace"]
            out.append((deployment(f"new-{round_}-{i}", team), "CREATE", None))
    return out


def timed(store: Store, policy: Any, batch: list[Request]) -> tuple[float, float, int]:
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    allowed = 0
    for obj, operation, old in batch:
        allowed += admit(store, policy, obj, operation, old=old).allowed
    return time.perf_counter() - wall, time.process_time() - cpu, allowed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--workloads", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=4000, help="per mix and round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="quotalang-bench-ledger-") as tmp:
        folder = Path(tmp)
        (folder / "policy").mkdir()
        teams = generate_policy(folder / "policy", args.groups)
        policy = compile_policy(str(folder / "policy"))
        objects = workloads(teams, args.workloads)
        stores: dict[str, Store] = {"memory": MemoryLedger(), "sqlite": SqliteLedger(folder / "ledger.sqlite3")}
        loaded: dict[str, float] = {}
        for name, store in stores.items():
            started = time.perf_counter()
            for obj in objects:
                admit(store, policy, obj, "CREATE")
            loaded[name] = time.perf_counter() - started
        best: dict[tuple[str, str], tuple[float, float, int]] = {}
        mixes = ("create", "update", "new")
        for round_ in range(args.rounds):
            for mix in mixes:
                batch = requests(objects, mix, args.requests, round_)
                names = list(stores) if round_ % 2 == 0 else list(reversed(stores))
                for name in names:
                    result = timed(stores[name], policy, batch)
                    if mix == "new":  # not timed: take them out again, so that every round starts alike
                        for obj, _, _ in batch:
                            stores[name].forget(ObjectKey.of(obj))
                    if (name, mix) not in best or result[1] < best[name, mix][1]:
                        best[name, mix] = result
        size = (folder / "ledger.sqlite3").stat().st_size
        stores["sqlite"].close()  # type: ignore[union-attr]
    print(f"policy: {len(policy.groups)} groups; {len(objects):,} Deployments preloaded "
          f"(memory {loaded['memory']:.1f} s, sqlite {loaded['sqlite']:.1f} s; database {size / 2**20:.1f} MiB)")
    print(f"{args.requests:,} admissions per mix and round, best of {args.rounds} rounds by CPU time")
    print()
    header = (f"{'mix':<7} | {'memory us/op':>12} {'cpu':>6} | {'sqlite us/op':>12} {'cpu':>6} | "
              f"{'extra us':>8} {'cpu':>6} | allowed")
    print(header)
    print("-" * len(header))
    for mix in mixes:
        m, s = best["memory", mix], best["sqlite", mix]
        n = args.requests
        print(f"{mix:<7} | {m[0] / n * 1e6:>12.1f} {m[1] / n * 1e6:>6.1f} | {s[0] / n * 1e6:>12.1f} "
              f"{s[1] / n * 1e6:>6.1f} | {(s[0] - m[0]) / n * 1e6:>8.1f} {(s[1] - m[1]) / n * 1e6:>6.1f} | "
              f"{m[2]}/{s[2]}")
    print()
    print("extra: what the SQLite store adds to one admission; compare with the webhook's time per request "
          "(bench_server.py: 1 / req/s per core)")
    print(f"machine: shared; Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()

"""Admissions per second and p99 with 1, 2 and 4 clusters registered with one `quotalang serve` (issue 18).

Run: `.venv/bin/python bench/bench_clusters.py [--seconds 10] [--connections 16] [--feed 20] [--rounds 1]
[--stores memory,kubernetes]` (about 4 minutes at the defaults on two cores). Needs etcd + kube-apiserver
(`scripts/provision-kube.sh`, or `$KUBEBUILDER_ASSETS`). Prints figures; asserts nothing, except that
every answer was an allowed AdmissionReview for its uid and that every cluster's observed usage adds up
to its objects: otherwise it prints FAIL and exits 1. Stops by itself; everything listens on 127.0.0.1.

The question: does registering more clusters slow a decision? In one run:

1. four real clusters, c0..c3 (the end-to-end suite's `Cluster`: etcd + kube-apiserver each), started
   once and shared by every setup; c0 is also the kubernetes store's `--ledger-cluster`;
2. per store (`memory`; `kubernetes`: one replica, `--lease-namespace default`), a baseline — the
   single-cluster form, `serve --kubeconfig c0` answering `/validate` — then `serve --cluster c0=...`
   with 1, 2 and 4 clusters registered, each a fresh process (QuotaLedgers and Lease deleted first) that
   lists and watches every registered cluster before it is ready;
3. the load: `--connections` client threads, each with its own keep-alive `http.client` connection to
   the admission port (plain HTTP, `--insecure-http`: TLS costs every setup alike, and the clients share
   the two cores), POSTing AdmissionReviews directly — CREATEs of distinct Deployments (one pod, 10m cpu,
   16 groups, quotas far above a run: nothing is denied) — round-robin over `/validate/cI` of the
   registered clusters, in a closed loop: 2 s warm-up, then `--seconds` measured. The objects are never
   created, so every admission stays reserved until its TTL (30 s), in every setup alike;
4. the watch feed: meanwhile `--feed` Deployments a second in total (10m cpu each) are created for real,
   spread round-robin over the registered clusters (no webhook registered: the hub only watches them), so
   every setup's hub folds the same stream of watch events, from as many clusters as it has.

Per setup: admissions/s and p50/p99 in the measured window; `hub ms`: the hub process's CPU time
(/proc) per admission, whatever else runs on the machine; `× base` / `p99 ×` / `hub ×`: admissions/s,
p99 and hub CPU per admission against the same store's single-cluster baseline in this run (on a shared
machine `hub ×` drifts least: it does not count what other processes take); `check`: every answer allowed with its own
uid, and — after the load, polled for up to 20 s — each cluster's observed usage as `/api/groups` shows
it (summed over the groups; `used − reserved` in the single-cluster form) equal to what its listed
objects hold, computed by hand. With `--rounds N` every setup runs N times, rotating, and the best round
(by admissions/s) is kept, so that a shared machine's drift hits all setups alike.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from bench_server import cpu_seconds  # noqa: E402

from quotalang.quantity import parse_quantity  # noqa: E402
from tests.e2e.kube_cluster import Cluster, assets, free_port, wait_until  # noqa: E402

WARMUP = 2.0
GROUPS = 16
CPU = "10m"
NANOS = 10_000_000  # 10m cpu in nano-cpu
NAMESPACE = "bench"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
LEDGERS = "/apis/quotalang.dev/v1alpha1/quotaledgers"
LEASE = "/apis/coordination.k8s.io/v1/namespaces/default/leases/quotalang-ledger-leader"
SETTLE = 20.0
COUNTS = (0, 1, 2, 4)  # clusters registered; 0: the single-cluster form (--kubeconfig, /validate)


@dataclass(frozen=True)
class Setup:
    store: str
    clusters: int

    @property
    def name(self) -> str:
        return f"{self.store}, " + ("single (--kubeconfig)" if not self.clusters else f"{self.clusters} cluster"
                                    + ("s" if self.clusters > 1 else ""))

    @property
    def names(self) -> list[str]:
        """The registered clusters' names; [""] for the single-cluster form."""
        return [f"c{i}" for i in range(self.clusters)] or [""]


@dataclass
class Result:
    rate: float = 0.0
    p50: float = 0.0
    p99: float = 0.0
    hub_ms: float = 0.0
    feed: int = 0
    check: str = "-"
    failed: bool = False


# ------------------------------------------------------------------ inputs
def policy_text() -> str:
    lines = ['settings {\n  group label "team"\n  unlabelled deny\n}\n',
             f"group root {{\n  requests.cpu {GROUPS * 100_000}\n}}\n"]
    lines += [f"group team-{g} in root {{\n  requests.cpu 100000\n}}\n" for g in range(GROUPS)]
    lines.append("kind apps/v1 Deployment {\n  pods {\n    replicas spec.replicas default 1\n"
                 "    template spec.template\n  }\n  scale spec.replicas\n}\n")
    return "\n".join(lines)


def deployment(name: str, group: int) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"team": f"team-{group}", "bench": "yes"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": "registry.example/app:1",
                                                           "resources": {"requests": {"cpu": CPU}}}]}}}}


def review(obj: dict[str, Any], uid: str) -> bytes:
    return orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "name": obj["metadata"]["name"], "namespace": NAMESPACE, "operation": "CREATE",
        "userInfo": {"username": "bench"}, "object": obj, "oldObject": None, "dryRun": False}})


# ------------------------------------------------------------------ the hub
@contextmanager
def hub(setup: Setup, members: list[Cluster], folder: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, int]]:
    """`quotalang serve` for `setup`, ready (every registered cluster listed); yields (process, port, api port)."""
    policy = folder / "policy"
    policy.mkdir(parents=True, exist_ok=True)
    (policy / "org.quota").write_text(policy_text())
    port, api_port = free_port(), free_port()
    if setup.clusters:
        where = [arg for i in range(setup.clusters) for arg in ("--cluster", f"c{i}={members[i].kubeconfig}")]
    else:
        where = ["--kubeconfig", str(members[0].kubeconfig)]
    store = ["--store", setup.store]
    if setup.store == "kubernetes":
        store += ["--lease-namespace", "default", *(["--ledger-cluster", "c0"] if setup.clusters else [])]
    log = folder / "serve.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "quotalang.server.cli", "serve", "--policy", str(policy), "--insecure-http",
             "--host", "127.0.0.1", "--port", str(port), "--api-port", str(api_port), "--api-insecure",
             "--log-format", "json", *where, *store],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "POD_NAME": "hub", "XDG_STATE_HOME": str(folder / "state")})

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, f"serve ({setup.name})", 90, process, log)
        yield process, port, api_port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def observed(api_port: int, setup: Setup) -> dict[str, int]:
    """nano-cpu observed per cluster, summed over the groups, as the hub's /api/groups shows it."""
    totals: dict[str, int] = {}
    with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10) as client:
        for g in range(GROUPS):
            answer = client.get(f"/api/groups/team-{g}")
            answer.raise_for_status()
            row = next(r for r in answer.json()["limits"] if r["key"] == "requests.cpu")
            if setup.clusters:
                shares = {c: parse_quantity(q).nanos for c, q in row["clusters"].items()}
            else:
                shares = {"": parse_quantity(row["used"]).nanos - parse_quantity(row["reserved"]).nanos}
            for cluster, nanos in shares.items():
                totals[cluster] = totals.get(cluster, 0) + nanos
    return {c: n for c, n in totals.items() if n}


def by_hand(members: list[Cluster], setup: Setup) -> dict[str, int]:
    """nano-cpu each registered cluster's listed Deployments hold: one pod × 10m cpu each."""
    totals: dict[str, int] = {}
    for name, member in zip(setup.names, members, strict=False):
        with member.http(timeout=60) as api:
            answer = api.get(DEPLOYMENTS, params={"labelSelector": "bench=yes"})
        answer.raise_for_status()
        items = answer.json()["items"]
        assert all(i["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == CPU
                   for i in items)
        if items:
            totals[name] = len(items) * NANOS
    return totals


# ------------------------------------------------------------------ the load and the feed
def feed(members: list[Cluster], setup: Setup, rate: float, stop: threading.Event) -> int:
    """Create `rate` Deployments a second in total, round-robin over the registered clusters; return how many."""
    clients = [member.http(timeout=30) for member in members[:max(setup.clusters, 1)]]
    made = 0
    began = time.monotonic()
    try:
        for i in itertools.count():
            if stop.is_set():
                break
            time.sleep(max(0.0, began + i / rate - time.monotonic()))
            answer = clients[i % len(clients)].post(DEPLOYMENTS, json=deployment(f"feed-{i}", i % GROUPS))
            made += answer.status_code == 201
    finally:
        for client in clients:
            client.close()
    return made


@dataclass
class Load:
    latencies: list[float] = field(default_factory=list)
    answered: int = 0
    wrong: list[str] = field(default_factory=list)


def load(port: int, setup: Setup, seconds: float, connections: int, measuring: threading.Event) -> Load:
    """`connections` closed-loop clients for WARMUP + `seconds`; latencies of the measured window."""
    routes = [f"/validate/{name}" if name else "/validate" for name in setup.names]
    begun = time.monotonic()
    measure_from, stop_at = begun + WARMUP, begun + WARMUP + seconds
    per_thread = [Load() for _ in range(connections)]

    def client(t: int) -> None:
        mine = per_thread[t]
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for i in itertools.count():
            if time.monotonic() >= stop_at:
                break
            uid = f"{t}-{i}"
            body = review(deployment(f"r{t}-{i}", (t + i) % GROUPS), uid)
            started = time.monotonic()
            connection.request("POST", routes[(t + i) % len(routes)], body, {"Content-Type": "application/json"})
            answer = connection.getresponse()
            text = answer.read()
            finished = time.monotonic()
            response = orjson.loads(text).get("response", {}) if answer.status == 200 else {}
            if response.get("uid") != uid or response.get("allowed") is not True:
                mine.wrong.append(f"{answer.status} {text[:200].decode(errors='replace')}")
            mine.answered += 1
            if measure_from <= finished <= stop_at:
                mine.latencies.append(finished - started)
        connection.close()

    threads = [threading.Thread(target=client, args=(t,), daemon=True) for t in range(connections)]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, measure_from - time.monotonic()))
    measuring.set()
    for thread in threads:
        thread.join(seconds + WARMUP + 60)
    out = Load()
    for one in per_thread:
        out.latencies += one.latencies
        out.answered += one.answered
        out.wrong += one.wrong
    out.latencies.sort()
    return out


# ------------------------------------------------------------------ one setup
def reset(members: list[Cluster]) -> None:
    """No Deployments in any cluster; no QuotaLedgers or Lease in c0 (404 before the CRD exists)."""
    for member in members:
        with member.http(timeout=60) as api:
            api.delete(DEPLOYMENTS)
    with members[0].http() as api:
        api.delete(LEDGERS)
        api.delete(LEASE)


def run(setup: Setup, members: list[Cluster], folder: Path, args: argparse.Namespace) -> Result:
    reset(members)
    result = Result()
    with hub(setup, members, folder) as (process, port, api_port):
        stop, measuring = threading.Event(), threading.Event()
        with ThreadPoolExecutor(1) as pool:
            fed = pool.submit(feed, members, setup, args.feed, stop)
            cpu: list[float] = []

            def mark() -> None:  # the hub's CPU time when the measured window opens
                measuring.wait(WARMUP + 30)
                cpu.append(cpu_seconds(process.pid))

            marker = threading.Thread(target=mark, daemon=True)
            marker.start()
            done = load(port, setup, args.seconds, args.connections, measuring)
            spent = cpu_seconds(process.pid)
            marker.join(10)
            stop.set()
            result.feed = fed.result(60)
        n = len(done.latencies)
        result.rate = n / args.seconds
        result.p50 = done.latencies[n // 2] * 1000 if n else 0.0
        result.p99 = done.latencies[min(n - 1, int(n * 0.99))] * 1000 if n else 0.0
        result.hub_ms = (spent - (cpu[0] if cpu else spent)) * 1000 / max(n, 1)
        if done.wrong:
            result.failed = True
            result.check = f"FAIL: {len(done.wrong)} of {done.answered} answers not allowed, e.g. {done.wrong[0]}"
            return result
        expected = by_hand(members, setup)
        if sum(expected.values()) != result.feed * NANOS:
            result.failed = True
            result.check = f"FAIL: {sum(expected.values()) // NANOS} objects listed, {result.feed} created"
            return result
        began = time.monotonic()
        seen: dict[str, int] = {}
        while time.monotonic() - began < SETTLE:
            seen = observed(api_port, setup)
            if seen == expected:
                result.check = f"ok {time.monotonic() - began:.1f}s ({done.answered} allowed)"
                return result
            time.sleep(0.5)
        result.failed = True
        result.check = f"FAIL: observed {seen} != objects {expected} (nano-cpu per cluster)"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per setup (after 2 s warm-up)")
    parser.add_argument("--connections", type=int, default=16, help="client threads, one keep-alive connection each")
    parser.add_argument("--feed", type=float, default=20.0, help="Deployments created per second, all clusters")
    parser.add_argument("--rounds", type=int, default=1, help="runs of every setup, rotating; the best is kept")
    parser.add_argument("--stores", default="memory,kubernetes", help="comma-separated: memory, kubernetes")
    args = parser.parse_args()
    binaries = assets()
    if binaries is None:
        sys.exit("no kube-apiserver/etcd: run scripts/provision-kube.sh or set KUBEBUILDER_ASSETS")
    setups = [Setup(store, n) for store in args.stores.split(",") for n in COUNTS]
    print(f"{args.connections} keep-alive connections posting CREATE reviews to /validate/NAME round-robin; "
          f"{args.feed:g} Deployments/s created for real over the registered clusters; {WARMUP:g} s warm-up + "
          f"{args.seconds:g} s per setup, {args.rounds} round(s), best kept; "
          f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n", flush=True)
    results: dict[Setup, Result] = {}
    with tempfile.TemporaryDirectory(prefix="quotalang-bench-clusters-") as tmp:
        members = [Cluster(binaries, Path(tmp) / f"c{i}") for i in range(max(COUNTS))]
        try:
            with ThreadPoolExecutor(len(members)) as pool:
                list(pool.map(Cluster.start, members))
            for member in members:
                member.ensure_namespace(NAMESPACE)
            for round_ in range(args.rounds):
                for index, setup in enumerate(setups):
                    result = run(setup, members, Path(tmp) / f"run-{round_}-{index}", args)
                    best = results.get(setup)
                    if best is None or result.failed or (not best.failed and result.rate > best.rate):
                        results[setup] = result
                    print(f"  round {round_ + 1}: {setup.name}: {result.rate:.0f}/s, p99 {result.p99:.1f} ms, "
                          f"{result.check}", flush=True)
        finally:
            for member in members:
                member.stop()
    header = (f"{'setup':<35}{'adm/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'hub ms':>8}{'× base':>8}{'p99 ×':>7}"
              f"{'hub ×':>7}{'feed':>6}  check")
    print(f"\n{header}\n{'-' * (len(header) + 20)}")
    for setup, result in results.items():
        base = results.get(Setup(setup.store, 0))
        ratio = f"{result.rate / base.rate:.2f}" if base and base.rate else "-"
        p99 = f"{result.p99 / base.p99:.2f}" if base and base.p99 else "-"
        cost = f"{result.hub_ms / base.hub_ms:.2f}" if base and base.hub_ms else "-"
        print(f"{setup.name:<35}{result.rate:>8.0f}{result.p50:>8.1f}{result.p99:>8.1f}{result.hub_ms:>8.2f}"
              f"{ratio:>8}{p99:>7}{cost:>7}{result.feed:>6}  {result.check}")
    print(f"\nload {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if any(r.failed for r in results.values()):
        print("FAIL: an answer or a cluster's observed usage was wrong (see check)")
        sys.exit(1)


if __name__ == "__main__":
    main()

"""Ledger stores under load: the memory store vs the kubernetes store at 1, 2 and 3 replicas.

Run: `python bench/bench_store.py [--seconds 5] [--connections 16] [--groups 8]`.
Prints figures; asserts nothing; stops by itself; everything on 127.0.0.1.

In one run, on this machine:

1. etcd + kube-apiserver 1.20 (the end-to-end suite's `Cluster`, binaries
   from `$KUBEBUILDER_ASSETS` or `scripts/provision-kube.sh`);
2. for each setup — one memory-store replica (`quotalang serve`, standalone);
   then 1, 2 and 3 kubernetes-store replicas (`quotalang serve --store
   kubernetes`, separate processes, plain HTTP; the Lease holder also runs
   the controller) — the same load:
   `--connections` concurrent clients send AdmissionReviews to replicas
   picked at random for `--seconds`, after a one-second warm-up;
3. two traffic shapes: `spread` (requests over `--groups` groups, as a real
   cluster's teams) and `one group` (every request checks and writes the same
   ledger object: the worst case for compare-and-swap).

Every request is a CREATE of one of 50 Deployments per group (1 cpu each, the
quota fits all 50), so each one is a full decision *and* a reservation write
(a CREATE replaces the same object's reservation: ledger objects stay small).
The conflict-retry rate is 409s on the reservation PUT per admission, summed
over the replicas' `quotalang_ledger_conflicts_total`; `adm/write` is how
many admissions one ledger write carried (group commit, see
`controller/group_commit.py`). The load generator is
Python (asyncio + httpx) on the same two cores as everything else, so the
memory store's figure is bounded by the client, not by the server.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from kube_cluster import Cluster, assets, free_port, wait_until  # noqa: E402

PER_GROUP = 50
LEDGERS = "/apis/quotalang.dev/v1alpha1/quotaledgers"
LEASE = "/apis/coordination.k8s.io/v1/namespaces/default/leases/quotalang-ledger-leader"


def policy_text(groups: int) -> str:
    lines = ['settings {\n  group label "team"\n  unlabelled deny\n}\n',
             f"group root {{\n  requests.cpu {groups * PER_GROUP * 2}\n}}\n"]
    lines += [f"group team-{g} in root {{\n  requests.cpu {PER_GROUP * 2}\n}}\n" for g in range(groups)]
    lines.append("kind apps/v1 Deployment {\n  pods {\n    replicas spec.replicas default 1\n"
                 "    template spec.template\n  }\n  scale spec.replicas\n}\n")
    return "\n".join(lines)


def bodies(groups: list[int]) -> list[bytes]:
    out = []
    uids = itertools.count()
    for i in range(PER_GROUP):
        for g in groups:
            name = f"web-{g}-{i}"
            obj = {
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": "default", "labels": {"team": f"team-{g}"}},
                "spec": {"replicas": 1, "template": {"spec": {"containers": [
                    {"name": "app", "image": "app", "resources": {"requests": {"cpu": "1"}}}]}}},
            }
            out.append(orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
                "uid": f"u{next(uids)}", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                "name": name, "namespace": "default", "operation": "CREATE", "userInfo": {"username": "bench"},
                "object": obj, "dryRun": False}}))
    return out


@contextmanager
def replicas(cluster: Cluster, policy: Path, folder: Path, store: str, count: int) -> Iterator[list[str]]:
    """`count` replica processes on `store`; yields their /validate URLs."""
    if store == "kubernetes":
        with cluster.http() as api:  # a fresh ledger and no leader for every setup
            api.delete(LEDGERS)
            api.delete(LEASE)
    processes, urls = [], []
    try:
        for i in range(count):
            port = free_port()
            log = folder / f"{store}-{count}-{i}.log"
            with log.open("ab") as out:
                shared = ["--kubeconfig", str(cluster.kubeconfig), "--store", "kubernetes",
                          "--lease-namespace", "default"] if store == "kubernetes" else ["--store", "memory"]
                process = subprocess.Popen(
                    [sys.executable, "-m", "quotalang.server.cli", "serve", "--policy", str(policy), "--insecure-http",
                     "--host", "127.0.0.1", "--port", str(port), "--log-format", "json", *shared],
                    stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "POD_NAME": f"bench-{i}"},
                )
            processes.append(process)
            url = f"http://127.0.0.1:{port}"

            def ready(url: str = url) -> bool:
                try:
                    return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(ready, f"replica {i}", 60, process, log)
            urls.append(url)
        yield urls
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


async def load(urls: list[str], payloads: list[bytes], connections: int, seconds: float) -> dict[str, float]:
    """Closed-loop load; returns admissions/s, p50/p99 in ms, and how answers split."""
    latencies: list[float] = []
    counts = {"allowed": 0, "denied": 0, "errors": 0, "sent": 0}
    measuring = False
    stop_at = 0.0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker(offset: int) -> None:
            i = offset
            pick = random.Random(offset)  # the replica, independent of the group a body charges
            while time.monotonic() < stop_at:
                url = urls[pick.randrange(len(urls))]
                body = payloads[i % len(payloads)]
                i += connections
                started = time.perf_counter()
                answer = await client.post(f"{url}/validate?timeout=10s", content=body,
                                           headers={"content-type": "application/json"})
                elapsed = time.perf_counter() - started
                counts["sent"] += 1  # warm-up included: the conflict counters include it too
                if not measuring:
                    continue
                latencies.append(elapsed)
                response = answer.json().get("response", {}) if answer.status_code == 200 else {}
                if "could not decide" in str(response) or answer.status_code != 200:
                    counts["errors"] += 1
                elif response.get("allowed"):
                    counts["allowed"] += 1
                else:
                    counts["denied"] += 1

        stop_at = time.monotonic() + 1.0 + seconds
        tasks = [asyncio.create_task(worker(c)) for c in range(connections)]
        await asyncio.sleep(1.0)  # warm-up: caches filled, connections open
        measuring = True
        begun = time.monotonic()
        await asyncio.gather(*tasks)
        elapsed_total = time.monotonic() - begun
    latencies.sort()
    n = len(latencies)
    return {
        "rate": n / elapsed_total if elapsed_total else 0.0,
        "p50": latencies[n // 2] * 1000 if n else 0.0,
        "p99": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else 0.0,
        "n": n, **counts,
    }


def counters(urls: list[str]) -> tuple[float, float]:
    """Σ 409s on reservation writes and Σ ledger writes over the replicas (from their /metrics)."""
    clashes = writes = 0.0
    for url in urls:
        for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
            if line.startswith("quotalang_ledger_conflicts_total "):
                clashes += float(line.split()[1])
            elif line.startswith("quotalang_ledger_writes_total "):
                writes += float(line.split()[1])
    return clashes, writes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--groups", type=int, default=8)
    args = parser.parse_args()
    folder_binaries = assets()
    if folder_binaries is None:
        sys.exit("no kube-apiserver/etcd: run scripts/provision-kube.sh or set KUBEBUILDER_ASSETS")
    with tempfile.TemporaryDirectory(prefix="quotalang-bench-store-") as tmp:
        folder = Path(tmp)
        policy = folder / "policy"
        policy.mkdir()
        (policy / "org.quota").write_text(policy_text(args.groups))
        cluster = Cluster(folder_binaries, folder / "cluster")
        print(f"starting etcd + kube-apiserver ({folder_binaries}) ...", flush=True)
        cluster.start()
        try:
            shapes = {"spread": bodies(list(range(args.groups))), "one group": bodies([0])}
            print(f"\n{args.connections} connections, {args.seconds:g} s per setup, {args.groups} groups "
                  f"(spread) or 1, {PER_GROUP} Deployments per group, every request a CREATE that reserves\n")
            header = f"{'store':<22}{'shape':<11}{'adm/s':>8}{'p50 ms':>9}{'p99 ms':>9}" \
                     f"{'conflicts/adm':>15}{'adm/write':>11}{'denied':>8}{'errors':>8}"
            print(header)
            print("-" * len(header))
            setups: list[tuple[str, int]] = [("memory", 1), ("kubernetes", 1), ("kubernetes", 2), ("kubernetes", 3)]
            for store, count in setups:
                for shape, payloads in shapes.items():
                    with replicas(cluster, policy, folder, store, count) as urls:
                        result = asyncio.run(load(urls, payloads, args.connections, args.seconds))
                        rate = per_write = "-"
                        if store == "kubernetes":
                            clashes, writes = counters(urls)
                            rate = f"{clashes / max(result['sent'], 1):.3f}"
                            per_write = f"{result['sent'] / max(writes, 1):.1f}"
                    label = "memory" if store == "memory" else f"kubernetes × {count}"
                    print(f"{label:<22}{shape:<11}{result['rate']:>8.0f}{result['p50']:>9.1f}{result['p99']:>9.1f}"
                          f"{rate:>15}{per_write:>11}{result['denied']:>8}{result['errors']:>8}", flush=True)
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()

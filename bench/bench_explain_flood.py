"""Admission latency while the API port is flooded with 3 MB explain bodies (issue 25 #9, #11).

Run: `python bench/bench_explain_flood.py [--seconds 20] [--clients 48] [--idle-seconds 6] [--target explain|validate]`.
Prints figures; asserts nothing; stops by itself; listens on 127.0.0.1 only.

One `quotalang serve` (the example policy, memory store, TLS on both ports).
A kept-alive client (`http.client`, one connection) posts the same small
AdmissionReview (examples/reviews/tfjob-too-big.json: a full decision, denied
with its arithmetic) every 20 ms to the admission port, first while nothing
else runs (idle), then while `--clients` connections, from another process,
each post a 2.9 MB YAML Deployment (900 containers) to `/api/explain` in a
loop. It prints the admission p50 / p99 of both phases, their ratio, and how
the posts were answered (status: count). `--target validate` floods the
admission port itself instead, with the same Deployment as a 2.2 MB
AdmissionReview (a CREATE, decided in full).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import multiprocessing
import ssl
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from bench_server import free_port, running  # noqa: E402  (the bench folder is no package)


def big_workload(containers: int = 900) -> bytes:
    """A Deployment of `containers` containers with 40 env vars each: about 2.9 MB of YAML."""
    env = [{"name": f"V{i}", "value": "x" * 40} for i in range(40)]
    spec = [{"name": f"c{n}", "image": "app:1", "env": [dict(e) for e in env],
             "resources": {"requests": {"cpu": "10m"}}} for n in range(containers)]
    obj = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "big", "namespace": "nlp", "labels": {"biz.group.resource.quota": "bob"}},
           "spec": {"replicas": 1, "template": {"spec": {"containers": spec}}}}
    return yaml.safe_dump(obj).encode()


def flood(url: str, path: str, media: str, cafile: str, clients: int, seconds: float, body: bytes, out: Any) -> None:
    """In its own process: `clients` connections posting `body` to `path` until `seconds` pass."""

    async def run() -> Counter[str]:
        counts: Counter[str] = Counter()
        context = ssl.create_default_context(cafile=cafile)
        limits = httpx.Limits(max_connections=clients)
        end = time.monotonic() + seconds
        async with httpx.AsyncClient(base_url=url, verify=context, limits=limits, timeout=60) as client:

            async def one() -> None:
                while time.monotonic() < end:
                    try:
                        answer = await client.post(path, content=body, headers={"content-type": media})
                        counts[str(answer.status_code)] += 1
                    except httpx.HTTPError as exc:
                        counts[type(exc).__name__] += 1

            await asyncio.gather(*(one() for _ in range(clients)))
        return counts

    out.put(dict(asyncio.run(run())))


def admissions(port: int, context: ssl.SSLContext, body: bytes, seconds: float) -> list[float]:
    """Latencies (ms) of one kept-alive connection posting `body` every 20 ms for `seconds`."""
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=60)
    times: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        connection.request("POST", "/validate", body=body, headers={"content-type": "application/json"})
        answer = connection.getresponse()
        answer.read()
        assert answer.status == 200, answer.status
        times.append((time.perf_counter() - started) * 1000)
        time.sleep(0.02)
    connection.close()
    return times


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"n={len(times)} p50={statistics.median(times):.2f} ms p99={p99:.2f} ms max={ordered[-1]:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the flood lasts")
    parser.add_argument("--idle-seconds", type=float, default=6.0)
    parser.add_argument("--clients", type=int, default=48)
    parser.add_argument("--target", choices=("explain", "validate"), default="explain")
    args = parser.parse_args()
    from quotalang.server.tls import issue, make_ca

    review = (ROOT / "examples" / "reviews" / "tfjob-too-big.json").read_bytes()
    review = orjson.dumps(orjson.loads(review))
    body = big_workload()
    with tempfile.TemporaryDirectory(prefix="quotalang-flood-") as tmp:
        folder = Path(tmp)
        ca = make_ca("bench CA")
        pair = issue(ca, ["127.0.0.1", "localhost"])
        for name, data in (("ca.crt", ca.cert), ("tls.crt", pair.cert), ("tls.key", pair.key)):
            (folder / name).write_bytes(data)
        cafile = str(folder / "ca.crt")
        context = ssl.create_default_context(cafile=cafile)
        port, api_port = free_port(), free_port()
        serve = [sys.executable, "-m", "quotalang.server.cli", "serve", "--policy", str(ROOT / "examples" / "policies"),
                 "--port", str(port), "--api-port", str(api_port), "--tls-cert", str(folder / "tls.crt"),
                 "--tls-key", str(folder / "tls.key"), "--store", "memory", "--log-format", "json"]
        with running(serve, f"https://127.0.0.1:{port}", context, folder / "serve.log"):
            api = f"https://127.0.0.1:{api_port}"
            warm = httpx.post(f"{api}/api/explain", content=body, verify=context, timeout=60,
                              headers={"content-type": "application/yaml"})
            print(f"explain body: {len(body) / 1e6:.1f} MB of YAML; one alone: {warm.elapsed.total_seconds():.2f} s, "
                  f"HTTP {warm.status_code}")
            admissions(port, context, review, 1.0)  # warm-up
            idle = admissions(port, context, review, args.idle_seconds)
            print(f"idle:    {summary(idle)}")
            if args.target == "explain":
                target = (api, "/api/explain", "application/yaml", body)
            else:
                obj = yaml.safe_load(body)
                request = {"uid": "big", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                           "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                           "name": "big", "namespace": "nlp", "operation": "CREATE", "object": obj,
                           "dryRun": True}
                large = orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                      "request": request})
                print(f"admission body: {len(large) / 1e6:.1f} MB of JSON")
                target = (f"https://127.0.0.1:{port}", "/validate", "application/json", large)
            results: Any = multiprocessing.get_context("spawn").Queue()
            flooder = multiprocessing.get_context("spawn").Process(
                target=flood, args=(target[0], target[1], target[2], cafile, args.clients, args.seconds, target[3],
                                    results))
            flooder.start()
            time.sleep(2.0)  # every flood connection is posting
            busy = admissions(port, context, review, args.seconds - 3.0)
            flooder.join(timeout=args.seconds + 90)
            counts = results.get(timeout=30) if not results.empty() else {}
            print(f"flooded: {summary(busy)}  ({args.clients} clients posting to {target[1]})")
            print(f"p50 ratio flooded / idle: {statistics.median(busy) / statistics.median(idle):.2f}")
            print(f"flood answers: {counts}")


if __name__ == "__main__":
    main()

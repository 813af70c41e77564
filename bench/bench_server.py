"""Webhook throughput: a no-op starlette endpoint vs `quotalang serve`, same load, same TLS.

Run: `python bench/bench_server.py [--seconds 4] [--groups 1000] [--workloads 10000]
[--connections 1,16,64] [--stores sqlite,memory] [--mix create|update]`. Prints
figures; asserts nothing; stops by itself; listens on 127.0.0.1 only.

In one run, on this machine:

1. a 1,000-group policy (root → platforms → teams, every key carved) that
   imports the shipped kind library, and a serving certificate from a fresh CA;
2. (a) a no-op endpoint: starlette + uvicorn, one worker, `async def`, orjson
   parses the AdmissionReview and answers allowed with its uid;
   (b) `quotalang serve` on the same uvicorn settings, JSON logs on, with
   10,000 Deployments admitted first (so the ledger holds 10,000 objects'
   usage across the teams), once per store in `--stores`: `sqlite` (the
   embedded default: a file in the run's temporary folder) and `memory`;
3. the same load generator against each at 1, 16 and 64 connections: Debian's
   `wrk` (one thread, a Lua script that cycles through pre-built review
   bodies) when installed, else a Python asyncio + httpx client; the output
   says which. All endpoints run at once (idle but for the one measured) and
   each point is taken `--rounds` times, rotating through the endpoints; the
   best is kept, so that a shared machine's drift hits every endpoint alike.

With `--mix create` (the default) the measured requests re-submit (CREATE)
the already admitted Deployments — a full decision each: group lookup, usage
from the pod-usage cache, the check, and the fold into the ledger — with one
request in 20 over quota and denied with a message. A re-submitted CREATE
changes nothing a store holds, so the SQLite store writes nothing for it.
`--mix update` measures the writes: pairs of UPDATEs that flip a Deployment
between 1 and 2 replicas, so that every allowed request changes what the
ledger holds (one SQLite transaction each). Every endpoint gets the very
same bodies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KEYS = (
    ("requests.cpu", 16),
    ("limits.cpu", 32),
    ("requests.memory", "64Gi"),
    ("limits.memory", "128Gi"),
    ("requests.nvidia.com/gpu", 32),
    ("requests.nvidia.com/gpu.A100", 24),
    ("pods", 40),
)
LUA = """
local bodies = {}
local n = 0
init = function(args)
  for line in io.lines(args[1]) do
    bodies[#bodies + 1] = line
  end
end
request = function()
  n = n % #bodies + 1
  return wrk.format("POST", "/validate", {["Content-Type"] = "application/json"}, bodies[n])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "errors": %d, "non2xx": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


# ---------------------------------------------------------------- the no-op server
def noop_server(port: int, cert: str, key: str) -> None:
    """What the webhook is compared with: parse the review, allow it, nothing else."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    answered = [0]

    async def validate(request: Request) -> Response:
        review = orjson.loads(await request.body())
        answered[0] += 1
        answer = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                  "response": {"uid": review["request"]["uid"], "allowed": True}}
        return Response(orjson.dumps(answer), media_type="application/json")

    async def readyz(request: Request) -> Response:  # the reviews answered: bench_store waits for the first
        return Response(orjson.dumps({"ready": True, "reviews": answered[0]}), media_type="application/json")

    app = Starlette(routes=[Route("/validate", validate, methods=["POST"]), Route("/readyz", readyz)])
    uvicorn.run(app, host="127.0.0.1", port=port, ssl_certfile=cert, ssl_keyfile=key, log_config=None,
                access_log=False, lifespan="off", server_header=False, timeout_keep_alive=100)


# ---------------------------------------------------------------- inputs
def _scaled(value: int | str, factor: int) -> str:
    if isinstance(value, int):
        return str(value * factor)
    return f"{int(value[:-2]) * factor}{value[-2:]}"


def generate_policy(folder: Path, groups: int) -> list[str]:
    """root + platforms + teams = `groups`; returns the team names (the leaves)."""
    platforms = max(1, round((groups - 1) ** 0.5 / 3))
    teams_per, extra = divmod(groups - 1 - platforms, platforms)
    lines = [
        'import "quotalang:policies"',
        "",
        "settings {",
        '  group label "quota.group"',
        '  model label gpu "quota.group/gpu-type"',
        "}",
        "",
    ]
    teams: list[str] = []

    def block(name: str, parent: str | None, factor: int) -> None:
        lines.append(f"group {name}" + (f" in {parent}" if parent else "") + " {")
        lines.extend(f"  {key} {_scaled(value, factor)}" for key, value in KEYS)
        lines.append(f"  cash requests.nvidia.com/gpu {100 * factor}h per week")
        lines.append("}")

    counts = [teams_per + (1 if p < extra else 0) for p in range(platforms)]
    block("root", None, sum(c + 1 for c in counts) + 1)
    for p, count in enumerate(counts):
        block(f"platform-{p}", "root", count + 1)
        for t in range(count):
            block(f"team-{p}-{t}", f"platform-{p}", 1)
            teams.append(f"team-{p}-{t}")
    (folder / "org.quota").write_text("\n".join(lines) + "\n")
    return teams


def deployment(name: str, team: str, replicas: int = 1, image: int = 0) -> dict[str, Any]:
    app = {"name": "app", "image": f"registry.example/{team}/app:{image}",
           "ports": [{"containerPort": 8080, "name": "http"}],
           "env": [{"name": "MODE", "value": "serve"}, {"name": "LOG_LEVEL", "value": "info"}],
           "resources": {"requests": {"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": "1"},
                         "limits": {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1"}},
           "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}}}
    proxy = {"name": "proxy", "image": "envoyproxy/envoy:v1.30.1",
             "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                           "limits": {"cpu": "200m", "memory": "256Mi"}}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": team, "uid": f"obj-{name}",
                     "labels": {"app": name, "quota.group": team, "quota.group/gpu-type": "A100"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [app, proxy], "serviceAccountName": "default"}},
        },
    }


def review(obj: dict[str, Any], uid: str, old: dict[str, Any] | None = None) -> bytes:
    meta = obj["metadata"]
    return orjson.dumps({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "requestKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "requestResource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": meta["name"],
            "namespace": meta["namespace"],
            "operation": "CREATE" if old is None else "UPDATE",
            "userInfo": {"username": "system:serviceaccount:ci:deployer", "groups": ["system:authenticated"]},
            "object": obj,
            "oldObject": old,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions" if old is None else "UpdateOptions"},
        },
    })


def workloads(teams: list[str], count: int) -> list[dict[str, Any]]:
    """`count` Deployments, round-robin over the teams; each team keeps well inside its quota."""
    return [deployment(f"svc-{i}", teams[i % len(teams)], image=i % 7) for i in range(count)]


# ---------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running(command: list[str], url: str, context: ssl.SSLContext, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit(f"{command[0]} exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/readyz", verify=context, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not become ready")
            time.sleep(0.1)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def preload(url: str, context: ssl.SSLContext, bodies: list[bytes], concurrency: int = 16) -> int:
    """Admit every body; return how many were allowed."""
    allowed = 0
    queue = iter(bodies)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, verify=context, limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal allowed
            for body in queue:
                answer = await client.post("/validate", content=body,
                                           headers={"content-type": "application/json"})
                allowed += bool(answer.json()["response"]["allowed"])

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return allowed


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc): what a request costs the server, whatever else runs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- load generators
def run_wrk(url: str, connections: int, seconds: float, script: Path, bodies: Path) -> dict[str, float]:
    wrk = shutil.which("wrk")
    assert wrk is not None
    duration = f"-d{max(1, round(seconds))}s"  # wrk takes whole seconds only
    command = [wrk, "-t1", f"-c{connections}", duration, "--timeout", "10s", "-s", str(script),
               f"{url}/validate", "--", str(bodies)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True)
    line = next((line for line in result.stdout.splitlines() if line.startswith('{"requests"')), None)
    if line is None:
        raise SystemExit(f"wrk printed no summary:\n{result.stdout}\n{result.stderr}")
    data = orjson.loads(line)
    return {
        "rps": data["requests"] / (data["duration_us"] / 1e6),
        "requests": data["requests"],
        "p50": data["p50_us"] / 1000,
        "p99": data["p99_us"] / 1000,
        "errors": data["errors"] + data["non2xx"],
    }


async def _python_load(url: str, connections: int, seconds: float, bodies: list[bytes],
                       context: ssl.SSLContext) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, verify=context, limits=limits, timeout=10) as client:
        start = time.perf_counter()
        stop = start + seconds

        async def connection(offset: int) -> None:
            nonlocal errors
            n = offset
            while time.perf_counter() < stop:
                began = time.perf_counter()
                answer = await client.post("/validate", content=bodies[n % len(bodies)],
                                           headers={"content-type": "application/json"})
                latencies.append(time.perf_counter() - began)
                errors += answer.status_code != 200
                n += connections

        await asyncio.gather(*(connection(i) for i in range(connections)))
        elapsed = time.perf_counter() - start
    cuts = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / elapsed, "p50": cuts[49] * 1000, "p99": cuts[98] * 1000, "errors": errors,
            "requests": len(latencies)}


# ---------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=4, help="per measurement point")
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--workloads", type=int, default=10_000)
    parser.add_argument("--connections", default="1,16,64")
    parser.add_argument("--python-client", action="store_true", help="use the Python client even if wrk exists")
    parser.add_argument("--stores", default="sqlite,memory", help="webhook ledger stores to measure, in order")
    parser.add_argument("--rounds", type=int, default=3, help="points per endpoint and level; the best is kept")
    parser.add_argument("--mix", choices=["create", "update"], default="create",
                        help="create: re-submitted CREATEs (no ledger change); update: every request a change")
    parser.add_argument("--noop-server", nargs=3, metavar=("PORT", "CERT", "KEY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.noop_server:
        port, cert, key = args.noop_server
        noop_server(int(port), cert, key)
        return

    from quotalang.server.tls import issue, make_ca

    levels = [int(c) for c in args.connections.split(",")]
    stores = [s for s in args.stores.split(",") if s]
    if not stores or any(s not in ("sqlite", "memory") for s in stores):
        raise SystemExit("--stores takes sqlite and/or memory, comma-separated")
    use_wrk = shutil.which("wrk") is not None and not args.python_client
    with tempfile.TemporaryDirectory(prefix="quotalang-bench-") as tmp:
        folder = Path(tmp)
        (folder / "policy").mkdir()
        teams = generate_policy(folder / "policy", args.groups)
        ca = make_ca("bench CA")
        pair = issue(ca, ["127.0.0.1", "localhost"])
        for name, data in (("ca.crt", ca.cert), ("tls.crt", pair.cert), ("tls.key", pair.key)):
            (folder / name).write_bytes(data)
        context = ssl.create_default_context(cafile=str(folder / "ca.crt"))
        cert, key = str(folder / "tls.crt"), str(folder / "tls.key")

        objects = workloads(teams, args.workloads)
        load = [review(obj, f"load-{i}") for i, obj in enumerate(objects)]
        measured: list[bytes] = []
        for i in range(2000):
            if i % 20 == 19:  # one in 20: 60 GPU pods in a team allowed 32 GPUs: denied with a message
                obj = deployment(f"huge-{i}", teams[(i * 7) % len(teams)], replicas=60)
                measured.append(review(obj, f"bench-{i}"))
            elif args.mix == "update":  # 1 -> 2 replicas, then the next request 2 -> 1: each one a change
                base = objects[((i // 2) * 37) % len(objects)]
                one, two = (dict(base, spec={**base["spec"], "replicas": n}) for n in (1, 2))
                new, old = (two, one) if i % 2 == 0 else (one, two)
                measured.append(review(new, f"bench-{i}", old=old))
            else:
                measured.append(review(objects[(i * 37) % len(objects)], f"bench-{i}"))
        bodies = folder / "bodies.txt"
        bodies.write_bytes(b"\n".join(measured) + b"\n")
        script = folder / "bench.lua"
        script.write_text(LUA)

        def point(url: str, connections: int, pid: int) -> dict[str, float]:
            if use_wrk:
                run_wrk(url, connections, 1.0, script, bodies)  # warm-up: connections, caches
            else:
                asyncio.run(_python_load(url, connections, 1.0, measured, context))
            before = cpu_seconds(pid)
            if use_wrk:
                result = run_wrk(url, connections, args.seconds, script, bodies)
            else:
                result = asyncio.run(_python_load(url, connections, args.seconds, measured, context))
            result["cpu_us"] = (cpu_seconds(pid) - before) / max(result["requests"], 1) * 1e6
            return result

        api_flag = "--api-port" in subprocess.run([sys.executable, "-m", "quotalang.server.cli", "serve", "--help"],
                                                  capture_output=True, text=True, check=False).stdout
        urls: dict[str, str] = {}
        preloads: dict[str, tuple[int, float]] = {}
        with contextlib.ExitStack() as stack:
            # Every endpoint runs at once, idle but for the one being measured: the points are taken
            # in rounds that rotate through them, so the machine's drift (it is shared) hits all alike.
            noop_port = free_port()
            urls["no-op"] = f"https://127.0.0.1:{noop_port}"
            pids: dict[str, int] = {}
            pids["no-op"] = stack.enter_context(running(
                [sys.executable, str(Path(__file__).resolve()), "--noop-server", str(noop_port), cert, key],
                urls["no-op"], context, folder / "noop.log")).pid
            for store in stores:
                port = free_port()
                serve = [sys.executable, "-m", "quotalang.server.cli", "serve", "--policy", str(folder / "policy"),
                         "--port", str(port), "--tls-cert", cert, "--tls-key", key, "--log-format", "json",
                         "--store", store]
                if api_flag:
                    serve += ["--api-port", str(free_port())]  # never the default port another server may hold
                if store == "sqlite":
                    serve += ["--state", str(folder / "ledger.sqlite3")]
                urls[store] = f"https://127.0.0.1:{port}"
                pids[store] = stack.enter_context(running(serve, urls[store], context,
                                                          folder / f"serve-{store}.log")).pid
                started = time.perf_counter()
                allowed = asyncio.run(preload(urls[store], context, load))
                preloads[store] = (allowed, time.perf_counter() - started)
                ready = httpx.get(f"{urls[store]}/readyz", verify=context).json()
            best: dict[str, dict[int, dict[str, float]]] = {name: {} for name in urls}
            names = list(urls)
            for connections in levels:
                for round_ in range(args.rounds):
                    for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                        result = point(urls[name], connections, pids[name])
                        if connections not in best[name] or result["rps"] > best[name][connections]["rps"]:
                            cpu = min(result["cpu_us"], best[name].get(connections, {}).get("cpu_us", 1e9))
                            best[name][connections] = {**result, "cpu_us": cpu}
                        else:
                            best[name][connections]["cpu_us"] = min(best[name][connections]["cpu_us"],
                                                                    result["cpu_us"])
        noop = best["no-op"]
        hooks = {store: best[store] for store in stores}

    generator = ("wrk (Debian, 1 thread, Lua script cycling 2,000 pre-built reviews)" if use_wrk
                 else "Python asyncio + httpx client (wrk not installed)")
    print(f"load generator: {generator}; TLS on 127.0.0.1; {args.seconds:g} s per point after 1 s warm-up; "
          f"best of {args.rounds} rounds rotating through the endpoints")
    for store, (allowed, took) in preloads.items():
        print(f"{store}: policy {ready['groups']} groups, {ready['kinds']} kind rules; ledger preloaded with "
              f"{allowed:,} of {len(load):,} Deployments admitted in {took:.1f} s")
    if args.mix == "update":
        print("requests: UPDATEs flipping admitted Deployments between 1 and 2 replicas (each allowed one a ledger "
              "change), 1 in 20 a CREATE over quota and denied")
    else:
        print("requests: CREATE of admitted Deployments (2 containers; no ledger change), 1 in 20 over quota, denied")
    print()
    header = f"{'conns':>5} | {'no-op req/s':>11} {'p50 ms':>7} {'p99 ms':>7} {'cpu us':>6}"
    for store in stores:
        header += f" | {store + ' req/s':>13} {'p50 ms':>7} {'p99 ms':>7} {'cpu us':>6} {'vs no-op':>8}"
    if len(stores) == 2:
        header += f" | {stores[0] + '/' + stores[1]:>14}"
    print(header)
    print("-" * len(header))
    for connections in levels:
        a = noop[connections]
        line = f"{connections:>5} | {a['rps']:>11,.0f} {a['p50']:>7.2f} {a['p99']:>7.2f} {a['cpu_us']:>6.0f}"
        for store in stores:
            b = hooks[store][connections]
            line += (f" | {b['rps']:>13,.0f} {b['p50']:>7.2f} {b['p99']:>7.2f} {b['cpu_us']:>6.0f} "
                     f"{b['rps'] / a['rps']:>8.0%}")
        if len(stores) == 2:
            ratio = hooks[stores[0]][connections]["rps"] / hooks[stores[1]][connections]["rps"]
            line += f" | {ratio:>14.0%}"
        print(line)
        errors = {name: hooks[name][connections]["errors"] for name in stores}
        if a["errors"] or any(errors.values()):
            print(f"      errors: no-op {a['errors']:.0f}, " + ", ".join(f"{k} {v:.0f}" for k, v in errors.items()))
    print()
    print("cpu us: the server's CPU time (user + system) per request, the best of the rounds: unlike req/s it "
          "hardly moves with the machine's other load;")
    if len(stores) == 2:
        print(f"the last column compares req/s; by CPU per request {stores[0]} costs "
              + ", ".join(f"{hooks[stores[0]][c]['cpu_us'] / hooks[stores[1]][c]['cpu_us'] - 1:+.0%}"
                          for c in levels) + f" against {stores[1]} at {args.connections} connections")
    print("target at 16 connections: webhook ≥ 70 % of the no-op's req/s and p99 within 2× of it")
    print(f"machine: {os.cpu_count()} CPUs; Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()

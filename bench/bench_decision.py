"""The decision path in process: `Engine.review` against the SQLite store, per kind of review, against a
baseline measured in the same run.

Run: `.venv/bin/python bench/bench_decision.py [--against ../wt-base] [--rounds 5] [--reviews 4000]`
(about 20 s per checkout at the defaults). Prints figures and ratios; asserts nothing.

Each round starts one fresh process per checkout (this one, then `--against`,
another checkout, with its own `.venv` or else this one's, e.g. the code before a change), so the
two interleave on one machine and share its noise; the best round of each is
kept. A process builds `bench_server.py`'s policy (1,000 groups, a gpu model
label) and 30 Deployments recorded in a standalone SQLite ledger, then times
(`time.process_time`, CPU per review) four kinds of review, as the apiserver
sends them:

* `create`: a CREATE of a new Deployment (charged, recorded);
* `resent`: a CREATE of a recorded one, same uid (the apiserver retrying):
  decided against the record, nothing changes;
* `update`: an UPDATE of a recorded one, replicas 1 ↔ 2 (charged the delta);
* `scale`: the `/scale` subresource of a recorded one, replicas 1 ↔ 2.

`noop` is the floor in the same process: parse the review and answer allowed,
as `bench_server.py`'s no-op webhook does. Only the `Engine`, `PolicyHolder`,
`SqliteLedger` and `compile_policy` names are used, so an older checkout runs
the same code.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
KINDS = ("noop", "create", "resent", "update", "scale")


def _scale_review(obj: dict[str, Any], uid: str, replicas: int) -> bytes:
    meta = obj["metadata"]
    scale = {"apiVersion": "autoscaling/v1", "kind": "Scale",
             "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
             "spec": {"replicas": replicas}}
    return orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "kind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"}, "subResource": "scale",
        "name": meta["name"], "namespace": meta["namespace"], "operation": "UPDATE",
        "userInfo": {"username": "system:serviceaccount:ci:deployer"}, "object": scale, "oldObject": None,
        "dryRun": False}})


def _per_review(run: Callable[[int], object], reviews: int) -> float:
    """CPU µs per review over `reviews` calls of `run(i)`."""
    started = time.process_time()
    for i in range(reviews):
        run(i)
    return (time.process_time() - started) / reviews * 1e6


def worker(reviews: int, profile: str | None = None) -> dict[str, float]:
    """This checkout's figures (µs per review), measured in this process."""
    sys.path.insert(0, str(HERE))
    import bench_server as b  # this bench's generator: both checkouts decide the same objects

    from quotalang import compile_policy
    from quotalang.controller.ledger.sqlite import SqliteLedger
    from quotalang.server.engine import Engine
    from quotalang.server.reload import PolicyHolder

    tmp = Path(tempfile.mkdtemp())
    (tmp / "policy").mkdir()
    teams = b.generate_policy(tmp / "policy", 1000)
    engine = Engine(PolicyHolder(compile_policy(str(tmp / "policy"))), SqliteLedger(tmp / "ledger.sqlite"))
    recorded = [b.deployment(f"d{i}", teams[i % len(teams)]) for i in range(30)]
    resent = [orjson.loads(b.review(o, f"r{i}"))["request"] for i, o in enumerate(recorded)]
    for request in resent:
        engine.review(request)

    def moved(i: int) -> dict[str, Any]:  # a recorded Deployment at 1 or 2 replicas, alternately
        return b.deployment(f"d{i % 30}", teams[i % 30 % len(teams)], replicas=1 + (i // 30) % 2)

    creates = [orjson.loads(b.review(b.deployment(f"n{i}", teams[i % len(teams)]), f"c{i}"))["request"]
               for i in range(reviews)]
    updates = [orjson.loads(b.review(moved(i), f"u{i}", old=moved(i + 30)))["request"] for i in range(60)]
    scales = [orjson.loads(_scale_review(recorded[i % 30], f"s{i}", 1 + (i // 30) % 2))["request"]
              for i in range(60)]
    raw = [b.review(o, f"x{i}") for i, o in enumerate(recorded)]

    def noop(i: int) -> object:
        request = orjson.loads(raw[i % 30])["request"]
        return orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                             "response": {"uid": request["uid"], "allowed": True}})

    runs: dict[str, Callable[[int], object]] = {
        "noop": noop,
        "create": lambda i: engine.review(creates[i]),
        "resent": lambda i: engine.review(resent[i % 30]),
        "update": lambda i: engine.review(updates[i % 60]),
        "scale": lambda i: engine.review(scales[i % 60]),
    }
    for kind in ("update", "scale"):  # every identity recorded at both sizes before timing
        for i in range(60):
            runs[kind](i)
    gc.collect()
    gc.freeze()
    if profile is not None:  # where one kind's time goes, in this checkout
        cProfile.runctx("_per_review(runs[profile], reviews)", globals(), locals(), sort="tottime")
    return {kind: _per_review(runs[kind], reviews) for kind in KINDS}


def _run(checkout: Path, reviews: int) -> dict[str, float]:
    own = checkout / ".venv" / "bin" / "python"
    python = str(own) if own.exists() else sys.executable  # a bare tree: this venv, the tree's code first
    done = subprocess.run([python, str(Path(__file__).resolve()), "--worker", "--reviews", str(reviews)],
                          cwd=checkout, capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(checkout)})
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--against", type=Path, help="another checkout (with its .venv) measured in the same run")
    parser.add_argument("--rounds", type=int, default=5, help="processes per checkout; the best is kept")
    parser.add_argument("--reviews", type=int, default=4000, help="reviews timed per kind and round")
    parser.add_argument("--profile", choices=KINDS, help="print a cProfile of one kind, in this checkout only")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker or args.profile:
        print(json.dumps(worker(args.reviews, args.profile)))
        return
    checkouts = {"this": HERE.parent}
    if args.against is not None:
        checkouts["against"] = args.against.resolve()
    best: dict[str, dict[str, float]] = {name: {} for name in checkouts}
    for _ in range(args.rounds):
        for name, checkout in checkouts.items():
            for kind, figure in _run(checkout, args.reviews).items():
                best[name][kind] = min(figure, best[name].get(kind, figure))
    print(f"CPU µs per review, best of {args.rounds} rounds × {args.reviews} reviews "
          f"(this: {checkouts['this']}" + (f", against: {checkouts['against']})" if args.against else ")"))
    header = f"{'review':8} {'this':>8} {'×noop':>7}"
    if args.against is not None:
        header += f" {'against':>8} {'×noop':>7} {'this/against':>13}"
    print(header)
    for kind in KINDS:
        mine = best["this"][kind]
        line = f"{kind:8} {mine:8.1f} {mine / best['this']['noop']:7.2f}"
        if args.against is not None:
            theirs = best["against"][kind]
            line += f" {theirs:8.1f} {theirs / best['against']['noop']:7.2f} {mine / theirs:13.2f}"
        print(line)


if __name__ == "__main__":
    main()

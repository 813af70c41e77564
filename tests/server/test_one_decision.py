"""One decision, made in one place: every store and every route decide a request alike.

The engine builds the ask (policy, object, LimitRange defaults of the
review's cluster) and a store only reserves it, so a namespace's LimitRange
defaults reach the memory, SQLite and kubernetes stores and `/api/explain`
the same way. Before the engine decided, the SQLite store and explain left
the defaults out and denied `must-specify` what the memory store charged.

Numbers by hand: the namespace's LimitRange gives every container a cpu
request (and limit) of 2; a 3-replica Deployment whose container names no
resources therefore charges 3 × 2 = 6 cpu to group `ml`, which may use 40.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from quotalang.compiler import CompiledPolicy
from quotalang.controller.kube.limit_ranges import LimitRangeIndex, LimitRangeSource
from quotalang.controller.ledger.base import Ledger
from quotalang.controller.ledger.kubernetes.ledger import KubernetesLedger
from quotalang.controller.ledger.memory import MemoryLedger
from quotalang.controller.ledger.sqlite import SqliteLedger
from quotalang.server.api import create_api_app
from quotalang.server.app import create_app
from quotalang.server.reload import PolicyHolder
from tests.controller.kube_apiserver import Cluster, apiserver, client, wipe_ledgers
from tests.server.webhook_helpers import POLICY, compile_text, response_of, review

__all__ = ["apiserver"]  # the session fixture, imported for pytest

NANO = 10**9


def bare(name: str = "web", replicas: int = 3) -> dict[str, Any]:
    """A Deployment of group `ml` whose one container names no resources at all."""
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "team-a", "labels": {"team": "ml"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}}


def defaults() -> LimitRangeSource:
    index = LimitRangeIndex()
    index.replace("limitranges", [{
        "apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "defaults", "namespace": "team-a"},
        "spec": {"limits": [{"type": "Container", "defaultRequest": {"cpu": "2"}, "default": {"cpu": "2"}}]}}])
    source = LimitRangeSource()
    source.install(index)
    return source


@pytest.fixture(params=["memory", "sqlite", "kubernetes"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "memory":
        yield MemoryLedger()
    elif request.param == "sqlite":
        sqlite = SqliteLedger(tmp_path / "ledger.sqlite3")
        yield sqlite
        sqlite.close()
    else:
        cluster: Cluster = request.getfixturevalue("apiserver")
        wipe_ledgers(cluster)
        api = client(cluster)
        yield KubernetesLedger(api, replica="r0")
        api.close()


def test_limit_range_defaults_decide_alike_in_every_store_and_in_explain(
    store: Ledger, policy: CompiledPolicy
) -> None:
    holder = PolicyHolder(policy)
    app = create_app(holder, store, limit_ranges=defaults())
    api = create_api_app(holder, store, engine=app.state.engine, hosts=["testserver"])
    with TestClient(api) as explaining:
        answer = explaining.post("/api/explain", content=orjson.dumps({"object": bare()}),
                                 headers={"content-type": "application/json"})
    assert answer.status_code == 200, answer.text
    explained = answer.json()
    assert (explained["allowed"], explained["reason"]) == (True, "charged")
    assert explained["delta"]["requests.cpu"] == "6"  # 3 pods × the LimitRange's 2 cpu
    assert store.used("ml").get("requests.cpu", 0) == 0  # what-if reserves nothing
    with TestClient(app) as webhook:
        answer = webhook.post("/validate", content=orjson.dumps(review(bare())),
                              headers={"content-type": "application/json"})
    assert answer.status_code == 200, answer.text
    response = response_of(answer.json())
    assert response["allowed"] is True, response
    assert store.used("ml")["requests.cpu"] == 6 * NANO


ML = "group ml in root {\n  requests.cpu                    40"


@pytest.mark.parametrize("kind", ["memory", "sqlite", "kubernetes"])
def test_a_borrowing_request_decides_alike_in_every_store_and_in_explain(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Issue 29, the same case through every store: ml may use 4 cpu and borrow 4 beyond; root's own part is
    100 - 4 - 10 = 86. The LimitRange's 2 cpu × 3 pods = 6 cpu: 2 beyond ml's 4, borrowed from root."""
    assert ML in POLICY
    lending = compile_text(POLICY.replace(ML, "group ml in root {\n  requests.cpu                    4 borrow 4"))
    assert lending.lending
    store: Ledger
    if kind == "memory":
        store = MemoryLedger()
    elif kind == "sqlite":
        store = SqliteLedger(tmp_path / "borrowing.sqlite3")
    else:
        cluster: Cluster = request.getfixturevalue("apiserver")
        wipe_ledgers(cluster)
        kube = KubernetesLedger(client(cluster), replica="r0", policy=lambda: lending)
        kube.ensure_groups(lending.groups)  # as the runtime does on start
        store = kube
    holder = PolicyHolder(lending)
    app = create_app(holder, store, limit_ranges=defaults())
    api = create_api_app(holder, store, engine=app.state.engine, hosts=["testserver"])
    with TestClient(api) as explaining:
        answer = explaining.post("/api/explain", content=orjson.dumps({"object": bare()}),
                                 headers={"content-type": "application/json"})
    assert answer.status_code == 200, answer.text
    explained = answer.json()
    assert explained["allowed"] is True, explained
    assert explained["delta"]["requests.cpu"] == "6"
    assert "borrowed 2 of requests.cpu from root" in answer.text, explained
    assert store.used("ml").get("requests.cpu", 0) == 0  # what-if reserves nothing
    with TestClient(app) as webhook:
        answer = webhook.post("/validate", content=orjson.dumps(review(bare())),
                              headers={"content-type": "application/json"})
    response = response_of(answer.json())
    assert response["allowed"] is True, response
    assert "borrowed 2 of requests.cpu from root" in answer.text, response
    assert store.used("ml")["requests.cpu"] == 6 * NANO
    if isinstance(store, SqliteLedger):
        store.close()

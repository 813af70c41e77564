"""Several clusters through the apps: a route per cluster, the cluster in every identity, usage per cluster."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from quotalang.controller import MemoryLedger, ObjectKey
from quotalang.server.api import create_api_app
from quotalang.server.app import create_app
from quotalang.server.metrics import Metrics
from quotalang.server.reload import PolicyHolder
from tests.server.webhook_helpers import deployment, hpa, response_of, review, scale_review


# ------------------------------------------------------------ routes: one per cluster, the cluster in every identity
@pytest.fixture
def fleet_app(holder: PolicyHolder, ledger: MemoryLedger, metrics: Metrics) -> Starlette:
    health = {
        "east": SimpleNamespace(reachable=True, synced=True, last_error=None, since=None),
        "west": SimpleNamespace(reachable=False, synced=True, last_error="connection refused", since=1700000000.0),
    }
    return create_app(holder, ledger, metrics=metrics, clusters=("east", "west"), health=lambda: health)


@pytest.fixture
def fleet(fleet_app: Starlette) -> Iterator[TestClient]:
    with TestClient(fleet_app) as test_client:
        yield test_client


def post_to(client: TestClient, cluster: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.post(f"/validate/{cluster}", content=orjson.dumps(body),
                         headers={"content-type": "application/json"})
    assert answer.status_code == 200, answer.text
    return response_of(answer.json())


def test_the_same_name_in_two_clusters_is_two_workloads(fleet: TestClient, ledger: MemoryLedger) -> None:
    # ml may use 40 cpu: web in east (5 × 4) and web in west (5 × 4) fit together, as two workloads.
    assert post_to(fleet, "east", review(deployment("web", replicas=5)))["allowed"] is True
    assert post_to(fleet, "west", review(deployment("web", replicas=5)))["allowed"] is True
    assert ledger.used("ml")["requests.cpu"] == 40 * 10**9  # 20 + 20: neither replaced the other
    denied = post_to(fleet, "east", review(deployment("api", replicas=1)))
    assert denied["allowed"] is False
    assert "used 40 of 40" in denied["status"]["message"]
    assert ledger.lookup(ObjectKey("apps", "Deployment", "team-a", "web", "east")) is not None
    assert ledger.lookup(ObjectKey("apps", "Deployment", "team-a", "web", "west")) is not None
    assert ledger.lookup(ObjectKey("apps", "Deployment", "team-a", "web")) is None


def test_scale_and_hpa_find_their_parent_in_the_reviews_cluster(fleet: TestClient) -> None:
    post_to(fleet, "east", review(deployment("web", replicas=2)))
    assert post_to(fleet, "east", scale_review("web", 10, 2))["allowed"] is True  # 10 × 4 = 40
    # west has no web: its scale cannot borrow east's parent.
    ghost = post_to(fleet, "west", scale_review("web", 3, 1))
    assert ghost["allowed"] is False
    assert "cannot find the workload team-a/web being scaled" in ghost["status"]["message"]
    assert post_to(fleet, "west", review(hpa("h", "web", 100)))["warnings"] == [
        "HPA team-a/h: target not found, maxReplicas not checked"]
    too_big = post_to(fleet, "east", review(hpa("h", "web", 11)))
    assert too_big["allowed"] is False and "requests.cpu" in too_big["status"]["message"]


def test_a_review_without_a_registered_cluster_is_a_404(fleet: TestClient) -> None:
    body = orjson.dumps(review(deployment("web")))
    plain = fleet.post("/validate", content=body)
    assert plain.status_code == 404
    assert "each posts to /validate/NAME" in plain.json()["message"]
    unknown = fleet.post("/validate/north", content=body)
    assert unknown.status_code == 404
    assert unknown.json()["message"] == "no cluster 'north' is registered here (serve --cluster NAME=...)"
    assert "east" not in unknown.text  # the admission port does not list the clusters
    assert fleet.get("/validate/east").status_code == 405


def test_the_single_cluster_app_has_no_cluster_routes(client: TestClient) -> None:
    assert client.post("/validate/east", content=orjson.dumps(review(deployment("web")))).status_code == 404


def test_readyz_lists_every_cluster_and_an_unreachable_one_keeps_it_ready(fleet: TestClient) -> None:
    answer = fleet.get("/readyz")
    assert answer.status_code == 200
    assert answer.json()["clusters"] == {
        "east": {"reachable": True, "synced": True, "last_error": None, "since": None},
        "west": {"reachable": False, "synced": True, "last_error": "connection refused", "since": 1700000000.0},
    }


def test_a_decision_line_names_its_cluster(fleet: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="quotalang.admission"):
        post_to(fleet, "west", review(deployment("web")))
    fields = [getattr(r, "fields", {}) for r in caplog.records]
    assert any(f.get("cluster") == "west" and f.get("name") == "web" for f in fields)


# ------------------------------------------------------------ usage per cluster: the API and the metrics
CPU = 10**9  # one cpu in nanos


def test_the_group_api_and_metrics_show_usage_per_cluster_and_in_total(
    holder: PolicyHolder, ledger: MemoryLedger, metrics: Metrics
) -> None:
    health = {"east": SimpleNamespace(reachable=True, synced=True, last_error=None, since=None),
              "west": SimpleNamespace(reachable=False, synced=True, last_error="refused", since=5.0)}
    metrics.watch_clusters(("east", "west"), lambda: health)
    create_app(holder, ledger, metrics=metrics, clusters=("east", "west"))  # watches the ledger for the metrics
    api_app = create_api_app(holder, ledger, metrics=metrics, clusters=("east", "west"), hosts=["testserver"])
    ledger.observe(ObjectKey("apps", "Deployment", "team-a", "web", "east"), "ml", {"requests.cpu": 8 * CPU})
    ledger.observe(ObjectKey("apps", "Deployment", "team-a", "web", "west"), "ml", {"requests.cpu": 12 * CPU})
    ledger.observe(ObjectKey("apps", "Deployment", "team-a", "db", "west"), "ml", {"requests.cpu": 1500 * CPU // 1000})
    with TestClient(api_app) as api:
        rows = {r["key"]: r for r in api.get("/api/groups/ml").json()["limits"]}
        # 8 in east; 12 + 1.5 in west; 21.5 in all
        assert rows["requests.cpu"]["observed"] == "21500m"
        assert rows["requests.cpu"]["clusters"] == {"east": "8", "west": "13500m"}
        assert rows["pods"]["clusters"] == {"east": "0", "west": "0"}  # every registered cluster, 0 where none
        text = api.get("/metrics").text
    assert 'quotalang_ledger_observed{cluster="east",group="ml",resource="requests.cpu"} 8.0' in text
    assert 'quotalang_ledger_observed{cluster="west",group="ml",resource="requests.cpu"} 13.5' in text
    assert 'quotalang_cluster_reachable{cluster="east"} 1.0' in text
    assert 'quotalang_cluster_reachable{cluster="west"} 0.0' in text
    assert 'quotalang_cluster_synced{cluster="west"} 1.0' in text


def test_one_cluster_adds_no_cluster_fields_or_series(api: TestClient) -> None:
    rows = api.get("/api/groups/ml").json()["limits"]
    assert all("clusters" not in r and "observed" not in r for r in rows)
    text = api.get("/metrics").text
    assert "quotalang_ledger_observed" not in text and "quotalang_cluster_reachable" not in text

"""Prometheus text: admissions counted (admission app), scraped from the API app; ledger gauges at scrape time."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from quotalang.controller import MemoryLedger
from quotalang.server.metrics import Metrics
from tests.cash import set_cash
from tests.server.webhook_helpers import deployment, review

NANO = 10**9


def scrape(api: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    answer = api.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def labels(**kv: str) -> frozenset[tuple[str, str]]:
    return frozenset(kv.items())


def admit(client: TestClient, obj: dict[str, object]) -> None:
    assert client.post("/validate", content=orjson.dumps(review(obj))).status_code == 200


def test_admissions_are_counted_by_kind_operation_decision_and_group(client: TestClient, api: TestClient) -> None:
    admit(client, deployment("a", replicas=2))
    admit(client, deployment("b", replicas=11))
    admit(client, deployment("c", "lab", replicas=3))
    found = scrape(api)
    key = "quotalang_admissions_total"
    assert found[key, labels(kind="Deployment", operation="CREATE", decision="allow", group="ml")] == 1
    assert found[key, labels(kind="Deployment", operation="CREATE", decision="deny", group="ml")] == 1
    assert found[key, labels(kind="Deployment", operation="CREATE", decision="warn", group="lab")] == 1
    assert found["quotalang_admission_duration_seconds_count", labels()] == 3


def test_ledger_gauges_follow_the_ledger_at_each_scrape(
    client: TestClient, api: TestClient, ledger: MemoryLedger
) -> None:
    admit(client, deployment("a", replicas=2))  # 8 cpu, 2 pods in ml
    set_cash(ledger, "ml", {"requests.nvidia.com/gpu": 3600 * NANO})
    found = scrape(api)
    ml_cpu = labels(group="ml", resource="requests.cpu")
    assert found["quotalang_ledger_hard", ml_cpu] == 40
    assert found["quotalang_ledger_used", ml_cpu] == 8
    assert found["quotalang_ledger_reserved", ml_cpu] == 0
    assert found["quotalang_ledger_free", ml_cpu] == 32
    assert found["quotalang_ledger_used", labels(group="ml", resource="pods")] == 2
    assert (
        found["quotalang_ledger_free", labels(group="root", resource="requests.cpu")] == 40
    )  # 100 − 60 carved
    gpu = labels(group="ml", resource="requests.nvidia.com/gpu")
    assert found["quotalang_cash_used_seconds", gpu] == 3600
    assert found["quotalang_cash_budget_seconds", gpu] == 500 * 3600
    renews = found["quotalang_cash_period_end_timestamp_seconds", gpu]  # `per week`: the next Monday 00:00 UTC
    assert time.time() < renews <= time.time() + 7 * 86400
    assert renews % 86400 == 0 and datetime.fromtimestamp(renews, UTC).weekday() == 0
    admit(client, deployment("b", replicas=3))
    assert scrape(api)["quotalang_ledger_used", ml_cpu] == 20


def test_bad_requests_and_reload_counters_are_exported(client: TestClient, api: TestClient) -> None:
    client.post("/validate", content=b"nope")
    found = scrape(api)
    assert found["quotalang_bad_requests_total", labels(reason="not-json")] == 1
    assert found["quotalang_policy_reloads_total", labels()] == 0
    assert found["quotalang_policy_reload_errors_total", labels()] == 0


def test_admissions_outside_quota_are_counted(ledger: MemoryLedger, metrics: Metrics) -> None:
    """Issue 26: a namespace no group binds is admitted uncharged, and counted."""
    from quotalang.server.api import create_api_app
    from quotalang.server.app import create_app
    from quotalang.server.reload import PolicyHolder
    from tests.server.webhook_helpers import POLICY, compile_text

    bound = compile_text(POLICY.replace("group ml in root {", 'group ml in root {\n  namespaces "team-a"'))
    holder = PolicyHolder(bound)
    with TestClient(create_app(holder, ledger, metrics=metrics)) as client, \
            TestClient(create_api_app(holder, ledger, metrics=metrics, hosts=["testserver"])) as api:
        admit(client, deployment("a", namespace="team-a"))  # bound to ml: charged
        admit(client, deployment("b", namespace="scratch"))  # bound to no group: outside quota
        admit(client, deployment("c", namespace="scratch"))
        found = scrape(api)
    assert found["quotalang_outside_quota_total", labels()] == 2
    assert ledger.used("ml")["requests.cpu"] == 4 * NANO  # a's one pod; b and c charged nowhere

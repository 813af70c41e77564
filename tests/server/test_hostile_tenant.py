"""A hostile tenant with kubectl (issue 25): the findings of the `hostile` side, one test or more each.

Each test names its finding, and failed on the code before the fix.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from quotalang.controller import MemoryLedger, ObjectKey
from quotalang.policy import CompiledPolicy
from quotalang.server.api import create_api_app
from quotalang.server.app import create_app
from quotalang.server.engine import FailureMode
from quotalang.server.reload import PolicyHolder
from tests.server.webhook_helpers import deployment, response_of, review

NANO = 10**9
LONG_DIGITS = "9" * 4401
LONG_FRACTION = "0." + "0" * 4400 + "1"


def with_sidecar(obj: dict[str, Any], cpu: str) -> dict[str, Any]:
    """`obj` with a second container asking `cpu` (the finding hid it in a sidecar)."""
    spec = obj["spec"]["template"]["spec"]
    spec["containers"].append({"name": "sidecar", "image": "s:1", "resources": {"requests": {"cpu": cpu}}})
    return obj


def post(client: TestClient, obj: dict[str, Any]) -> dict[str, Any]:
    answer = client.post("/validate", content=orjson.dumps(review(obj)))
    assert answer.status_code == 200, answer.text[:300]
    return response_of(answer.json())


def fill_ml(client: TestClient) -> None:
    """Ten 4-cpu Deployments: group ml (40 cpu) is full."""
    for n in range(10):
        assert post(client, deployment(f"fill-{n}"))["allowed"] is True


@pytest.mark.parametrize("mode", ["allow", "deny"])
@pytest.mark.parametrize("cpu", [LONG_DIGITS, LONG_FRACTION], ids=["4401-digits", "0.000...01"])
def test_a_long_quantity_is_an_invalid_object_in_every_failure_mode(
    policy: CompiledPolicy, caplog: pytest.LogCaptureFixture, mode: FailureMode, cpu: str
) -> None:
    """Finding 6: with the group full, a 4,401-digit cpu in a sidecar was admitted (allow) or a 500 (deny)."""
    ledger = MemoryLedger()
    with TestClient(create_app(PolicyHolder(policy), ledger, failure_mode=mode)) as client:
        fill_ml(client)
        assert post(client, deployment("plain"))["allowed"] is False  # the group is full
        response = post(client, with_sidecar(deployment("hidden"), cpu))
    assert response["allowed"] is False
    status = response["status"]
    assert status["code"] == 403
    message = status["message"]
    assert message.startswith("cannot read Deployment team-a/hidden: ")
    assert "container sidecar" in message and "longer than 160 characters" in message
    assert "failure mode" not in message and len(message) < 300
    assert ledger.group_usage("ml").used["requests.cpu"] == 40 * NANO  # nothing charged for it
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("mode", ["allow", "deny"])
@pytest.mark.parametrize("group", ["ml", "lab"], ids=["enforce", "warn"])
def test_a_huge_exponent_is_an_invalid_object_never_a_500(
    policy: CompiledPolicy, caplog: pytest.LogCaptureFixture, mode: FailureMode, group: str
) -> None:
    """Finding 7: cpu "1e5000" parsed, then printing the over-quota message failed: an HTTP 500."""
    ledger = MemoryLedger()
    with TestClient(create_app(PolicyHolder(policy), ledger, failure_mode=mode)) as client:
        response = post(client, deployment("huge", group=group, cpu="1e5000"))
        tfjob_like = post(client, deployment("also", group=group, cpu="1e400"))
    for answer in (response, tfjob_like):
        assert answer["allowed"] is False
        assert answer["status"]["code"] == 403
        assert "out of range: quotalang accepts magnitudes below 1e128" in answer["status"]["message"]
    assert ledger.group_usage(group).used == {}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(("exponent", "printed"), [(400, "10e399"), (5000, "100e4998")])
def test_a_huge_usage_in_the_ledger_never_breaks_metrics_or_pages(
    policy: CompiledPolicy, exponent: int, printed: str
) -> None:
    """Finding 12: cpu "1e400" in a warn-mode group made /metrics, the tree and its JSON answer 500 (float)."""
    ledger = MemoryLedger()
    holder = PolicyHolder(policy)
    create_app(holder, ledger)
    huge = 10 ** (exponent + 9)  # a ledger written before the bounds (SQLite keeps it across restarts)
    usage = {"requests.cpu": huge, "requests.nvidia.com/gpu": huge, "pods": NANO}
    ledger.observe(ObjectKey("apps", "Deployment", "team-b", "big"), "lab", usage)
    with TestClient(create_api_app(holder, ledger), raise_server_exceptions=False) as api:
        pages = ("/metrics", "/", "/pages/tree.json", "/groups/lab", "/pages/groups/lab.json", "/api/groups/lab")
        for path in pages:
            answer = api.get(path)
            assert answer.status_code == 200, (path, answer.text[:200])
        metrics = api.get("/metrics").text
        tree = api.get("/pages/tree.json").json()
    used = {s.labels["resource"]: s.value for f in text_string_to_metric_families(metrics) for s in f.samples
            if s.name == "quotalang_ledger_used" and s.labels.get("group") == "lab"}
    assert used["requests.cpu"] == float("inf")  # past a float, as AsApproximateFloat64 says it
    assert used["pods"] == 1.0
    (lab,) = [g for name, g in tree["groups"].items() if name == "lab"]
    bars = {b["key"]: b for b in lab["limits"]}
    assert bars["requests.cpu"]["over"] is True
    assert bars["requests.cpu"]["own_pct"] == 100.0
    assert bars["requests.cpu"]["used"] == printed  # exact, past Python's 4,300-digit conversion limit too

"""Hostile and careless bodies at the webhook's edge: one test per finding of issue 13 (and 12).

Each test names the finding it covers; each failed on the code before the fix
(a 500, a failure-mode admission, a poisoned index, an unbounded label or log
line, an import circle).
"""

from __future__ import annotations

import logging
from typing import Any

import grimp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from quotalang.controller import MemoryLedger
from quotalang.policy import CompiledPolicy
from quotalang.server.app import create_app
from quotalang.server.logs import FIELD_LIMIT, MESSAGE_LIMIT
from quotalang.server.reload import PolicyHolder
from tests.server.webhook_helpers import deployment, response_of, review

NANO = 10**9


def nested(levels: int) -> bytes:
    """JSON of `levels` nested objects (orjson will not write more than 254)."""
    return b'{"a":' * levels + b'"x"' + b"}" * levels


def with_raw(body: dict[str, Any], raw: bytes) -> bytes:
    """`body` as JSON with the string "@@raw@@" replaced by the JSON `raw`."""
    return orjson.dumps(body).replace(b'"@@raw@@"', raw)


def refused(client: TestClient, body: bytes) -> str:
    """The message of a 400 Status (asserting it is one)."""
    answer = client.post("/validate", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400, answer.text[:300]
    status = answer.json()
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 400, "BadRequest")
    message: str = status["message"]
    return message


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


def test_logging_needs_no_engine_types() -> None:
    """Issue 12: server/engine -> reload -> logs -> engine was a circle; logs now imports no engine."""
    graph = grimp.build_graph("quotalang")
    assert graph.find_shortest_chain("quotalang.server.logs", "quotalang.server.engine") is None
    assert graph.find_shortest_chain("quotalang.server.reload", "quotalang.server.engine") is None


@pytest.mark.parametrize("operation", [{"op": "CREATE"}, ["CREATE"]], ids=["dict", "list"])
def test_an_operation_that_is_not_a_string_is_a_400(
    client: TestClient, caplog: pytest.LogCaptureFixture, operation: Any
) -> None:
    """Finding 5: `operation` as a dict or list was a 500 (unhashable in the set of operations)."""
    body = review(deployment())
    body["request"]["operation"] = operation
    assert "request.operation" in refused(client, orjson.dumps(body))
    no_errors_logged(caplog)


@pytest.mark.parametrize("field", ["name", "namespace", "subResource"])
def test_deeply_nested_request_strings_are_a_400(
    client: TestClient, ledger: MemoryLedger, caplog: pytest.LogCaptureFixture, field: str
) -> None:
    """Finding 5: a `name` nested ~1,000 levels made the message's repr raise RecursionError: a 500."""
    body = review(deployment())
    body["request"][field] = "@@raw@@"
    message = refused(client, with_raw(body, nested(1019)))
    assert message.startswith("the review nests more than")
    assert ledger.group_usage("ml").used == {}
    no_errors_logged(caplog)


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("kind", "group"), 1, "request.kind.group"),
        (("resource", "resource"), ["deployments"], "request.resource.resource"),
        (("requestKind",), "Deployment", "request.requestKind"),
        (("userInfo",), "alice", "request.userInfo"),
        (("userInfo", "groups"), "system:masters", "request.userInfo.groups"),
        (("options",), [1], "request.options"),
        (("object", "metadata"), "web", "request.object.metadata"),
        (("object", "metadata", "labels", "team"), {"a": 1}, "request.object.metadata.labels"),
        (("object", "metadata", "name"), 7, "request.object.metadata.name"),
        (("object", "apiVersion"), None, "request.object has apiVersion None and kind 'Deployment'"),
        (("object", "kind"), "Scale", "request.kind says apps/v1 Deployment"),
    ],
)
def test_wrong_types_in_request_fields_are_a_400_that_names_the_field(
    client: TestClient, ledger: MemoryLedger, path: tuple[str, ...], value: Any, named: str
) -> None:
    """Finding 5: wrong types in request fields were read anyway (answered 200, or a failure-mode answer)."""
    body = review(deployment())
    node = body["request"]
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    assert named in refused(client, orjson.dumps(body))
    assert ledger.group_usage("ml").used == {}


def test_an_object_nested_too_deep_is_refused_before_anything_is_written(
    client: TestClient, ledger: MemoryLedger
) -> None:
    """Finding 7: 256-1023 levels failed after the index entry was written; the next CREATE was charged 0."""
    deep = deployment("poison")
    deep["spec"]["template"]["metadata"]["annotations"] = {"x": "@@raw@@"}
    assert "nests more than" in refused(client, with_raw(review(deep), nested(300)))
    assert ledger.group_usage("ml").used == {}
    again = response_of(client.post("/validate", content=orjson.dumps(review(deployment("poison")))).json())
    assert again["allowed"] is True
    assert ledger.group_usage("ml").used["requests.cpu"] == 4 * NANO  # charged in full


def test_failure_mode_allow_never_admits_an_invalid_object(policy: CompiledPolicy) -> None:
    """Finding 6: `--failure-mode allow` admitted a workload with cpu "1e1.5", uncharged."""
    ledger = MemoryLedger()
    with TestClient(create_app(PolicyHolder(policy), ledger, failure_mode="allow")) as client:
        answer = client.post("/validate", content=orjson.dumps(review(deployment("bad", cpu="1e1.5"))))
    response = response_of(answer.json())
    assert response["allowed"] is False
    assert response["status"]["message"].startswith("cannot read Deployment team-a/bad: ")
    assert "1e1.5" in response["status"]["message"]
    assert "failure mode" not in response["status"]["message"]
    assert ledger.group_usage("ml").used == {}


@pytest.mark.parametrize("dry_run", ["false", "true", 0, 1, {}])
def test_a_dry_run_that_is_not_a_boolean_is_a_400_and_reserves_nothing(
    client: TestClient, ledger: MemoryLedger, dry_run: Any
) -> None:
    """Finding 9: `dryRun: "false"` was taken as a dry run (truthy); only the boolean counts now."""
    body = review(deployment())
    body["request"]["dryRun"] = dry_run
    assert "request.dryRun" in refused(client, orjson.dumps(body))
    assert ledger.group_usage("ml").used == {}


def test_a_boolean_false_dry_run_reserves(client: TestClient, ledger: MemoryLedger) -> None:
    body = review(deployment(), dry_run=False)
    assert response_of(client.post("/validate", content=orjson.dumps(body)).json())["allowed"] is True
    assert ledger.group_usage("ml").used["requests.cpu"] == 4 * NANO


def test_metric_labels_come_from_a_closed_set(client: TestClient, api: TestClient) -> None:
    """Finding 9: every request kind became a label value never freed (/metrics grew to 21 MB)."""
    for n in range(200):
        obj = deployment(f"w{n}", group=f"made-up-{n}")
        obj["kind"] = f"Kind{n}"
        body = review(obj, kind={"group": "apps", "version": "v1", "kind": f"Kind{n}"})
        assert client.post("/validate", content=orjson.dumps(body)).status_code == 200
    client.post("/validate", content=orjson.dumps(review(deployment("real", group="nope"))))
    text = api.get("/metrics").text
    kinds, groups = set(), set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "quotalang_admissions_total":
                kinds.add(sample.labels["kind"])
                groups.add(sample.labels["group"])
    assert kinds == {"other", "Deployment"}
    assert groups <= {"", "other"}
    assert "Kind1" not in text and "made-up" not in text


def test_decision_log_lines_are_bounded(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Finding 9: a 100,000-character name or group label was logged whole on every decision."""
    caplog.set_level(logging.INFO, logger="quotalang.admission")
    long = "n" * 100_000
    obj = deployment(long, group="g" * 100_000)
    client.post("/validate", content=orjson.dumps(review(obj)))
    (record,) = [r for r in caplog.records if r.name == "quotalang.admission"]
    fields = record.fields  # type: ignore[attr-defined]
    assert len(fields["name"]) < FIELD_LIMIT + 40
    assert len(fields["denial"]) < MESSAGE_LIMIT + 40
    assert len(orjson.dumps(fields)) < 4096


def test_explain_answers_a_malformed_quantity_with_a_400(api: TestClient) -> None:
    """Finding 5: /api/explain caught only InputError; a QuantityError was a 500 with its traceback logged."""
    answer = api.post("/api/explain", content=orjson.dumps(deployment("bad", cpu="1.5.5")))
    assert answer.status_code == 400
    assert "1.5.5" in answer.json()["message"]

"""The API port's app (`quotalang.server.api`): metrics, the JSON API, the pages' mount.

Admissions go through the admission app (the `client` fixture) over the same
ledger; what they charged is read here (the `api` fixture). Who may read is
`test_api_auth.py`'s business: these apps have no gate.
"""

from __future__ import annotations

import orjson
import pytest
import yaml
from starlette.testclient import TestClient

from quotalang.controller import MemoryLedger
from quotalang.server.api import create_api_app
from quotalang.server.reload import PolicyHolder
from tests.cash import set_cash
from tests.server.test_app import NANO, post, used
from tests.server.webhook_helpers import deployment, hpa, review


def test_metrics_count_the_admission_ports_decisions(client: TestClient, api: TestClient) -> None:
    post(client, review(deployment("web")))
    text = api.get("/metrics").text
    assert "quotalang_admissions_total{" in text


def test_with_no_policy_loaded_the_api_answers_503(ledger: MemoryLedger) -> None:
    with TestClient(create_api_app(PolicyHolder(), ledger, hosts=["testserver"])) as api:
        assert api.get("/api/groups").status_code == 503
        assert api.get("/api/groups/ml").status_code == 503
        assert api.get("/metrics").status_code == 200


def test_the_api_port_serves_no_admission(api: TestClient) -> None:
    assert api.post("/validate", content=orjson.dumps(review(deployment("web")))).status_code in (404, 405)
    assert api.get("/readyz").status_code == 404


def test_api_groups_lists_the_tree(api: TestClient) -> None:
    groups = {g["name"]: g for g in api.get("/api/groups").json()}
    assert set(groups) == {"root", "ml", "lab", "audited"}
    assert groups["root"]["children"] == ["ml", "lab", "audited"]
    assert {k: v for k, v in groups["lab"].items() if k != "limits"} == {
        "name": "lab",
        "path": "root/lab",
        "parent": "root",
        "mode": "warn",
        "children": [],
    }


def test_api_groups_shows_what_a_parents_teams_hold(client: TestClient, api: TestClient) -> None:
    """root uses nothing itself; its team ml holds 2 pods × 4 cores = 8: root's subtree reads 8 of 100."""
    post(client, review(deployment("web", replicas=2)))
    groups = {g["name"]: {r["key"]: r for r in g["limits"]} for g in api.get("/api/groups").json()}
    assert groups["root"]["requests.cpu"] == {"key": "requests.cpu", "hard": "100", "used": "0", "subtree": "8"}
    assert groups["ml"]["requests.cpu"] == {"key": "requests.cpu", "hard": "40", "used": "8", "subtree": "8"}
    assert groups["lab"]["requests.cpu"]["subtree"] == "0"
    detail = {r["key"]: r for r in api.get("/api/groups/root").json()["limits"]}
    assert (detail["requests.cpu"]["used"], detail["requests.cpu"]["subtree"]) == ("0", "8")


def test_api_group_shows_hard_used_reserved_free_and_cash(
    client: TestClient, ledger: MemoryLedger, api: TestClient
) -> None:
    post(client, review(deployment("web", replicas=2)))
    set_cash(ledger, "ml", {"requests.nvidia.com/gpu": 90 * 3600 * NANO})
    body = api.get("/api/groups/ml").json()
    rows = {r["key"]: r for r in body["limits"]}
    assert rows["requests.cpu"] == {
        "key": "requests.cpu",
        "hard": "40",
        "carved": "0",
        "used": "8",
        "subtree": "8",
        "reserved": "0",
        "free": "32",
    }
    assert rows["pods"]["used"] == "2"
    assert body["cash"] == [
        {"key": "requests.nvidia.com/gpu", "period": "week", "budget": "500h", "carved": "0h", "used": "90h",
         "free": "410h"}
    ]
    assert (body["objects"], body["reservations"]) == (1, 0)
    root = {r["key"]: r for r in api.get("/api/groups/root").json()["limits"]}
    assert (root["requests.cpu"]["carved"], root["requests.cpu"]["free"]) == ("60", "40")


def test_api_group_unknown_is_404_with_near_names(api: TestClient) -> None:
    answer = api.get("/api/groups/mll")
    assert answer.status_code == 404
    assert answer.json()["message"] == "no group 'mll' in the policy; did you mean ml?"


def test_explain_decides_without_reserving(api: TestClient) -> None:
    answer = api.post("/api/explain", content=orjson.dumps(deployment("big", replicas=11)))
    assert answer.status_code == 200
    body = answer.json()
    assert body["object"] == "Deployment big (apps/v1)"
    assert body["allowed"] is False
    assert body["violations"][0]["resource"] == "requests.cpu"
    assert body["message"].endswith("requested 44 (11 × pod 4), used 0 of 40, 40 free")
    assert api.post("/api/explain", content=orjson.dumps(deployment("ok", replicas=2))).json()["allowed"]
    assert used(api, "ml", "requests.cpu") == "0"


def test_explain_takes_yaml_and_an_update_envelope(client: TestClient, api: TestClient) -> None:
    post(client, review(deployment("web", replicas=5)))
    text = yaml.safe_dump(
        {"object": deployment("web", replicas=7), "oldObject": deployment("web", replicas=5)}
    )
    answer = api.post("/api/explain", content=text.encode(), headers={"content-type": "application/yaml"})
    body = answer.json()
    assert body["operation"] == "UPDATE"
    assert body["delta"]["requests.cpu"] == "8"  # 2 more pods × 4
    assert body["allowed"] is True
    assert used(api, "ml", "requests.cpu") == "20"


def test_explain_finds_an_hpa_target_in_the_ledger(client: TestClient, api: TestClient) -> None:
    post(client, review(deployment("web", replicas=2)))
    body = api.post("/api/explain", content=orjson.dumps(hpa("web", "web", 11))).json()
    assert body["allowed"] is False


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        (b"{nope", {}, "body is not JSON"),
        (b"a: [", {"content-type": "application/yaml"}, "body is not YAML"),
        (b"[]", {}, "body is a list, not a workload object"),
        (b'{"metadata": {}}', {}, "no workload"),
        (b"", {}, "empty body"),
        (orjson.dumps({"object": deployment(), "operation": "DELETE"}), {}, "operation 'DELETE'"),
        (orjson.dumps(deployment(replicas="x")), {}, "spec.replicas"),
    ],
    ids=["not-json", "not-yaml", "list", "no-kind", "empty", "bad-operation", "unreadable"],
)
def test_explain_bad_input_is_a_400(
    api: TestClient, body: bytes, headers: dict[str, str], message: str
) -> None:
    answer = api.post("/api/explain", content=body, headers=headers)
    assert answer.status_code == 400
    assert message in answer.json()["message"]

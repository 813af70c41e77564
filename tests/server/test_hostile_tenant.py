"""A hostile tenant with kubectl (issue 25): the findings of the `hostile` side, one test or more each.

Each test names its finding, and failed on the code before the fix.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
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


def threads_of(monkeypatch: pytest.MonkeyPatch, cls: type, method: str) -> list[str]:
    """The names of the threads `cls.method` runs in from now on (the method still runs)."""
    threads: list[str] = []
    original = getattr(cls, method)

    def recorded(self: Any, *args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, recorded)
    return threads


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
    with TestClient(create_api_app(holder, ledger, hosts=["testserver"]), raise_server_exceptions=False) as api:
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


def explained(api: TestClient, body: bytes, content_type: str = "application/yaml") -> Any:
    answer = api.post("/api/explain", content=body, headers={"content-type": content_type})
    assert answer.status_code < 500, answer.text[:300]
    return answer


@pytest.mark.parametrize(("body", "content_type", "status", "said"), [
    (b"- " * 5000 + b"x", "application/yaml", 400, "nests more than 128 levels"),  # was a RecursionError: 500
    (b"[" * 5000 + b"]" * 5000, "application/yaml", 400, "nests more than 128 levels"),
    (b'{"a":' * 1000 + b"1" + b"}" * 1000, "application/json", 400, "nests more than 128 levels"),  # TypeError: 500
    (b"kind: Pod\nspec: {replicas: " + b"9" * 4400 + b"}", "application/yaml", 400, "YAML cannot read"),
    (b"kind: Pod\nspec: {replicas: " + b"9" * 30 + b"}", "application/yaml", 400, "outside int64"),
    (b"a: &x [1, 2]\nkind: *x", "application/yaml", 400, "aliases (*name) are not accepted"),
    (b"kind: Pod\n---\nkind: Pod", "application/yaml", 400, "several YAML documents"),
    (b"kind: Pod", "text/plain; x=yaml", 415, "not served"),  # a CORS simple request counted as YAML
    (b"kind=Pod", "application/x-www-form-urlencoded", 415, "not served"),
])
def test_explain_refuses_hostile_bodies_with_a_4xx(
    api: TestClient, caplog: pytest.LogCaptureFixture, body: bytes, content_type: str, status: int, said: str
) -> None:
    """Finding 9: 5,000-deep YAML and 1,000-deep JSON were 500s, and `text/plain; x=yaml` counted as YAML."""
    answer = explained(api, body, content_type)
    assert answer.status_code == status, answer.text[:300]
    assert said in answer.json()["message"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_explain_parses_and_decides_away_from_the_event_loop(
    api: TestClient, api_app: Starlette, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 9: /api/explain parsed (17.8 s for 3 MB) and decided on the event loop admissions share.

    Parsing in this process now fails the test (the worker process has its own yaml),
    and the decision records the thread it ran in.
    """
    import yaml

    from quotalang.server.engine import Engine

    def on_the_loop(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a posted body was parsed in the server's process")

    monkeypatch.setattr(yaml, "safe_load", on_the_loop)
    monkeypatch.setattr(yaml, "load", on_the_loop)
    threads = threads_of(monkeypatch, Engine, "explain")
    text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: w, namespace: team-a, labels: {team: ml}}\n" \
        "spec:\n  replicas: 2\n  template:\n    spec:\n      containers:\n      - name: a\n" \
        "        resources: {requests: {cpu: '4'}}\n"
    answer = explained(api, text.encode())
    assert answer.status_code == 200, answer.text
    assert answer.json()["allowed"] is True
    assert answer.json()["usage"]["requests.cpu"] == "8"  # 2 × 4, by hand
    page = api.post("/what-if", data={"workload": text, "operation": "CREATE", "csrf": api_app.state.form_token})
    assert page.status_code == 200, page.text[-300:]
    assert len(threads) == 2 and all(name.startswith("quotalang-explain") for name in threads), threads


def test_a_large_review_is_decided_in_its_own_thread(
    client: TestClient, ledger: MemoryLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 11: a 1.8 MB review took ~80 ms of the one event loop; 48 senders put others' p50 at 2.5 s.

    A review past LARGE_BODY is parsed and decided in the large-review thread (one at a time),
    a small one still on the loop; both are charged alike.
    """
    from quotalang.server.app import LARGE_BODY
    from quotalang.server.engine import Engine

    threads = threads_of(monkeypatch, Engine, "review")
    big = deployment("big")
    big["metadata"]["annotations"] = {"note": "x" * LARGE_BODY}
    assert post(client, big)["allowed"] is True
    assert post(client, deployment("small"))["allowed"] is True
    assert threads[0].startswith("quotalang-large-review")
    assert not threads[-1].startswith("quotalang-large-review")
    assert ledger.group_usage("ml").used["requests.cpu"] == 8 * NANO  # 4 + 4, by hand


@pytest.mark.parametrize(("host", "status"), [
    ("evil.example", 421), ("evil.example:8444", 421), ("localhost.evil.example", 421),
    ("127.0.0.1:8444", 200), ("localhost", 200), ("[::1]:8444", 200), ("10.1.2.3", 200),
    ("quotalang.example.com", 200),  # named with serve --api-hostname
])
def test_the_api_port_answers_only_its_own_host_names(
    holder: PolicyHolder, ledger: MemoryLedger, host: str, status: int
) -> None:
    """Finding 14: the API port answered any Host, so a rebound DNS name could read the tree from a browser."""
    api_app = create_api_app(holder, ledger, hosts=["quotalang.example.com"])
    with TestClient(api_app) as api:
        for path in ("/api/groups", "/", "/metrics"):
            assert api.get(path, headers={"host": host}).status_code == status
        posted = api.post("/api/explain", content=orjson.dumps(deployment()), headers={"host": host})
        assert posted.status_code == status
    if status == 421:
        assert "is not served here" in posted.json()["message"]


@pytest.mark.parametrize("path", ["/what-if", "/propose", "/propose/diff"])
def test_the_forms_need_this_servers_token(api: TestClient, api_app: Starlette, path: str) -> None:
    """Finding 14: the what-if and propose forms accepted posts from any site (CSRF)."""
    form = {"workload": "kind: Pod\napiVersion: v1", "operation": "CREATE", "group": "ml", "limit:requests.cpu": "41"}
    for token in (None, "guessed", api_app.state.form_token[:-1]):
        data = dict(form) if token is None else {**form, "csrf": token}
        answer = api.post(path, data=data)
        assert answer.status_code == 403, (token, answer.text[-300:])
        assert "reload the page" in answer.text
    page = api.get("/what-if").text  # one token for every form of the server
    token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]  # what the page's form carries
    assert token == api_app.state.form_token
    answer = api.post(path, data={**form, "csrf": token})
    assert answer.status_code != 403 and "reload the page" not in answer.text

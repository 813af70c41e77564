"""Every route of the app through starlette's TestClient, every bad body included.

Numbers by hand (see webhook_helpers.POLICY): group `ml` may use 40 cpu and
each test pod asks for 4, so ten fit; root keeps 100 − (40 + 10 + 10) = 40
cpu for itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx
import orjson
import pytest
from starlette.testclient import TestClient

from quotalang.compiler import CompiledPolicy
from quotalang.controller import MemoryLedger, ObjectKey
from quotalang.controller.ledger.base import Ask
from quotalang.decision import Decision
from quotalang.server.app import create_app
from quotalang.server.metrics import Metrics
from quotalang.server.reload import PolicyHolder
from tests.server.webhook_helpers import deployment, hpa, response_of, review, scale_review

NANO = 10**9


def post(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.post(
        "/validate", content=orjson.dumps(body), headers={"content-type": "application/json"}
    )
    assert answer.status_code == 200, answer.text
    return response_of(answer.json())


def used(api: TestClient, group: str, key: str) -> str:
    """What the API port shows as used (the admission app has no /api)."""
    rows = api.get(f"/api/groups/{group}").json()["limits"]
    found: str = next(r["used"] for r in rows if r["key"] == key)
    return found


# ------------------------------------------------------------ decisions
def test_an_allowed_create_answers_with_the_same_uid(client: TestClient, api: TestClient) -> None:
    response = post(client, review(deployment("web", replicas=2), uid="7f0c-uid"))
    assert response == {"uid": "7f0c-uid", "allowed": True}
    assert used(api, "ml", "requests.cpu") == "8"


def test_a_denial_reads_like_kubernetes_with_the_arithmetic(client: TestClient, api: TestClient) -> None:
    response = post(client, review(deployment("big", replicas=11), uid="u-1"))  # 11 × 4 = 44 > 40
    assert response["uid"] == "u-1"
    assert response["allowed"] is False
    assert response["status"] == {
        "code": 403,
        "reason": "Forbidden",
        "message": "quota exceeded in group root/ml: requests.cpu: requested 44 (11 × pod 4), "
        "used 0 of 40, 40 free",
    }
    assert used(api, "ml", "requests.cpu") == "0"


def test_quota_is_enforced_across_requests(client: TestClient, api: TestClient) -> None:
    answers = [post(client, review(deployment(f"w{i}")))["allowed"] for i in range(11)]
    assert answers == [True] * 10 + [False]
    assert used(api, "ml", "requests.cpu") == "40"


def test_the_tenth_pod_warns_at_ninety_percent(client: TestClient) -> None:
    for i in range(9):
        post(client, review(deployment(f"w{i}")))
    response = post(client, review(deployment("w9")))  # 40 of 40 = 100 % ≥ 90 %
    assert response["allowed"] is True
    assert any("requests.cpu" in w and "100%" in w for w in response["warnings"])


def test_warn_mode_allows_with_short_warnings(client: TestClient, api: TestClient) -> None:
    response = post(client, review(deployment("big", "lab", replicas=3)))  # 12 > 10
    assert response["allowed"] is True
    assert "status" not in response
    assert response["warnings"] == ["lab: requests.cpu: requested 12 (3 × pod 4), used 0 of 10, 10 free"]
    assert all(len(w) < 120 for w in response["warnings"])
    assert used(api, "lab", "requests.cpu") == "12"  # admitted, so charged


def test_audit_mode_allows_and_annotates(client: TestClient) -> None:
    response = post(client, review(deployment("big", "audited", replicas=3)))
    assert response["allowed"] is True
    assert response["auditAnnotations"] == {
        "would-deny": "quota exceeded in group root/audited: requests.cpu: requested 12 (3 × pod 4), "
        "used 0 of 10, 10 free"
    }


def test_an_unknown_group_is_denied_with_near_names(client: TestClient) -> None:
    message = post(client, review(deployment("web", "mll")))["status"]["message"]
    assert "unknown quota group 'mll'" in message
    assert "did you mean ml" in message


def test_unlabelled_workloads_are_denied_when_the_policy_says_so(client: TestClient) -> None:
    response = post(client, review(deployment("web", None)))
    assert response["allowed"] is False
    assert "no label team" in response["status"]["message"]


def test_a_dry_run_is_answered_and_reserves_nothing(client: TestClient, api: TestClient) -> None:
    assert post(client, review(deployment("web", replicas=5), dry_run=True))["allowed"] is True
    assert used(api, "ml", "requests.cpu") == "0"
    denied = post(client, review(deployment("web", replicas=11), dry_run=True))
    assert denied["allowed"] is False


def test_updates_charge_the_difference(client: TestClient, api: TestClient) -> None:
    post(client, review(deployment("web", replicas=5)))
    grown = post(client, review(deployment("web", replicas=10), "UPDATE", deployment("web", replicas=5)))
    assert grown["allowed"] is True
    assert used(api, "ml", "requests.cpu") == "40"
    over = post(client, review(deployment("web", replicas=11), "UPDATE", deployment("web", replicas=10)))
    assert over["allowed"] is False
    assert over["status"]["message"].startswith("quota exceeded in group root/ml: requests.cpu: requested 4 ")


def test_delete_passes_untouched_and_releases_in_standalone_mode(client: TestClient, api: TestClient) -> None:
    post(client, review(deployment("web", replicas=5)))
    response = post(client, review(None, "DELETE", deployment("web", replicas=5)))
    assert response == {"uid": response["uid"], "allowed": True}
    assert used(api, "ml", "requests.cpu") == "0"


def test_other_subresources_pass_untouched(client: TestClient, api: TestClient) -> None:
    status_update = review(
        deployment("web", replicas=50), "UPDATE", deployment("web", replicas=50), sub_resource="status"
    )
    assert post(client, status_update)["allowed"] is True
    assert used(api, "ml", "requests.cpu") == "0"


def test_connect_passes_untouched(client: TestClient) -> None:
    body = review({"kind": "PodExecOptions", "apiVersion": "v1"}, "CONNECT")
    assert post(client, body)["allowed"] is True


# ------------------------------------------------------------ scale and HPA
def test_scale_finds_its_parent_in_the_ledger(client: TestClient, api: TestClient) -> None:
    post(client, review(deployment("web", replicas=2)))
    assert post(client, scale_review("web", 10, 2))["allowed"] is True  # 10 × 4 = 40
    assert used(api, "ml", "requests.cpu") == "40"
    denied = post(client, scale_review("web", 11, 10))
    assert denied["allowed"] is False
    assert (
        "requests.cpu: requested 4 (+4 to 11 × pod 4), used 40 of 40, 0 free" in denied["status"]["message"]
    )


def test_a_dry_run_scale_reserves_nothing(client: TestClient, api: TestClient) -> None:
    post(client, review(deployment("web", replicas=2)))
    assert post(client, scale_review("web", 10, 2, dry_run=True))["allowed"] is True
    assert used(api, "ml", "requests.cpu") == "8"


def test_scaling_an_unknown_workload_is_denied(client: TestClient) -> None:
    response = post(client, scale_review("ghost", 3, 1))
    assert response["allowed"] is False
    assert "cannot find the workload team-a/ghost being scaled" in response["status"]["message"]


def test_scaling_a_kind_the_policy_does_not_charge_passes(client: TestClient) -> None:
    assert post(client, scale_review("db", 30, 1, resource="statefulsets"))["allowed"] is True


def test_an_hpa_is_checked_against_its_target(client: TestClient, api: TestClient) -> None:
    post(client, review(deployment("web", replicas=2)))
    assert post(client, review(hpa("web", "web", 10)))["allowed"] is True  # 10 × 4 = 40 fits
    assert used(api, "ml", "requests.cpu") == "8"  # checked, not charged
    too_big = post(client, review(hpa("web", "web", 11)))
    assert too_big["allowed"] is False
    assert "requests.cpu" in too_big["status"]["message"]


def test_an_hpa_whose_target_is_unknown_is_allowed_with_a_warning(client: TestClient) -> None:
    response = post(client, review(hpa("h", "ghost", 100)))
    assert response["allowed"] is True
    assert response["warnings"] == ["HPA team-a/h: target not found, maxReplicas not checked"]


# ------------------------------------------------------------ errors inside valid reviews
def test_an_unreadable_object_is_denied_with_the_reason(client: TestClient) -> None:
    response = post(client, review(deployment("web", replicas="three")))
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    assert response["status"]["message"].startswith("cannot read Deployment team-a/web: ")
    assert "three" in response["status"]["message"]


class BrokenLedger(MemoryLedger):
    def reserve(self, ask: Ask) -> Decision:
        raise RuntimeError("ledger down")


@pytest.mark.parametrize("mode", ["deny", "allow"])
def test_handler_errors_follow_the_failure_mode_and_are_counted(policy: CompiledPolicy, mode: str) -> None:
    metrics = Metrics()
    app = create_app(PolicyHolder(policy), BrokenLedger(), failure_mode=mode, metrics=metrics)  # type: ignore[arg-type]
    with TestClient(app) as client:
        response = post(client, review(deployment("web"), uid="u-err"))
    assert response["uid"] == "u-err"
    if mode == "deny":
        assert response["allowed"] is False
        assert response["status"]["code"] == 500
        assert "RuntimeError: ledger down" in response["status"]["message"]
    else:
        assert response["allowed"] is True
        assert "ledger down" in response["warnings"][0]
    assert (
        metrics.registry.get_sample_value("quotalang_admission_errors_total", {"kind": "Deployment"}) == 1.0
    )


def test_a_bug_past_the_engine_is_a_500_status_naming_only_its_type(
    policy: CompiledPolicy, ledger: MemoryLedger, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The /validate fast path skips Starlette's error middleware, so it answers a bug as that would: a
    `Status` 500 with the exception's type, the detail in the log only."""

    def broken(*args: Any) -> None:
        raise RuntimeError("detail for the log only")

    monkeypatch.setattr("quotalang.server.app.log_decision", broken)
    with TestClient(create_app(PolicyHolder(policy), ledger)) as client:
        answer = client.post("/validate", content=orjson.dumps(review(deployment("web"))))
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 500,
                             "reason": "InternalError", "message": "internal error: RuntimeError"}
    logged = [r for r in caplog.records if r.getMessage() == "internal error"]
    assert [r.fields["error"] for r in logged] == ["RuntimeError: detail for the log only"]  # type: ignore[attr-defined]


def test_with_no_policy_loaded_requests_fail_per_mode_and_readyz_says_no(ledger: MemoryLedger) -> None:
    with TestClient(create_app(PolicyHolder(), ledger)) as client:
        response = post(client, review(deployment("web")))
        assert response["allowed"] is False
        assert "no policy is loaded yet" in response["status"]["message"]
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["ready"] is False
        assert client.get("/api/groups").status_code == 404  # the API port's, not this one's


# ------------------------------------------------------------ bad bodies
def _bad(request: Mapping[str, Any]) -> bytes:
    return orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})


GOOD_REQUEST = review(deployment("web"))["request"]

BAD_BODIES = [
    ("not-json", b"{not json", "body is not JSON"),
    ("empty", b"", "empty body: expected an AdmissionReview"),
    ("a-list", b"[1, 2]", "body is a JSON list, not an AdmissionReview object"),
    (
        "not-a-review",
        orjson.dumps({"apiVersion": "v1", "kind": "Pod"}),
        "expected kind AdmissionReview, got 'Pod'",
    ),
    (
        "v1beta1",
        orjson.dumps(
            {"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": GOOD_REQUEST}
        ),
        "apiVersion 'admission.k8s.io/v1beta1' is not served: only admission.k8s.io/v1",
    ),
    (
        "no-request",
        orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}),
        "the AdmissionReview has no request object",
    ),
    ("no-uid", _bad({k: v for k, v in GOOD_REQUEST.items() if k != "uid"}), "request.uid is missing"),
    ("empty-uid", _bad({**GOOD_REQUEST, "uid": ""}), "request.uid is missing"),
    (
        "no-object",
        _bad({**GOOD_REQUEST, "object": None}),
        "request.object is missing: a CREATE carries the object",
    ),
    ("no-kind", _bad({k: v for k, v in GOOD_REQUEST.items() if k != "kind"}), "request.kind is missing"),
    (
        "bad-operation",
        _bad({**GOOD_REQUEST, "operation": "PATCH"}),
        "request.operation 'PATCH' is not one of",
    ),
    (
        "old-not-object",
        _bad({**GOOD_REQUEST, "oldObject": [1]}),
        "request.oldObject is a list, not an object",
    ),
    ("name-not-string", _bad({**GOOD_REQUEST, "name": 7}), "request.name is 7, not a string"),
]


@pytest.mark.parametrize(
    ("body", "message"), [(b, m) for _, b, m in BAD_BODIES], ids=[i for i, _, _ in BAD_BODIES]
)
def test_bad_bodies_get_a_400_that_says_why(
    client: TestClient, metrics: Metrics, body: bytes, message: str
) -> None:
    answer = client.post("/validate", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400
    status = answer.json()
    assert status["kind"] == "Status"
    assert status["code"] == 400
    assert status["reason"] == "BadRequest"
    assert message in status["message"]
    assert "Traceback" not in answer.text
    counted = sum(
        s.value
        for m in metrics.registry.collect()
        if m.name == "quotalang_bad_requests"
        for s in m.samples
        if s.name.endswith("_total")
    )
    assert counted == 1
    assert post(client, review(deployment("after")))["allowed"] is True  # the worker is fine


def test_a_body_over_the_default_limit_gets_413(client: TestClient) -> None:
    body = b" " * (3 * 1024 * 1024 + 1)
    answer = client.post("/validate", content=body)
    assert answer.status_code == 413
    assert answer.json()["message"] == "request body is 3145729 bytes, over the limit of 3145728 bytes"


def test_a_streamed_body_is_cut_off_at_the_limit(holder: PolicyHolder, ledger: MemoryLedger) -> None:
    with TestClient(create_app(holder, ledger, max_body=1000)) as client:
        answer = client.post(
            "/validate", content=iter([b"x" * 600, b"x" * 600])
        )  # chunked: no Content-Length
        assert answer.status_code == 413
        assert "over the limit of 1000 bytes" in answer.json()["message"]
        small = client.post("/validate", content=orjson.dumps(review(deployment("web"))))
        assert small.status_code == 200


def test_unknown_routes_and_methods_are_plain_4xx(client: TestClient) -> None:
    assert client.get("/validate").status_code == 405
    assert client.get("/nope").status_code == 404


@pytest.mark.parametrize("path", ["/metrics", "/api/groups", "/api/groups/ml", "/api/groups/mll", "/", "/what-if"])
def test_the_admission_port_serves_nothing_that_reads_the_tree(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 404
    assert "ml" not in answer.text


# ------------------------------------------------------------ health
def test_healthz(client: TestClient) -> None:
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


def test_readyz_reports_the_policy_checksum(client: TestClient, policy: CompiledPolicy) -> None:
    answer = client.get("/readyz")
    assert answer.status_code == 200
    body = answer.json()
    assert body["ready"] is True
    assert body["policy"] == policy.checksum
    assert (body["groups"], body["kinds"]) == (4, 2)


# ------------------------------------------------------------ concurrency through the app
def test_fifty_concurrent_requests_through_the_app_admit_exactly_ten(app: Any, ledger: MemoryLedger) -> None:
    async def burst() -> list[bool]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://webhook") as client:
            answers = await asyncio.gather(
                *(
                    client.post("/validate", content=orjson.dumps(review(deployment(f"w{i}"))))
                    for i in range(50)
                )
            )
        return [bool(a.json()["response"]["allowed"]) for a in answers]

    allowed = asyncio.run(burst())
    assert allowed.count(True) == 10
    assert ledger.used("ml")["requests.cpu"] == 40 * NANO
    assert len(ledger) == 10
    admitted = [i for i, ok in enumerate(allowed) if ok]
    assert ledger.lookup(ObjectKey("apps", "Deployment", "team-a", f"w{admitted[0]}")) is not None

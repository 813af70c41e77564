"""The exemption label: only namespaces listed at install time may carry it (server/exemptions.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from quotalang.errors import InputError
from quotalang.server.admission import AdmissionRequest
from quotalang.server.exemptions import LABEL, exempt_list, review, routes

EXEMPT = ("kube-system", "quota-system")


def request(name: str, labels: dict[str, str] | None, operation: str = "UPDATE",
            old: dict[str, str] | None = None) -> dict[str, Any]:
    def ns(labels: dict[str, str] | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name}
        if labels is not None:
            meta["labels"] = labels
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}

    return {"uid": "u1", "kind": {"group": "", "version": "v1", "kind": "Namespace"},
            "resource": {"group": "", "version": "v1", "resource": "namespaces"}, "name": name,
            "operation": operation, "userInfo": {"username": "mallory"}, "object": ns(labels),
            "oldObject": ns(old) if operation == "UPDATE" else None}


def decide(body: dict[str, Any]) -> tuple[bool, str | None]:
    typed: AdmissionRequest = body  # type: ignore[assignment]
    return review(typed, EXEMPT)


def test_the_label_is_refused_on_a_namespace_not_in_the_list() -> None:
    allowed, message = decide(request("team-a", {LABEL: "true", "team": "a"}, old={"team": "a"}))
    assert not allowed
    assert message is not None
    assert message.startswith(f"namespace team-a may not carry the label {LABEL}: only the namespaces exempted "
                              "at install time (kube-system, quota-system) are exempt from quota")
    assert "--exempt-namespace team-a" in message
    # Creating a namespace with the label is the same opt-out.
    assert not decide(request("sneaky", {LABEL: ""}, operation="CREATE"))[0]


def test_listed_namespaces_may_carry_it_and_anyone_may_drop_it() -> None:
    assert decide(request("kube-system", {LABEL: "true"}, old={}))[0]
    assert decide(request("quota-system", {LABEL: "true"}, operation="CREATE"))[0]
    # Removing the label (old had it, new has not) only puts the namespace back under quota.
    assert decide(request("team-a", {"team": "a"}, old={LABEL: "true"})) == (True, None)
    assert decide(request("team-a", None, old={LABEL: "true"})) == (True, None)
    # A namespace still carrying a label from before the install cannot be edited until it drops it.
    assert not decide(request("team-a", {LABEL: "true", "new": "x"}, old={LABEL: "true"}))[0]


def test_anything_but_a_namespace_is_let_through_with_a_note() -> None:
    body = request("x", {LABEL: "true"})
    body["kind"] = {"group": "apps", "version": "v1", "kind": "Deployment"}
    allowed, message = decide(body)
    assert allowed and message is not None and "only judges Namespaces" in message


def test_kube_system_and_the_own_namespace_are_always_listed() -> None:
    assert exempt_list("quota-system") == ("kube-system", "quota-system")
    assert exempt_list("q", ["monitoring", "q", "monitoring"]) == ("kube-system", "monitoring", "q")
    for bad in ("Team-A", "a.b", "x" * 64, "-a", "a_b"):
        with pytest.raises(InputError, match="is not a namespace name"):
            exempt_list("q", [bad])


def test_the_route_answers_admission_reviews_and_refuses_garbage() -> None:
    client = TestClient(Starlette(routes=routes(EXEMPT, max_body=64 * 1024)))

    def post(body: bytes) -> Any:
        return client.post("/validate-namespaces", content=body, headers={"content-type": "application/json"})

    def review_of(req: dict[str, Any]) -> bytes:
        return orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})

    denied = post(review_of(request("team-a", {LABEL: "true"}, old={})))
    assert denied.status_code == 200
    response = denied.json()["response"]
    assert response["uid"] == "u1" and response["allowed"] is False
    assert response["status"]["code"] == 403 and "may not carry the label" in response["status"]["message"]
    allowed = post(review_of(request("kube-system", {LABEL: "true"}, old={})))
    assert allowed.json()["response"] == {"uid": "u1", "allowed": True}
    assert post(b"not json").status_code == 400
    assert post(b"{" * 10).status_code == 400
    assert post(b"x" * (65 * 1024)).status_code == 413


def test_serve_refuses_a_bad_exempt_namespace() -> None:
    from quotalang.server.serve import ServeError, ServeOptions, _exemption_routes

    with pytest.raises(ServeError, match="is not a namespace name"):
        _exemption_routes(ServeOptions(policy=["x"], exempt_namespaces=("Not_A_Name",)))
    route = _exemption_routes(ServeOptions(policy=["x"], exempt_namespaces=("monitoring",)))
    assert [getattr(r, "path", None) for r in route] == ["/validate-namespaces"]

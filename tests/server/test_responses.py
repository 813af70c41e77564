"""AdmissionResponses: the shapes the apiserver reads."""

from __future__ import annotations

import orjson

from quotalang.decision import Decision, Violation
from quotalang.server import responses


def test_allow_is_two_keys_when_there_is_nothing_to_say() -> None:
    assert responses.allow("u") == {"uid": "u", "allowed": True}


def test_deny_carries_a_forbidden_status() -> None:
    assert responses.deny("u", "no room") == {
        "uid": "u",
        "allowed": False,
        "status": {"code": 403, "reason": "Forbidden", "message": "no room"},
    }


def test_warnings_stay_under_120_characters() -> None:
    response = responses.allow("u", ["short", "x" * 300])
    assert response["warnings"][0] == "short"
    assert len(response["warnings"][1]) == 119
    assert response["warnings"][1].endswith("…")


def test_audit_annotation_keys_lose_their_prefix() -> None:
    """The apiserver prefixes keys with the webhook name; a second prefix would be dropped."""
    response = responses.allow("u", audit={"quotalang.dev/would-deny": "msg", "plain": "x"})
    assert response["auditAnnotations"] == {"would-deny": "msg", "plain": "x"}


def test_a_denied_decision_uses_its_message() -> None:
    violation = Violation("requests.cpu", 44 * 10**9, 0, 0, 40 * 10**9, "11 × pod 4")
    decision = Decision(False, "CREATE", group="ml", path="root/ml", violations=[violation])
    response = responses.for_decision("u", decision)
    assert response["status"]["message"] == (
        "quota exceeded in group root/ml: requests.cpu: requested 44 (11 × pod 4), used 0 of 40, 40 free"
    )


def test_an_allowed_audit_decision_is_annotated() -> None:
    violation = Violation("pods", 3 * 10**9, 0, 0, 2 * 10**9, "")
    decision = Decision(True, "CREATE", group="g", path="root/g", mode="audit", violations=[violation])
    response = responses.for_decision("u", decision)
    assert response["allowed"] is True
    assert set(response["auditAnnotations"]) == {"would-deny"}


def test_encode_wraps_the_response_in_a_review() -> None:
    assert orjson.loads(responses.encode({"uid": "u", "allowed": True})) == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": "u", "allowed": True},
    }


def test_status_bodies_name_the_reason() -> None:
    assert orjson.loads(responses.status_body(413, "too big")) == {
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "code": 413,
        "reason": "RequestEntityTooLarge",
        "message": "too big",
    }

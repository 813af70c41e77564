"""Parsing AdmissionReview bodies: what passes, and the message for what does not."""

from __future__ import annotations

import orjson
import pytest

from quotalang.server.admission import BadReview, parse_review
from tests.server.webhook_helpers import deployment, review


def test_a_valid_review_yields_its_request() -> None:
    body = review(deployment("web"), uid="abc")
    request = parse_review(orjson.dumps(body))
    assert request["uid"] == "abc"
    assert request["operation"] == "CREATE"
    assert request["kind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert request.get("object") == deployment("web")


def test_a_delete_needs_no_object() -> None:
    body = review(None, "DELETE", deployment("web"))
    assert parse_review(orjson.dumps(body))["operation"] == "DELETE"


def test_the_size_limit_is_checked_before_parsing() -> None:
    with pytest.raises(BadReview) as caught:
        parse_review(b"{" * 101, limit=100)
    assert (caught.value.status, caught.value.reason) == (413, "too-large")
    assert caught.value.message == "request body is 101 bytes, over the limit of 100 bytes"


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("uid", 5, "no-uid"),
        ("operation", None, "operation"),
        ("kind", "Deployment", "no-kind"),
        ("object", "yes", "no-object"),
        ("resource", "deployments", "invalid"),
        ("namespace", ["a"], "invalid"),
    ],
)
def test_each_bad_field_has_its_own_reason(field: str, value: object, reason: str) -> None:
    body = review(deployment("web"))
    body["request"][field] = value
    with pytest.raises(BadReview) as caught:
        parse_review(orjson.dumps(body))
    assert caught.value.status == 400
    assert caught.value.reason == reason
    assert f"request.{field}" in caught.value.message


def test_long_bad_values_are_shortened_in_messages() -> None:
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "x" * 500}
    with pytest.raises(BadReview) as caught:
        parse_review(orjson.dumps(body))
    assert len(caught.value.message) < 120
    assert caught.value.message.endswith("...")

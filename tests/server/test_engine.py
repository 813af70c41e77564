"""The engine: which requests are evaluated, which pass untouched, and the outcome it reports."""

from __future__ import annotations

from typing import Any

import pytest

from quotalang.compiler import CompiledPolicy
from quotalang.controller import MemoryLedger, ObjectKey
from quotalang.server.admission import AdmissionRequest
from quotalang.server.engine import Engine
from quotalang.server.reload import PolicyHolder
from tests.server.webhook_helpers import deployment, review, scale_review

NANO = 10**9
WEB = ObjectKey("apps", "Deployment", "team-a", "web")


def request(body: dict[str, Any]) -> AdmissionRequest:
    req: AdmissionRequest = body["request"]
    return req


@pytest.fixture
def engine(policy: CompiledPolicy) -> Engine:
    return Engine(PolicyHolder(policy), MemoryLedger())


@pytest.mark.parametrize(
    ("obj", "verdict", "reason", "group"),
    [
        (deployment("web"), "allow", "charged", "ml"),
        (deployment("web", replicas=11), "deny", "over-quota", "ml"),
        (deployment("web", "lab", replicas=3), "warn", "over-quota", "lab"),
        (deployment("web", "audited", replicas=3), "audit", "over-quota", "audited"),
        (deployment("web", "nobody"), "deny", "unknown-group", ""),
        (
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "team-a"}},
            "allow",
            "no-rule",
            "",
        ),
    ],
    ids=["allow", "deny", "warn", "audit", "unknown-group", "no-rule"],
)
def test_outcomes_classify_decisions(
    engine: Engine, obj: dict[str, Any], verdict: str, reason: str, group: str
) -> None:
    outcome = engine.review(request(review(obj, uid="u")))
    assert (outcome.verdict, outcome.reason, outcome.group) == (verdict, reason, group)
    assert outcome.uid == outcome.response["uid"] == "u"
    assert (outcome.kind, outcome.operation) == (obj["kind"], "CREATE")
    assert outcome.namespace == "team-a"


def test_name_and_namespace_come_from_the_object_when_the_request_lacks_them(engine: Engine) -> None:
    body = review(deployment("web", namespace="other"))
    del body["request"]["name"], body["request"]["namespace"]
    outcome = engine.review(request(body))
    assert (outcome.namespace, outcome.name) == ("other", "web")


def test_untouched_requests_are_skipped(engine: Engine) -> None:
    outcome = engine.review(request(review(None, "DELETE", deployment("web"))))
    assert (outcome.verdict, outcome.reason) == ("skip", "not-intercepted")
    assert outcome.response == {"uid": outcome.uid, "allowed": True}


def test_delete_releases_only_in_standalone_mode(policy: CompiledPolicy) -> None:
    reconciled = MemoryLedger(standalone=False)
    reconciled.observe(WEB, "ml", {"requests.cpu": 8 * NANO})
    Engine(PolicyHolder(policy), reconciled).review(request(review(None, "DELETE", deployment("web"))))
    assert reconciled.used("ml")["requests.cpu"] == 8 * NANO  # the controller releases it when it is gone

    standalone = MemoryLedger()
    engine = Engine(PolicyHolder(policy), standalone)
    engine.review(request(review(deployment("web", replicas=2))))
    engine.review(request(review(None, "DELETE", deployment("web"), dry_run=True)))
    assert standalone.used("ml")["requests.cpu"] == 8 * NANO  # a dry-run delete deletes nothing
    engine.review(request(review(None, "DELETE", deployment("web"))))
    assert "requests.cpu" not in standalone.used("ml")


def test_a_scale_is_charged_to_its_parent_identity(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger()
    engine = Engine(PolicyHolder(policy), ledger)
    engine.review(request(review(deployment("web", replicas=2))))
    outcome = engine.review(request(scale_review("web", 4, 2)))
    assert (outcome.verdict, outcome.group, outcome.kind) == ("allow", "ml", "Scale")
    assert ledger.used("ml")["requests.cpu"] == 16 * NANO
    parent = ledger.lookup(WEB)
    assert parent is not None and parent["spec"]["replicas"] == 4
    assert len(ledger) == 1  # no separate Scale object


def test_the_failure_mode_allow_answers_errors_with_a_warning(policy: CompiledPolicy) -> None:
    engine = Engine(PolicyHolder(), MemoryLedger(), failure_mode="allow")
    outcome = engine.review(request(review(deployment("web"))))
    assert (outcome.verdict, outcome.error) == ("error", "no policy is loaded yet")
    assert outcome.response["allowed"] is True
    assert outcome.response["warnings"] == [
        "quotalang could not decide; allowed (failure mode allow): no policy is loaded yet"
    ]

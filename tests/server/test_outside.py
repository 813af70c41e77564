"""`GET /api/namespaces`: the namespaces no group binds that reviews came from, with the policy's `unbound`."""

from __future__ import annotations

import re

import orjson
from starlette.testclient import TestClient

from quotalang.controller import MemoryLedger
from quotalang.server.api import create_api_app
from quotalang.server.app import create_app
from quotalang.server.metrics import Metrics
from quotalang.server.outside import Outside
from quotalang.server.reload import PolicyHolder
from tests.server.test_grants import Clock
from tests.server.webhook_helpers import POLICY, compile_text, deployment, review

BOUND = compile_text(POLICY.replace("group ml in root {", 'group ml in root {\n  namespaces "team-a", "team-*"'))


def test_most_recent_first_counted_and_bounded() -> None:
    clock = Clock()
    seen = Outside(size=2, clock=clock)
    for second, namespace in enumerate(("scratch", "tmp", "scratch", "lab")):
        clock.now = 86400 + second  # 1970-01-02T00:00:0N
        seen.add(namespace)
    # tmp was seen least recently when lab came: dropped
    assert seen.listing(BOUND) == {"unbound": "allow", "anyGroup": False, "outside": [
        {"namespace": "lab", "cluster": "", "reviews": 1, "lastSeen": "1970-01-02T00:00:03Z"},
        {"namespace": "scratch", "cluster": "", "reviews": 2, "lastSeen": "1970-01-02T00:00:02Z"},
    ]}


def test_a_namespace_bound_since_or_a_policy_without_bindings_lists_none() -> None:
    seen = Outside()
    seen.add("team-b")  # outside under an older policy; team-* binds it now
    seen.add("scratch", "eu-1")
    assert [(r["cluster"], r["namespace"]) for r in seen.listing(BOUND)["outside"]] == [("eu-1", "scratch")]
    assert seen.listing(compile_text(POLICY)) == {"unbound": "allow", "anyGroup": True, "outside": []}


def admit(client: TestClient, obj: dict[str, object]) -> bool:
    answer = client.post("/validate", content=orjson.dumps(review(obj)))
    assert answer.status_code == 200
    allowed: bool = answer.json()["response"]["allowed"]
    return allowed


def test_the_api_lists_what_the_webhook_saw() -> None:
    """By hand: team-a is bound (charged), scratch twice and lab once are not (admitted outside quota); under
    `unbound namespaces deny` the same reviews are denied and still listed."""
    for unbound, allowed in (("allow", True), ("deny", False)):
        policy = compile_text(POLICY.replace("group ml in root {", 'group ml in root {\n  namespaces "team-a"')
                              .replace("settings {", f"settings {{\n  unbound namespaces {unbound}"))
        holder, ledger, metrics = PolicyHolder(policy), MemoryLedger(), Metrics()
        with TestClient(create_app(holder, ledger, metrics=metrics)) as client, \
                TestClient(create_api_app(holder, ledger, metrics=metrics, hosts=["testserver"])) as api:
            assert admit(client, deployment("a", namespace="team-a"))
            assert not api.get("/api/namespaces").json()["outside"]
            assert 'id="outside"' not in api.get("/namespaces").text  # nothing outside: no section
            for name, namespace in (("b", "scratch"), ("c", "lab"), ("d", "scratch")):
                assert admit(client, deployment(name, namespace=namespace)) is allowed
            answer = api.get("/api/namespaces").json()
            page = api.get("/namespaces").text
        assert answer["unbound"] == unbound and answer["anyGroup"] is False
        assert [(r["namespace"], r["reviews"]) for r in answer["outside"]] == [("scratch", 2), ("lab", 1)]
        # the Namespaces page lists the same, most recent first, each a link to its answer (no cluster column:
        # one cluster), and says what became of their workloads
        rows = re.findall(r'<tr><td><a href="\./namespaces\?ns=([a-z-]+)">[a-z-]+</a></td><td>(\d+)</td>', page)
        assert rows == [("scratch", "2"), ("lab", "1")]
        assert ("were denied." if unbound == "deny" else "were admitted uncharged.") in page
        assert '<th scope="col">cluster</th>' not in page

"""The last denials per group (`quotalang.server.denials`): bounded, clipped, no bodies, on the API and pages.

Numbers from webhook_helpers.POLICY: ml may use 40 cpu and a test pod asks for 4.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.testclient import TestClient

from quotalang.server.denials import Denials
from tests.server.test_app import post
from tests.server.webhook_helpers import deployment, review


@dataclass
class _Outcome:
    group: str
    verdict: str = "deny"
    name: str = "w"
    uid: str = "u"
    operation: str = "CREATE"
    kind: str = "Deployment"
    namespace: str = "team-a"
    cluster: str = ""
    reason: str = "quota"
    error: str | None = None
    response: dict[str, Any] = field(default_factory=lambda: {"status": {"message": "no room"}})


def test_each_group_keeps_its_last_denials_newest_first_and_no_more() -> None:
    denials = Denials(per_group=3, max_groups=2, clock=lambda: 0.0)
    for i in range(5):
        denials.add(_Outcome("ml", name=f"w{i}"))
    assert [d["name"] for d in denials.of("ml")] == ["w4", "w3", "w2"]
    assert denials.of("ml")[0] == {"time": "1970-01-01T00:00:00Z", "verdict": "deny", "operation": "CREATE",
                                   "kind": "Deployment", "namespace": "team-a", "name": "w4", "cluster": "",
                                   "reason": "quota", "message": "no room"}
    denials.add(_Outcome("lab"))
    denials.add(_Outcome("ml"))  # ml is now the most recently denied: lab goes first when a third comes
    denials.add(_Outcome("other"))
    assert denials.of("lab") == [] and len(denials.of("ml")) == 3 and len(denials.of("other")) == 1


def test_allowed_skipped_and_groupless_decisions_are_not_recorded() -> None:
    denials = Denials()
    for verdict in ("allow", "skip", "error"):
        denials.add(_Outcome("ml", verdict=verdict))
    denials.add(_Outcome(""))
    assert denials.of("ml") == [] and denials.of("") == []
    denials.add(_Outcome("ml", verdict="warn", response={"warnings": ["lab: over", "second"]}))
    assert denials.of("ml")[0]["message"] == "lab: over"


def test_hostile_names_and_messages_are_clipped() -> None:
    denials = Denials()
    denials.add(_Outcome("ml", name="n" * 100_000, response={"status": {"message": "m" * 100_000}}))
    (entry,) = denials.of("ml")
    assert len(entry["name"]) < 300 and len(entry["message"]) < 1100


def test_a_denial_shows_on_the_api_and_the_group_page_without_the_object(client: TestClient, api: TestClient) -> None:
    big = deployment("big", replicas=11)  # 11 × 4 = 44 > 40
    big["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "TOKEN", "value": "s3cret-value"}]
    assert post(client, review(big))["allowed"] is False
    assert post(client, review(deployment("small")))["allowed"] is True
    (entry,) = api.get("/api/groups/ml").json()["denials"]
    assert (entry["verdict"], entry["kind"], entry["name"], entry["operation"]) == ("deny", "Deployment", "big",
                                                                                     "CREATE")
    assert entry["message"] == ("quota exceeded in group root/ml: requests.cpu: requested 44 (11 × pod 4), "
                                "used 0 of 40, 40 free")
    page = api.get("/groups/ml").text
    assert "Recent denials" in page and "requested 44 (11 × pod 4)" in page
    assert "s3cret-value" not in page and "s3cret-value" not in api.get("/api/groups/ml").text
    assert api.get("/api/groups/lab").json()["denials"] == []

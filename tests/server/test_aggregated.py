"""The aggregated API's app (`quotalang.server.aggregated`) in process: discovery, objects, Tables, errors.

Numbers by hand (webhook_helpers.POLICY): root 100 cpu with ml 40, lab 10 and audited 10 carved; two pods of
4 cpu admitted to ml: ml uses 8 of 40 (32 free), root's subtree 8 and root may start 100 − 60 − 0 = 40.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from quotalang.controller import MemoryLedger
from quotalang.server.aggregated import PAGE_SECTIONS, PAGES_PREFIX, PREFIX, create_aggregated_app, table_version
from quotalang.server.aggregated_manifests import viewer_rules
from quotalang.server.denials import Denials
from quotalang.server.pages import routes as page_routes
from quotalang.server.reload import PolicyHolder
from tests.server.test_app import post
from tests.server.webhook_helpers import deployment, review

TABLE = ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
         "application/json")


@pytest.fixture
def agg(holder: PolicyHolder, ledger: MemoryLedger, denials: Denials, app: Starlette,
        client: TestClient) -> Iterator[TestClient]:
    post(client, review(deployment("web", replicas=2)))
    post(client, review(deployment("big", replicas=11)))  # denied: 44 > 40
    with TestClient(create_aggregated_app(holder, ledger, app.state.engine, denials=denials)) as test:
        yield test


def test_discovery_names_the_resource_kubectl_resolves(agg: TestClient) -> None:
    body = agg.get(PREFIX).json()
    assert body["groupVersion"] == "visibility.quotalang.dev/v1alpha1"
    resource, chargeable = body["resources"]
    assert (resource["name"], resource["singularName"], resource["kind"], resource["namespaced"]) == (
        "quotagroups", "quotagroup", "QuotaGroup", False)
    assert resource["verbs"] == ["get", "list"] and resource["shortNames"] == ["qg"]
    assert (chargeable["name"], chargeable["namespaced"], chargeable["verbs"]) == ("chargeablegroups", True, ["list"])


def test_a_quotagroup_carries_the_policy_in_spec_and_the_ledger_in_status(agg: TestClient) -> None:
    body = agg.get(f"{PREFIX}/quotagroups/ml").json()
    assert (body["apiVersion"], body["kind"], body["metadata"]["name"]) == (
        "visibility.quotalang.dev/v1alpha1", "QuotaGroup", "ml")
    assert body["spec"] == {"parent": "root", "path": "root/ml", "mode": "enforce", "children": []}
    cpu = {r["key"]: r for r in body["status"]["limits"]}["requests.cpu"]
    assert (cpu["hard"], cpu["used"], cpu["subtree"], cpu["free"]) == ("40", "8", "8", "32")
    (denial,) = body["status"]["denials"]
    assert denial["name"] == "big" and "requested 44" in denial["message"]
    listed = agg.get(f"{PREFIX}/quotagroups").json()
    assert listed["kind"] == "QuotaGroupList"
    assert [g["metadata"]["name"] for g in listed["items"]] == ["root", "ml", "lab", "audited"]


def test_kubectl_get_gets_a_table_with_hard_used_free_of_the_main_keys(agg: TestClient) -> None:
    table = agg.get(f"{PREFIX}/quotagroups", headers={"accept": TABLE}).json()
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    names = [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0]
    assert names[:6] == ["Name", "Parent", "Mode", "CPU Hard", "CPU Used", "CPU Free"]
    rows = {r["cells"][0]: r for r in table["rows"]}
    assert rows["root"]["cells"][:6] == ["root", "", "enforce", "100", "8", "40"]  # used: its subtree
    assert rows["ml"]["cells"][:6] == ["ml", "root", "enforce", "40", "8", "32"]
    assert rows["ml"]["object"]["kind"] == "PartialObjectMetadata"  # the default, as kube-apiserver does
    full = agg.get(f"{PREFIX}/quotagroups/ml?includeObject=Object", headers={"accept": TABLE}).json()
    assert full["rows"][0]["object"]["kind"] == "QuotaGroup"
    none = agg.get(f"{PREFIX}/quotagroups/ml?includeObject=None", headers={"accept": TABLE}).json()
    assert "object" not in none["rows"][0]


@pytest.mark.parametrize(("accept", "version"), [
    (TABLE, "v1"),
    ("application/json;as=Table;v=v1beta1;g=meta.k8s.io", "v1beta1"),
    ("application/json", None),
    ("application/json;as=Table;v=v2;g=meta.k8s.io", None),
    ("application/json;as=Table;g=example.com;v=v1", None),
    (";;;=,=;" * 5000, None),
    ("", None),
])
def test_table_version_reads_only_what_kubectl_asks(accept: str, version: str | None) -> None:
    assert table_version(accept) == version


def test_unknown_groups_writes_and_watches_are_kubernetes_errors(agg: TestClient) -> None:
    missing = agg.get(f"{PREFIX}/quotagroups/nobody")
    assert missing.status_code == 404
    assert missing.json()["message"] == 'quotagroups.visibility.quotalang.dev "nobody" not found'
    assert missing.json()["reason"] == "NotFound" and "did you mean" not in missing.text
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert agg.request(method, f"{PREFIX}/quotagroups/ml").status_code == 405
    assert agg.get(f"{PREFIX}/quotagroups?watch=true").status_code == 405
    long = agg.get(f"{PREFIX}/quotagroups/{'x' * 5000}")
    assert long.status_code == 404 and len(long.text) < 1000


def test_no_policy_is_a_503(ledger: MemoryLedger, app: Starlette) -> None:
    with TestClient(create_aggregated_app(PolicyHolder(), ledger, app.state.engine)) as test:
        assert test.get(f"{PREFIX}/quotagroups").status_code == 503


def test_the_pages_under_the_prefix_link_relatively(agg: TestClient) -> None:
    page = agg.get(f"{PAGES_PREFIX}/groups/ml")
    assert page.status_code == 200
    assert 'href="../static/pages.css"' in page.text and 'href="../groups/root"' in page.text
    assert 'href="/' not in page.text  # an absolute path is rewritten by the apiserver's proxy to the backend
    tree = agg.get(f"{PAGES_PREFIX}/")
    assert 'href="./groups/ml"' in tree.text and 'data-poll="./pages/tree.json"' in tree.text
    assert agg.get(f"{PAGES_PREFIX}/pages/tree.json").status_code == 200


def test_the_viewer_role_covers_every_page_route(holder: PolicyHolder, ledger: MemoryLedger,
                                                 app: Starlette) -> None:
    """RBAC sees /pages/quota/<section>/... as subresource <section> of `pages`: each must be granted."""
    sections = {route.path.strip("/").split("/")[0] for route in page_routes(holder, ledger, app.state.engine)}
    sections.discard("")
    assert sections == set(PAGE_SECTIONS)
    granted = {r for rule in viewer_rules() for r in rule["resources"]}
    assert {f"pages/{s}" for s in PAGE_SECTIONS} | {"pages", "quotagroups", "chargeablegroups"} == granted


BOUND = """\
group root {
  pods 10
  namespaces "platform"
}
group team in root {
  pods 5
  namespaces "team-*"
  default namespaces "team-a"
}
group other in root {
  pods 5
  namespaces "other"
}
"""


def test_a_namespace_lists_the_groups_it_may_charge(ledger: MemoryLedger, app: Starlette) -> None:
    from quotalang.compiler import compile_sources
    from quotalang.loader import load_text

    holder = PolicyHolder(compile_sources(load_text(BOUND, "bound.quota")))
    with TestClient(create_aggregated_app(holder, ledger, app.state.engine)) as test:
        listed = test.get(f"{PREFIX}/namespaces/team-a/chargeablegroups").json()
        assert listed["kind"] == "ChargeableGroupList"
        assert [(i["metadata"]["name"], i["metadata"]["namespace"], i["spec"]) for i in listed["items"]] == [
            ("team", "team-a", {"path": "root/team", "default": True})]
        table = test.get(f"{PREFIX}/namespaces/platform/chargeablegroups", headers={"accept": TABLE}).json()
        assert [r["cells"] for r in table["rows"]] == [["root", "root", ""], ["team", "root/team", ""],
                                                      ["other", "root/other", ""]]
        assert test.get(f"{PREFIX}/namespaces/nobody/chargeablegroups").json()["items"] == []
        assert test.get(f"{PREFIX}/namespaces/Bad_Name/chargeablegroups").status_code == 400

"""The pages answer a team's questions (issue 27 item 4), over HTTP with no browser.

Numbers are hand-computed from the example organisation: alice holds 9 A100s
and bob 4 T4s, both in nlp under ai-platform under root; none of the three
parents runs anything of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from quotalang.compiler import compile_policy
from quotalang.controller import MemoryLedger, ObjectKey
from quotalang.server.api import create_api_app
from quotalang.server.reload import PolicyHolder
from tests.pages.conftest import EXAMPLES

GPU = "requests.nvidia.com/gpu"
NANO = 10**9


@pytest.fixture
def ledger() -> MemoryLedger:
    ledger = MemoryLedger(standalone=False)
    ledger.observe(ObjectKey("kubeflow.org", "TFJob", "nlp", "bert"), "alice", {GPU: 9 * NANO})
    ledger.observe(ObjectKey("apps", "Deployment", "nlp", "serve"), "bob", {GPU: 4 * NANO})
    return ledger


@pytest.fixture
def client(ledger: MemoryLedger) -> Iterator[TestClient]:
    holder = PolicyHolder(compile_policy([str(EXAMPLES / "policies")]))
    with TestClient(create_api_app(holder, ledger, hosts=["testserver"]), raise_server_exceptions=False) as test:
        yield test


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_group_page_of_a_parent_shows_its_subtree_beside_its_own_usage(client: TestClient) -> None:
    page = client.get("/groups/nlp")
    assert page.status_code == 200
    assert '<th scope="col">subtree</th>' in page.text
    row = re.search(rf'<tr class="row[^"]*" data-g="nlp" data-k="{re.escape(GPU)}">(.*?)</tr>', page.text, re.S)
    assert row is not None
    cells = dict(re.findall(r'<td data-f="(\w+)">([^<]*)</td>', row.group(1)))
    # nlp's own: 0 used; its subtree: alice 9 + bob 4 = 13; free = hard 256 − carved 96 − used 0 = 160
    assert (cells["hard"], cells["used"], cells["subtree"], cells["free"]) == ("256", "0", "13", "160")


def test_a_leafs_group_page_has_no_subtree_column(client: TestClient) -> None:
    page = client.get("/groups/alice")
    assert page.status_code == 200 and "subtree" not in page.text


def test_the_tree_page_and_its_poll_say_what_roots_teams_hold(client: TestClient) -> None:
    text = _text(client.get("/").text)
    assert f"{GPU} 0 / 448 · subtree 13" in text  # ai-platform: hard 448, nothing of its own
    state = client.get("/pages/tree.json").json()["groups"]
    gpu = {name: {b["key"]: b for b in g["limits"]}.get(GPU) for name, g in state.items()}
    # The tree shows each group's two fullest keys (own + carved of hard): root's include the GPUs.
    assert gpu["root"] is not None and (gpu["root"]["used"], gpu["root"]["subtree"]) == ("0", "13")
    assert all("subtree" in b for b in state["nlp"]["limits"])  # every bar of a parent has one
    assert gpu["alice"] is not None and "subtree" not in gpu["alice"]  # a leaf: its own usage is all
    detail = client.get("/pages/groups/nlp.json").json()["groups"]["nlp"]
    assert {b["key"]: b for b in detail["limits"]}[GPU]["subtree"] == "13"


def test_a_groups_page_lists_its_workloads(client: TestClient) -> None:
    text = _text(client.get("/groups/alice").text)
    assert f"TFJob nlp/bert {GPU} 9" in text


def test_a_store_that_cannot_list_here_says_so(ledger: MemoryLedger, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kubernetes-store follower answers None: the page says another replica may list them, not "None"."""
    monkeypatch.setattr(ledger, "objects_of", lambda group: None)
    holder = PolicyHolder(compile_policy([str(EXAMPLES / "policies")]))
    with TestClient(create_api_app(holder, ledger, hosts=["testserver"])) as test:
        text = _text(test.get("/groups/alice").text)
    assert "1 observed workloads charge this group; this replica cannot list them" in text


def test_a_groups_workloads_say_what_they_spent_this_period(ledger: MemoryLedger) -> None:
    """Where this process accrues cash, each workload's share of its group's GPU-hours this period."""
    bert = ObjectKey("kubeflow.org", "TFJob", "nlp", "bert")
    seen: list[str] = []

    def spent(group: Any) -> dict[ObjectKey, dict[str, int]]:
        seen.append(group.name)
        return {bert: {GPU: 27 * 3600 * NANO}}  # 9 GPUs for 3 hours

    holder = PolicyHolder(compile_policy([str(EXAMPLES / "policies")]))
    with TestClient(create_api_app(holder, ledger, spent=spent, hosts=["testserver"])) as test:
        text = _text(test.get("/groups/alice").text)
    assert seen == ["alice"]
    assert f"TFJob nlp/bert {GPU} 9 {GPU} 27h" in text and "spent this period" in text


def test_without_accruals_here_there_is_no_spent_column(client: TestClient) -> None:
    assert "spent this period" not in client.get("/groups/alice").text


def test_the_namespaces_page_and_api_say_which_groups_a_namespace_may_charge(client: TestClient) -> None:
    """nlp binds "nlp-*", so nlp-alice may charge nlp and its subtree; alice is its default."""
    text = _text(client.get("/namespaces?ns=nlp-alice").text)
    assert "may charge these groups" in text and "charges alice" in text
    assert re.findall(r'<li><a href="./groups/(\w+)">', client.get("/namespaces?ns=nlp-alice").text) == [
        "nlp", "alice", "bob", "carol"]
    assert "No group binds namespace kube-public" in _text(client.get("/namespaces?ns=kube-public").text)
    bad = client.get("/namespaces?ns=" + "x" * 500)
    assert bad.status_code == 400 and "is not a namespace name" in bad.text and "x" * 64 not in bad.text
    body = client.get("/api/namespaces/nlp-alice").json()
    assert (body["groups"], body["default"], body["bound"]) == (["nlp", "alice", "bob", "carol"], "alice", True)
    assert client.get("/api/namespaces/NLP").status_code == 400


def test_the_api_lists_a_groups_workloads_and_what_they_spent(ledger: MemoryLedger) -> None:
    bert = ObjectKey("kubeflow.org", "TFJob", "nlp", "bert")
    holder = PolicyHolder(compile_policy([str(EXAMPLES / "policies")]))
    spent = {bert: {GPU: 27 * 3600 * NANO}}
    with TestClient(create_api_app(holder, ledger, hosts=["testserver"],
                                   spent=lambda group: spent if group.name == "alice" else {})) as test:
        alice = test.get("/api/groups/alice").json()["workloads"]
        nlp = test.get("/api/groups/nlp").json()["workloads"]
    assert alice == [{"apiGroup": "kubeflow.org", "kind": "TFJob", "namespace": "nlp", "name": "bert",
                      "usage": {GPU: "9"}, "spent": {GPU: "27h"}}]
    assert nlp == []  # nlp's own workloads: none (alice's and bob's are theirs)
    with TestClient(create_api_app(holder, ledger, hosts=["testserver"])) as test:
        assert "spent" not in test.get("/api/groups/alice").json()["workloads"][0]

"""Borrowing figures in `/api/groups`, `/api/groups/{name}`, the aggregated QuotaGroup and `/metrics` (issue 29).

The tree (GPUs): root 8, all carved (own room 0); a 4 lend 2 (guarantee 2); b 4 borrow 2. The ledger is
given b's 6 GPUs by a resync (as the controller's LIST would): b's T = 4 − 6 = −2 ≥ −2, borrowed 2;
root's own room 0 and a's offer min(2, 4) = 2 fund it (from root); root's T 0 + 2 − 2 = 0 cannot drop,
so a's 2 are lent out. cpu is lent by no one: it carries no figures.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from quotalang.controller import MemoryLedger, ObjectKey
from quotalang.server.aggregated import PREFIX, create_aggregated_app
from quotalang.server.api import create_api_app
from quotalang.server.engine import Engine
from quotalang.server.reload import PolicyHolder
from tests.quotalang.test_tree_borrowing import POLICY  # root 8 gpu 10 cpu; a 4 lend 2; b 4 borrow 2
from tests.server.test_metrics import labels, scrape
from tests.server.webhook_helpers import compile_text

N = 10**9
GPU = "requests.nvidia.com/gpu"


@pytest.fixture
def ledger() -> MemoryLedger:
    ledger = MemoryLedger()
    ledger.resync({"b": {ObjectKey("apps", "Deployment", "team-b", "train"): {GPU: 6 * N, "limits.cpu": 3 * N}}})
    return ledger


@pytest.fixture
def holder() -> PolicyHolder:
    return PolicyHolder(compile_text(POLICY))


@pytest.fixture
def api(holder: PolicyHolder, ledger: MemoryLedger) -> Iterator[TestClient]:
    with TestClient(create_api_app(holder, ledger, hosts=["testserver"])) as client:
        yield client


def limits(group: dict[str, object]) -> dict[str, dict[str, object]]:
    return {row["key"]: row for row in group["limits"]}  # type: ignore[attr-defined,index]


def test_listing_carries_borrowed_and_lent_out(api: TestClient) -> None:
    by_name = {g["name"]: g for g in api.get("/api/groups").json()}
    b = limits(by_name["b"])[GPU]["lending"]
    assert b == {"lend": "0", "borrow": "2", "guarantee": "4", "own": "6", "borrowed": "2",
                 "borrowed_from": [{"group": "root", "path": "root", "amount": "2"}], "lent_out": "0", "over": "0"}
    a = limits(by_name["a"])[GPU]["lending"]
    assert (a["guarantee"], a["lent_out"], a["borrowed"]) == ("2", "2", "0")
    assert "lending" not in limits(by_name["b"])["limits.cpu"]


def test_one_group_carries_the_same_figures(api: TestClient) -> None:
    a = limits(api.get("/api/groups/a").json())[GPU]
    assert (a["hard"], a["used"], a["free"]) == ("4", "0", "4")
    assert a["lending"]["lent_out"] == "2"
    assert limits(api.get("/api/groups/b").json())[GPU]["lending"]["borrowed"] == "2"


def test_aggregated_quotagroup_carries_them_in_status(holder: PolicyHolder, ledger: MemoryLedger) -> None:
    with TestClient(create_aggregated_app(holder, ledger, Engine(holder, ledger))) as agg:
        one = agg.get(f"{PREFIX}/quotagroups/b").json()
        assert limits(one["status"])[GPU]["lending"]["borrowed"] == "2"
        listed = {g["metadata"]["name"]: g for g in agg.get(f"{PREFIX}/quotagroups").json()["items"]}
        assert limits(listed["a"]["status"])[GPU]["lending"]["lent_out"] == "2"


def test_metrics_export_borrowed_and_lent_per_lending_key(api: TestClient) -> None:
    found = scrape(api)
    assert found["quotalang_borrowed", labels(group="b", resource=GPU)] == 2
    assert found["quotalang_lent", labels(group="a", resource=GPU)] == 2
    assert found["quotalang_borrowed", labels(group="a", resource=GPU)] == 0
    assert found["quotalang_lent", labels(group="root", resource=GPU)] == 0
    # bounded: only the policy's groups and the keys someone lends or borrows (no cpu series)
    series = {dict(lab)["resource"] for name, lab in found if name in ("quotalang_borrowed", "quotalang_lent")}
    assert series == {GPU}
    assert len([1 for name, _ in found if name == "quotalang_borrowed"]) == 3


def test_metrics_without_lending_have_no_borrowing_series(ledger: MemoryLedger) -> None:
    plain = PolicyHolder(compile_text(POLICY.replace(" lend 2", "").replace(" borrow 2", "")))
    with TestClient(create_api_app(plain, ledger, hosts=["testserver"])) as client:
        found = scrape(client)
        row = limits(client.get("/api/groups/b").json())[GPU]
        tree = client.get("/").text
    assert "class=legend" not in tree and "bar lb" not in tree  # the pages too: no second bar, no legend
    assert not [name for name, _ in found if name in ("quotalang_borrowed", "quotalang_lent")]
    assert row["used"] == "6" and "lending" not in row  # answered as before lending existed


def test_the_tree_page_draws_the_second_bar_only_on_lending_keys(api: TestClient) -> None:
    tree = api.get("/").text
    assert tree.count("class=legend") == 1
    # root, a and b each limit the GPU key (lent or borrowed somewhere); nobody lends cpu. The tree draws the
    # bar only while something is lent out or borrowed: a (2 lent out) and b (2 borrowed), not root (neither)
    assert tree.count('class="bar lb"') == 2
    assert "within hard <b>4</b> · borrowed <b>2</b> (from root 2)" in tree  # b; its 0 lent out left out
    assert "<span class=ln>lent out <b>2</b></span>" in tree  # a: nothing held within its hard

"""The compiled policy: immutable, cache-free, and the one place a group's rows are computed."""

from __future__ import annotations

import dataclasses

import pytest

from quotalang.compiler import compile_sources
from quotalang.evaluator import evaluate
from quotalang.loader import load_text
from quotalang.policy import CashRow, CompiledPolicy, LimitRow, cash_rows, limit_rows, usage_below
from quotalang.units import NANO, NANOS_PER_HOUR

POLICY = """\
import "quotalang:policies/core.quota"

settings {
  group label "g"
}

group root {
  requests.cpu 10
  limits.memory 4Gi
  cash requests.cpu 100h per week
}

group kid in root {
  requests.cpu 4
  limits.memory 1Gi
  cash requests.cpu 40h per week
}
"""


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    return compile_sources(load_text(POLICY, "p.quota"))


def test_limit_rows_put_hard_carved_used_and_free_side_by_side(policy: CompiledPolicy) -> None:
    rows = limit_rows(policy.groups["root"], {"requests.cpu": 5 * NANO})
    assert rows == [LimitRow("requests.cpu", 10 * NANO, 4 * NANO, 5 * NANO), LimitRow("limits.memory", 4 * 2**30 * NANO,
                                                                                     2**30 * NANO, 0)]
    assert [r.free for r in rows] == [1 * NANO, 3 * 2**30 * NANO]


def test_free_is_never_negative(policy: CompiledPolicy) -> None:
    (row, _) = limit_rows(policy.groups["root"], {"requests.cpu": 9 * NANO})
    assert row.free == 0


def test_cash_rows(policy: CompiledPolicy) -> None:
    rows = cash_rows(policy.groups["kid"], {"requests.cpu": 50 * NANOS_PER_HOUR})
    assert rows == [CashRow("requests.cpu", "week", 40 * NANOS_PER_HOUR, 50 * NANOS_PER_HOUR)]
    assert rows[0].free == 0


def test_the_compiled_policy_is_frozen_and_holds_no_cache(policy: CompiledPolicy) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.checksum = "x"  # type: ignore[misc]
    before = {f.name: getattr(policy, f.name) for f in dataclasses.fields(policy)}
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "labels": {"g": "kid"}},
           "spec": {"replicas": 2, "template": {"spec": {"containers": [
               {"name": "c", "resources": {"requests": {"cpu": "1"}, "limits": {"memory": "100Mi"}}}]}}}}
    assert evaluate(policy, obj).allowed
    assert {f.name: getattr(policy, f.name) for f in dataclasses.fields(policy)} == before
    assert not hasattr(policy, "_cache") and not hasattr(policy, "__dict__")
    assert not hasattr(policy, "evaluate") and not hasattr(policy, "workload_usage")


def test_the_compiler_still_names_the_policy_types() -> None:
    from quotalang import compiler, policy

    assert compiler.CompiledPolicy is policy.CompiledPolicy
    assert compiler.CashBudget is policy.CashBudget
    assert not hasattr(compiler, "STAGES")


def test_cash_rows_carve_the_childrens_budgets(policy: CompiledPolicy) -> None:
    """root's own cash is 100h − kid's 40h = 60h: after 50h, 10h are free (not 50h)."""
    (row,) = cash_rows(policy.groups["root"], {"requests.cpu": 50 * NANOS_PER_HOUR})
    assert row == CashRow("requests.cpu", "week", 100 * NANOS_PER_HOUR, 50 * NANOS_PER_HOUR, 40 * NANOS_PER_HOUR)
    assert row.free == 10 * NANOS_PER_HOUR


def test_tree_shows_carved_cash(policy: CompiledPolicy) -> None:
    from quotalang.evaluator import Snapshot
    from quotalang.tree import render_tree, tree_json

    usage = Snapshot.parse({"root": {"cash": {"requests.cpu": "50h"}}})
    assert "cash requests.cpu per week: budget 100h, carved 40h, used 50h, 10h free" in render_tree(policy, usage)
    assert tree_json(policy, usage)[0]["cash"] == [
        {"key": "requests.cpu", "period": "week", "budget": "100h", "carved": "40h", "used": "50h", "free": "10h"}]


DEEP = """\
group root {
  requests.cpu 20
}
group a in root {
  requests.cpu 10
}
group a1 in a {
  requests.cpu 4
}
group a2 in a {
  requests.cpu 4
}
group b in root {
  requests.cpu 5
  requests.nvidia.com/gpu 2
}
"""


def test_usage_below_sums_every_descendant_and_reads_each_group_once() -> None:
    """root's teams hold a 1 + a1 2 + a2 3 + b 500m = 6.5 cores; its own 250m stays its own."""
    policy = compile_sources(load_text(DEEP, "deep.quota"))
    cpu = "requests.cpu"
    own = {"root": {cpu: NANO // 4}, "a": {cpu: NANO}, "a1": {cpu: 2 * NANO}, "a2": {cpu: 3 * NANO},
           "b": {cpu: NANO // 2, "requests.nvidia.com/gpu": 2 * NANO}}
    reads: list[str] = []

    def used(name: str) -> dict[str, int]:
        reads.append(name)
        return own.get(name, {})

    below = usage_below(policy, used)
    assert sorted(reads) == ["a", "a1", "a2", "b"]  # the root's own usage is not below anything
    assert below == {"root": {cpu: 6 * NANO + NANO // 2, "requests.nvidia.com/gpu": 2 * NANO},
                     "a": {cpu: 5 * NANO}, "a1": {}, "a2": {}, "b": {}}
    (row,) = limit_rows(policy.groups["root"], own["root"], below["root"])
    assert (row.used, row.below, row.subtree) == (NANO // 4, 6 * NANO + NANO // 2, 6 * NANO + 3 * NANO // 4)
    assert row.free == 20 * NANO - 15 * NANO - NANO // 4  # free is still the group's own: carving unchanged
    assert usage_below(policy, used, "a") == {"a": {cpu: 5 * NANO}, "a1": {}, "a2": {}}
    assert limit_rows(policy.groups["a1"], own["a1"])[0].subtree == 2 * NANO  # a leaf: its own

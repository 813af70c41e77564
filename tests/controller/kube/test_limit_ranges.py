"""The LimitRange index: a watch sink that answers the evaluator's `limit_ranges` per namespace."""

from __future__ import annotations

from typing import Any

from quotalang.compiler import compile_sources
from quotalang.controller.kube.limit_ranges import LimitRangeIndex
from quotalang.controller.ledger.memory import MemoryLedger
from quotalang.loader import load_text
from tests.asks import admit
from tests.controller.ledger.test_memory import CPU, POLICY, cpu


def limit_range(name: str, namespace: str, cpu_request: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": name, "namespace": namespace},
            "spec": {"limits": [{"type": "Container", "defaultRequest": {"cpu": cpu_request},
                                 "default": {"cpu": cpu_request}}]}}


def test_the_index_follows_listings_and_events_per_namespace() -> None:
    index = LimitRangeIndex()
    index.replace("limitranges", [limit_range("b", "ns", "2"), limit_range("a", "ns", "1"),
                                  limit_range("x", "other", "3")])
    assert [o["metadata"]["name"] for o in index("ns")] == ["a", "b"]  # by name: the merge order
    index.apply("limitranges", "DELETED", limit_range("a", "ns", "1"))
    index.apply("limitranges", "ADDED", limit_range("c", "new", "1"))
    assert ([o["metadata"]["name"] for o in index("ns")], len(index("new")), index("none")) == (["b"], 1, ())
    index.apply("limitranges", "DELETED", limit_range("x", "other", "3"))
    assert index("other") == () and len(index) == 2


def test_a_ledger_charges_the_namespace_defaults() -> None:
    policy = compile_sources(load_text(POLICY, "ledger.quota"))
    ledger = MemoryLedger()
    index = LimitRangeIndex()
    index.replace("limitranges", [limit_range("defaults", "ns", "4")])
    bare = {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "ns", "labels": {"team": "a"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app"}]}}}}
    assert admit(ledger, policy, bare, "CREATE", limit_ranges=index).allowed
    assert cpu(ledger, "a") == 2 * CPU  # 2 pods × the LimitRange's 4 cpu default request

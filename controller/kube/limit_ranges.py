"""The cluster's LimitRanges by namespace: what admission needs to charge pods as they will be stored.

The LimitRanger fills a namespace's container defaults into every pod before
native quota charges it, so the evaluator applies the same defaults to pod
templates (`quotalang.limitranges`). This index is the evaluator's
`limit_ranges` input for a cluster: a `Watcher` sink (LIST + WATCH of
`v1/limitranges` in every namespace) that keeps, per namespace, the
LimitRange objects sorted by name (the stable order the merge needs).

Admission calls it once per request from many threads; a call is one dict
lookup of an immutable tuple, and the watcher swaps a namespace's tuple in
whole, so readers take no lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from quotalang.limitranges import LimitRanges
from quotalang.reclaimable import Priorities

SOURCE = "limitranges"
PATH = "/api/v1/limitranges"


class LimitRangeIndex:
    """namespace -> its LimitRanges (sorted by name); callable as `quotalang.limitranges.LimitRanges`."""

    def __init__(self) -> None:
        self._by_namespace: dict[str, tuple[Mapping[str, Any], ...]] = {}
        self._objects: dict[tuple[str, str], Mapping[str, Any]] = {}  # (namespace, name) -> object
        self._lock = threading.Lock()  # writers only (one watcher, plus tests)

    def __call__(self, namespace: str) -> tuple[Mapping[str, Any], ...]:
        return self._by_namespace.get(namespace, ())

    def replace(self, source: str, items: Iterable[dict[str, Any]]) -> None:
        """A full listing: every namespace's LimitRanges at once."""
        objects: dict[tuple[str, str], Mapping[str, Any]] = {_key(item): item for item in items}
        with self._lock:
            self._objects = objects
            self._by_namespace = _grouped(objects)

    def apply(self, source: str, event: str, obj: dict[str, Any]) -> None:
        """One watch event; only the namespace it touches is rebuilt."""
        key = _key(obj)
        with self._lock:
            if event == "DELETED":
                self._objects.pop(key, None)
            else:
                self._objects[key] = obj
            mine = tuple(o for k, o in sorted(self._objects.items()) if k[0] == key[0])
            if mine:
                self._by_namespace[key[0]] = mine
            else:
                self._by_namespace.pop(key[0], None)

    def __len__(self) -> int:
        return len(self._objects)


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _grouped(objects: Mapping[tuple[str, str], Mapping[str, Any]]) -> dict[str, tuple[Mapping[str, Any], ...]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for (namespace, _), obj in sorted(objects.items()):
        out.setdefault(namespace, []).append(obj)
    return {namespace: tuple(found) for namespace, found in out.items()}


__all__ = ["PATH", "SOURCE", "LimitRangeIndex"]


class LimitRangeSource:
    """Each cluster's LimitRange index, where the engine reads the defaults of a review's own cluster.

    Whoever watches a cluster's LimitRanges installs its index here once (a
    controller, or on every replica the kubernetes store's runtime); the
    engine builds every decision with `of(cluster)`, whatever the store, so
    `/validate`, `/api/explain` and the what-if page charge pods alike. A
    cluster nobody installed applies no defaults (no cluster at all: none).
    """

    __slots__ = ("_by_cluster", "_priorities")

    def __init__(self) -> None:
        self._by_cluster: dict[str, LimitRanges] = {}
        # Beside them, the same cluster's PriorityClass values (issue 29, `priority_classes`): one object
        # the engine already reads a review's cluster from, not a second one to thread through serve.
        self._priorities: dict[str, Priorities] = {}

    def install(self, index: LimitRanges, cluster: str = "") -> None:
        self._by_cluster[cluster] = index

    def installed(self, cluster: str = "") -> bool:
        return cluster in self._by_cluster

    def of(self, cluster: str = "") -> LimitRanges | None:
        return self._by_cluster.get(cluster)

    def install_priorities(self, index: Priorities, cluster: str = "") -> None:
        self._priorities[cluster] = index

    def priorities(self, cluster: str = "") -> Priorities | None:
        """The cluster's PriorityClass values (None: nobody watches them; only built-in classes are known)."""
        return self._priorities.get(cluster)

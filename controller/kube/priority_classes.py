"""The cluster's PriorityClasses by name: what a pod template's `priorityClassName` is worth (issue 29).

Only workloads below the policy's `borrow below priority` may borrow
(`quotalang.reclaimable`), so admission needs each class's value. This index
is a `Watcher` sink (LIST + WATCH of `scheduling.k8s.io/v1`
PriorityClasses) and the evaluator's `priorities` input: a call is one dict
lookup, outside any store lock, and the watcher swaps the whole table in, so
readers take no lock. `""` answers the global default class's value (None:
there is none), as the Priority admission plugin gives a pod that names no
class. A class not (yet) seen answers None: unknown, so not reclaimable.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

SOURCE = "priorityclasses"
PATH = "/apis/scheduling.k8s.io/v1/priorityclasses"


class PriorityClassIndex:
    """name -> value, and "" -> the global default's value; callable as `quotalang.reclaimable.Priorities`."""

    def __init__(self) -> None:
        self._objects: dict[str, Mapping[str, Any]] = {}
        self._values: dict[str, int] = {}
        self._lock = threading.Lock()  # writers only (one watcher, plus tests)

    def __call__(self, name: str) -> int | None:
        return self._values.get(name)

    def replace(self, source: str, items: Iterable[dict[str, Any]]) -> None:
        """A full listing."""
        with self._lock:
            self._objects = {_name(item): item for item in items}
            self._values = _values(self._objects)

    def apply(self, source: str, event: str, obj: dict[str, Any]) -> None:
        """One watch event: the table is rebuilt (a cluster has a handful of classes)."""
        with self._lock:
            objects = dict(self._objects)
            if event == "DELETED":
                objects.pop(_name(obj), None)
            else:
                objects[_name(obj)] = obj
            self._objects, self._values = objects, _values(objects)

    def __len__(self) -> int:
        return len(self._objects)


def _name(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    return str(meta.get("name") or "") if isinstance(meta, Mapping) else ""


def _values(objects: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """Each class's value; "" the highest global default's (the apiserver allows one; never under-state)."""
    values: dict[str, int] = {}
    for name, obj in objects.items():
        value = obj.get("value")
        if not name or isinstance(value, bool) or not isinstance(value, int):
            continue
        values[name] = value
        if obj.get("globalDefault") is True:
            values[""] = max(values.get("", value), value)
    return values


__all__ = ["PATH", "SOURCE", "PriorityClassIndex"]

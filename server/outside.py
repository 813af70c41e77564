"""Namespaces outside quota that admissions came from: what `GET /api/namespaces` lists.

The counter `quotalang_outside_quota` says how many admissions no group
charged; an admin who sees it grow asks which namespaces. This keeps the
answer: every (cluster, namespace) whose review no group binds (admitted
outside quota, or denied under `unbound namespaces deny`), with how many
reviews and when the last came. It is what this process's webhook has seen
since it started (in memory, per replica), not a listing of the cluster:
the controller charges only bound workloads, so the admissions are where an
unbound namespace shows up. Bounded: at most `size` namespaces, the least
recently seen dropped first, since the names come from reviews. A listing
is filtered by the current policy, so a namespace bound since drops out.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from quotalang.policy import CompiledPolicy

DEFAULT_SIZE = 1024


class Outside:
    """The namespaces no group binds, most recently seen first; safe to share between threads."""

    def __init__(self, size: int = DEFAULT_SIZE, clock: Callable[[], float] = time.time) -> None:
        self.size = size
        self.clock = clock
        self._seen: OrderedDict[tuple[str, str], list[float]] = OrderedDict()  # -> [reviews, last seen]
        self._lock = threading.Lock()

    def add(self, namespace: str, cluster: str = "") -> None:
        key = (cluster, namespace)
        with self._lock:
            entry = self._seen.pop(key, None) or [0, 0.0]
            entry[0] += 1
            entry[1] = self.clock()
            self._seen[key] = entry
            while len(self._seen) > self.size:
                self._seen.popitem(last=False)

    def listing(self, policy: CompiledPolicy) -> dict[str, Any]:
        """`GET /api/namespaces`: the policy's answer to an unbound namespace and the ones seen, still unbound."""
        with self._lock:
            seen = list(reversed(self._seen.items()))
        bindings = policy.bindings
        rows = [{"namespace": namespace, "cluster": cluster, "reviews": int(entry[0]),
                 "lastSeen": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry[1]))}
                for (cluster, namespace), entry in seen
                if bindings is not None and not bindings.is_bound(namespace, cluster)]
        return {"unbound": policy.settings.unbound, "anyGroup": bindings is None, "outside": rows}


__all__ = ["Outside"]

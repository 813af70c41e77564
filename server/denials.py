"""The last denials per group: what a team asks first ("why was my job refused?").

Kept in memory by each replica, for the admissions it answered: bounded
(`PER_GROUP` per group, `MAX_GROUPS` groups, least recently denied dropped
first), lost on restart, and with several replicas each shows its own share
(the logs and `quotalang_admissions_total` have the rest). That is the
decision written down: a durable, cluster-wide record would be one more
write per denial on the admission path, for a question the logs answer.

Only what the decision line logs is kept, clipped the same way: verdict,
operation, kind, namespace/name, cluster, reason and the message; never an
object body (a pod spec can carry secrets in env vars). Recorded: `deny`,
and `warn` / `audit` (a group in warn or audit mode, whose workload would
have been denied). Adding runs on the event loop, like the metrics' counters.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from quotalang.server.logs import FIELD_LIMIT, MESSAGE_LIMIT, DecisionRecord, clip_text

PER_GROUP = 20
MAX_GROUPS = 10_000  # past a policy's groups only if many reloads renamed them
RECORDED = frozenset({"deny", "warn", "audit"})


class Denials:
    """The last `per_group` denials of each group, newest first when read."""

    def __init__(self, per_group: int = PER_GROUP, max_groups: int = MAX_GROUPS,
                 clock: Callable[[], float] = time.time) -> None:
        self.per_group = per_group
        self.max_groups = max_groups
        self._clock = clock
        self._groups: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()

    def add(self, outcome: DecisionRecord) -> None:
        """Record `outcome` if it denied (or would have) a workload charged to a group."""
        if outcome.verdict not in RECORDED or not outcome.group:
            return
        group = clip_text(outcome.group, FIELD_LIMIT)
        kept = self._groups.get(group)
        if kept is None:
            kept = self._groups[group] = deque(maxlen=self.per_group)
            while len(self._groups) > self.max_groups:
                self._groups.popitem(last=False)
        else:
            self._groups.move_to_end(group)
        kept.append({
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._clock())),
            "verdict": outcome.verdict,
            "operation": clip_text(outcome.operation, FIELD_LIMIT),
            "kind": clip_text(outcome.kind, FIELD_LIMIT),
            "namespace": clip_text(outcome.namespace, FIELD_LIMIT),
            "name": clip_text(outcome.name, FIELD_LIMIT),
            "cluster": outcome.cluster,
            "reason": clip_text(outcome.reason, FIELD_LIMIT),
            "message": clip_text(_message(outcome), MESSAGE_LIMIT),
        })

    def of(self, group: str) -> list[dict[str, Any]]:
        """`group`'s recorded denials, newest first (copies)."""
        kept = self._groups.get(group)
        return [dict(entry) for entry in reversed(kept)] if kept else []


def _message(outcome: DecisionRecord) -> str:
    """The denial's message, or for warn / audit the first warning."""
    status = outcome.response.get("status")
    if isinstance(status, dict) and status.get("message"):
        return str(status["message"])
    warnings = outcome.response.get("warnings")
    if isinstance(warnings, list) and warnings:
        return str(warnings[0])
    return outcome.error or outcome.reason


__all__ = ["MAX_GROUPS", "PER_GROUP", "RECORDED", "Denials"]

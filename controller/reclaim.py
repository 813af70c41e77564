"""Reclaim: suspend or delete the borrowers an admission named, so a lender gets its room back (issue 29).

Admission decides (`reclaimable.choose`) and the store marks the chosen
borrowers `reclaiming`, persisted with the borrower records; from then on
their usage counts as gone. This loop, run by the controller (the leader:
one process acts), carries the decision out:

* a borrower whose kind rule names a suspend path gets a merge patch setting
  it to true (with its uid as a precondition, so a re-created namesake is
  never touched); the watch then sees it suspended, the kind rule charges a
  suspended workload nothing, and its usage is released;
* one with no suspend rule (`reclaim by delete`) is deleted (background
  propagation, uid precondition); the watch's DELETED releases it.

In a fleet every member's Controller runs its own Reclaimer over the one
ledger, with that member's client: each acts only on the borrowers recorded
in its `cluster` (the cluster is part of a borrower's identity), so a
borrower is patched where it runs, and another member's namesake — or its
404, which would read as "gone" and drop the record of a borrower still
running — is never looked at.

Each outcome is an Event on the workload and a count in
`quotalang_reclaims_total{group,outcome}` (`suspended`, `deleted`, `gone`:
it went first, `failed`: not done by the deadline). Idempotent: the record
stays marked (its usage counted as gone) until the watch shows the release —
the store drops a marked record once an observation charges nothing of what
it drew, or the object goes — so nothing is counted again meanwhile; this
loop acts on a record once (a second run finds it done and does nothing),
and a workload found already suspended (a restart between the patch and the
release) gets no second patch or event. Bounded: a failing call is
retried with exponential backoff until `deadline` seconds after the first
try, then given up — the record is unmarked, so its usage counts again and
the balances say what the cluster holds — with a Warning event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from quotalang.controller.kube.api import ApiError, KubeError
from quotalang.controller.kube.naming import collection_path
from quotalang.controller.ledger.base import ObjectKey
from quotalang.kinds import follow
from quotalang.reclaimable import Borrower

LOG = logging.getLogger("quotalang.controller.reclaim")
DEFAULT_DEADLINE = 120.0
OUTCOMES = ("suspended", "deleted", "gone", "failed")


class Api(Protocol):
    """What reclaim asks of the apiserver (`kube.api.KubeApi` is one)."""

    def request(self, method: str, path: str, *, body: Mapping[str, Any] | None = None,
                query: Mapping[str, Any] | None = None, timeout: float = 10.0,
                content_type: str = "application/json") -> dict[str, Any]: ...


class Records(Protocol):
    """The store's side (`ledger.memory.MemoryLedger` is one)."""

    def borrowers(self) -> tuple[Borrower, ...]: ...

    def lookup(
        self, identity: ObjectKey, *, local: bool = False, version: str | None = None
    ) -> Mapping[str, Any] | None: ...

    def settle(self, identity: ObjectKey, done: bool) -> None: ...


@dataclass(slots=True)
class _Tries:
    first: float
    count: int = 0
    next: float = 0.0
    done: bool = False  # patched or deleted: waiting for the watch to show the release


@dataclass
class Reclaimer:
    """Carries out the reclaims admissions recorded; `run_once` is one pass (the controller's upkeep calls it).

    Retries wait `backoff` seconds, doubling up to `cap`; `deadline` seconds after the first try it gives up.
    `cluster`: the cluster `api` writes to; only borrowers recorded there are acted on ("" with one cluster).
    """

    api: Api
    records: Records
    cluster: str = ""
    deadline: float = DEFAULT_DEADLINE
    backoff: float = 0.5
    cap: float = 15.0
    clock: Callable[[], float] = time.monotonic
    counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (group, outcome) -> reclaims
    _tries: dict[ObjectKey, _Tries] = field(default_factory=dict)

    def run_once(self) -> int:
        """Act on every borrower marked for reclaim whose retry is due; return how many were done or given up."""
        settled = 0
        now = self.clock()
        marked = [b for b in self.records.borrowers()
                  if b.reclaiming and isinstance(b.ref, ObjectKey) and b.ref.cluster == self.cluster]
        for stale in self._tries.keys() - {b.ref for b in marked}:
            del self._tries[stale]
        for borrower in marked:
            key = borrower.ref
            if not isinstance(key, ObjectKey):
                continue
            tries = self._tries.setdefault(key, _Tries(now))
            if tries.done or now < tries.next:
                continue
            body = self.records.lookup(key, local=True)
            try:
                outcome = self._reclaim(key, borrower, body)
            except KubeError as exc:
                tries.count += 1
                if now - tries.first >= self.deadline:
                    self._give_up(key, borrower, body, str(exc))
                    settled += 1
                else:
                    tries.next = now + min(self.backoff * 2 ** (tries.count - 1), self.cap)
                    LOG.info("reclaim of %s failed (try %d), retrying: %s", borrower.name, tries.count, exc)
                continue
            if outcome == "gone":  # nothing will show a release: the record goes now
                self.records.settle(key, True)
                self._tries.pop(key, None)
            else:
                tries.done = True
            settled += 1
            if outcome is not None:
                self._count(borrower.group, outcome)
        return settled

    def _reclaim(self, key: ObjectKey, borrower: Borrower, body: Mapping[str, Any] | None) -> str | None:
        """Suspend or delete it; the outcome to count (None: found already done, nothing to say)."""
        if body is None:
            return "gone"  # the store no longer holds its body: it went (its DELETED is on the way)
        path = _object_path(key, body)
        uid = _uid(body)
        suspend = borrower.reclaim.suspend
        try:
            if suspend is not None:
                live = self.api.request("GET", path)
                if follow(live, tuple(suspend.split("."))) is True:
                    return None
                patch = _nested(suspend.split("."), True)
                if uid:
                    patch.setdefault("metadata", {})["uid"] = uid
                self.api.request("PATCH", path, body=patch, content_type="application/merge-patch+json")
                outcome = "suspended"
            else:
                options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions",
                                           "propagationPolicy": "Background"}
                if uid:
                    options["preconditions"] = {"uid": uid}
                self.api.request("DELETE", path, body=options)
                outcome = "deleted"
        except ApiError as exc:
            if exc.status in (404, 409):  # gone, or a namesake with another uid: nothing of ours to reclaim
                return "gone"
            raise
        self._event(key, body, "Normal", "QuotaReclaimed",
                    f"{outcome} by quotalang: a lender needs the quota it borrowed in group {borrower.group}")
        return outcome

    def _give_up(self, key: ObjectKey, borrower: Borrower, body: Mapping[str, Any] | None, why: str) -> None:
        self.records.settle(key, False)
        self._tries.pop(key, None)
        self._count(borrower.group, "failed")
        LOG.warning("reclaim of %s not done within %.0f s, given up: %s", borrower.name, self.deadline, why)
        if body is not None:
            self._event(key, body, "Warning", "QuotaReclaimFailed",
                        f"quotalang could not {borrower.reclaim.how} it within {self.deadline:.0f} s: {why}"[:1000])

    def _count(self, group: str, outcome: str) -> None:
        self.counts[group, outcome] = self.counts.get((group, outcome), 0) + 1

    def _event(self, key: ObjectKey, body: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        """An Event on the workload (core/v1, as `kubectl describe` shows them); a failure is only logged."""
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{key.name}.quotalang-", "namespace": key.namespace},
            "involvedObject": {"apiVersion": body.get("apiVersion"), "kind": key.kind, "name": key.name,
                               "namespace": key.namespace, "uid": _uid(body)},
            "reason": reason, "message": message, "type": kind, "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "source": {"component": "quotalang"},
        }
        try:
            self.api.request("POST", f"/api/v1/namespaces/{key.namespace}/events", body=event)
        except KubeError as exc:
            LOG.warning("could not record the %s event on %s/%s: %s", reason, key.namespace, key.name, exc)


def _object_path(key: ObjectKey, body: Mapping[str, Any]) -> str:
    return f"{collection_path(str(body.get('apiVersion') or ''), key.kind, key.namespace)}/{key.name}"


def _uid(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata")
    uid = meta.get("uid") if isinstance(meta, Mapping) else None
    return uid if isinstance(uid, str) else ""


def _nested(segments: list[str], value: Any) -> dict[str, Any]:
    """`spec.runPolicy.suspend`, True → {"spec": {"runPolicy": {"suspend": True}}} (a merge patch)."""
    out: Any = value
    for segment in reversed(segments):
        out = {segment.strip('"'): out}
    return dict(out)


__all__ = ["DEFAULT_DEADLINE", "OUTCOMES", "Reclaimer"]

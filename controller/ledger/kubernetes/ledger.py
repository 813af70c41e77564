"""The kubernetes ledger store: every replica checks and reserves with a compare-and-swap.

Admission (any replica) reads the group's `QuotaLedger` (from a watch-fed
cache, else a GET), evaluates against observed usage plus unexpired
reservations, and on allow writes its reservation with a PUT that carries the
`resourceVersion` it read. Two replicas that decided from the same version
cannot both win: the loser gets 409 Conflict, re-reads and decides again
against the winner's reservation, so N concurrent requests that fit k admit
exactly k, across processes as within one (native ResourceQuota works the
same way). Conflicts are retried until the request's deadline (the apiserver's
`?timeout=`, see `kube.deadline`); past it `LedgerUnavailable` is
raised, which the engine answers per `--failure-mode`.

Decisions:

* Allowed requests are proven by the CAS. A decision that writes nothing
  (a denial, a dry run, an HPA check) is only ever made from a fresh GET,
  never from the cache alone: a cache that has not yet seen the leader
  release quota would otherwise deny a request that fits.
* Within one replica, concurrent admissions for one group are decided as a
  batch against one version and written with one CAS (`group_commit`), in
  arrival order, each checked against the ones before it: replicas contend
  with each other once per batch, never with themselves.
* Reservations never grow the ledger object: each replica keeps its
  unconfirmed admissions (per object) in memory and writes only their sum,
  count and last deadline under its own name in `status.reservations` — a
  size bounded by keys × replicas. Within a replica, an admission is keyed
  by the object's identity: a CREATE, or an UPDATE against the same object
  version as the pending one, *replaces* it (only one of them can persist),
  so a retried request is never charged twice; an UPDATE against a newer
  version adds to it. A replacement holds the larger of the two deltas per
  key (the one stored need not be the later) on top of what admissions
  against earlier versions hold (a CREATE not folded yet stays held).
  Only the positive part of a delta is reserved.
* The leader folds observations in batches (`flush`: one write per group per
  `fold_interval` at most; what frees no quota may wait `fold_patience` to
  share a write): the write adds the observed usage and lists the
  identities it observed in `status.folded`, and carries the leader's own
  smaller sum; every other replica, seeing that version (watch or answer),
  drops its matching admissions from its sum and writes the smaller sum
  with its next admission, or `tidy` after `tidy_lag`. Totals first, sum
  second (or both in one write): a moment of double counting, never a
  moment of none. A request that only such not-yet-lowered sums (or other
  replicas' leases) keep out asks them to write their entries and decides
  again once they answered (`_ask`), so the double count denies nothing
  that fits. An
  admission never confirmed leaves its replica's sum at its deadline; a
  replica that dies leaves its whole entry, which the leader drops when the
  entry's last deadline passes.
* A resync joins the fold queue: the index and the queue change together
  under one lock for an observation and for a resync, and the listing is
  merged with what the leader was told since its last resync, so a fold
  after the listing was taken is never undone by it (see `resync`). A fold
  write that fails keeps its group's observations queued (`flush`).
* The controller's writes (`observe`, `forget`, `expire`, `resync`, cash) are
  the leader's alone and fenced: each write stamps the leader's epoch (the
  Lease's transition count when it was acquired), and a writer whose epoch is
  older than the object's steps back with `NotLeader`.
* Deadlines of reservations are wall-clock times (replicas share no monotonic
  clock); a replica whose clock runs ahead frees quota early by that skew.

The mechanisms, one module each, stacked as `core` says: turns, book,
cache, io, evaluate, asking, leases, admission, folding, tidy, cash; this
module adds reading and lookup and is the one a caller imports. Every knob
is a field of `tuning.Tuning`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quotalang.controller.ledger.base import NO_USAGE, GroupUsage, ObjectKey
from quotalang.controller.ledger.bodies import look_up
from quotalang.controller.ledger.kubernetes.cache import own_reserved
from quotalang.controller.ledger.kubernetes.cash import Cash


class KubernetesLedger(Cash):
    """A `Ledger` whose state lives in `QuotaLedger` objects, shared by every replica.

    `clock` is wall-clock seconds (reservation deadlines, cash times);
    `monotonic` and `sleep` measure and wait out intervals (deadlines, lease
    windows, lags, backoff): injectable, so a simulation runs the store on
    virtual time with no thread of its own;
    `fence` returns the leader's epoch, or None when this replica is not the
    leader (controller writes then raise `NotLeader`); without one, controller
    writes are unfenced (tests, a single replica). `fallback_lookup` finds a
    workload this replica neither admitted nor observed (a `/scale` parent):
    the controller's index or a live GET.
    """

    def group_usage(self, group: str) -> GroupUsage:
        state = self._cache.get(group)
        if state is None:
            return NO_USAGE
        reserved, live = own_reserved(state, self._clock())
        return GroupUsage(dict(state.observed), reserved, dict(state.cash), state.objects, live,
                          {c: dict(u) for c, u in state.observed_by_cluster.items()})

    def objects_of(self, group: str) -> list[tuple[ObjectKey, dict[str, int]]] | None:
        """The observed objects charged to `group` and their usage (copies), for the group page and API.

        Only the leader watches the workloads, so only it can list them: a
        follower answers None (it cannot say), never an empty list.
        """
        if self.fence is not None and self.fence() is None:
            return None
        with self._index_lock:
            return [(k, dict(o.usage)) for k, o in self._observed.items() if o.group == group]

    @property
    def fetches(self) -> bool:
        return self.fallback_lookup is not None

    def lookup(
        self, identity: ObjectKey, *, local: bool = False, version: str | None = None
    ) -> Mapping[str, Any] | None:
        """What this replica admitted (until its reservation's deadline), else observed, else (unless `local`)
        the fallback's live GET; `version` as `base.look_up`."""
        return look_up(identity, self._pending, self._bodies, self._clock(),
                       None if local else self.fallback_lookup, version, fetches=self.fetches)


__all__ = ["KubernetesLedger"]

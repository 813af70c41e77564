"""The state one replica's ledger keeps, which every mechanism of this package reads and changes.

Each mechanism is a class in its own module, stacked in one line of
inheritance (`cache` → `io` → `registering` → `evaluate` → `asking` → `leases` →
`admission` → `folding` → `tidy` → `cash` → `ledger`), so that each reads
only what the ones below it define. Invariant: every attribute is made here,
once, with the lock that guards it named beside it; knobs come from the one
`Tuning` value.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from quotalang.controller.kube.api import KubeApi
from quotalang.controller.ledger.base import Ask, ObjectKey, Observed
from quotalang.controller.ledger.crd import LedgerState
from quotalang.controller.ledger.group_commit import GroupCommit
from quotalang.controller.ledger.kubernetes.book import _Admissions
from quotalang.controller.ledger.kubernetes.drawing import Terms
from quotalang.controller.ledger.kubernetes.tuning import Tuning
from quotalang.controller.ledger.kubernetes.turns import _TakingTurns
from quotalang.policy import CompiledPolicy

LOG = logging.getLogger("quotalang.kubestore")


LEASE_SUFFIX = "~lease"  # a replica's lease is a reservation entry of its own, `<replica>~lease`
DRAW_SUFFIX = "~draw"  # in a pool's object, the draws a replica registered there (`registering`)


@dataclass(slots=True)
class StoreStats:
    """Counters for metrics and the benchmark (plain ints: a torn read only blurs a scrape)."""

    reads: int = 0  # GETs
    writes: int = 0  # successful PUTs and POSTs
    conflicts: int = 0  # 409s on PUT: someone else wrote first
    retries: int = 0  # errors retried (unreachable, 5xx, 429)
    unavailable: int = 0  # requests given up at their deadline
    reserved: int = 0  # admissions that wrote a reservation
    leased: int = 0  # of them, admitted within a lease (no write of their own)
    fenced: int = 0  # controller writes refused because a newer leader wrote


@dataclass(slots=True)
class _Pending:
    deadline: float
    body: bytes = field(repr=False)
    resource_version: str | None = None  # the version an UPDATE was admitted against (`base.look_up`)


# An admitted object's identity, its body as stored and the version it was admitted against.
_Written = tuple[ObjectKey, bytes, str | None]

# One queued change to a group's ledger and the fold entry it lists (None: it confirms nothing).
_Edit = tuple[Callable[[LedgerState], bool], str | None]


@dataclass(slots=True)
class _Lease:
    """Headroom this replica reserved ahead in a group's ledger and may hand out without a write."""

    left: dict[str, int]  # what is still free in it
    usable_until: float  # monotonic: past it, the lease is only returned (by the next write)


@dataclass(slots=True)
class _Window:
    """A replica's admissions of one group in its current lease window (monotonic start) and the one before."""

    start: float
    count: int = 0
    before: int = 0
    last: float = 0.0  # monotonic: the latest admission (`_busy`)


class LedgerCore:
    """The state of one replica's ledger; built and documented by `KubernetesLedger`."""


    blocking = True  # the server runs admissions off the event loop: each one makes network calls
    # Its observed totals outlive this process: a new leader's first listing must not add to them
    # (the reconciler holds observations until its first full sync, then replaces the totals).
    durable = True

    def __init__(
        self,
        api: KubeApi,
        *,
        replica: str,
        clock: Callable[[], float] = time.time,
        fence: Callable[[], int | None] | None = None,
        fallback_lookup: Callable[[ObjectKey], Mapping[str, Any] | None] | None = None,
        fold_interval: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        tuning: Tuning | None = None,
        policy: Callable[[], CompiledPolicy | None] | None = None,
    ) -> None:
        self.api = api
        self._monotonic = monotonic
        self._sleep = sleep
        self.replica = replica
        self.tuning = tuning = tuning or Tuning()
        # Wall clock at start: entries under this replica's names that expire before what it could have written
        # since were written by an earlier incarnation under the same name (`cache._adopt`).
        self._started = clock()
        self._ttl = tuning.reservation_ttl
        self._clock = clock
        self.fence = fence
        self.fallback_lookup = fallback_lookup
        self.stats = StoreStats()
        self._cache: dict[str, LedgerState] = {}
        self._cache_lock = threading.Lock()
        self._commits: dict[str, GroupCommit[Ask]] = {}
        self._index_lock = threading.Lock()
        self._observed: dict[ObjectKey, Observed] = {}
        self._bodies: dict[ObjectKey, bytes] = {}  # observed objects (leader), for lookups
        self._pending: dict[ObjectKey, _Pending] = {}  # what this replica admitted, for lookups
        # This replica's unconfirmed admissions, group -> identity slot -> admission; the ledger
        # objects hold only their sum (`reservations[replica]`). Guarded by `_index_lock`.
        self._mine: dict[str, _Admissions] = {}
        # Groups whose sum went down since it was written, and since when (monotonic; 0.0: due at once) (`tidy`).
        self._dirty: dict[str, float] = {}
        # One writer per group in this process: an admission batch, a fold and a tidy of one group
        # take turns, each starting from the version the one before wrote, so a replica's writes
        # never refuse each other with 409 (`_writer`).
        self._writers: dict[str, _TakingTurns] = {}
        # Admissions per group in this replica's current window and the one before (`_lease_for`).
        self._recent: dict[str, _Window] = {}
        # Leases (see `_lease_for`), per group; guarded by the group's writer lock.
        self._lease_name = replica + LEASE_SUFFIX
        self._leases: dict[str, _Lease] = {}
        # The leader's observations waiting for the next fold write of their group (`flush`); with
        # `fold_interval` 0 every observation is written at once (tests, tools).
        self.fold_interval = fold_interval
        self._queue: dict[str, list[_Edit]] = {}
        # When each queued group is due to be written (monotonic): a change that frees quota at the next flush,
        # observations that only confirm or add usage within `fold_patience` (`_enqueue`).
        self._due: dict[str, float] = {}
        # A group whose last fold write failed after it may have landed: its token and size, so the
        # retry recognises it instead of applying it twice (`flush`).
        self._unsure: dict[str, tuple[str, int]] = {}
        self._queue_lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one flush at a time keeps each group's folds in order
        # Orders the index and the queue: `observe_many` and `forget` (index change + enqueue) against
        # `resync` (index replaced + its replacement enqueued), so every queued difference is against
        # the index it was computed from. Taken first, before `_index_lock` or `_queue_lock`.
        self._order_lock = threading.Lock()
        # Identities observed or forgotten since the last resync, with the leader epoch they were told
        # in: a resync's listing may predate them (`base.summed`); another term's calls do not count.
        self._told: dict[ObjectKey, int | None] = {}
        self._tokens = itertools.count(1)  # controller writes, for their tokens
        # The policy whose lend/borrow terms a draw is registered under (`registering`; the runtime sets it).
        # None: a request beyond its guarantee is refused, as with no way to register it.
        self.policy = policy
        # This replica's registrations: pool group -> token -> (usage, expires wall); the pool's object holds
        # their sum in `reservations[<replica>~draw]`. Guarded by `_index_lock`.
        self._drawing: dict[str, dict[str, tuple[dict[str, int], float]]] = {}
        # The policy the groups' terms were computed from, and the terms (`registering._terms_in`).
        self._terms_cache: tuple[CompiledPolicy | None, dict[str, Terms]] = (None, {})
        # The policy the pools' digests were computed from, and the digests (`registering._digests`).
        self._digests_cache: tuple[CompiledPolicy | None, dict[str, str]] = (None, {})
        # Groups whose draw the leader failed to publish on their parent: retried by its upkeep (`publish_draws`).
        self._unpublished: set[str] = set()

    @property
    def standalone(self) -> bool:
        return False

    def _writer(self, group: str) -> _TakingTurns:
        lock = self._writers.get(group)
        if lock is None:
            lock = self._writers.setdefault(group, _TakingTurns())  # atomic: one wins
        return lock

    def _left(self, until: float) -> float:
        """The timeout of one call: what is left until `until`, at most `Tuning.call_timeout` (a hung
        connection costs one call, retried, never a whole fold's or admission's time)."""
        return min(max(until - self._monotonic(), 0.001), self.tuning.call_timeout)


__all__ = ["DRAW_SUFFIX", "LEASE_SUFFIX", "LedgerCore", "StoreStats"]

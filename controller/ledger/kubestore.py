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
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from quotalang.controller.kube.api import ApiError, KubeApi, KubeError
from quotalang.controller.kube.deadline import budget
from quotalang.controller.ledger.base import (
    EMPTY,
    NO_USAGE,
    Ask,
    CashState,
    GroupUsage,
    LedgerUnavailable,
    NotLeader,
    ObjectKey,
    Observation,
    Observed,
    Usage,
    accrue_into,
    add_usage,
    at_or_after,
    look_up,
    maximum,
    newer,
    pack,
    pack_observed,
    refuse_drawing,
    summed,
)
from quotalang.controller.ledger.crd import (
    COLLECTION_PATH,
    FOLD_CAP,
    Held,
    LedgerFormatError,
    LedgerState,
    from_object,
    identity_key,
    object_path,
    parse_identity,
    to_object,
)
from quotalang.controller.ledger.group_commit import GroupCommit, Slot
from quotalang.controller.ledger.kubernetes.tuning import Tuning
from quotalang.decision import Decision

LOG = logging.getLogger("quotalang.kubestore")
LEASE_SUFFIX = "~lease"  # a replica's lease is a reservation entry of its own, `<replica>~lease`


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
class _View:
    """The usage source one evaluation sees: one group's state at one version."""

    group: str
    used_now: Mapping[str, int]
    cash: Mapping[str, int]

    def used(self, group: str) -> Mapping[str, int]:
        return self.used_now if group == self.group else EMPTY

    def cash_used(self, group: str) -> Mapping[str, int]:
        return self.cash if group == self.group else EMPTY


@dataclass(slots=True)
class _Pending:
    deadline: float
    body: bytes = field(repr=False)


# One queued change to a group's ledger and the fold entry it lists (None: it confirms nothing).
_Edit = tuple[Callable[[LedgerState], bool], str | None]


class _TakingTurns:
    """A lock granted in the order it was asked for.

    `threading.Lock` is not fair: under a burst the admission batches of a
    group follow each other so closely that the leader's fold thread, waiting
    for the same group, would rarely get it, admissions would stay
    unconfirmed, and every batch would carry more of them.
    """

    __slots__ = ("_cond", "_held", "_queue")

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()
        self._held = False

    def __enter__(self) -> None:
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            while self._held or self._queue[0] is not ticket:
                self._cond.wait()
            self._queue.popleft()
            self._held = True

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    def take_if_free(self) -> bool:
        """Take it now if nobody holds it or waits for it; else False (the caller may not wait)."""
        with self._cond:
            if self._held or self._queue:
                return False
            self._held = True
            return True


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


@dataclass(slots=True)
class _Mine:
    """One of this replica's unconfirmed admissions (the ledger object holds only their sum)."""

    usage: dict[str, int]
    deadline: float  # wall clock
    resource_version: str | None  # the object's version it was admitted against (None on CREATE)
    # Of `usage`, what admissions against earlier versions hold (an UPDATE on top of a CREATE not yet folded):
    # a later admission against the same version replaces only the rest (`latest`), never this.
    base: dict[str, int] = field(default_factory=dict)

    def latest(self) -> dict[str, int]:
        """The part the last admission against `resource_version` holds."""
        rest = dict(self.usage)
        add_usage(rest, self.base, -1)
        return rest


def _adder(diff: Mapping[str, int], new_object: bool, cluster: str) -> Callable[[LedgerState], bool]:
    def add(state: LedgerState) -> bool:
        state.add_observed(diff, +1, cluster, count=new_object)
        return bool(diff) or new_object

    return add


def _releaser(usage: Mapping[str, int], cluster: str) -> Callable[[LedgerState], bool]:
    def release(state: LedgerState) -> bool:
        state.add_observed(usage, -1, cluster)
        return True

    return release


def _all_of(changes: list[Callable[[LedgerState], bool]]) -> Callable[[LedgerState], bool]:
    """One change made of several, every one applied (no short-circuit)."""

    def apply(state: LedgerState) -> bool:
        changed = False
        for change in changes:
            changed = change(state) or changed
        return changed

    return apply


def _replacer(cluster: str, observed: Mapping[str, int], count: int) -> Callable[[LedgerState], bool]:
    """A resync's change: the cluster's share of the group becomes the merged index's (see `resync`)."""

    def replace(state: LedgerState) -> bool:
        return state.set_cluster(cluster, observed, count)

    return replace


def _confirming(state: LedgerState) -> bool:
    """A fold write that confirms admissions is written even when the totals do not change."""
    return True


def _replaces(existing: _Mine, operation: str, admitted_rv: str | None) -> bool:
    """Whether a new admission of the same object supersedes its pending reservation (see module doc)."""
    return operation == "CREATE" or existing.resource_version == admitted_rv


class _Deadlined(Protocol):
    @property
    def deadline(self) -> float: ...


K = TypeVar("K")


def _past_deadline(entries: Mapping[K, _Deadlined], now: float) -> list[K]:
    """The keys at the front of a dict kept in deadline order whose deadline has passed (it stops at the first
    live one: what expires is popped without a scan of what does not)."""
    gone = []
    for key, entry in entries.items():
        if entry.deadline > now:
            break
        gone.append(key)
    return gone


class _Admissions:
    """This replica's unconfirmed admissions in one group: per object slot, in deadline order, with their sum.

    The sum is kept in step, so a decision reads it (a few keys) instead of
    adding up every pending admission: a group whose folds lag (a leader
    failing over) may hold thousands. An admission goes in last with the
    latest deadline, so expiry pops from the front. Guarded by the ledger's
    `_index_lock`; a batch reads it and adds its own `changes` on top.
    """

    __slots__ = ("items", "total")

    def __init__(self) -> None:
        self.items: dict[str, _Mine] = {}
        self.total: dict[str, int] = {}

    def get(self, slot: str, changes: Mapping[str, _Mine]) -> _Mine | None:
        """The pending admission of `slot`, a batch's own change first."""
        item = changes.get(slot)
        return item if item is not None else self.items.get(slot)

    def put(self, slot: str, item: _Mine) -> None:
        self.drop(slot)
        self.items[slot] = item
        add_usage(self.total, item.usage)

    def drop(self, slot: str) -> bool:
        item = self.items.pop(slot, None)
        if item is not None:
            add_usage(self.total, item.usage, -1)
        return item is not None

    def drop_all(self, slots: Iterable[str]) -> None:
        for slot in slots:
            self.drop(slot)

    def expire(self, now: float) -> bool:
        """Drop the admissions past their deadline; whether there were any."""
        gone = _past_deadline(self.items, now)
        self.drop_all(gone)
        return bool(gone)

    def held(self, changes: Mapping[str, _Mine] | None = None, drop: Iterable[str] = ()) -> Held | None:
        """What the ledger object holds for them, with a batch's `changes` and without the slots in `drop`: their
        sum, count and last deadline."""
        total, count = dict(self.total), len(self.items)
        last = next(reversed(self.items.values())).deadline if self.items else 0.0
        if drop:
            gone = set(drop)
            for slot in gone:
                add_usage(total, self.items[slot].usage, -1)
            count -= len(gone)
            last = next((i.deadline for s, i in reversed(self.items.items()) if s not in gone), 0.0)
        for slot, item in (changes or {}).items():
            before = self.items.get(slot)
            if before is None:
                count += 1
            else:
                add_usage(total, before.usage, -1)
            add_usage(total, item.usage)
            last = max(last, item.deadline)
        return Held(total, count, last) if count else None


def _confirmed(mine: _Admissions, folded: Iterable[str]) -> set[str]:
    """The slots of `mine` a fold's entries (`slot@resourceVersion`) confirm: observed at or after the version
    each was admitted against."""
    confirmed: set[str] = set()
    for entry in folded:
        slot, version = _fold_parts(entry)
        item = mine.items.get(slot)
        if item is not None and at_or_after(version or None, item.resource_version):
            confirmed.add(slot)
    return confirmed


def _written(entry: Held | None, held: Held | None) -> bool:
    """Whether a ledger's entry is this sum (its deadline as written: to the microsecond)."""
    if entry is None or held is None:
        return entry is held
    return entry.usage == held.usage and entry.count == held.count and abs(entry.expires - held.expires) < 1e-5


def _fits(charge: Mapping[str, int], left: Mapping[str, int]) -> bool:
    return all(value <= left.get(key, 0) for key, value in charge.items())


def _fold_entry(slot: str, resource_version: str | None) -> str:
    return f"{slot}@{resource_version or ''}"


def _fold_parts(entry: str) -> tuple[str, str]:
    """`_fold_entry` read back: the slot and the resourceVersion ("" when none was known)."""
    slot, _, version = entry.rpartition("@")
    return slot, version


class KubernetesLedger:
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
    ) -> None:
        self.api = api
        self._monotonic = monotonic
        self._sleep = sleep
        self.replica = replica
        self.tuning = tuning = tuning or Tuning()
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

    # ------------------------------------------------------------ the cache
    def remember(self, state: LedgerState) -> None:
        """Keep `state` if it is newer than what the cache holds (the watch and every call feed it).

        Whatever its age, a version's `folded` list confirms this replica's
        admissions it names: they leave this replica's sum (written by the
        next admission or `tidy`). That version's `observed` includes them,
        and any write of the sum is a compare-and-swap on a version at least
        as new, so the sum never drops one before the totals hold it.
        """
        with self._cache_lock:
            cached = self._cache.get(state.group)
            if cached is None or newer(state.resource_version, cached.resource_version):
                self._cache[state.group] = state
        if state.folded:
            self._confirm(state)

    def _confirm(self, state: LedgerState) -> None:
        """Drop this replica's admissions `state.folded` names; the group needs `tidy` unless `state` already
        holds the smaller sum (the leader's own fold write, `_account_own`)."""
        group = state.group
        with self._index_lock:
            mine = self._mine.get(group)
            if mine is None or not mine.items:
                return
            confirmed = _confirmed(mine, state.folded)
            mine.drop_all(confirmed)
            if confirmed and not _written(state.reservations.get(self.replica), mine.held()):
                self._dirty.setdefault(group, self._monotonic())

    def _account_own(self, update: LedgerState, folded: Iterable[str]) -> set[str]:
        """The leader's fold write also writes the leader's own smaller sum, so it needs no `tidy` write.

        The admissions the fold confirms leave this replica's entry in the
        same compare-and-swap that adds their usage to the totals (counted
        once, never none), and what its lease handed out since the lease was
        written moves from the lease entry into the sum (the lease entry keeps
        only what is still free in it, and its deadline; past its window the
        lease is returned, as `tidy` would). Without this, each
        fold would cost a second write per group. The caller holds the group's
        writer lock, so no batch or lease admission changes `_mine` meanwhile;
        `_mutate` drops the confirmed admissions once the write landed. When no
        other replica has an entry, no other can hold these identities, so
        they are left out of `folded`: at one replica the list stays empty and
        every write of the object stays small.
        """
        group = update.group
        lease = self._leases.get(group)
        held_lease = update.reservations.get(self._lease_name)
        if lease is not None and held_lease is None:
            return set()  # a lease this replica no longer sees written: leave both entries to `tidy`
        with self._index_lock:
            mine = self._mine.get(group)
            if mine is None:
                return set()
            confirmed = _confirmed(mine, folded)
            held = mine.held(drop=confirmed)
        self._put_sum(update, held)
        if confirmed and all(name in (self.replica, self._lease_name) for name in update.reservations):
            update.folded = [entry for entry in update.folded if _fold_parts(entry)[0] not in confirmed]
        if lease is not None and held_lease is not None:
            if self._monotonic() >= lease.usable_until:  # returned with the fold: `tidy` then has nothing to write
                update.reservations.pop(self._lease_name, None)
            else:
                update.reservations[self._lease_name] = Held(dict(lease.left), 0, held_lease.expires, update.asks)
        return confirmed

    def _admissions(self, group: str, now: float) -> tuple[_Admissions, dict[str, int]]:
        """This replica's live admissions in `group` (the expired dropped: `tidy` writes the smaller sum) and a
        copy of their sum. Called with `_index_lock` held."""
        mine = self._mine.get(group)
        if mine is None:
            mine = self._mine[group] = _Admissions()
        if mine.expire(now):
            self._dirty[group] = 0.0  # an expiry frees quota: written at the next tidy
        return mine, dict(mine.total)

    def drop(self, group: str, resource_version: str | None = None) -> None:
        """The object is gone (a watch DELETED event)."""
        with self._cache_lock:
            cached = self._cache.get(group)
            if cached is not None and (resource_version is None or not newer(cached.resource_version,
                                                                               resource_version)):
                del self._cache[group]

    def cached(self, group: str) -> LedgerState | None:
        return self._cache.get(group)

    def cached_groups(self) -> list[str]:
        return list(self._cache)

    # -------------------------------------------------------------- reading
    @property
    def standalone(self) -> bool:
        return False

    def used(self, group: str) -> Mapping[str, int]:
        state = self._cache.get(group)
        return state.used(self._clock()) if state is not None else EMPTY

    def cash_used(self, group: str) -> Mapping[str, int]:
        state = self._cache.get(group)
        return state.cash if state is not None else EMPTY

    def group_usage(self, group: str) -> GroupUsage:
        state = self._cache.get(group)
        if state is None:
            return NO_USAGE
        now = self._clock()
        live = sum(r.count for r in state.reservations.values() if r.expires > now)
        return GroupUsage(dict(state.observed), state.reserved(now), dict(state.cash), state.objects, live,
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

    def lookup(self, identity: ObjectKey, *, local: bool = False) -> Mapping[str, Any] | None:
        """What this replica admitted (until its reservation's deadline), else observed, else (unless `local`)
        the fallback's live GET."""
        return look_up(identity, self._pending, self._bodies, self._clock(),
                       None if local else self.fallback_lookup)

    # ------------------------------------------------------------ API calls
    def read(self, group: str, until: float, *, create: bool = True) -> LedgerState:
        """A fresh GET (creating the object when missing), retried on errors until `until` (monotonic)."""
        while True:
            try:
                self.stats.reads += 1
                obj = self.api.request("GET", object_path(group), timeout=self._left(until))
                state = from_object(obj, group)
                self.remember(state)
                return state
            except ApiError as exc:
                if exc.status == 404 and create:
                    self._create(group, until)
                    continue
                self._retry_or_raise(exc, until, f"reading the ledger of group {group}")
            except KubeError as exc:
                self._retry_or_raise(exc, until, f"reading the ledger of group {group}")

    def _create(self, group: str, until: float) -> None:
        try:
            obj = self.api.request("POST", COLLECTION_PATH, body=to_object(LedgerState(group)),
                                   timeout=self._left(until))
            self.stats.writes += 1
            self.remember(from_object(obj, group))
            LOG.info("created the ledger of group %s", group)
        except ApiError as exc:
            if exc.status != 409:  # AlreadyExists: another replica was first, fine
                raise

    def write(self, state: LedgerState, until: float) -> LedgerState | None:
        """PUT `state` if the object is still at `state.resource_version`; None on 409 Conflict."""
        while True:
            try:
                obj = self.api.request("PUT", object_path(state.group), body=to_object(state),
                                       timeout=self._left(until))
            except ApiError as exc:
                if exc.status == 409:
                    self.stats.conflicts += 1
                    return None
                self._retry_or_raise(exc, until, f"writing the ledger of group {state.group}")
                return None  # the write may have landed: re-read and decide again
            except KubeError as exc:
                self._retry_or_raise(exc, until, f"writing the ledger of group {state.group}")
                return None
            self.stats.writes += 1
            written = from_object(obj, state.group)
            self.remember(written)
            return written

    def _retry_or_raise(self, exc: KubeError, until: float, doing: str) -> None:
        """Back off and return if the error is worth retrying and time is left; else raise."""
        status = exc.status if isinstance(exc, ApiError) else None
        transient = status is None or status == 429 or status >= 500
        left = until - self._monotonic()
        if not transient:
            raise LedgerUnavailable(f"{doing}: {exc}") from None
        if left <= 0.05:
            self.stats.unavailable += 1
            raise LedgerUnavailable(f"{doing}: gave up at the request deadline: {exc}") from None
        self.stats.retries += 1
        self._sleep(min(self.tuning.retry_backoff, left / 4))

    # ------------------------------------------------------------ admission
    def reserve(self, ask: Ask) -> Decision:
        """Decide `ask` and, when the decision `reserves`, reserve in its group's ledger object.

        Concurrent asks of one group share one compare-and-swap (`_decide`);
        what is reserved comes from the decision alone. Gives up with
        `LedgerUnavailable` at the ask's deadline.
        """
        group = ask.group
        if group is None:  # unlabelled or unknown: checked against no group, nothing to reserve
            return ask.decision(self)
        until = ask.deadline if ask.deadline != math.inf else self._monotonic() + budget(self.tuning.admission_timeout)

        def busy() -> LedgerUnavailable:
            self.stats.unavailable += 1
            return LedgerUnavailable(f"the ledger of group {group} is busy: gave up at the request deadline")

        decision = self._commit(group).submit(ask, until, busy)
        assert isinstance(decision, Decision)
        return decision

    def try_reserve(self, ask: Ask) -> Decision | None:
        """`reserve` if that needs no call and no wait (within this replica's lease), else None, having done
        nothing: the event loop tries this first."""
        if ask.group is None:
            return ask.decision(self)
        return self._admit_now(ask.group, Slot(ask, ask.deadline))

    def _commit(self, group: str) -> GroupCommit[Ask]:
        commit = self._commits.get(group)
        if commit is None:
            commit = self._commits.setdefault(group, GroupCommit(lambda batch: self._decide(group, batch)))
        return commit

    def _admit_now(self, group: str, slot: Slot[Ask]) -> Decision | None:
        """The request decided within this replica's lease at once, or None if that would need a call or a
        wait: a batch in flight or queued (it goes first), no lease, a charge the lease cannot cover, a denial
        (made only from a fresh read), a dry run."""
        if not self._commit(group).idle():
            return None
        writer = self._writer(group)
        if not writer.take_if_free():
            return None
        try:
            if self._within_lease(group, [slot]):
                return None
            self._count(group, 1)
        finally:
            writer.__exit__()
        assert isinstance(slot.result, Decision)
        return slot.result

    def _writer(self, group: str) -> _TakingTurns:
        lock = self._writers.get(group)
        if lock is None:
            lock = self._writers.setdefault(group, _TakingTurns())  # atomic: one wins
        return lock

    def _decide(self, group: str, batch: list[Slot[Ask]]) -> None:
        """Decide a batch in arrival order against one version of the ledger; write it with one CAS.

        The write sets this replica's entry to the sum of its unconfirmed
        admissions, the batch's included; they join `_mine` only once the
        write succeeded (until then they are the batch's `changes`).
        """
        with self._writer(group):
            self._count(group, len(batch))
            rest = self._within_lease(group, batch)
            if rest:
                self._decide_batch(group, rest)

    def _lately(self, group: str) -> int:
        """Admissions of the group in this replica's current window and the one just before it."""
        window = self._recent.get(group)
        if window is None or self._monotonic() - window.start > self.tuning.lease_window:
            return 0
        return window.count + window.before

    def _count(self, group: str, admissions: int) -> None:
        window = self._recent.get(group)
        now = self._monotonic()
        if window is None or now - window.start > self.tuning.lease_window:
            before = window.count if window is not None and now - window.start <= 2 * self.tuning.lease_window else 0
            window = self._recent[group] = _Window(now, 0, before)
        window.count += admissions
        window.last = now

    def _within_lease(self, group: str, batch: list[Slot[Ask]]) -> list[Slot[Ask]]:
        """Admit the head of the batch within this replica's lease, writing nothing; return the rest.

        Safe without a write: the lease was reserved by a compare-and-swap
        that found room for it, every other writer counts it, and what it
        hands out is never handed out again (a fold that confirms one of its
        admissions moves that usage to observed but does not refill the
        lease: only the next write, checked again, does). Each request is
        still evaluated (against the cached ledger and this replica's own
        admissions), and only an allowed one whose charge fits what is left
        is admitted here; the first that is not goes, with the ones after it,
        through the written path.
        """
        lease, state = self._leases.get(group), self._cache.get(group)
        if lease is None or state is None or self._monotonic() >= lease.usable_until:
            return batch
        now = self._clock()
        with self._index_lock:
            mine, used = self._admissions(group, now)
        add_usage(used, self._others(state, now))
        changes: dict[str, _Mine] = {}
        written: list[tuple[ObjectKey, bytes]] = []
        taken = 0

        def fits(decision: Decision) -> bool:
            return decision.allowed and _fits(decision.reservation.get(group) or EMPTY, lease.left)

        for slot in batch:
            if slot.item.dry_run:
                break
            decision, reserved = self._evaluate(group, state, slot.item, now, used, mine, changes, accept=fits)
            if reserved is None:
                break  # it and the rest go the written path
            add_usage(lease.left, decision.reservation[group], -1)
            written.append(reserved)
            slot.result = decision
            taken += 1
        if taken:
            self.stats.leased += taken
            self._keep(mine, changes, written, now)
        return batch[taken:]

    def _keep(
        self, mine: _Admissions, changes: Mapping[str, _Mine], written: list[tuple[ObjectKey, bytes]], now: float
    ) -> None:
        """Record decided admissions: their usage in this replica's admissions, their bodies for lookups."""
        self.stats.reserved += len(written)
        with self._index_lock:
            for slot, item in changes.items():
                mine.put(slot, item)
            for key, body in written:
                self._pending.pop(key, None)  # to the end: the dict stays in deadline order
                self._pending[key] = _Pending(now + self._ttl, body)

    def _others(self, state: LedgerState, now: float) -> dict[str, int]:
        """Observed usage plus every other replica's unexpired entries (their leases included)."""
        others: dict[str, int] = dict(state.observed)
        for name, held in state.reservations.items():
            if name not in (self.replica, self._lease_name) and held.expires > now:
                add_usage(others, held.usage)
        return others

    def _unsettled(self, state: LedgerState, now: float, asked: int | None) -> dict[str, int]:
        """What other replicas hold that may be less than it says: every lease (it may go unused), and every sum
        not written since this replica's ask (`asked`; None: not asked yet), which may still hold admissions a
        fold already moved to `observed`."""
        unsettled: dict[str, int] = {}
        for name, held in state.reservations.items():
            if name in (self.replica, self._lease_name) or held.expires <= now:
                continue
            if name.endswith(LEASE_SUFFIX) or asked is None or held.answered < asked:
                add_usage(unsettled, held.usage)
        return unsettled

    def _lent_since(self, state: LedgerState, asked: int) -> bool:
        """Whether another replica wrote a lease after answering this one's ask (`asked`): it may keep it for its
        whole window, so the waiting batch asks again (a batch that answers an ask takes no lease, the next may)."""
        return any(name.endswith(LEASE_SUFFIX) and name != self._lease_name and held.answered >= asked
                   for name, held in state.reservations.items())

    def _ask(self, group: str, state: LedgerState, mine: _Admissions, until: float) -> int | None:
        """Ask the other replicas to write their entries (`asks` + 1), returning this replica's lease and writing
        its own exact sum in the same compare-and-swap; the `asks` written, or None if another write came first.

        Every replica's `tidy` answers an ask it sees (its ledger watch) by
        writing its entry: the smaller sum after a fold, its lease returned,
        `answered` set. A replica that waits for the others (`_decide_batch`)
        thus learns within a tick or two what they really hold, instead of
        every replica writing its smaller sum after every fold just in case.
        """
        return self._write_own(group, state, mine, until, state.asks + 1)

    def _write_own(self, group: str, state: LedgerState, mine: _Admissions, until: float, asks: int) -> int | None:
        """Write this replica's exact sum over `state` with its lease returned and `asks` set (one more: an ask;
        the same: an answer); the `asks` written, or None if another write came first."""
        self._leases.pop(group, None)
        update = state.copy()
        update.asks = asks
        with self._index_lock:
            self._set_mine(update, mine.held())
        return asks if self.write(update, until) is not None else None

    def _lease_for(
        self, group: str, update: LedgerState, request: Ask, decision: Decision, used: Mapping[str, int]
    ) -> dict[str, int] | None:
        """The lease to write with a batch: m more of its last admission, m the largest of `lease_sizes` no
        larger than the admissions of the current and the last window (about what the next window will use)
        with room left for 4 m after it (so a lease never takes the last fifth of what is free); None without
        room.

        Only for a busy group (`lease_after` admissions of it in this
        replica's current `lease_window` and the one before: a steady one
        every 1.5 s qualifies, so a namespace creating a workload a second
        writes once per lease, not once per workload): a group admitted now
        and then reserves exactly what each admission needs, since a lease it
        would not use costs a write to return. The room is checked by the
        evaluator itself, against the same limits as the admission.
        """
        charge = decision.reservation.get(group)
        recent = self._lately(group)
        if not charge or recent < self.tuning.lease_after or self._asked_of(update):
            return None  # quiet, or another replica asked since this one last wrote: it needs room, not a lease
        for size in (m for m in self.tuning.lease_sizes if m <= recent):
            ahead = dict(used)
            for _ in range(self.tuning.lease_headroom * size - 1):
                add_usage(ahead, charge)
            trial = request.decision(_View(group, ahead, update.cash), dry_run=False)
            if trial.allowed and not trial.touches and trial.reservation.get(group) == charge:
                return {k: v * size for k, v in charge.items()}
        return None

    def _decide_batch(self, group: str, batch: list[Slot[Ask]]) -> None:
        until = min(slot.until for slot in batch)
        moment = self._monotonic()  # wait at most half of what is left: the last read and write need time too
        wait_for_others = moment + min(self.tuning.answer_wait, (until - moment) / 2)
        asked: int | None = None
        state, fresh = self._cache.get(group), False
        if state is None:
            state, fresh = self.read(group, until), True
        while True:
            now = self._clock()
            update = state.copy()
            with self._index_lock:
                mine, used = self._admissions(group, now)
            add_usage(used, self._others(update, now))
            unsettled = self._unsettled(update, now, asked)
            decisions: list[Decision] = []
            written: list[tuple[ObjectKey, bytes]] = []
            changes: dict[str, _Mine] = {}
            stale = blocked = False
            lease: dict[str, int] | None = None
            for slot in batch:
                decision, reserved = self._evaluate(group, update, slot.item, now, used, mine, changes)
                decisions.append(decision)
                if reserved is not None:
                    written.append(reserved)
                elif not fresh and not (decision.allowed and not any(v > 0 for v in decision.delta.values())):
                    stale = True  # never deny (or dry-run) from the cache alone: it may not have seen a release
                elif fresh and unsettled and not decision.allowed and self._fits_without(
                        group, update, slot.item, now, used, unsettled, mine, changes):
                    blocked = True  # only what others may not need keeps it out: ask them
            if stale:
                state, fresh = self.read(group, until), True
                continue
            if blocked and self._monotonic() < wait_for_others:
                if asked is None or self._lent_since(update, asked):  # a refused ask is made again, too
                    asked = self._ask(group, state, mine, until)
                elif self._asked_of(update):  # another waiter asked since: answer here (tidy waits for this turn)
                    self._write_own(group, state, mine, until, state.asks)
                self._sleep(self.tuning.ask_poll)
                state, fresh = self.read(group, until), True
                continue
            if written:
                last, decision = next((slot.item, d) for slot, d in zip(reversed(batch), reversed(decisions),
                                                                        strict=True) if d.reservation.get(group))
                lease = self._lease_for(group, update, last, decision, used)
                with self._index_lock:
                    held = mine.held(changes)
                self._set_mine(update, held, lease, now)
                if self.write(update, until) is None:
                    if self._monotonic() >= until:
                        self.stats.unavailable += 1
                        raise LedgerUnavailable(
                            f"the ledger of group {group} kept changing under concurrent writes: "
                            "gave up at the request deadline"
                        )
                    state, fresh = self.read(group, until), True
                    continue
            self._keep(mine, changes, written, now)
            if written:  # the lease written replaces the one before (what that one handed out is in `mine`)
                if lease:
                    self._leases[group] = _Lease(dict(lease), self._monotonic() + self.tuning.lease_window)
                else:
                    self._leases.pop(group, None)
            for slot, decision in zip(batch, decisions, strict=True):
                slot.result = decision
            return

    def _fits_without(
        self, group: str, update: LedgerState, request: Ask, now: float, used: Mapping[str, int],
        unsettled: Mapping[str, int], mine: _Admissions, changes: Mapping[str, _Mine],
    ) -> bool:
        """Whether a denied request would be allowed without what other replicas may not need (`_unsettled`)."""
        without = dict(used)
        add_usage(without, unsettled, -1)
        decision, _ = self._evaluate(group, update, replace(request, dry_run=True), now, without, mine,
                                     dict(changes))
        return decision.allowed

    def _set_mine(
        self, update: LedgerState, held: Held | None, lease: Mapping[str, int] | None = None, now: float = 0.0
    ) -> None:
        """Put this replica's sum (`_Admissions.held`) and its new lease (or none) into `update`; clear the last
        fold's list (every replica saw that version). What the lease before handed out is in the sum. A lease
        entry outlives the admissions it may hand out by its window (`_within_lease`). The entry is exact as of
        the version written over, so it records that version's `asks` as answered."""
        self._put_sum(update, held)
        if lease:
            expires = now + self._ttl + self.tuning.lease_window
            update.reservations[self._lease_name] = Held(dict(lease), 0, expires, update.asks)
        else:
            update.reservations.pop(self._lease_name, None)
        update.folded = []

    def _put_sum(self, update: LedgerState, held: Held | None) -> None:
        """This replica's entry in `update` becomes `held` (None: none). It is exact as of the version written
        over, so it answers every ask that version holds."""
        if held is None:
            update.reservations.pop(self.replica, None)
        else:
            held.answered = update.asks
            update.reservations[self.replica] = held

    def _evaluate(
        self,
        group: str,
        update: LedgerState,
        request: Ask,
        now: float,
        used: dict[str, int],
        mine: _Admissions,
        changes: dict[str, _Mine],
        accept: Callable[[Decision], bool] | None = None,
    ) -> tuple[Decision, tuple[ObjectKey, bytes] | None]:
        """Decide one request against `used` (observed + others' sums + this replica's admissions and the
        batch's `changes`); when it reserves (and `accept` takes it), record it in `changes` and `used`."""
        key = request.identity
        slot = identity_key(key)
        admitted_rv = request.admitted_version
        op = request.operation
        view: Mapping[str, int] = used
        existing = mine.get(slot, changes)
        if existing is not None and _replaces(existing, op, admitted_rv):  # checked without the superseded delta
            view = dict(used)
            add_usage(view, existing.latest(), -1)
        decision = request.decision(_View(group, dict(view), update.cash))
        if decision.touches:  # it would draw on ancestors this store does not register with yet (issue 29)
            decision = refuse_drawing(decision)
        charge = decision.reservation.get(group)
        if not charge or decision.stored is None or (accept is not None and not accept(decision)):
            return decision, None
        body = pack(decision.stored)  # before anything is written
        existing = mine.get(slot, changes)
        usage, rv, base = dict(charge), admitted_rv, {}
        if existing is not None:
            if not _replaces(existing, op, admitted_rv):  # on top of what earlier versions' admissions hold
                base = dict(existing.usage)
                rv = admitted_rv or existing.resource_version
            else:  # only one of the two persists, not always the later: the larger delta, on the same base
                base = dict(existing.base)
                usage = maximum(usage, existing.latest())
            add_usage(used, existing.usage, -1)
        add_usage(usage, base)
        add_usage(used, usage)
        changes[slot] = _Mine(usage, now + self._ttl, rv, base)
        self._prune_pending(now)
        return decision, (key, body)

    def _prune_pending(self, now: float) -> None:
        """Drop expired bodies from the front: entries go in at the end with the latest deadline, so this
        stops at the first live one instead of scanning thousands on every admission."""
        if len(self._pending) > self.tuning.prune_after:
            with self._index_lock:
                for key in _past_deadline(self._pending, now):
                    del self._pending[key]

    # ------------------------------------------------ the controller's API
    def mutate(
        self,
        group: str,
        change: Callable[[LedgerState], bool],
        *,
        folded: list[str] | None = None,
        token: str | None = None,
    ) -> LedgerState | None:
        """Apply `change` to the group's ledger by CAS, re-reading and re-applying on conflict.

        `change` edits the state in place and returns whether it changed it
        (nothing is written otherwise). Fenced by the leader epoch when a
        fence is set. Each write carries a unique token in `status.lastWrite`,
        so a write whose answer was lost is recognised on re-read instead of
        being applied twice. `folded` (a fold write) lists the identities
        observed, for the replicas to confirm their admissions; any other
        write clears the list. `token` (a retried fold) names an earlier
        attempt: if it landed, nothing is applied again. Returns the state
        written, or None if nothing changed.
        """
        until = self._monotonic() + self.tuning.controller_timeout
        epoch = self._epoch()
        token = token or self._token(epoch)
        with self._writer(group):
            return self._mutate(group, change, until, epoch, token, folded)

    def _mutate(
        self,
        group: str,
        change: Callable[[LedgerState], bool],
        until: float,
        epoch: int | None,
        token: str,
        folded: list[str] | None,
    ) -> LedgerState | None:
        state = self._cache.get(group)
        if state is None:
            state = self.read(group, until)
        own: set[str] = set()  # this replica's admissions the fold write being tried confirms (`_account_own`)
        while True:
            if state.last_write == token:  # the write landed after all (its answer was lost)
                self._drop_mine(group, own)
                return state
            update = state.copy()
            if epoch is not None and update.leader_epoch > epoch:
                self.stats.fenced += 1
                raise NotLeader(
                    f"the ledger of group {group} was written by leader epoch {update.leader_epoch}; "
                    f"this replica's epoch is {epoch}"
                )
            claim = epoch is not None and update.leader_epoch < epoch  # a new leader stamps every object
            if not change(update) and not claim:
                return None
            if epoch is not None:
                update.leader_epoch = epoch
            update.last_write = token
            update.folded = list(folded or [])
            own = self._account_own(update, folded) if folded else set()
            written = self.write(update, until)
            if written is not None:
                self._drop_mine(group, own)
                return written
            if self._monotonic() >= until:
                raise LedgerUnavailable(f"the ledger of group {group}: no write succeeded in time")
            state = self.read(group, until)

    def _drop_mine(self, group: str, slots: Iterable[str]) -> None:
        """This replica's admissions a landed write holds in `observed` leave its admissions (the sum written
        already left them out)."""
        with self._index_lock:
            mine = self._mine.get(group)
            if mine is not None:
                mine.drop_all(slots)

    def _token(self, epoch: int | None) -> str:
        return f"{self.replica}/{epoch}/{next(self._tokens)}"

    def _epoch(self) -> int | None:
        if self.fence is None:
            return None
        epoch = self.fence()
        if epoch is None:
            raise NotLeader("this replica is not the leader: only the leader reconciles the ledger")
        return epoch

    def observe(
        self,
        identity: ObjectKey,
        group: str | None,
        usage: Usage,
        *,
        resource_version: str | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        """The watch saw `identity` charging `usage` to `group` (None: no group); see `MemoryLedger.observe`."""
        self.observe_many([Observation(identity, group, usage, resource_version, body)])

    def observe_many(self, observations: Iterable[Observation]) -> None:
        """Several observations, folded in batches: one write per group touched, not one per object.

        Each group's changes wait in a queue for the next `flush` (every
        `fold_interval`, by the runtime's fold thread; at once when it is 0),
        which writes them with one compare-and-swap and lists the identities
        observed there in `status.folded`. The result is the same as
        observing them one after another.
        """
        edits: dict[str, list[_Edit]] = {}
        freeing: set[str] = set()
        epoch = self._told_epoch()
        with self._order_lock:
            for seen in observations:
                packed = pack_observed(seen.body)
                with self._index_lock:
                    previous = self._observed.get(seen.identity)
                    self._observed[seen.identity] = Observed(seen.group, dict(seen.usage))
                    self._told[seen.identity] = epoch
                    if packed is not None:
                        self._bodies[seen.identity] = packed
                same = previous is not None and previous.group == seen.group
                if seen.group is not None:
                    diff = dict(seen.usage)
                    if same and previous is not None:
                        add_usage(diff, previous.usage, -1)
                    fold = _fold_entry(identity_key(seen.identity), seen.resource_version)
                    edits.setdefault(seen.group, []).append((_adder(diff, not same, seen.identity.cluster), fold))
                    if any(value < 0 for value in diff.values()):
                        freeing.add(seen.group)
                if previous is not None and previous.group is not None and not same:
                    edits.setdefault(previous.group, []).append(
                        (_releaser(previous.usage, seen.identity.cluster), None))
                    freeing.add(previous.group)
            self._enqueue(edits, patient=edits.keys() - freeing)
        self._flush_now()

    def forget(self, identity: ObjectKey) -> None:
        """The object is gone: release its observed usage; any replica's admission of it is confirmed too."""
        epoch = self._told_epoch()
        fold = _fold_entry(identity_key(identity), None)
        with self._order_lock:
            with self._index_lock:
                previous = self._observed.pop(identity, None)
                self._told[identity] = epoch
                self._bodies.pop(identity, None)
                self._pending.pop(identity, None)
            if previous is not None and previous.group is not None:
                self._enqueue({previous.group: [(_releaser(previous.usage, identity.cluster), fold)]})
            else:
                # Never observed (admitted, then deleted before the watch folded it): confirm it where it is held.
                with self._cache_lock:
                    holding = [g for g, state in self._cache.items() if state.reservations]
                self._enqueue({group: [(_confirming, fold)] for group in holding})
        self._flush_now()

    def _told_epoch(self) -> int | None:
        """The epoch a call is told in (None: unfenced, or not leading: it counts in no leader's resync)."""
        return self.fence() if self.fence is not None else None

    def _enqueue(self, edits: Mapping[str, list[_Edit]], patient: Collection[str] = ()) -> None:
        """Queue edits behind what each group already waits for (the caller holds `_order_lock`).

        A group is due at the next flush, except that the groups in `patient`
        (their edits free no quota: new objects, growth, confirmations of
        admissions) may wait `fold_patience` to share one write with what comes
        after them, or until half a fold write's worth has queued. Waiting
        costs nothing in safety: an admitted object is held by its replica's
        sum until the fold confirms it (the reservation TTL is far longer),
        and a release or shrink is never held back. It saves a write per
        group per observation when groups are many and each is quiet.
        """
        now = self._monotonic()
        with self._queue_lock:
            for group, changes in edits.items():
                queued = self._queue.setdefault(group, [])
                queued.extend(changes)
                due = now + self.tuning.fold_patience if group in patient and len(queued) < FOLD_CAP // 2 else now
                self._due[group] = min(due, self._due.get(group, due))

    def _flush_now(self) -> None:
        """With no fold thread (`fold_interval` 0: tests, tools), write what was just queued at once."""
        if self.fold_interval <= 0:
            self.flush()

    def flush(self, patient: bool = False) -> int:
        """Write the groups' waiting observations, at most `FOLD_CAP` per write; return the writes made.

        `patient` (the runtime's fold thread) writes only the groups that are
        due (`_enqueue`); otherwise every queued group is written. Fold writes
        retry on conflict like any controller write; admissions between two
        flushes are not held up by them (a flush is one write per group per
        `fold_interval` at most, not one per event). A group whose write
        fails keeps what it had not written at the head of its queue (with
        the failed write's token: it may have landed) and the other groups
        are written; the first error is raised at the end. `NotLeader`
        drops the queue: it goes with the lease, and the next leader's
        resync lists everything again.
        """
        writes = 0
        failed: Exception | None = None
        with self._flush_lock:
            with self._queue_lock:
                now = self._monotonic()
                due = [g for g, at in self._due.items() if at <= now] if patient else list(self._due)
                queue = {g: self._queue.pop(g) for g in due}
                unsure = {g: self._unsure.pop(g) for g in due if g in self._unsure}
                for group in due:
                    del self._due[group]
            if not queue:
                return 0
            try:
                epoch = self._epoch()
            except NotLeader:
                self._drop_queue()
                raise
            for group, changes in queue.items():
                start = 0
                token, size = unsure.get(group, (self._token(epoch), FOLD_CAP))
                try:
                    while start < len(changes):
                        chunk = changes[start:start + size]
                        folded = [fold for _, fold in chunk if fold is not None]
                        edits = [change for change, _ in chunk] + ([_confirming] if folded else [])
                        self.mutate(group, _all_of(edits), folded=folded, token=token)
                        writes += 1
                        start += len(chunk)
                        token, size = self._token(epoch), FOLD_CAP
                except NotLeader:
                    self._drop_queue()
                    raise
                except Exception as exc:  # LedgerUnavailable, or a bug: keep the rest for the next flush
                    with self._queue_lock:
                        self._queue[group] = changes[start:] + self._queue.get(group, [])
                        self._unsure[group] = (token, min(size, len(changes) - start))  # the chunk it wrote
                        self._due[group] = 0.0  # retried at the next flush
                    failed = failed or exc
        if failed is not None:
            raise failed
        return writes

    def _drop_queue(self) -> None:
        """Not the leader (any more): what waits goes with the lease; the next leader's resync lists it anew."""
        with self._queue_lock:
            self._queue, self._due, self._unsure = {}, {}, {}

    def tidy(self, now: float | None = None, patient: bool = False) -> int:
        """Write this replica's entry where it is out of date; return the writes.

        Due: a group whose sum went down by expiry (at once: that frees
        quota), one whose lease window is over (the lease is returned; when
        `patient`, only once the group is quiet: in a busy one the next batch
        replaces it in the write it makes anyway, one write per lease, not
        two), one
        another replica asked about (`_ask`: it waits for the answer), and
        one whose sum a fold lowered: at once, or `patient` (the runtime's)
        after `tidy_lag`, sooner if its own batch writes it. Until then the
        other replicas count the folded usage twice; one that needs that
        room asks. A write per fold and replica would cost more than the
        moment of counting twice. Not fenced: every replica owns its entry.
        """
        now = self._clock() if now is None else now
        moment = self._monotonic()
        writes = 0
        with self._index_lock:
            for group, mine in self._mine.items():
                if mine.expire(now):
                    self._dirty[group] = 0.0
            due = {g for g, since in self._dirty.items() if not patient or moment - since >= self.tuning.tidy_lag}
            for group in due:
                del self._dirty[group]
        due |= {g for g, lease in list(self._leases.items())
                if moment >= lease.usable_until and not (patient and self._busy(g, moment))}
        due |= self._asked()
        for group in due:
            with self._writer(group):
                writes += self._tidy(group, self._monotonic() + self.tuning.tidy_timeout)
        return writes

    def _busy(self, group: str, moment: float) -> bool:
        """Whether this replica admitted in the group within the last half `lease_window` (its next admission is
        likely soon, and its batch write returns the lease with no write of its own)."""
        window = self._recent.get(group)
        return window is not None and moment - window.last <= self.tuning.lease_window / 2

    def _asked(self) -> set[str]:
        """The cached groups where another replica asked (`_ask`) since this one last wrote its entry or lease."""
        return {group for group, state in list(self._cache.items()) if self._asked_of(state)}

    def _asked_of(self, state: LedgerState) -> bool:
        return bool(state.asks) and any(held is not None and held.answered < state.asks for held in (
            state.reservations.get(self.replica), state.reservations.get(self._lease_name)))

    def _tidy(self, group: str, until: float) -> int:
        """Write the smaller sum and return the lease (the caller holds the group's writer lock)."""
        self._leases.pop(group, None)  # from here on, nothing more is handed out of it
        state = self._cache.get(group) or self.read(group, until)
        while True:
            mine = self._mine.get(group)
            with self._index_lock:
                held = mine.held() if mine is not None else None
            entry = state.reservations.get(self.replica)
            if (_written(entry, held) and self._lease_name not in state.reservations
                    and (entry is None or entry.answered >= state.asks)):
                return 0
            update = state.copy()
            self._set_mine(update, held)
            if self.write(update, until) is not None:
                return 1
            if self._monotonic() >= until:
                with self._index_lock:
                    self._dirty[group] = 0.0  # next round
                return 0
            state = self.read(group, until)

    def expire(self, now: float | None = None) -> int:
        """The leader drops replicas' entries past their last deadline (a replica that died or went quiet)
        from every cached ledger; return how many were dropped."""
        now = self._clock() if now is None else now
        dropped = 0
        for group, state in list(self._cache.items()):
            if not any(r.expires <= now for r in state.reservations.values()):
                continue
            count: list[int] = []

            def prune(update: LedgerState, count: list[int] = count) -> bool:
                gone = [k for k, r in update.reservations.items() if r.expires <= now]
                for key in gone:
                    del update.reservations[key]
                count[:] = [len(gone)]
                return bool(gone)

            self.mutate(group, prune)
            dropped += count[0] if count else 0
        return dropped

    def resync(self, observed_by_group: Mapping[str, Mapping[ObjectKey, Usage]], cluster: str = "") -> None:
        """Replace `cluster`'s observed usage with a fresh LIST of it (`{group: {identity: usage}}`).

        Reservations and other clusters' shares are kept: each ledger object
        keeps `observedByCluster`, and only this cluster's share is replaced
        (a new leader's index holds nothing of a cluster it has not listed
        yet, and the share an earlier leader wrote stays charged until then).
        Every ledger object is listed first, so that all of them are covered
        (and, for a new leader, stamped with its epoch), not only those cached.
        The listing was taken before this call while folds went on, so the
        cluster's part of the index is replaced by the listing merged with
        what this leader was told of it since its last resync (`base.summed`),
        and each group's replacement joins the fold queue under `_order_lock`:
        the folds queued before it are written before (or with) it, and a fold
        after it is a difference against the merged index. No fold, confirmed
        or not, is undone by a listing that predates it.
        """
        self.load_all()
        epoch = self._epoch()  # a follower raises here, as its writes would
        with self._order_lock:
            with self._index_lock:
                told = {k: self._observed.get(k) for k, e in self._told.items() if e == epoch and k.cluster == cluster}
                fresh, sums = summed(observed_by_group, told, cluster=cluster, index=self._observed)
                self._observed = fresh
                self._told = {k: e for k, e in self._told.items() if k.cluster != cluster}
                for gone in [k for k in self._bodies.keys() - fresh.keys() if k.cluster == cluster]:
                    del self._bodies[gone]
            groups = sorted(set(self._cache) | set(sums))
            self._enqueue({g: [(_replacer(cluster, *sums.get(g, {}).get(cluster, ({}, 0))), None)] for g in groups})
        self.flush()

    def update_cash(self, group: str, accrue: Callable[[CashState], CashState | None]) -> CashState:
        """Accrue cash by CAS from what is *stored*, so no interval is ever accrued twice.

        `accrue` gets the stored cash, period start and last accrual time and
        returns the new ones (None: nothing to do). It may run more than once
        (after a conflict, with the newer state). The last accrual time only
        moves forward: a result that would move it back is refused.
        """
        result: list[CashState] = []

        def change(state: LedgerState) -> bool:
            now, changed = accrue_into(group, state, accrue)
            result[:] = [now]
            return changed

        self.mutate(group, change)
        return result[0]

    def cash_state(self, group: str) -> CashState:
        state = self._cache.get(group) or self.read(group, self._monotonic() + self.tuning.controller_timeout)
        return CashState(dict(state.cash), state.period_start, state.last_accrual)

    def pending(self) -> Iterable[ObjectKey]:
        """Identities this replica admitted and nobody has confirmed yet (other replicas' are only sums)."""
        with self._index_lock:
            slots = {k for mine in self._mine.values() for k in mine.items}
        return [parse_identity(k) for k in slots]

    def reservations(self, group: str) -> dict[str, dict[str, int]]:
        """This replica's unconfirmed admissions in `group`: identity slot -> the usage it holds."""
        with self._index_lock:
            mine = self._mine.get(group)
            return {k: dict(v.usage) for k, v in mine.items.items()} if mine is not None else {}

    def _left(self, until: float) -> float:
        return max(until - self._monotonic(), 0.001)

    # ------------------------------------------------------ ledger objects
    def load_all(self) -> str:
        """LIST every ledger object into the cache; return the list's resourceVersion (for a watch)."""
        until = self._monotonic() + self.tuning.controller_timeout
        while True:
            try:
                listing = self.api.request("GET", COLLECTION_PATH, timeout=self._left(until))
                break
            except KubeError as exc:
                self._retry_or_raise(exc, until, "listing the ledger objects")
        seen = set()
        for item in listing.get("items") or []:
            try:
                state = from_object(item)
            except LedgerFormatError as exc:
                LOG.error("skipping an unreadable ledger object: %s", exc)
                continue
            seen.add(state.group)
            self.remember(state)
        for gone in set(self._cache) - seen:
            self.drop(gone)
        return str((listing.get("metadata") or {}).get("resourceVersion") or "")

    def ensure_groups(self, groups: Iterable[str]) -> int:
        """Create the ledger objects of `groups` that do not exist yet; return how many were created."""
        until = self._monotonic() + self.tuning.controller_timeout
        created = 0
        for group in groups:
            if group in self._cache:
                continue
            before = self.stats.writes
            self.read(group, until)
            created += self.stats.writes > before
        return created

    def delete_if_empty(self, group: str) -> bool:
        """Delete a removed group's ledger if it holds nothing, guarded by its resourceVersion."""
        state = self._cache.get(group)
        if state is None or not state.is_empty():
            return False
        body = {"kind": "DeleteOptions", "apiVersion": "v1",
                "preconditions": {"resourceVersion": state.resource_version}}
        try:
            self.api.request("DELETE", object_path(group), body=body, timeout=self.tuning.controller_timeout)
        except ApiError as exc:
            if exc.status in (404, 409):
                return False
            raise
        self.drop(group)
        return True


__all__ = ["KubernetesLedger", "StoreStats"]

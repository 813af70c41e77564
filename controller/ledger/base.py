"""The store contract: what every ledger store promises, the values it trades in, the arithmetic they share.

Admission and the controller talk to a store only through the two protocols
here: `Ledger` (admission: check and reserve, look an object up) and
`ControllerLedger` (the controller: observe, forget, expire, resync, cash).
Two stores implement both — `memory.MemoryLedger` (one process) and
`kubernetes.ledger.KubernetesLedger` (shared by every replica through the
apiserver) — and a new store starts from this module, not from a copy of
either: the usage arithmetic, the resourceVersion ordering, the object index
lookup and the cash bookkeeping live here once. What to record for a request
is the decision's to say (`Decision.stored`, `reservation`, `stored_usage`):
a store never reads the request again.

Usage is a mapping of resource key to nano units (exact integers, never
floats). Reservations are conservative in every store: only the positive
part of a delta is reserved (`positive`), and a shrink releases quota when
the controller observes it, not when it is admitted, because an admitted
request may never persist.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

import orjson

from quotalang.decision import Decision, UsageSource, clip
from quotalang.errors import InputError, InternalError

DEFAULT_RESERVATION_TTL = 30.0
EMPTY: Mapping[str, int] = MappingProxyType({})

Usage = Mapping[str, int]  # resource key -> nano units


# ----------------------------------------------------------------- errors
class LedgerUnavailable(InternalError):
    """The ledger could not be read or written in time; the engine answers per failure mode."""


class NotLeader(InternalError):
    """A controller write by a replica that is not (or no longer) the leader."""


class CashError(InternalError, ValueError):
    """An accrual that would break cash's invariants (move the last accrual time back)."""


# ----------------------------------------------------------------- values
class ObjectKey(NamedTuple):
    """An object's identity: API group, kind, namespace, name, and the cluster it lives in.

    The API group is part of the identity so that two kinds with one name
    (a CRD `Deployment` in another group) cannot collide; the version is not,
    because one object is served under several versions. The cluster is last
    and defaults to "" (the one cluster of a single-cluster install), so that
    the same namespace/name in two clusters are two objects, charged twice.
    """

    api_group: str  # "" for the core group
    kind: str
    namespace: str
    name: str
    cluster: str = ""  # a registered cluster's name (a DNS label); "" when there is one cluster

    @classmethod
    def of(cls, obj: Mapping[str, Any], cluster: str = "") -> ObjectKey:
        """The identity of a Kubernetes object (`apps/v1` → group `apps`; `v1` → core) in `cluster`."""
        api_version = str(obj.get("apiVersion") or "")
        meta = obj.get("metadata")
        if not isinstance(meta, Mapping):
            meta = EMPTY
        return cls(
            api_version.rpartition("/")[0],
            str(obj.get("kind") or ""),
            str(meta.get("namespace") or ""),
            str(meta.get("name") or ""),
            cluster,
        )

    def __str__(self) -> str:
        kind = f"{self.kind}.{self.api_group}" if self.api_group else self.kind
        text = f"{kind} {self.namespace}/{self.name}" if self.namespace else f"{kind} {self.name}"
        return f"{self.cluster}: {text}" if self.cluster else text


class Observation(NamedTuple):
    """What the watch saw of one object: the usage it charges to a group (None: to none)."""

    identity: ObjectKey
    group: str | None
    usage: Usage
    resource_version: str | None = None
    body: Mapping[str, Any] | None = None


@dataclass(slots=True)
class Observed:
    """One object's observed usage and the group it charges (None: none), as a store indexes it."""

    group: str | None
    usage: dict[str, int]


@dataclass(frozen=True, slots=True)
class GroupUsage:
    """A consistent copy of one group's numbers, for the API and metrics."""

    observed: Mapping[str, int]
    reserved: Mapping[str, int]
    cash: Mapping[str, int]
    objects: int  # observed objects charging this group
    reservations: int  # pending reservations charging this group
    # `observed` per cluster (cluster -> key -> nanos; clusters with usage only): {"": observed} with one cluster
    observed_by_cluster: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    @property
    def used(self) -> dict[str, int]:
        """What admission checks against: observed plus reserved."""
        out = dict(self.observed)
        for key, value in self.reserved.items():
            out[key] = out.get(key, 0) + value
        return out


NO_USAGE = GroupUsage(EMPTY, EMPTY, EMPTY, 0, 0)  # a group a store holds nothing for


@dataclass(slots=True)
class CashState:
    """A group's cash as stored: what `update_cash` hands to the accrual function and takes back.

    `used` is nano-unit-seconds per key; times are UTC epoch seconds.
    """

    used: dict[str, int]
    period_start: float | None
    last_accrual: float | None


# -------------------------------------------------------------- contract
@dataclass(frozen=True, slots=True)
class Ask:
    """One request as a store sees it: where to reserve, until when, and how to decide.

    The engine (`quotalang.server.engine`) builds it from a review; a store
    never sees the review, the policy or the evaluator. `decide(usage,
    dry_run)` is the whole decision against the usage the store hands it
    (its group's numbers, under its lock or from one ledger version): a store
    may call it more than once (a retry after a conflict, a lease trial, a
    check without some entries) and records only what the `Decision` it
    returns says (`stored`, `reservation`, `stored_usage`).
    """

    group: str | None  # the group whose numbers it is checked against (its lock, its ledger object); None: none
    identity: ObjectKey  # the object reserved for (a Scale: its parent)
    operation: str  # CREATE or UPDATE (a Scale is an UPDATE of its parent)
    decide: Callable[[UsageSource, bool], Decision]
    dry_run: bool = False
    deadline: float = math.inf  # monotonic: a store that would wait longer gives up (LedgerUnavailable)
    admitted_version: str | None = None  # the resourceVersion an UPDATE was decided against (its old object's)

    def decision(self, usage: UsageSource, dry_run: bool | None = None) -> Decision:
        """Decide against `usage`; `dry_run` overrides the request's (a trial that must reserve nothing)."""
        return self.decide(usage, self.dry_run if dry_run is None else dry_run)


class Ledger(Protocol):
    """What admission needs from a ledger store.

    It is a `quotalang.decision.UsageSource`: `used(group)` is observed usage
    plus unexpired reservations, `cash_used(group)` the cash spent this period.
    `reserve` decides an ask against the group's numbers and records it, as one
    atomic step per group; `try_reserve` does the same only if it needs no
    wait (no network call, no other request's turn) and otherwise returns
    None having done nothing: the server's event loop tries it first.
    """

    @property
    def standalone(self) -> bool: ...

    def used(self, group: str) -> Mapping[str, int]: ...

    def cash_used(self, group: str) -> Mapping[str, int]: ...

    def reserve(self, ask: Ask) -> Decision: ...

    def try_reserve(self, ask: Ask) -> Decision | None: ...

    @property
    def fetches(self) -> bool:
        """Whether `lookup` may make a call (a live GET) for what the store does not hold."""
        ...

    def lookup(
        self, identity: ObjectKey, *, local: bool = False, version: str | None = None
    ) -> Mapping[str, Any] | None:
        """The stored body of `identity`: admitted, else observed, else (unless `local`) a live GET; None if
        not found. `version`: the resourceVersion the object has now (a Scale's): see `look_up`."""
        ...

    def forget(self, identity: ObjectKey) -> None: ...

    def group_usage(self, group: str) -> GroupUsage: ...


class CashStore(Protocol):
    """Where cash is kept: what accrual and its state file need from a store."""

    def cash_state(self, group: str) -> CashState: ...

    def update_cash(self, group: str, accrue: Callable[[CashState], CashState | None]) -> CashState: ...


class ControllerLedger(CashStore, Protocol):
    """The calls the controller makes (both stores implement them)."""

    def observe(
        self,
        identity: ObjectKey,
        group: str | None,
        usage: Usage,
        *,
        resource_version: str | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None: ...

    def observe_many(self, observations: Iterable[Observation]) -> None: ...

    def forget(self, identity: ObjectKey) -> None: ...

    def resync(self, observed_by_group: Mapping[str, Mapping[ObjectKey, Usage]], cluster: str = "") -> None:
        """Replace the observed usage of `cluster`'s objects with its listing; keep reservations.

        Other clusters' objects stay as they are (a cluster's relist replaces
        only its share; an unreachable one keeps its last observed usage).
        The listing was taken before the call, and `observe`/`forget` go on
        meanwhile: a store must order the replacement with them (what it was
        told of that cluster since its previous resync is merged in by
        `summed`), or a fold between the listing and the write is counted
        nowhere.
        """
        ...

    def expire(self, now: float | None = None) -> int: ...


# ------------------------------------------------------------ arithmetic
def add_usage(target: dict[str, int], usage: Usage, sign: int = 1) -> None:
    """Add (or, with sign -1, subtract) usage in place; keys that reach zero leave."""
    for key, value in usage.items():
        total = target.get(key, 0) + sign * value
        if total:
            target[key] = total
        else:
            target.pop(key, None)


def maximum(a: Usage, b: Usage) -> dict[str, int]:
    """Per key, the larger of two usages: what to hold when either may be the one that exists."""
    out = dict(a)
    for key, value in b.items():
        if value > out.get(key, 0):
            out[key] = value
    return out


def positive(usage: Usage) -> dict[str, int]:
    """The part of a delta that needs room (reservations hold only that)."""
    return {k: v for k, v in usage.items() if v > 0}


ClusterSums = dict[str, dict[str, tuple[dict[str, int], int]]]  # group -> cluster -> (usage, objects)


def summed(
    observed_by_group: Mapping[str, Mapping[ObjectKey, Usage]],
    told: Mapping[ObjectKey, Observed | None] | None = None,
    *,
    cluster: str = "",
    index: Mapping[ObjectKey, Observed] | None = None,
) -> tuple[dict[ObjectKey, Observed], ClusterSums]:
    """A resync of `cluster`: the new per-object index and, per group and cluster, (usage, object count).

    Only `cluster`'s objects are replaced: the store's current `index` of
    other clusters' objects is kept as is (a listing's identities of another
    cluster are ignored), so one cluster's relist never forgets another's
    usage. `told` is what the store was told (`observe`: its entry;
    `forget`: None) of `cluster`'s objects since the listing may have been
    taken, i.e. since that cluster's previous resync (other clusters' entries
    are ignored: they are for their own resync). Either may be the newer of
    the two: the listing can predate a call (a fold that confirmed an
    admission must not be undone), or a call can still be on its way with
    what the listing shows (it will be applied as a difference against this
    index). So a told object keeps its told group; in that group it counts
    the per-key larger of the two usages (a growth the listing saw first is
    counted now, whether or not an admission reserved it); a forgotten one
    stays gone (a re-created object was admitted, and its reservation holds
    it until its own call folds it). Neither order counts an object as less
    than it holds; the next call, or the next resync, makes the number exact.
    """
    fresh: dict[ObjectKey, Observed] = {k: o for k, o in (index or {}).items() if k.cluster != cluster}
    for group, objects in observed_by_group.items():
        for identity, usage in objects.items():
            if identity.cluster == cluster:
                fresh[identity] = Observed(group, dict(usage))
    for identity, seen in (told or {}).items():
        if identity.cluster != cluster:
            continue
        listed = fresh.pop(identity, None)
        if seen is None:
            continue
        usage = dict(seen.usage)
        if listed is not None and listed.group == seen.group:
            usage = maximum(usage, listed.usage)
        fresh[identity] = Observed(seen.group, usage)
    sums: ClusterSums = {}
    for identity, observed in fresh.items():
        if observed.group is not None:
            total, count = sums.setdefault(observed.group, {}).get(identity.cluster, ({}, 0))
            add_usage(total, observed.usage)
            sums[observed.group][identity.cluster] = (total, count + 1)
    return fresh, sums


def totals(by_cluster: Mapping[str, tuple[Mapping[str, int], int]]) -> tuple[dict[str, int], int]:
    """A group's usage and object count summed over its clusters."""
    usage: dict[str, int] = {}
    count = 0
    for part, objects in by_cluster.values():
        add_usage(usage, part)
        count += objects
    return usage, count


# ------------------------------------------------------ resource versions
def version_of(obj: Mapping[str, Any] | None) -> str | None:
    """An object's metadata.resourceVersion, if any."""
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    value = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    return str(value) if value else None


def later(candidate: str, current: str) -> bool:
    """Whether resourceVersion `candidate` comes after `current`.

    resourceVersions are opaque, but etcd's are integers; anything else
    counts as later when it differs.
    """
    try:
        return int(candidate) > int(current)
    except ValueError:
        return candidate != current


def at_or_after(seen: str | None, admitted: str | None) -> bool:
    """Whether an observation at `seen` includes an admission made at `admitted`.

    An object admitted on CREATE has no version yet, so any observation of it counts.
    """
    if admitted is None or seen is None:
        return True
    return later(seen, admitted)


def newer(candidate: str | None, current: str | None) -> bool:
    """Whether a copy at `candidate` should replace a cached one at `current` (nothing cached: yes)."""
    if current is None:
        return True
    if candidate is None:
        return False
    return later(candidate, current)


# ---------------------------------------------------------------- objects
def pack(body: Mapping[str, Any]) -> bytes:
    """Stores keep indexed bodies as JSON bytes, not dicts.

    Ten thousand objects as nested dicts are a million objects the cyclic GC
    traverses on every full collection, and each admission would add a
    hundred more; one bytes object per body is invisible to it (and smaller).
    Bodies are read back only for a `Scale` or an HPA, which are rare.
    A body orjson cannot encode (nested past its depth limit) is an
    `InputError`: stores pack before they write anything, so such an object
    is denied and leaves no trace.
    """
    try:
        return orjson.dumps(body, default=str)
    except orjson.JSONEncodeError as exc:
        raise InputError(f"the object cannot be recorded: {exc}") from None


def pack_observed(body: Mapping[str, Any] | None) -> bytes | None:
    """`pack` for what the watch saw: an object the index cannot hold is still counted, only not indexed
    (a `/scale` of it is then looked up live)."""
    if body is None:
        return None
    try:
        return pack(body)
    except InputError:
        return None


def unpack(raw: bytes) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(raw)
    return body


class Admitted(Protocol):
    """An admitted object's body, held until its reservation's deadline."""

    @property
    def deadline(self) -> float: ...

    @property
    def body(self) -> bytes | None: ...

    @property
    def resource_version(self) -> str | None: ...  # the version an UPDATE was admitted against


def look_up(
    identity: ObjectKey,
    admitted: Mapping[ObjectKey, Admitted],
    observed: Mapping[ObjectKey, bytes],
    now: float,
    fallback: Callable[[ObjectKey], Mapping[str, Any] | None] | None,
    version: str | None = None,
    *,
    fetches: bool = False,
) -> Mapping[str, Any] | None:
    """`Ledger.lookup` for every store.

    The admitted body (until its reservation's deadline), else the observed
    one, else what `fallback` finds (pass None for a `local` lookup).

    With `version`, the resourceVersion the object has now (a Scale carries
    its parent's), only a body known to be that version is trusted: the
    observed one if the watch saw it at `version`, else, where the store
    `fetches`, a live read (None from a `local` lookup: the caller reads in a
    thread). An admitted body is not known to be stored: it may be an update
    a later webhook or the storage refused while another writer moved the
    object on, and a Scale checked against it would be charged from replicas
    the object never had (the simulation's `--scale-parent lookup`, seed 1).
    A store that cannot read live passes over only an admitted body that was
    admitted against `version` itself (had it been stored, the object would
    have a newer one).
    """
    pending = admitted.get(identity)
    live = pending if pending is not None and pending.deadline > now else None
    if version:
        seen = observed.get(identity)
        if seen is not None:
            body = unpack(seen)
            meta = body.get("metadata")
            if isinstance(meta, Mapping) and meta.get("resourceVersion") == version:
                return body
        if fetches:
            return fallback(identity) if fallback is not None else None
        if live is not None and live.resource_version == version:
            live = None
    raw = live.body if live is not None else None
    if raw is None:
        raw = observed.get(identity)
    if raw is not None:
        return unpack(raw)
    return fallback(identity) if fallback is not None else None



# -------------------------------------------------------------------- cash
class CashFields(Protocol):
    """A store's record of one group's cash (its in-memory group, a ledger object's state)."""

    cash: dict[str, int]
    period_start: float | None
    last_accrual: float | None


def accrued(group: str, stored: CashState, accrue: Callable[[CashState], CashState | None]) -> CashState | None:
    """Run an accrual on a copy of the stored cash; refuse one that would move the last accrual back."""
    new = accrue(CashState(dict(stored.used), stored.period_start, stored.last_accrual))
    if new is not None and stored.last_accrual is not None and (
        new.last_accrual is None or new.last_accrual < stored.last_accrual
    ):
        raise CashError(f"cash of group {group}: the last accrual time cannot move back")
    return new


def accrue_into(
    group: str, record: CashFields, accrue: Callable[[CashState], CashState | None]
) -> tuple[CashState, bool]:
    """`update_cash` for every store: apply an accrual to a group's record in place.

    Returns the cash now stored and whether the record changed (the caller
    holds whatever makes the read-modify-write atomic: a lock, a CAS).
    """
    stored = CashState(dict(record.cash), record.period_start, record.last_accrual)
    new = accrued(group, stored, accrue)
    if new is None:
        return stored, False
    record.cash = {k: v for k, v in new.used.items() if v}
    record.period_start, record.last_accrual = new.period_start, new.last_accrual
    return new, True



def refuse_drawing(decision: Decision) -> Decision:
    """A decision that draws on its group's ancestors (borrowing, issue 29), for a store that cannot yet hold
    their numbers while it records: refused in enforce mode; in warn and audit mode allowed with a warning,
    as a request over quota is there, and recorded in its group alone.

    The replicated store checks a group against its own ledger object only, so
    the ancestors' balances it would read are not there (docs/architecture.md
    has the plan: register the draw with each ancestor by compare-and-swap).
    """
    why = (f"group {decision.path} would go beyond its guarantee, and borrowing is not supported by the "
           "kubernetes ledger store yet (use the embedded store, or remove lend/borrow from the policy)")
    if decision.mode != "enforce":
        return dataclasses.replace(decision, touches=(), borrowed=(), reclaim=None, reclaims=(),
                                   warnings=[*decision.warnings, clip(why)])
    return dataclasses.replace(decision, allowed=False, reason="over-quota", charges={}, touches=(), borrowed=(),
                               reclaim=None, reclaims=(), warnings=[], error=why)


# ------------------------------------------------- in-process stores
class GroupNumbers:
    """One group's numbers as an in-process store keeps them (memory, and SQLite's mirror). Guarded by `lock`."""

    __slots__ = ("by_cluster", "cash", "last_accrual", "lock", "objects", "observed", "pending", "period_start",
                 "reserved", "used")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.observed: dict[str, int] = {}
        self.by_cluster: dict[str, dict[str, int]] = {}  # `observed` per cluster (clusters with usage only)
        self.reserved: dict[str, int] = {}
        self.used: dict[str, int] = {}  # observed + reserved, kept in step: admission reads it as is
        self.cash: dict[str, int] = {}
        self.period_start: float | None = None
        self.last_accrual: float | None = None
        self.objects = 0
        self.pending: set[ObjectKey] = set()

    def add_observed(self, usage: Usage, sign: int, cluster: str = "", *, count: bool = True) -> None:
        """Add (-1: remove) an object's observed usage in `cluster`; `count=False`: a change of one already counted."""
        add_usage(self.observed, usage, sign)
        add_usage(self.used, usage, sign)
        if count:
            self.objects += sign
        if usage:
            share = self.by_cluster.setdefault(cluster, {})
            add_usage(share, usage, sign)
            if not share:
                del self.by_cluster[cluster]

    def set_observed(self, by_cluster: Mapping[str, tuple[Mapping[str, int], int]]) -> None:
        """A resync's numbers (`summed`'s, for this group): observed per cluster and in total."""
        self.observed, self.objects = totals(by_cluster)
        self.by_cluster = {c: dict(usage) for c, (usage, _) in by_cluster.items() if usage}
        self.used = dict(self.observed)
        add_usage(self.used, self.reserved, +1)

    def add_reserved(self, usage: Usage, sign: int) -> None:
        add_usage(self.reserved, usage, sign)
        add_usage(self.used, usage, sign)


class ObservesOne:
    """`observe` as a batch of one, for a store whose watch sink is `observe_many` (every store)."""

    def observe(
        self,
        identity: ObjectKey,
        group: str | None,
        usage: Usage,
        *,
        resource_version: str | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        """The watch saw `identity` charging `usage` to `group` (None: to no group); see `observe_many`."""
        self.observe_many([Observation(identity, group, usage, resource_version, body)])

    def observe_many(self, observations: Iterable[Observation]) -> None:
        raise NotImplementedError


class GroupTable:
    """The group numbers an in-process store keeps (memory, SQLite's mirror) and the reads admission makes.

    A subclass sets `self._groups = {}` and guards each entry's fields by its
    own lock; these reads are the same for every such store.
    """

    _groups: dict[str, GroupNumbers]

    def _drop_observed(
        self, identity: ObjectKey, previous: Observed | None, held: Mapping[str, Mapping[str, int]]
    ) -> None:
        """A forgotten object's observed usage leaves its group, and what it held elsewhere (standalone)."""
        if previous is not None and previous.group is not None:
            held = {**held, previous.group: previous.usage}
        for group, usage in held.items():
            state = self._group(group)
            with state.lock:
                state.add_observed(usage, -1, identity.cluster)

    def _group(self, name: str) -> GroupNumbers:
        group = self._groups.get(name)
        if group is None:
            group = self._groups.setdefault(name, GroupNumbers())  # atomic: one wins
        return group

    def used(self, group: str) -> Mapping[str, int]:
        state = self._groups.get(group)
        return state.used if state is not None else EMPTY

    def cash_used(self, group: str) -> Mapping[str, int]:
        state = self._groups.get(group)
        return state.cash if state is not None else EMPTY

    def group_usage(self, group: str) -> GroupUsage:
        state = self._groups.get(group)
        if state is None:
            return NO_USAGE
        with state.lock:
            return GroupUsage(dict(state.observed), dict(state.reserved), dict(state.cash), state.objects,
                              len(state.pending), {c: dict(u) for c, u in state.by_cluster.items()})

    def _set_observed(self, sums: ClusterSums) -> None:
        """Every group's observed numbers after a resync (`summed`'s sums; a group it does not name holds none)."""
        for name in set(self._groups) | set(sums):
            state = self._group(name)
            with state.lock:
                state.set_observed(sums.get(name, {}))

    def group_names(self) -> list[str]:
        """Groups the ledger holds numbers for (not necessarily in the policy)."""
        return list(self._groups)


@dataclass(slots=True)
class PendingAdmission:
    charges: dict[str, dict[str, int]]  # group -> key -> reserved (positive) nanos
    deadline: float
    resource_version: str | None
    body: bytes | None = None  # JSON, see base.pack


def standalone_after(held: Mapping[str, dict[str, int]], decision: Decision) -> dict[str, dict[str, int]]:
    """What an object holds per group after a decision that reserves, in standalone mode.

    Nothing confirms an admission there, so the rules err toward over-counting
    (as native ResourceQuota does): a CREATE of a name already held keeps the
    per-key maximum in its group and keeps what it holds elsewhere (the
    apiserver will answer AlreadyExists to one of them); an UPDATE holds what
    the updated object charges; an UPDATE no kind rule reads keeps what it held,
    as its charges say.
    """
    group, new = decision.group, decision.stored_usage
    if decision.operation == "CREATE":
        after = {g: dict(u) for g, u in held.items()}
        if group is not None:
            after[group] = maximum(held.get(group, EMPTY), new)
        return after
    if decision.reason == "no-rule":
        return {g: dict(u) for g, u in held.items()}
    return {group: dict(new)} if group is not None else {}


__all__ = [
    "DEFAULT_RESERVATION_TTL",
    "EMPTY",
    "NO_USAGE",
    "Admitted",
    "Ask",
    "CashError",
    "CashFields",
    "CashState",
    "CashStore",
    "ClusterSums",
    "ControllerLedger",
    "GroupNumbers",
    "GroupTable",
    "GroupUsage",
    "Ledger",
    "LedgerUnavailable",
    "NotLeader",
    "ObjectKey",
    "Observation",
    "Observed",
    "ObservesOne",
    "PendingAdmission",
    "Usage",
    "accrue_into",
    "accrued",
    "add_usage",
    "at_or_after",
    "later",
    "look_up",
    "maximum",
    "newer",
    "pack",
    "pack_observed",
    "positive",
    "refuse_drawing",
    "standalone_after",
    "summed",
    "totals",
    "unpack",
    "version_of",
]

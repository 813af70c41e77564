"""The store contract: what every ledger store promises, the values it trades in, the errors it raises.

Admission and the controller talk to a store only through the two protocols
here: `Ledger` (admission: check and reserve, look an object up) and
`ControllerLedger` (the controller: observe, forget, expire, resync, cash).
Two stores implement both — `memory.MemoryLedger` (one process) and
`kubernetes.ledger.KubernetesLedger` (shared by every replica through the
apiserver) — and a new store starts from this module, not from a copy of
either. What they share beyond the contract lives once beside it, a module
a job: `arithmetic` (usage sums, a resync's totals), `versions`
(resourceVersion order), `bodies` (the object index and `look_up`),
`accrual` (cash applied to a record). What to record for a request is the
decision's to say (`Decision.stored`, `reservation`, `stored_usage`): a
store never reads the request again.

Invariant: usage is a mapping of resource key to nano units (exact
integers, never floats). Reservations are conservative in every store: only
the positive part of a delta is reserved (`Decision.reservation`), and a
shrink releases quota when the controller observes it, not when it is
admitted, because an admitted request may never persist.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

from quotalang.decision import Decision, UsageSource, clip
from quotalang.errors import InternalError

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
@dataclass(slots=True)
class Ask:
    """One request as a store sees it: where to reserve, until when, and how to decide. Never changed once
    built (not frozen: a frozen dataclass costs several times as much to build, and one is built per review).

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
    """The calls the controller makes (both stores implement them; one observation: `ObservesOne.observe`)."""

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


__all__ = [
    "DEFAULT_RESERVATION_TTL",
    "EMPTY",
    "NO_USAGE",
    "Ask",
    "CashError",
    "CashState",
    "CashStore",
    "ControllerLedger",
    "GroupUsage",
    "Ledger",
    "LedgerUnavailable",
    "NotLeader",
    "ObjectKey",
    "Observation",
    "Observed",
    "ObservesOne",
    "Usage",
    "refuse_drawing",
]

"""The QuotaLedger custom resource's format: its object names, and (de)serialisation (the CRD: `crd_schema`).

One cluster-scoped `QuotaLedger` per quota group holds what every webhook
replica must agree on: the group's observed usage, its pending reservations,
and its cash. Groups are carved from their parents, so a request is checked
against one group and touches exactly one ledger object: there is no hot root
object every admission would contend on.

    apiVersion: quotalang.dev/v1alpha1
    kind: QuotaLedger
    metadata: {name: ai-lab, resourceVersion: "4711"}
    spec: {group: ai-lab}
    status:
      observed: {requests.cpu: "4000000000000"}     # nanos, exact, as strings
      objects: 3                                     # observed objects charging the group
      observedByCluster: {"": {requests.cpu: "4000000000000"}}   # `observed` per cluster (Σ = observed)
      objectsByCluster: {"": 3}                      # `objects` per cluster
      reservations:                                  # one entry per webhook replica, never per object
        quotalang-7d9f-abcde:
          usage: {requests.cpu: "2000000000000"}     # Σ of that replica's unconfirmed admissions
          count: 5                                   # how many they are
          expires: "2026-11-23T06:22:31.123456Z"     # the last one's deadline (wall clock)
          answered: 2                                # the last ask this entry was written after
      folded: ["apps/Deployment/team-a/web@4711"]    # what the leader's last fold write observed
                                                     # (`eu-1:apps/Deployment/team-a/web@…` in cluster eu-1)
      cash: {requests.nvidia.com/gpu: "36000000000000"}   # nano-unit-seconds this period
      periodStart: "2026-11-23T00:00:00Z"
      lastAccrual: "2026-11-23T06:22:00.000000Z"
      leaderEpoch: 7                                 # fencing token of the last leader that wrote
      asks: 2                                        # replicas asked to write their entries (see kubernetes.asking)
      lastWrite: quotalang-7d9f-abcde/7/912          # token of the leader's last write
      drawn: {ai-lab-vision: {requests.cpu: "2000000000000"}}   # what each lending/borrowing child draws
      drawnAt: {ai-lab-vision: "4702"}               # on this pool, by the leader from that child's version
      drawnTerms: 3f9a0c1d2e4b5a69                   # the children's terms drawn was counted under

Decisions:

* The object's size is bounded by keys × replicas, never by the admissions
  in flight: each replica keeps its unconfirmed admissions (per object) in
  memory and writes only their sum; the leader lists what a fold write
  observed in `folded` (at most `FOLD_CAP` identities, replaced by the
  next write), and each replica drops its own matching admissions from its
  sum (see `kubernetes` and docs/architecture.md). `status` is an atomic map
  for server-side apply, so `managedFields` hold one entry per writer
  whatever the keys.
* Quantities are nano-unit integers in decimal strings: JSON numbers lose
  exactness past 2^53 in many clients, and 8 Ti of memory is 8.8e21 nanos.
* Everything lives in `.status` of a CRD *without* a status subresource, so
  one PUT replaces spec and status together and one `resourceVersion` guards
  both: a compare-and-swap is a single request.
* Object names: a group name that is already a valid DNS-1123 subdomain (the
  grammar allows `[a-z0-9][a-z0-9._-]*`, so almost all are) is used as is. A
  name with `_`, `..`, `.-`/`-.` or over 253 characters becomes its sanitised
  form plus `-` and 10 hex digits of its SHA-256. `spec.group` always holds
  the real name and is checked on read, so a collision is an error, not a
  silent merge.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from quotalang.controller.kube import times
from quotalang.controller.kube.times import format_time
from quotalang.controller.ledger.arithmetic import add_usage
from quotalang.controller.ledger.base import ObjectKey
from quotalang.errors import InternalError

GROUP = "quotalang.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "QuotaLedger"
PLURAL = "quotaledgers"
CRD_NAME = f"{PLURAL}.{GROUP}"
COLLECTION_PATH = f"/apis/{GROUP}/{VERSION}/{PLURAL}"

FOLD_CAP = 256  # identities one fold write lists in `status.folded`: the leader splits bigger batches
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class LedgerFormatError(InternalError, ValueError):
    """A ledger object that cannot be read (hand-edited, or written by an incompatible version)."""


def object_name(group: str) -> str:
    """The QuotaLedger name for a group (see the module docstring for the mapping)."""
    if len(group) <= 253 and _SUBDOMAIN.match(group):
        return group
    digest = hashlib.sha256(group.encode()).hexdigest()[:10]
    cleaned = re.sub(r"[^a-z0-9]+", "-", group.lower()).strip("-")[:200] or "group"
    return f"{cleaned}-{digest}"


def object_path(group: str) -> str:
    return f"{COLLECTION_PATH}/{object_name(group)}"


def identity_key(identity: ObjectKey) -> str:
    """`apps/Deployment/ns/name`, or `NAME:apps/Deployment/ns/name` for an object of cluster NAME.

    No part of an identity can hold a `/` (the first may be empty), and an API
    group cannot hold a `:`, so both forms read back unambiguously; the one
    cluster's form ("") is the one older versions wrote and still read.
    """
    key = "/".join(identity[:4])
    return f"{identity.cluster}:{key}" if identity.cluster else key


def parse_identity(text: str) -> ObjectKey:
    """`identity_key` read back; an entry written without a cluster is cluster ""."""
    parts = text.split("/", 3)
    if len(parts) != 4:
        raise LedgerFormatError(f"reservation key {text!r} is not [cluster:]group/kind/namespace/name")
    cluster, _, api_group = parts[0].rpartition(":")
    return ObjectKey(api_group, parts[1], parts[2], parts[3], cluster)


def parse_time(text: str) -> float:
    """A time in a ledger object as epoch seconds; `LedgerFormatError` if it is not RFC 3339."""
    try:
        return times.parse_time(text)
    except ValueError:
        raise LedgerFormatError(f"{text!r} is not an RFC 3339 time") from None


@dataclass(slots=True)
class Held:
    """One replica's unconfirmed admissions in a group, summed: they hold quota until folded or expired."""

    usage: dict[str, int]
    count: int
    expires: float  # epoch seconds: the latest deadline among them (a dead replica's entry goes then)
    answered: int = 0  # the ledger's `asks` when the replica last wrote this entry (it was exact then)


@dataclass(slots=True)
class LedgerState:
    """One group's ledger as read from (or about to be written to) the API."""

    group: str
    resource_version: str | None = None
    observed: dict[str, int] = field(default_factory=dict)
    objects: int = 0
    reservations: dict[str, Held] = field(default_factory=dict)  # replica -> its unconfirmed admissions
    folded: list[str] = field(default_factory=list)  # `identity@resourceVersion` the last fold write observed
    cash: dict[str, int] = field(default_factory=dict)
    period_start: float | None = None
    last_accrual: float | None = None
    leader_epoch: int = 0
    last_write: str | None = None  # the token of the last controller write (see KubernetesLedger.mutate)
    asks: int = 0  # how many times a replica asked the others to write their entries (see kubernetes.asking)
    # `observed` and `objects` per cluster ("" for the one cluster); their sums are `observed` and `objects`.
    observed_by_cluster: dict[str, dict[str, int]] = field(default_factory=dict)
    objects_by_cluster: dict[str, int] = field(default_factory=dict)
    # Borrowing (issue 29, `kubernetes.registering`): child -> what it draws on this group's pool (the leader's
    # d̃ of the child's usage at version `drawn_at[child]`); counted in `used` as this group's own.
    drawn: dict[str, dict[str, int]] = field(default_factory=dict)
    drawn_at: dict[str, str] = field(default_factory=dict)
    drawn_terms: str | None = None  # `drawing.pool_digests` of the policy `drawn` was counted under

    def add_observed(self, usage: Mapping[str, int], sign: int, cluster: str, *, count: bool = True) -> None:
        """A fold: add (-1: remove) an object's usage in `cluster`; `count=False`: a change of one already counted.

        The totals move with the cluster's share, so they always sum to it.
        """
        add_usage(self.observed, usage, sign)
        share = self.observed_by_cluster.setdefault(cluster, {})
        add_usage(share, usage, sign)
        if not share:
            del self.observed_by_cluster[cluster]
        if count:
            self.objects = max(self.objects + sign, 0)
            objects = max(self.objects_by_cluster.get(cluster, 0) + sign, 0)
            if objects:
                self.objects_by_cluster[cluster] = objects
            else:
                self.objects_by_cluster.pop(cluster, None)

    def set_cluster(self, cluster: str, usage: Mapping[str, int], objects: int) -> bool:
        """A resync of one cluster: its share becomes `usage` and `objects`; return whether anything changed."""
        if self.observed_by_cluster.get(cluster, {}) == usage and self.objects_by_cluster.get(cluster, 0) == objects:
            return False
        if usage:
            self.observed_by_cluster[cluster] = dict(usage)
        else:
            self.observed_by_cluster.pop(cluster, None)
        if objects:
            self.objects_by_cluster[cluster] = objects
        else:
            self.objects_by_cluster.pop(cluster, None)
        self.observed = {}
        for share in self.observed_by_cluster.values():
            add_usage(self.observed, share)
        self.objects = sum(self.objects_by_cluster.values())
        return True

    def reserved(self, now: float) -> dict[str, int]:
        """Σ usage of replicas' reservations not yet expired."""
        total: dict[str, int] = {}
        for item in self.reservations.values():
            if item.expires > now:
                for key, value in item.usage.items():
                    total[key] = total.get(key, 0) + value
        return total

    def used(self, now: float) -> dict[str, int]:
        """What admission checks against: observed plus unexpired reservations."""
        out = dict(self.observed)
        for key, value in self.reserved(now).items():
            out[key] = out.get(key, 0) + value
        for usage in self.drawn.values():
            add_usage(out, usage)
        return out

    def is_empty(self) -> bool:
        """Nothing observed and nothing pending: a removed group's ledger may then go."""
        return not self.observed and self.objects == 0 and not self.reservations and not self.drawn

    def copy(self) -> LedgerState:
        return LedgerState(
            self.group,
            self.resource_version,
            dict(self.observed),
            self.objects,
            {k: Held(dict(r.usage), r.count, r.expires, r.answered) for k, r in self.reservations.items()},
            list(self.folded),
            dict(self.cash),
            self.period_start,
            self.last_accrual,
            self.leader_epoch,
            self.last_write,
            self.asks,
            {c: dict(u) for c, u in self.observed_by_cluster.items()},
            dict(self.objects_by_cluster),
            {c: dict(u) for c, u in self.drawn.items()},
            dict(self.drawn_at),
            self.drawn_terms,
        )


def _nanos(values: Mapping[str, int]) -> dict[str, str]:
    return {key: str(value) for key, value in sorted(values.items()) if value}


def _read_nanos(values: Any, where: str) -> dict[str, int]:
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise LedgerFormatError(f"{where} is not a mapping of key: nanos")
    out: dict[str, int] = {}
    for key, value in values.items():
        try:
            out[str(key)] = int(value)
        except (TypeError, ValueError):
            raise LedgerFormatError(f"{where}.{key} is {value!r}, not an integer of nanos") from None
    return out


def _read_counts(values: Mapping[str, Any] | None, name: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, value in (values or {}).items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise LedgerFormatError(f"QuotaLedger {name}: status.objectsByCluster.{key} is {value!r}, not a count")
        out[str(key)] = value
    return out


def _count(value: Any, where: str, name: str) -> int:
    """A non-negative count (absent: 0); anything else is a format error, never a guess."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LedgerFormatError(f"QuotaLedger {name}: status.{where} is {value!r}, not a count")
    return value


def to_object(state: LedgerState) -> dict[str, Any]:
    """The full object for a POST or a compare-and-swap PUT (metadata.resourceVersion set)."""
    metadata: dict[str, Any] = {"name": object_name(state.group)}
    if state.resource_version is not None:
        metadata["resourceVersion"] = state.resource_version
    status: dict[str, Any] = {
        "observed": _nanos(state.observed),
        "objects": state.objects,
        "observedByCluster": {c: _nanos(u) for c, u in sorted(state.observed_by_cluster.items())},
        "objectsByCluster": {c: n for c, n in sorted(state.objects_by_cluster.items()) if n},
        "reservations": {
            key: {"usage": _nanos(item.usage), "count": item.count, "expires": format_time(item.expires),
                  **({"answered": item.answered} if item.answered else {})}
            for key, item in sorted(state.reservations.items())
        },
        "folded": list(state.folded),
        "cash": _nanos(state.cash),
        "leaderEpoch": state.leader_epoch,
    }
    if state.asks:
        status["asks"] = state.asks
    if state.drawn or state.drawn_at:
        status["drawn"] = {c: _nanos(u) for c, u in sorted(state.drawn.items()) if _nanos(u)}
        status["drawnAt"] = dict(sorted(state.drawn_at.items()))
    if state.drawn_terms is not None:
        status["drawnTerms"] = state.drawn_terms
    if state.last_write is not None:
        status["lastWrite"] = state.last_write
    if state.period_start is not None:
        status["periodStart"] = format_time(state.period_start)
    if state.last_accrual is not None:
        status["lastAccrual"] = format_time(state.last_accrual)
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": {"group": state.group},
            "status": status}


def from_object(obj: Mapping[str, Any], group: str | None = None) -> LedgerState:
    """Read a ledger object; with `group`, check that it really is that group's (name collisions)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if not isinstance(meta, Mapping) or not isinstance(spec, Mapping) or not isinstance(status, Mapping):
        raise LedgerFormatError("metadata, spec and status must be mappings")
    name = str(meta.get("name") or "?")
    owner = spec.get("group")
    if not isinstance(owner, str) or not owner:
        raise LedgerFormatError(f"QuotaLedger {name} has no spec.group")
    if group is not None and owner != group:
        raise LedgerFormatError(
            f"QuotaLedger {name} belongs to group {owner!r}, not {group!r}: two group names map to one "
            "object name; rename one of the groups"
        )
    reservations: dict[str, Held] = {}
    raw = status.get("reservations") or {}
    if not isinstance(raw, Mapping):
        raise LedgerFormatError(f"QuotaLedger {name}: status.reservations is not a mapping")
    for key, item in raw.items():
        if not isinstance(item, Mapping):
            raise LedgerFormatError(f"QuotaLedger {name}: reservation {key} is not a mapping")
        # An entry of v0.x (one per object, with a `deadline`) reads as a replica of one until it expires.
        expires = item.get("expires") or item.get("deadline")
        reservations[str(key)] = Held(
            _read_nanos(item.get("usage"), f"reservations.{key}.usage"),
            int(item.get("count") or 1),
            parse_time(str(expires or "")),
            _count(item.get("answered"), f"reservations.{key}.answered", name),
        )
    folded = status.get("folded") or []
    if not isinstance(folded, list):
        raise LedgerFormatError(f"QuotaLedger {name}: status.folded is not a list")
    period = status.get("periodStart")
    last = status.get("lastAccrual")
    rv = meta.get("resourceVersion")
    observed = _read_nanos(status.get("observed"), "status.observed")
    objects = int(status.get("objects") or 0)
    by_cluster, counts = status.get("observedByCluster"), status.get("objectsByCluster")
    if by_cluster is None:  # written by a version without clusters: it is all the one cluster's
        by_cluster, counts = ({"": observed} if observed else {}), ({"": objects} if objects else {})
    if not isinstance(by_cluster, Mapping) or not isinstance(counts, Mapping | None):
        raise LedgerFormatError(f"QuotaLedger {name}: status.observedByCluster/objectsByCluster are not mappings")
    drawn, drawn_at = status.get("drawn") or {}, status.get("drawnAt") or {}
    if not isinstance(drawn, Mapping) or not isinstance(drawn_at, Mapping):
        raise LedgerFormatError(f"QuotaLedger {name}: status.drawn/drawnAt are not mappings")
    return LedgerState(
        group=owner,
        resource_version=str(rv) if rv else None,
        observed=observed,
        objects=objects,
        reservations=reservations,
        folded=[str(item) for item in folded],
        cash=_read_nanos(status.get("cash"), "status.cash"),
        period_start=parse_time(str(period)) if period else None,
        last_accrual=parse_time(str(last)) if last else None,
        leader_epoch=int(status.get("leaderEpoch") or 0),
        asks=_count(status.get("asks"), "asks", name),
        last_write=str(status["lastWrite"]) if status.get("lastWrite") else None,
        observed_by_cluster={str(c): u for c, v in by_cluster.items()
                             if (u := _read_nanos(v, f"status.observedByCluster.{c}"))},
        objects_by_cluster={c: n for c, n in _read_counts(counts, name).items() if n},
        drawn={str(c): u for c, v in drawn.items() if (u := _read_nanos(v, f"status.drawn.{c}"))},
        drawn_at={str(c): str(v) for c, v in drawn_at.items()},
        drawn_terms=str(status["drawnTerms"]) if status.get("drawnTerms") else None,
    )


__all__ = [
    "API_VERSION", "COLLECTION_PATH", "CRD_NAME", "FOLD_CAP", "KIND", "Held", "LedgerFormatError", "LedgerState",
    "from_object", "identity_key", "object_name", "object_path", "parse_identity",
    "parse_time", "to_object",
]

"""The admission engine: one AdmissionRequest → one AdmissionResponse, through the ledger.

What is evaluated:

* CREATE and UPDATE of any kind (kinds without a rule are allowed by the
  evaluator, uncharged);
* the `/scale` subresource (kind `Scale`): its parent is found in the
  ledger's object index by identity; a parent that cannot be found is denied,
  so that scaling cannot evade quota;
* HorizontalPodAutoscalers: their target is found the same way and
  `maxReplicas` is checked, never charged.

What passes untouched: DELETE, CONNECT and every other subresource
(`/status`, ...). In standalone mode (no controller watching the cluster) a
DELETE review, when the webhook configuration sends one, releases the
object's usage; nothing else would.

With several clusters (`serve --cluster`), a review arrives on its
cluster's route and is decided with that cluster in every identity the
engine builds (the object's, a Scale's parent, an HPA's target): the same
namespace/name in two clusters are two workloads. The route is the only
thing that says where a review came from.

A dry run (`dryRun: true`, the boolean; `admission` refuses any other type)
is evaluated and answered but reserves nothing.

**The engine decides, the store reserves.** `ask_for` is the one place a
request becomes an `Ask`: the group whose numbers it is checked against, the
identity it reserves for, its deadline, and a decide-function carrying the
policy, the object, the old object, the Scale parent or HPA target and the
LimitRange defaults of the review's own cluster. `/validate` (`review`),
`/api/explain` and the what-if page (`explain`) all decide through it; a
store only runs the ask under its lock or compare-and-swap and records what
the decision says. The event loop first tries `review(..., wait=False)`: a
store that would wait (a network call, another batch's turn) says so by
returning None, and the review is decided again in a worker thread.

An object that cannot be read (a replica count that is not a number, a
malformed or negative quantity, ...) is denied with the reason, whatever the
failure mode: the failure mode is for our own failures (a bug, a ledger that
cannot be reached), never for a bad object, or `--failure-mode allow` would
admit exactly the objects that cannot be charged. Every other error is
answered per the failure mode (`deny`, the default, or `allow`) with the error
in the message.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cachetools import TTLCache

from quotalang.controller import Ledger, ObjectKey
from quotalang.controller.kube.deadline import DEFAULT_TIMEOUT, budget
from quotalang.controller.kube.limit_ranges import LimitRangeSource
from quotalang.controller.kube.naming import api_group, kind_of_resource
from quotalang.controller.ledger.base import Ask
from quotalang.controller.ledger.bodies import pack, unpack
from quotalang.controller.ledger.memory import MemoryLedger
from quotalang.controller.ledger.versions import version_of
from quotalang.decision import Decision, UsageSource, clip
from quotalang.errors import InputError, UserInputError
from quotalang.evaluator import evaluate, resolve_group
from quotalang.limitranges import LimitRanges
from quotalang.owners import OwnerRef, Owners, claimed_owner
from quotalang.policy import CompiledPolicy
from quotalang.reclaimable import Priorities
from quotalang.server import responses
from quotalang.server.admission import AdmissionRequest, AdmissionResponse
from quotalang.server.grants import Grants, user_of
from quotalang.server.reload import PolicyHolder
from quotalang.usage import Measured

FailureMode = Literal["allow", "deny"]
Verdict = Literal["allow", "deny", "warn", "audit", "skip", "error"]


@dataclass(slots=True)
class Outcome:
    """The response plus what logs and metrics need to know about it."""

    response: AdmissionResponse
    uid: str
    kind: str
    operation: str
    namespace: str
    name: str
    group: str  # "" when the request charges no group
    verdict: Verdict
    reason: str
    error: str | None = None
    cluster: str = ""  # the review's cluster (its route); "" with one cluster


def ask_for(
    policy: CompiledPolicy,
    obj: Mapping[str, Any],
    operation: str,
    *,
    old: Mapping[str, Any] | None = None,
    parent: Mapping[str, Any] | None = None,
    dry_run: bool = False,
    identity: ObjectKey | None = None,
    limit_ranges: LimitRanges | None = None,
    deadline: float = math.inf,
    owners: Owners | None = None,
    refused: str | None = None,
    priorities: Priorities | None = None,
    old_usage: Measured | None = None,
) -> Ask:
    """The ask of a CREATE or UPDATE of `obj`, a `Scale` (`parent`: the stored workload, `identity` names
    it) or an HPA (`parent`: its target, checked and never charged).

    The group label of `parent`, else of `obj`, picks the numbers it is checked
    against; what is recorded comes from the decision alone. `owners` answers
    where a claimed controller owner is known (`Engine._owners`: looked up
    before the store decides, so a store never waits for a call under its lock); `refused`, likewise
    looked up before, why the request's user may not charge the group (`Engine._refused`); `priorities`
    the cluster's PriorityClass values (a cached table: who may borrow); `old_usage` the usage of `old`
    (of `parent`) as the decision that recorded it measured it (`Engine._kept`).
    """
    target = parent if parent is not None else obj
    if identity is None:
        identity = ObjectKey.of(target)
    # the review's namespace and cluster decide which groups may be charged (namespace bindings)
    namespace, cluster = identity.namespace or None, identity.cluster
    group, _ = resolve_group(policy, target, namespace=namespace, cluster=cluster)

    def decide(usage: UsageSource, dry: bool) -> Decision:
        return evaluate(policy, obj, operation, old=old, usage=usage, parent=parent, dry_run=dry,
                        limit_ranges=limit_ranges, namespace=namespace, cluster=cluster, owners=owners,
                        refused=refused, priorities=priorities, old_usage=old_usage)

    return Ask(group, identity, operation.upper(), decide, dry_run, deadline, version_of(old))


def hpa_target(hpa: Mapping[str, Any], namespace: str, cluster: str = "") -> ObjectKey | None:
    """The identity of the workload an HPA scales (`spec.scaleTargetRef`, in the HPA's namespace and cluster)."""
    spec = hpa.get("spec")
    ref = spec.get("scaleTargetRef") if isinstance(spec, Mapping) else None
    if not isinstance(ref, Mapping):
        return None
    return ObjectKey(
        api_group(str(ref.get("apiVersion") or "")),
        str(ref.get("kind") or ""),
        namespace,
        str(ref.get("name") or ""),
        cluster,
    )


def _metadata(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    meta = obj.get("metadata") if type(obj) is dict or isinstance(obj, Mapping) else None
    return meta if type(meta) is dict or isinstance(meta, Mapping) else _NO_METADATA


_NO_METADATA: Mapping[str, Any] = {}


def _is_hpa(obj: Mapping[str, Any]) -> bool:
    return obj.get("kind") == "HorizontalPodAutoscaler" and str(obj.get("apiVersion", "")).startswith("autoscaling/")


_BUDGET = budget(DEFAULT_TIMEOUT)  # a review's time to decide, unless the caller says


class _Wait(Exception):
    """Deciding needs a wait (a lookup beyond what the store holds): the caller decides again in a thread."""


class Engine:
    """Decides requests against the current policy; holds no per-request state.

    `limit_ranges`: each cluster's LimitRange index (the controller or the
    kubernetes store's runtime installs it); None applies no defaults.
    `grants`: each cluster's answer to `use` on a group (`authorize users`);
    None: no apiserver to ask, so such a policy refuses what it would ask about.
    """

    def __init__(
        self,
        policies: PolicyHolder,
        ledger: Ledger,
        failure_mode: FailureMode = "deny",
        limit_ranges: LimitRangeSource | None = None,
        grants: Grants | None = None,
    ) -> None:
        self.policies = policies
        self.grants = grants if grants is not None else Grants({})
        self.ledger = ledger
        self.failure_mode: FailureMode = failure_mode
        self.limit_ranges = limit_ranges if limit_ranges is not None else LimitRangeSource()
        self._releases = _Releases()  # standalone: deleted pods released once their grace period is over
        # (owner, uid) -> what ownership needs of the owner's body: owners known with that uid, for a while
        self._verified: TTLCache[tuple[ObjectKey, str], dict[str, Any]] = TTLCache(maxsize=4096, ttl=30)
        self._verified_lock = threading.Lock()  # the cache is read from the event loop and worker threads
        self._kept = _Kept()  # standalone: recent records beside their parsed body and measured usage

    def review(
        self, request: AdmissionRequest, cluster: str = "", *, wait: bool = True, deadline: float | None = None
    ) -> Outcome | None:
        """Decide one review; `cluster` is the route's (the cluster the object lives in).

        `deadline` (monotonic) is when a store gives up; by default the
        apiserver's default webhook timeout from now. With `wait=False` (the
        event loop's first try) None means the store would have to wait:
        nothing was recorded, decide it again with `wait=True`.
        """
        uid = request["uid"]
        gvk = request["kind"]
        obj = request.get("object")
        meta = _metadata(obj) or _metadata(request.get("oldObject"))
        outcome = Outcome(
            response={"uid": uid, "allowed": True},
            uid=uid,
            kind=gvk["kind"],
            operation=request["operation"],
            namespace=request.get("namespace") or str(meta.get("namespace") or ""),
            name=request.get("name") or str(meta.get("name") or ""),
            group="",
            verdict="skip",
            reason="not-intercepted",
            cluster=cluster,
        )
        policy = self.policies.policy
        if policy is None:
            return self._failed(outcome, "no policy is loaded yet")
        until = deadline if deadline is not None else time.monotonic() + _BUDGET
        try:
            decision = self._decide(policy, request, outcome, wait, until)
        except UserInputError as exc:  # the object is invalid: denied in every failure mode
            where = f"{outcome.namespace}/{outcome.name}".lstrip("/")
            message = f"cannot read {outcome.kind} {where}: {exc}"
            outcome.response = responses.deny(uid, message)
            outcome.verdict, outcome.reason, outcome.error = "deny", "invalid-object", message
            return outcome
        except _Wait:
            return None
        except Exception as exc:  # a bug or a broken ledger: answered per the failure mode
            return self._failed(outcome, f"{type(exc).__name__}: {exc}")
        if decision is None:
            return outcome
        outcome.group = decision.group or ""
        outcome.reason = decision.reason
        outcome.response = responses.for_decision(uid, decision)
        if not decision.allowed:
            outcome.verdict = "deny"
        elif decision.violations:
            outcome.verdict = "audit" if decision.mode == "audit" else "warn"
        else:
            outcome.verdict = "allow"
        return outcome

    def explain(
        self,
        policy: CompiledPolicy,
        obj: Mapping[str, Any],
        operation: str = "CREATE",
        *,
        old: Mapping[str, Any] | None = None,
        parent: Mapping[str, Any] | None = None,
        cluster: str = "",
    ) -> Decision:
        """The what-if decision (`/api/explain`, the what-if page): the webhook's, against the live usage,
        with the namespace's LimitRange defaults; nothing is reserved. An HPA's target is looked up when no
        `parent` is given. Raises `UserInputError` for an object that cannot be read."""
        if parent is None and _is_hpa(obj):
            parent = self._target(obj, _namespace_of(obj), cluster, wait=True)
        ask = ask_for(policy, obj, operation, old=old, parent=parent,
                      limit_ranges=self.limit_ranges.of(cluster), priorities=self.limit_ranges.priorities(cluster))
        return ask.decision(self.ledger)

    def _decide(
        self, policy: CompiledPolicy, request: AdmissionRequest, outcome: Outcome, wait: bool, until: float
    ) -> Decision | None:
        operation: str = request["operation"]
        gvk = request["kind"]
        sub = request.get("subResource") or ""
        dry_run = request.get("dryRun") is True  # only the boolean; admission refuses other types
        if operation not in ("CREATE", "UPDATE"):
            if operation == "DELETE" and not sub and not dry_run and self.ledger.standalone:
                gone = ObjectKey(gvk.get("group", ""), gvk["kind"], outcome.namespace, outcome.name, outcome.cluster)
                self._deleted(gone, request.get("options"))
            return None
        obj = request.get("object") or {}
        old: Mapping[str, Any] | None = request.get("oldObject")
        standalone = self.ledger.standalone
        if standalone and self._releases:
            self._releases.run(self.ledger)
        limits = self.limit_ranges.of(outcome.cluster)
        if sub == "scale" or gvk["kind"] == "Scale":
            resource = request.get("resource") or {"group": "", "version": "", "resource": ""}
            kind = kind_of_resource(policy, resource.get("group", ""), resource.get("resource", ""))
            if kind is None:  # the policy does not charge that kind: nothing to check
                outcome.reason = "no-rule"
                return None
            identity = ObjectKey(resource.get("group", ""), kind, outcome.namespace, outcome.name, outcome.cluster)
            version = _metadata(obj).get("resourceVersion")
            kept = self._kept.of(self.ledger, identity) if standalone and not isinstance(version, str) else None
            parent = kept[0] if kept is not None else self._find(identity, wait, version=version)
            ask = ask_for(policy, obj, "UPDATE", old=old, parent=parent, dry_run=dry_run, identity=identity,
                          limit_ranges=limits, deadline=until, old_usage=kept[1] if kept is not None else None)
        elif sub and not (sub == "resize" and gvk["kind"] == "Pod" and not gvk.get("group")):
            return None  # /status and the like change nothing a quota charges; pods/resize changes requests
        elif gvk["kind"] == "HorizontalPodAutoscaler" and gvk.get("group") == "autoscaling":
            target = self._target(obj, outcome.namespace, outcome.cluster, wait)
            ask = ask_for(policy, obj, operation, old=old, parent=target, dry_run=dry_run, limit_ranges=limits,
                          deadline=until)
        else:
            identity = ObjectKey(gvk.get("group", ""), gvk["kind"], outcome.namespace, outcome.name, outcome.cluster)
            measured, packed = None, None
            if standalone and (operation == "UPDATE" or _metadata(obj).get("uid")):
                recorded, measured, packed = self._record(identity, obj)
                operation, old = standalone_basis(operation, obj, recorded)
            owners = self._owners(policy, obj, identity, wait)
            refused = (self._refused(policy, request, obj, operation, old, identity, owners, wait, until)
                       if policy.settings.authorize_users else None)
            ask = ask_for(policy, obj, operation, old=old, dry_run=dry_run, identity=identity, limit_ranges=limits,
                          deadline=until, owners=owners, refused=refused,
                          priorities=self.limit_ranges.priorities(outcome.cluster), old_usage=measured)
        if wait:
            decision = self.ledger.reserve(ask)
        else:
            found = self.ledger.try_reserve(ask)
            if found is None:
                raise _Wait
            decision = found
        if standalone and decision.reserves:
            if _finally_deleted(obj):
                self.ledger.forget(ask.identity)  # its last finalizer is gone: the apiserver removes it now
            elif ask.operation == "UPDATE":  # charged against a record: the next change likely is too
                self._kept.keep(ask.identity, decision, packed if decision.stored is obj else None)
        return decision

    def _record(
        self, identity: ObjectKey, obj: Mapping[str, Any]
    ) -> tuple[Mapping[str, Any] | None, Measured | None, bytes | None]:
        """Standalone: what the ledger holds for `identity` (`standalone_basis`'s `recorded`), with its usage
        where an earlier decision measured it, and `pack(obj)` where it was computed.

        The review's own object when the record is its packing byte for byte
        (a resent review, the usual case: nothing to parse, and the
        evaluator's `old == obj` meets the same dict), else the body kept
        beside the record (`_Kept`), else the parsed record: a review parsed
        from JSON packs back to the bytes it was parsed from.
        """
        ledger = self.ledger
        if not isinstance(ledger, MemoryLedger):  # the in-process stores are the standalone ones
            return ledger.lookup(identity, local=True), None, None
        raw = ledger.recorded(identity)
        if raw is None:
            return None, None, None
        packed = None
        try:
            packed = pack(obj)
            if packed == raw:
                return obj, None, packed
        except InputError:  # one that cannot be packed is compared parsed (and denied when recorded)
            pass
        kept = self._kept.of(ledger, identity, raw)
        return (kept[0], kept[1], packed) if kept is not None else (unpack(raw), None, packed)

    def _owners(self, policy: CompiledPolicy, obj: Mapping[str, Any], identity: ObjectKey, wait: bool) -> Owners:
        """The ledger's answer to where `obj`'s claimed controller owner (and, through a go-between, the chain
        above it) is known: looked up now, outside any store lock, and handed to the decision as a memo.

        An owner the ledger holds with the claimed uid is remembered briefly
        (`_verified`), so the pods of one ReplicaSet cost one lookup of it.
        The claim and its verification are made here, once per review
        (`Owners`): the decision and `_refused` read them.
        """
        if claimed_owner(policy, obj) is None:
            return Owners(policy, obj, _no_owner)  # nothing to look up, nothing claimed
        found: dict[tuple[str, str, str], Mapping[str, Any] | None] = {}

        def find(ref: OwnerRef) -> Mapping[str, Any] | None:
            key = (ref.api_version, ref.kind, ref.name)
            if key not in found:
                owner = ObjectKey(api_group(ref.api_version), ref.kind, identity.namespace, ref.name,
                                  identity.cluster)
                with self._verified_lock:
                    known = self._verified.get((owner, ref.uid))
                if known is not None:
                    found[key] = known
                else:
                    body = self._find(owner, wait)
                    found[key] = body
                    if body is not None and _metadata(body).get("uid") == ref.uid:
                        with self._verified_lock:
                            self._verified[owner, ref.uid] = _ownership(body)
            return found[key]

        return Owners.of_claim(policy, obj, find)  # every lookup it needs happens here

    def _refused(
        self, policy: CompiledPolicy, request: AdmissionRequest, obj: Mapping[str, Any], operation: str,
        old: Mapping[str, Any] | None, identity: ObjectKey, owners: Owners, wait: bool, until: float,
    ) -> str | None:
        """`authorize users`: why the request's user may not charge `obj`'s group, or None. Asked (outside
        any store lock) only for a CREATE or a move to another group of a charged kind; never for an object
        its verified owner is charged for (a controller's child), a Scale or an HPA (they follow their
        parent). A dry run asks too: it answers what the real request would get. The apiserver is asked
        within what is left until `until` (the review's deadline): a slow one is refused in time."""
        if policy.rule_for(obj) is None:
            return None
        namespace, cluster = identity.namespace or None, identity.cluster
        group, _ = resolve_group(policy, obj, namespace=namespace, cluster=cluster)
        if group is None:
            return None
        if operation == "UPDATE" and old is not None and resolve_group(
            policy, old, namespace=namespace, cluster=cluster
        )[0] == group:
            return None
        if owners.verified is not None:  # claimed and verified in `_owners`, for this object
            return None
        user = user_of(request.get("userInfo"))
        if not wait and not self.grants.known(user, group, identity.namespace, cluster):
            raise _Wait
        return self.grants.check(user, group, identity.namespace, cluster, deadline=until)

    def _deleted(self, identity: ObjectKey, options: Mapping[str, Any] | None) -> None:
        """Standalone: a DELETE review releases only what is proven gone (`deletion_hold`)."""
        recorded = self.ledger.lookup(identity, local=True)
        hold = deletion_hold(recorded, options)
        if hold == 0.0:
            self.ledger.forget(identity)
        elif hold is not None:
            self._releases.add(identity, _metadata(recorded).get("uid"), hold)

    def _target(self, hpa: Mapping[str, Any], namespace: str, cluster: str, wait: bool) -> Mapping[str, Any] | None:
        identity = hpa_target(hpa, namespace, cluster)
        return self._find(identity, wait) if identity is not None else None

    def _find(self, identity: ObjectKey, wait: bool, version: Any = None) -> Mapping[str, Any] | None:
        """The stored body of `identity`, from the ledger (and, when it may wait, a live GET); `version`: the
        resourceVersion it has now, where the review says (a Scale's)."""
        known = version if isinstance(version, str) else None
        if wait or not self.ledger.fetches:
            return self.ledger.lookup(identity, version=known)
        found = self.ledger.lookup(identity, local=True, version=known)
        if found is None:
            raise _Wait  # only a call could tell: decide in a thread
        return found

    def _failed(self, outcome: Outcome, error: str) -> Outcome:
        outcome.verdict, outcome.reason, outcome.error = "error", "error", error
        if self.failure_mode == "allow":
            outcome.response = responses.allow(
                outcome.uid, [clip(f"quotalang could not decide; allowed (failure mode allow): {error}")]
            )
        else:
            outcome.response = responses.deny(
                outcome.uid,
                f"quotalang could not decide this request and denies it (failure mode deny): {error}",
                code=500,
                reason="InternalError",
            )
        return outcome


def standalone_basis(
    operation: str, obj: Mapping[str, Any], recorded: Mapping[str, Any] | None
) -> tuple[str, Mapping[str, Any] | None]:
    """Standalone (nothing watches the cluster): what a CREATE or UPDATE is charged against.

    Never the review's `oldObject`, which whoever reaches the port may write:
    an UPDATE is charged against what the ledger recorded for the name (None:
    the name holds nothing, so the update is charged in full). A CREATE whose
    object has the uid of the recorded one is the same admission retried (the
    apiserver resends a review it got no answer for): it is checked as an
    UPDATE against what it already holds, never counted twice.
    """
    if operation == "UPDATE":
        return "UPDATE", recorded
    uid = _metadata(obj).get("uid")
    if recorded is not None and uid and _metadata(recorded).get("uid") == uid:
        return "UPDATE", recorded
    return operation, None


def deletion_hold(recorded: Mapping[str, Any] | None, options: Mapping[str, Any] | None) -> float | None:
    """Standalone: how long a deleted object's usage stays charged: 0 (released now), seconds, or None
    (until a later review shows it gone).

    A DELETE only starts a deletion. An object with finalizers lives on
    (Terminating) until they are removed — that last UPDATE releases it
    (`_finally_deleted`); an orphaning delete leaves its dependents running
    uncharged otherwise, so their owner's charge stays; a Pod keeps running
    for its grace period (the delete's `gracePeriodSeconds`, else the pod's
    `terminationGracePeriodSeconds`, default 30 s, as the kubelet does). The
    name is read from the ledger's record, never from the review.
    """
    if recorded is None:
        return 0.0
    meta = _metadata(recorded)
    if meta.get("finalizers"):
        return None
    given = options or {}
    if given.get("propagationPolicy") == "Orphan" or given.get("orphanDependents") is True:
        return None
    if recorded.get("kind") == "Pod" and recorded.get("apiVersion") == "v1":
        grace = given.get("gracePeriodSeconds")
        if not isinstance(grace, int) or isinstance(grace, bool):
            spec = recorded.get("spec")
            grace = spec.get("terminationGracePeriodSeconds") if isinstance(spec, Mapping) else None
        if not isinstance(grace, int) or isinstance(grace, bool):
            grace = DEFAULT_GRACE_SECONDS
        return float(min(max(grace, 0), MAX_GRACE_SECONDS))
    return 0.0


DEFAULT_GRACE_SECONDS = 30  # a Pod's terminationGracePeriodSeconds when unset
MAX_GRACE_SECONDS = 3600  # a longer hold is still a hold, never a release before the pod could be gone


def _no_owner(ref: OwnerRef) -> Mapping[str, Any] | None:
    """The owners of an object that claims none: never asked."""
    return None


def _ownership(body: Mapping[str, Any]) -> dict[str, Any]:
    """What verifying a chain of owners reads of an owner's body: its kind and its own controller reference."""
    meta = _metadata(body)
    return {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
            "metadata": {"uid": meta.get("uid"), "ownerReferences": meta.get("ownerReferences")}}


def _finally_deleted(obj: Mapping[str, Any]) -> bool:
    """An update of an object being deleted that leaves it no finalizer: the apiserver removes it now."""
    meta = _metadata(obj)
    return bool(meta.get("deletionTimestamp")) and not meta.get("finalizers")


class _Releases:
    """Standalone: deleted objects released once their hold is over, checked on each review (in memory: a
    restart keeps them charged, over-counting, never under)."""

    __slots__ = ("_due", "_lock")

    def __init__(self) -> None:
        self._due: list[tuple[float, ObjectKey, Any]] = []  # (when, identity, the deleted object's uid)
        self._lock = threading.Lock()

    def add(self, identity: ObjectKey, uid: Any, seconds: float) -> None:
        with self._lock:
            heapq.heappush(self._due, (time.monotonic() + seconds, identity, uid))

    def __bool__(self) -> bool:
        return bool(self._due)

    def run(self, ledger: Ledger) -> None:
        """Release what is due, unless the name was created again meanwhile (another uid holds it now)."""
        if not self._due or self._due[0][0] > time.monotonic():
            return
        with self._lock:
            now = time.monotonic()
            gone = []
            while self._due and self._due[0][0] <= now:
                gone.append(heapq.heappop(self._due)[1:])
        for identity, uid in gone:
            if _metadata(ledger.lookup(identity, local=True)).get("uid") == uid:
                ledger.forget(identity)


class _Kept:
    """Standalone: the body and measured usage of what the last few admissions recorded.

    An UPDATE (or a Scale) of a recorded object is charged against its record;
    while the ledger holds exactly the packing of the body kept here (compared
    when it is used: another writer, a restart or a forgotten name leave other
    bytes or none), that body and its usage under the same policy and defaults
    (`Measured.under`) are the record's, so neither is parsed or computed
    again. Bounded, oldest first out: parsed bodies are what the ledger packs
    to keep off the garbage collector (`bodies.pack`).
    """

    __slots__ = ("_by", "_lock")
    LIMIT = 512

    def __init__(self) -> None:
        self._by: dict[ObjectKey, _Entry] = {}
        self._lock = threading.Lock()  # writers: the event loop and worker threads

    def of(
        self, ledger: Ledger, identity: ObjectKey, raw: bytes | None = None
    ) -> tuple[Mapping[str, Any], Measured] | None:
        """The kept body and usage of `identity` if the ledger's record (`raw`, read when not given) is the
        kept body's packing."""
        entry = self._by.get(identity)
        if entry is None or not isinstance(ledger, MemoryLedger):
            return None
        if raw is None:
            raw = ledger.recorded(identity)
        if raw is None:
            return None
        if entry.packed is None:
            try:
                entry.packed = pack(entry.body)
            except InputError:  # never recorded then; nothing to reuse
                return None
        return (entry.body, entry.measured) if raw == entry.packed else None

    def keep(self, identity: ObjectKey, decision: Decision, packed: bytes | None = None) -> None:
        """After `decision` reserved: keep its stored body and usage; `packed`: the body's packing, if known."""
        if decision.measured is None or decision.stored is None:
            return
        known = self._by.get(identity)
        if packed is not None and known is not None and known.packed == packed:
            return  # a retry of what is kept: it holds an equal body
        entry = _Entry(decision.stored, decision.measured, packed)
        with self._lock:
            self._by.pop(identity, None)
            self._by[identity] = entry
            if len(self._by) > self.LIMIT:
                del self._by[next(iter(self._by))]


@dataclass(slots=True)
class _Entry:
    body: Mapping[str, Any]
    measured: Measured
    packed: bytes | None  # `pack(body)`, computed when first compared


def _namespace_of(obj: Mapping[str, Any]) -> str:
    return str(_metadata(obj).get("namespace") or "")

"""From what the watches see to what the ledger holds: observed usage and cash.

The `Reconciler` is the sink of every `Watcher`. For a workload it asks the
compiled policy what the object charges (the same kind rules and group
resolution admission used) and tells the ledger: `observe` (which folds the
object's pending reservation once the watch shows the admitted version; a
listing observes in batches) and `forget` on deletion; `recompute`, the
controller's periodic resync, hands the ledger every group's usage summed
from scratch, which replaces observed usage but keeps unexpired reservations.
For a pod it keeps a `PodRun` (its group, the cash keys it holds, when it was
scheduled and when it ended) that `accrue` turns into cash.

A pod's group is its controlling owner's (Deployment → ReplicaSet → Pod is
followed through the owners the watches have seen), else its own label.
Objects that a charged owner controls (a Deployment's ReplicaSets) are
indexed for that walk but never charged: the owner paid for them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from quotalang.compiler import CashBudget, CompiledPolicy
from quotalang.controller.cash import PodRun, accrue, pod_run, spent_by_run
from quotalang.controller.ledger.base import CashState, CashStore, ControllerLedger, ObjectKey, Observation, Usage
from quotalang.controller.spending import Spending
from quotalang.evaluator import resolve_group
from quotalang.owners import OwnerRef, claimed_owner, verified_owner
from quotalang.usage import workload_usage

LOG = logging.getLogger("quotalang.controller")
PODS = "pods"  # the source name of the pod watch
_OWNER_DEPTH = 4  # Deployment → ReplicaSet → Pod is two; leave room for operators that nest
BATCH = 500  # observations per ledger call in a listing: one write per group touched (kubernetes store)


@dataclass(slots=True)
class _Seen:
    source: str
    version: str | None
    checksum: str  # the policy the usage was computed under
    uid: str | None
    group: str | None
    usage: dict[str, int]


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _owner_uids(obj: Mapping[str, Any]) -> tuple[str, ...]:
    refs = _meta(obj).get("ownerReferences")
    if not isinstance(refs, list):
        return ()
    return tuple(str(r["uid"]) for r in refs if isinstance(r, Mapping) and r.get("controller") and r.get("uid"))


def _ownership(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What verifying a chain of owners reads of an object: its kind, uid and controller reference."""
    meta = _meta(obj)
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
            "metadata": {"uid": meta.get("uid"), "ownerReferences": meta.get("ownerReferences")}}


def slim(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object without `managedFields` (often half its size, never read for quota)."""
    meta = _meta(obj)
    if "managedFields" not in meta:
        return dict(obj)
    out = dict(obj)
    out["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return out


class Reconciler:
    """The watches' sink; thread-safe (one watcher thread per source calls it)."""

    def __init__(
        self,
        ledger: ControllerLedger,
        policy: Callable[[], CompiledPolicy | None],
        *,
        clock: Callable[[], float] = time.time,
        cluster: str = "",
    ) -> None:
        self.ledger = ledger
        self.cluster = cluster  # every identity it builds is this cluster's, and its resync replaces only those
        self._policy = policy
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[ObjectKey, _Seen] = {}
        self._by_source: dict[str, set[ObjectKey]] = {}
        self._owners: dict[str, tuple[str | None, tuple[str, ...]]] = {}  # uid -> (group, owner uids)
        self._keys: dict[str, ObjectKey] = {}  # workload uid -> its identity (who pays for a pod's cash)
        self.spending = Spending()  # what each workload spent this period (`accrue`)
        self._runs: dict[str, PodRun] = {}  # pod uid -> its run
        # A durable ledger (the kubernetes store) already holds the totals an earlier leader observed:
        # until the first full sync, observations are only indexed, then `synced()` replaces the totals.
        self._holding = bool(getattr(ledger, "durable", False))
        self._pods: dict[str, tuple[str | None, str]] = {}  # pod uid -> (version, policy) it was read at
        self._unresolved: dict[str, dict[str, Any]] = {}  # pods whose charged owner is not seen yet
        # uid -> what verifying ownership reads of an object (its kind and controller reference)
        self._ownership: dict[str, dict[str, Any]] = {}
        # workloads charged as themselves because the owner they claim is not seen (yet): read again
        self._unowned: dict[ObjectKey, tuple[str, dict[str, Any]]] = {}
        self.events = 0

    # --------------------------------------------------------- the sink
    def apply(self, source: str, event: str, obj: dict[str, Any]) -> None:
        self.events += 1
        if source != PODS:
            self._workload(source, event, obj)
            return
        policy = self._policy()
        if policy is not None and policy.rule_for(obj) is not None:  # bare pods are workloads too
            self._workload(source, event, obj, policy)
        self._pod(event, obj, policy)

    def replace(self, source: str, items: Iterable[dict[str, Any]]) -> None:
        """A full listing, read once page by page: observe what changed, forget what is gone.

        Objects at the version already seen (under the same policy) are
        skipped, so a periodic relist of an unchanged cluster is cheap.
        `observe` and `forget` keep every group's sums exact; the controller
        still recomputes them from scratch once per resync interval
        (`recompute`), the safety net against any drift.
        """
        policy = self._policy()
        if policy is None:
            return
        pods = source == PODS
        workloads = not pods or ("v1", "Pod") in policy.kinds  # bare pods are workloads too
        listed: set[ObjectKey] = set()
        uids: set[str] = set()
        batch: list[Observation] = []
        for obj in items:
            if pods:
                uid = str(_meta(obj).get("uid") or "")
                uids.add(uid)
                if self._pods.get(uid) != (_version(obj), policy.checksum) or uid in self._unresolved:
                    self._pod("MODIFIED", obj, policy)
            if workloads:
                key = ObjectKey.of(obj, self.cluster)
                listed.add(key)
                seen = self._seen.get(key)
                if seen is None or seen.version != _version(obj) or seen.checksum != policy.checksum:
                    observed = self._read(source, obj, policy)
                    if observed is not None:
                        batch.append(observed)
                        if len(batch) >= BATCH:
                            self._observe_many(batch)
                            batch = []
        self._observe_many(batch)
        if pods:
            self._end_pods(uids)
        if workloads:
            with self._lock:
                gone = self._by_source.get(source, set()) - listed
            for key in gone:
                self._forget(source, key)

    def _observe_many(self, batch: list[Observation]) -> None:
        if batch and not self._holding:
            self.ledger.observe_many(batch)

    def synced(self) -> None:
        """Every collection is listed: hand the ledger the totals (and, from now on, each observation).

        Reservations are kept; one whose object was listed at or after its
        admitted version folds at the object's next event, or expires.
        """
        self._holding = False
        self.recompute()

    def recompute(self) -> None:
        """Hand the ledger every group's observed usage, summed from scratch (a resync).

        The watchers go on meanwhile: an object observed between this
        snapshot and the ledger's write is newer than the snapshot, and the
        store merges what it was told since its last resync over it (see
        `ControllerLedger.resync`), so the snapshot's age never undoes a fold.
        """
        by_group: dict[str, dict[ObjectKey, Usage]] = {}
        with self._lock:
            for key, seen in self._seen.items():
                if seen.group is not None:
                    by_group.setdefault(seen.group, {})[key] = seen.usage
        self.ledger.resync(by_group, self.cluster)

    # --------------------------------------------------------- workloads
    def _workload(self, source: str, event: str, obj: dict[str, Any], policy: CompiledPolicy | None = None) -> None:
        if event == "DELETED":
            self._forget(source, ObjectKey.of(obj, self.cluster))
            return
        seen = self._read(source, obj, policy or self._policy())
        if seen is not None and not self._holding:
            self.ledger.observe_many([seen])

    def _read(self, source: str, obj: dict[str, Any], policy: CompiledPolicy | None) -> Observation | None:
        """Index a workload; what the ledger should observe of it (None: nothing, e.g. owned or stale)."""
        if policy is None:
            return None
        key = ObjectKey.of(obj, self.cluster)
        version = _version(obj)
        seen_before = self._seen.get(key)
        if seen_before is not None and _older(version, seen_before.version):
            return None  # a stale event (a watcher being replaced): what was seen is newer
        meta = _meta(obj)
        uid = str(meta.get("uid") or "") or None
        # Owned only by an owner the watches have seen with the uid the reference names (as admission
        # checks it against the ledger): a reference anyone may write proves nothing by itself.
        claim = claimed_owner(policy, obj)
        owned = claim is not None and verified_owner(policy, obj, self._owner_seen) is not None
        if uid is not None:
            with self._lock:
                self._ownership[uid] = _ownership(obj)
        if owned and source == PODS and (seen_before is None or seen_before.group is None):
            return None  # a pod its owner paid for: no usage, never an owner itself, nothing to index
        group: str | None = None
        usage: dict[str, int] = {}
        if not owned:
            group, _ = resolve_group(policy, obj)
            if group is not None:
                usage = workload_usage(policy, obj).total
        seen = _Seen(source, version, policy.checksum, uid, group, usage)
        with self._lock:
            self._seen[key] = seen
            self._by_source.setdefault(source, set()).add(key)
            if uid is not None:
                self._owners[uid] = (group, _owner_uids(obj))
                self._keys[uid] = key
            if claim is not None and not owned:
                self._unowned[key] = (source, obj)  # charged as itself until its owner is seen
            else:
                self._unowned.pop(key, None)
        if owned:  # charged nothing; an object charged as itself before its owner was seen gives it back
            was_charged = seen_before is not None and seen_before.group is not None
            return Observation(key, None, {}, version, slim(obj)) if was_charged else None
        return Observation(key, group, usage, version, slim(obj))

    def _owner_seen(self, ref: OwnerRef) -> Mapping[str, Any] | None:
        with self._lock:
            return self._ownership.get(ref.uid)

    def _forget(self, source: str, key: ObjectKey) -> None:
        with self._lock:
            seen = self._seen.pop(key, None)
            self._by_source.get(source, set()).discard(key)
            self._unowned.pop(key, None)
            if seen is not None and seen.uid is not None:
                self._owners.pop(seen.uid, None)
                self._keys.pop(seen.uid, None)
                self._ownership.pop(seen.uid, None)
        self.ledger.forget(key)

    # -------------------------------------------------------------- pods
    def _pod_group(self, policy: CompiledPolicy, pod: Mapping[str, Any]) -> tuple[str | None, bool, ObjectKey]:
        """The pod's group, whether that is final (False: a charged owner is not seen yet), and who pays:
        the charged owner, else the pod itself."""
        owners = _owner_uids(pod)
        itself = ObjectKey.of(pod, self.cluster)
        for hop in range(_OWNER_DEPTH):
            if not owners:
                break
            found = self._owners.get(owners[0])
            if found is None:
                if hop > 0 or claimed_owner(policy, pod) is not None:
                    return None, False, itself  # an owner's watch has not listed it yet: try again later
                break
            payer = self._keys.get(owners[0], itself)
            group, owners = found
            if group is not None:
                return group, True, payer
        group, _ = resolve_group(policy, pod)
        return group, True, itself

    def _pod(self, event: str, pod: dict[str, Any], policy: CompiledPolicy | None = None) -> None:
        uid = str(_meta(pod).get("uid") or "")
        if not uid:
            return
        if event == "DELETED":
            with self._lock:
                self._pods.pop(uid, None)
                self._unresolved.pop(uid, None)
                run = self._runs.get(uid)
                if run is not None and run.end is None:
                    self._runs[uid] = replace(run, end=self._clock())
            return
        policy = policy or self._policy()
        if policy is None:
            return
        group, final, payer = self._pod_group(policy, pod)
        run = None
        if group is not None and group in policy.groups and policy.groups[group].cash:
            run = pod_run(policy, pod, group, self._clock())
            run = replace(run, workload=payer) if run is not None else None
        with self._lock:
            self._pods[uid] = (_version(pod), policy.checksum)
            if final:
                self._unresolved.pop(uid, None)
            else:
                self._unresolved[uid] = pod
            if run is not None:
                self._runs[uid] = run
            else:
                self._runs.pop(uid, None)

    def _end_pods(self, listed: set[str]) -> None:
        """End the runs of pods a complete listing no longer holds (deleted while nobody watched)."""
        now = self._clock()
        with self._lock:
            for uid in self._pods.keys() - listed:
                del self._pods[uid]
                self._unresolved.pop(uid, None)
                run = self._runs.get(uid)
                if run is not None and run.end is None:
                    self._runs[uid] = replace(run, end=now)

    def resolve_pods(self) -> int:
        """Read again the pods whose charged owner was not seen yet (watches list in any order), and the
        workloads charged as themselves because the owner they claim was not seen: one now seen takes them
        over (until then they are counted, never under)."""
        with self._lock:
            waiting = list(self._unresolved.values())
            unowned = list(self._unowned.values())
        for pod in waiting:
            self._pod("MODIFIED", pod)
        policy = self._policy()
        if policy is not None:
            for source, obj in unowned:
                if verified_owner(policy, obj, self._owner_seen) is not None:
                    self._workload(source, "MODIFIED", obj, policy)
        return len(waiting) - len(self._unresolved)

    # -------------------------------------------------------------- cash
    def accrue(self, now: float | None = None) -> int:
        """Accrue every cash-budgeted group up to `now`; return how many groups changed."""
        policy = self._policy()
        if policy is None:
            return 0
        now = self._clock() if now is None else now
        changed = accrue_runs(self.ledger, policy, self.runs(), now, self.spending)
        self.accrued(now)
        return changed

    def accrued(self, now: float) -> None:
        """Cash is accrued up to `now`: runs that ended by then are done with."""
        with self._lock:
            for uid in [u for u, r in self._runs.items() if r.end is not None and r.end <= now]:
                del self._runs[uid]

    # ----------------------------------------------------------- reading
    def runs(self) -> Iterable[PodRun]:
        with self._lock:
            return list(self._runs.values())

    def __len__(self) -> int:
        return len(self._seen)


def accrue_runs(ledger: CashStore, policy: CompiledPolicy, runs: Iterable[PodRun], now: float,
                spending: Spending | None = None) -> int:
    """Accrue every cash-budgeted group over `runs` up to `now`, one `update_cash` per group; how many changed.

    One call per group over all its runs, whichever cluster they run in: the
    last accrual time is the group's, so a second accrual of the same group
    up to the same `now` would skip the first one's pods. With `spending`,
    each workload's share of what was written is added there.
    """
    by_group: dict[str, list[PodRun]] = {}
    for run in runs:
        by_group.setdefault(run.group, []).append(run)
    changed = 0
    for name, group in policy.groups.items():
        if not group.cash:
            continue
        mine = by_group.get(name, ())
        shares: list[tuple[PodRun, str, int]] = []

        def step(state: CashState, mine: Sequence[PodRun] = mine, budgets: Mapping[str, CashBudget] = group.cash,
                 shares: list[tuple[PodRun, str, int]] = shares) -> CashState | None:
            new = _accrue_step(state, runs=mine, budgets=budgets, now=now)
            # A store may call this again after a conflict: the shares are those of the call it wrote.
            shares[:] = spent_by_run(state, mine, budgets, now) if new is not None and spending else []
            return new

        wrote = ledger.update_cash(name, step).last_accrual == now
        changed += wrote
        if wrote and spending is not None and shares:
            spending.add(name, shares, group.cash, now)
    return changed


def _accrue_step(
    state: CashState, *, runs: Iterable[PodRun], budgets: Mapping[str, CashBudget], now: float
) -> CashState | None:
    """The group's new cash; None (no write) when it holds no pods and nothing rolled over.

    Skipping idle groups keeps the kubernetes store's leader from rewriting
    every ledger object each round; nothing is lost, since a pod that appears
    later accrues from the later of its scheduled time and the last accrual.
    """
    runs = tuple(runs)
    new = accrue(state, runs, budgets, now)
    if new is not None and not runs and new.used == state.used:
        return None
    return new


def _older(version: str | None, than: str | None) -> bool:
    """Whether resourceVersion `version` is older than `than` (etcd's are integers; others never compare)."""
    if version is None or than is None:
        return False
    try:
        return int(version) < int(than)
    except ValueError:
        return False


def _version(obj: Mapping[str, Any]) -> str | None:
    value = _meta(obj).get("resourceVersion")
    return str(value) if value else None


__all__ = ["PODS", "Reconciler", "accrue_runs", "slim"]

"""A deterministic simulation of the replicated ledger, in the spirit of FoundationDB's simulation testing.

One seed fixes a whole schedule. A seeded scheduler drives several webhook
replicas (each a real `KubernetesLedger`, its `LedgerWatch`, its
`LeaderElector` and, while it leads, a real `Reconciler` fed by a real
`Watcher` of Deployments) over one `FakeApiServer`, on virtual time, in one
thread. It interleaves admissions (CREATE, UPDATE, label moves, `/scale`,
retried CREATEs, dry runs), deletions, watch events, folds, tidies, resyncs,
expiries and elections, and injects faults: 409s, resets, timeouts, answers
lost after the write landed, 503s, a replica crashing and restarting with
empty memory, a leader stalled past its Lease (failover, fencing), a watch
gap that forces every watch to relist, bounded clock skew.

Concurrency is modelled where it matters: every API call and every sleep of
the store is a yield point at which the scheduler may run other actors first
(another replica's whole admission, the leader's fold, a watch delivery), so
a replica decides from a version another replica then overwrites. A replica
is never re-entered with an action that would take its own group locks; its
watches and election (its other threads, which take none across a call) may
run inside its calls.

Checked after every action:

* **never over-admitted**: no group's live objects use more than its hard
  limit on any key (computed here by hand from the objects' specs);
* **never under-counted**: the stored ledger (observed + unexpired entries)
  holds at least what the group's live objects use.

With `--borrowing` (issue 29) the leaves hang under a lend/borrow tree
(`TREE`), where a leaf may use up to hard + borrow, and every action also
checks **no balance below −borrow** and **no guarantee lent** (`check_balances`).

At quiescence (faults healed, everything delivered, folded, tidied, resynced):
every live replica's entry holds exactly its unconfirmed admissions, observed
usage and object counts equal the live objects'; after the reservation TTL and
the lease window, no entry and no admission is left (with `--borrowing`: no
registration at a pool either, and each pool's `drawn` is what its children's
live objects draw, by hand).

Fault bounds (what the design assumes, docs/architecture.md): clock skew at
most `max_skew`; leader faults (a crash or a stall past the Lease) at least
`leader_fault_gap` apart, so an admission sees at most one failover before its
TTL; network fault bursts of a few seconds.

A run is a pure function of (seed, config, plant) within one process; across
processes run it with `PYTHONHASHSEED=0` (the store iterates sets), as the
printed replay command does:

    PYTHONHASHSEED=0 python -m tests.controller.ledger.simulation --seed 17
    PYTHONHASHSEED=0 python -m tests.controller.ledger.simulation --schedules 5000   # longer
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from quotalang.compiler import CompiledPolicy, compile_sources
from quotalang.controller.kube import deadline as deadlines
from quotalang.controller.kube.election import LeaderElector
from quotalang.controller.kube.watch import Gone, Watcher
from quotalang.controller.ledger.arithmetic import add_usage
from quotalang.controller.ledger.base import DEFAULT_RESERVATION_TTL, LedgerUnavailable, ObjectKey
from quotalang.controller.ledger.crd import COLLECTION_PATH, from_object, identity_key
from quotalang.controller.ledger.kubernetes import tidy
from quotalang.controller.ledger.kubernetes.core import LEASE_SUFFIX
from quotalang.controller.ledger.kubernetes.ledger import KubernetesLedger
from quotalang.controller.ledger.kubernetes.runtime import StoreRuntime
from quotalang.controller.ledger.kubernetes.tuning import Tuning
from quotalang.controller.reconcile import Reconciler
from quotalang.errors import InternalError
from quotalang.loader import load_text
from quotalang.server.engine import ask_for
from tests.controller.ledger.fake_api import FAULTS, LEASES, FakeApiServer, FakeKubeApi

DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
SOURCE = "apps/v1/deployments"
CPU_KEY, MEM_KEY = "requests.cpu", "requests.memory"
GI = 2**30 * 10**9  # one Gi of memory in nanos
# Hard limits by hand, in nanos: what the policy below says.
LIMITS = {
    "a": {CPU_KEY: 6 * 10**9, MEM_KEY: 6 * GI},
    "b": {CPU_KEY: 4 * 10**9, MEM_KEY: 3 * GI},
    "c": {CPU_KEY: 8 * 10**9, MEM_KEY: 8 * GI},
}
POLICY = """\
settings {
  group label "team"
  unlabelled deny
}

group root {
  requests.cpu    100
  requests.memory 100Gi
}

group a in root {
  requests.cpu    6
  requests.memory 6Gi
}

group b in root {
  requests.cpu    4
  requests.memory 3Gi
}

group c in root {
  requests.cpu    8
  requests.memory 8Gi
}

kind apps/v1 Deployment {
  pods {
    replicas spec.replicas default 1
    template spec.template
  }
  scale spec.replicas
}
"""
CPU, MEM = 10**9, GI  # one cpu, one Gi, in nanos
# `--borrowing`: a lend/borrow tree over the same leaves a, b, c (issue 29); m carves a and b and lends itself.
# By hand, per key: (parent, hard, lend, borrow), what BORROW_POLICY says.
TREE: dict[str, tuple[str | None, dict[str, tuple[int, int, int]]]] = {
    "root": (None, {CPU_KEY: (16 * CPU, 0, 0), MEM_KEY: (16 * MEM, 0, 0)}),
    "m": ("root", {CPU_KEY: (10 * CPU, 2 * CPU, 2 * CPU), MEM_KEY: (9 * MEM, 1 * MEM, 1 * MEM)}),
    "a": ("m", {CPU_KEY: (6 * CPU, 3 * CPU, 2 * CPU), MEM_KEY: (6 * MEM, 2 * MEM, 1 * MEM)}),
    "b": ("m", {CPU_KEY: (4 * CPU, 2 * CPU, 3 * CPU), MEM_KEY: (3 * MEM, 1 * MEM, 2 * MEM)}),
    "c": ("root", {CPU_KEY: (4 * CPU, 0, 4 * CPU), MEM_KEY: (4 * MEM, 0, 3 * MEM)}),
}
BORROW_POLICY = POLICY.split("group root {")[0] + """group root {
  requests.cpu    16
  requests.memory 16Gi
}

group m in root {
  requests.cpu    10  lend 2   borrow 2
  requests.memory 9Gi lend 1Gi borrow 1Gi
}

group a in m {
  requests.cpu    6   lend 3   borrow 2
  requests.memory 6Gi lend 2Gi borrow 1Gi
}

group b in m {
  requests.cpu    4   lend 2   borrow 3
  requests.memory 3Gi lend 1Gi borrow 2Gi
}

group c in root {
  requests.cpu    4   borrow 4
  requests.memory 4Gi borrow 3Gi
}
""" + "kind apps/v1" + POLICY.split("kind apps/v1")[1]
# A replica's threads that take no group lock across a call: they may run inside one of its calls.
REENTRANT = frozenset({"ledger-watch", "workload-watch", "election"})
WALL0 = 1_800_000_000.0
TIMEOUT = 10.0  # the webhook's timeoutSeconds: an answer later than its budget comes too late
NESTED_TIMEOUT = 1.0


class SimulationFailure(AssertionError):
    """An invariant broke: the message names the seed, the step and the replay command."""


@dataclass(frozen=True)
class Config:
    replicas: int = 3
    steps: int = 60  # top-level actions before quiescence
    max_skew: float = 0.5  # seconds a replica's wall clock may be off
    faults: bool = True
    # A restarted replica keeps its name (a container restart in one pod keeps $POD_NAME): its first write of a
    # group replaced the entry its previous incarnation left with its own empty sum (found by seed 36; the entry
    # now joins its book, `cache._adopt`).
    restart_same_name: bool = False
    leader_fault_gap: float = 45.0
    ttl: float = DEFAULT_RESERVATION_TTL
    lease_duration: float = 15.0
    max_depth: int = 2  # actions nested at yield points
    # Seconds a call that meets `timeout` hangs at most. The store waited a call's whole timeout (a fold write:
    # `Tuning.controller_timeout`, 30 s, the reservation TTL), so a connection hung that long stalled the leader's
    # folds past the TTL (found by `--max-hang 30`, seed 1); each call now waits at most `Tuning.call_timeout`.
    max_hang: float = 3.0
    # Faults on the Lease's calls too. Off in CI: a renewal that fails is retried a renew period later, exactly at
    # the renew deadline, so the leader reads as no leader for a moment, `flush` drops its queue (`NotLeader`), and
    # it renews in the same term: nobody lists what the dropped folds held (seen in a schedule of an earlier
    # version of this simulation, whose stall was 2 s past the Lease; `--lease-faults` has not hit it since).
    lease_faults: bool = False
    # Where a /scale finds its parent: "live" (the stored object), or "lookup" (`ledger.lookup`, as the engine
    # does today: this replica's pending admitted body first, which may never have been stored: a finding).
    scale_parent: str = "live"
    # The lend/borrow tree (TREE) instead of three carved leaves; checked: no balance below −borrow, no
    # guarantee lent. Draws beyond a group's guarantee are registered with its ancestors (`registering`).
    borrowing: bool = False


@dataclass
class Stats:
    schedules: int = 0
    actions: int = 0
    admissions: int = 0
    allowed: int = 0
    borrowed: int = 0  # of them, admissions that drew on an ancestor (`--borrowing`)
    faults: dict[str, int] = field(default_factory=dict)
    virtual_seconds: float = 0.0

    def count(self, name: str) -> None:
        self.faults[name] = self.faults.get(name, 0) + 1


class _Network:
    """One replica's connection: the faults it meets and the yield points where others act."""

    def __init__(self, sim: Simulation, node: Node) -> None:
        self.sim = sim
        self.node = node

    def fault(self, method: str, path: str) -> str | None:
        sim, node = self.sim, self.node
        if node.stall_next and method == "PUT" and path.startswith(COLLECTION_PATH):
            node.stall_next = False
            sim.stats.count("stall")
            # Past the Lease and a follower's retry: a successor has surely taken over when it wakes.
            stall = sim.config.lease_duration + 3.0
            sim.note(f"{node.name} stalls {stall:.0f}s before a PUT")
            node.paused = True
            try:
                sim.sleep(stall)
            finally:
                node.paused = False
        sim.interleave()
        lease = path.startswith(LEASES)
        if sim.now < node.faulty_until and (not lease or sim.config.lease_faults) \
                and sim.rng.random() < node.fault_rate:
            fault = sim.rng.choice(FAULTS)
            sim.stats.count(fault)
            return fault
        return None

    def answered(self, method: str, path: str) -> None:
        if method != "GET":
            self.sim.interleave()


class _NodeClock:
    def __init__(self, sim: Simulation, node: Node) -> None:
        self.sim = sim
        self.node = node

    def monotonic(self) -> float:
        return self.node.mono_offset + self.sim.now

    def sleep(self, seconds: float) -> None:
        self.sim.sleep(seconds)


class Node:
    """One incarnation of a webhook replica: store, ledger watch, election and (while leading) controller."""

    def __init__(self, sim: Simulation, index: int, name: str) -> None:
        self.sim = sim
        self.index = index
        self.name = name
        self.skew = sim.rng.uniform(-sim.config.max_skew, sim.config.max_skew)
        self.mono_offset = sim.rng.uniform(0, 1e6)  # replicas share no monotonic origin
        self.paused = False
        self.stall_next = False
        self.fault_rate = 0.0
        self.faulty_until = 0.0
        self.clock = clock = _NodeClock(sim, self)
        self.api = FakeKubeApi(sim.server, clock, network=_Network(sim, self), latency=0.002)
        self.api.hang = sim.config.max_hang
        self.ledger = KubernetesLedger(
            self.api,  # type: ignore[arg-type]  # the fake has KubeApi's calls, not its class
            replica=name, tuning=Tuning(reservation_ttl=sim.config.ttl), clock=self.wall, fallback_lookup=sim.live_body,
            monotonic=clock.monotonic, sleep=clock.sleep)
        self.elector = LeaderElector(
            self.api, namespace="default", identity=name,  # type: ignore[arg-type]
            lease_duration=sim.config.lease_duration, clock=self.wall, monotonic=clock.monotonic,
            on_started=self._started, on_stopped=self._stopped)
        self.runtime = StoreRuntime(self.ledger, lambda: sim.policy, self.elector, fold_interval=0.1)
        self.watch_version: str | None = None
        self.reconciler: Reconciler | None = None
        self.workloads: Watcher | None = None
        self.workload_version: str | None = None
        self.needs_sync = False
        self.next_election = 0.0
        self.next_maintain = 0.0
        self.next_resync = 0.0

    def wall(self) -> float:
        return WALL0 + self.sim.now + self.skew

    def _started(self, epoch: int) -> None:
        self.sim.note(f"{self.name} leads (epoch {epoch})")
        self.reconciler = Reconciler(self.ledger, lambda: self.sim.policy, clock=self.wall)
        self.workloads = Watcher(self.api, SOURCE, DEPLOYMENTS, self.reconciler)  # type: ignore[arg-type]
        self.workload_version = None
        self.needs_sync = False
        self.next_resync = self.sim.now + self.sim.rng.uniform(5, 20)

    def _stopped(self) -> None:
        self.sim.note(f"{self.name} stops leading")
        self.reconciler = self.workloads = None
        self.workload_version = None


class Simulation:
    """One schedule: `run()` raises `SimulationFailure` or returns the stats."""

    def __init__(self, seed: int, config: Config | None = None, policy: CompiledPolicy | None = None) -> None:
        self.seed = seed
        self.config = config or Config()
        self.rng = random.Random(seed)
        self.policy = policy or compile_policy(self.config.borrowing)
        self.server = FakeApiServer(collections=(COLLECTION_PATH, LEASES, DEPLOYMENTS))
        self.now = 0.0
        self.stats = Stats()
        self.trace: deque[str] = deque(maxlen=60)
        self.step = 0
        self.names = 0
        self.nodes: list[Node | None] = [self._node(i) for i in range(self.config.replicas)]
        self.active: list[tuple[str, str]] = []  # (node name, kind) of the actions running, outermost first
        self.last_leader_fault = -1e9
        self.objects = 0
        self.quiet = False
        self._parsed: dict[str, tuple[str, Any]] = {}
        self._checked = (-1, -1.0)
        self._live: tuple[int, dict[str, tuple[dict[str, int], int]]] = (-1, {})

    # ------------------------------------------------------------ the world
    def _node(self, index: int, name: str | None = None) -> Node:
        self.names += 1
        return Node(self, index, name or f"r{index}-{self.names}")

    def alive(self) -> list[Node]:
        return [n for n in self.nodes if n is not None]

    def note(self, text: str) -> None:
        self.trace.append(f"[{self.step} t={self.now:.3f}] {text}")

    def sleep(self, seconds: float) -> None:
        """Virtual time passes; the others' periodic duties run meanwhile (they are threads, not waiting)."""
        end = self.now + max(seconds, 0.0)
        while self.now < end:
            self.now = min(end, self.now + (1.0 if self.quiet else 0.25))  # quiescence: nothing races
            if seconds >= 0.05:
                self.duties()
        self.stats.virtual_seconds = self.now

    def live_body(self, identity: ObjectKey) -> Mapping[str, Any] | None:
        obj = self.server.objects.get(f"{DEPLOYMENTS}/{identity.name}")
        return json.loads(json.dumps(obj)) if obj is not None else None

    # -------------------------------------------------------- scheduling
    def may_run(self, node: Node, kind: str) -> bool:
        if node.paused or (node.name, kind) in self.active:
            return False
        return kind in REENTRANT or all(name != node.name for name, _ in self.active)

    @contextlib.contextmanager
    def acting(self, node: Node, kind: str) -> Iterator[None]:
        self.active.append((node.name, kind))
        try:
            yield
        finally:
            self.active.pop()
        self.check()

    def interleave(self) -> None:
        """A yield point: maybe let another actor act first (the essence of a race)."""
        if self.quiet or len(self.active) > self.config.max_depth or self.rng.random() >= 0.35:
            return
        self.random_action(nested=True)

    def duties(self) -> None:
        """Every replica's periodic work that is due: election, watches, folds and tidy, upkeep, resync."""
        nodes = self.alive()
        self.rng.shuffle(nodes)
        for node in nodes:
            if node not in self.nodes:
                continue
            if self.now >= node.next_election:
                self.do_election(node)
            if self.quiet or self.rng.random() < 0.7:
                self.do_ledger_watch(node)
            if node.reconciler is not None and (self.quiet or self.rng.random() < 0.7):
                self.do_workload_watch(node)
            self.do_folds(node)
            if self.now >= node.next_maintain:
                self.do_maintain(node)
            if node.reconciler is not None and (node.needs_sync or self.now >= node.next_resync):
                self.do_resync(node)

    def random_action(self, nested: bool = False) -> None:
        choices: list[tuple[float, Callable[[], None]]] = [
            (5.0, self.act_create), (3.0, self.act_update), (1.5, self.act_move), (2.0, self.act_scale),
            (2.5, self.act_delete), (0.5, self.act_retry_create), (0.5, self.act_dry_run),
            (1.0, lambda: self.on_some("ledger-watch", self.do_ledger_watch)),
            (1.0, lambda: self.on_some("fold", self.do_folds)),
            (0.3, lambda: self.on_some("resync", self.do_resync)),
        ]
        if not nested:
            choices += [(6.0, lambda: self.sleep(self.rng.uniform(0.01, 0.5))),
                        (1.0, lambda: self.sleep(self.rng.expovariate(1 / 3.0)))]
            if self.config.faults:
                choices += [(0.25, self.fault_crash), (0.8, self.fault_restart), (0.2, self.fault_stall),
                            (0.3, self.fault_watch_gap), (0.6, self.fault_network), (0.2, self.fault_heal)]
        total = sum(w for w, _ in choices)
        pick = self.rng.uniform(0, total)
        for weight, action in choices:
            pick -= weight
            if pick <= 0:
                self.stats.actions += 1
                action()
                return

    def on_some(self, kind: str, duty: Callable[[Node], None]) -> None:
        nodes = [n for n in self.alive() if self.may_run(n, kind)]
        if nodes:
            duty(self.rng.choice(nodes))

    # ------------------------------------------------------------- duties
    def _safely(self, node: Node, kind: str, call: Callable[[], object]) -> None:
        if not self.may_run(node, kind):
            return
        with self.acting(node, kind), contextlib.suppress(InternalError, Gone):  # the runtime logs and retries
            call()

    def do_election(self, node: Node) -> None:
        def step() -> None:
            leading = node.elector.step()
            period = node.elector.renew_period if leading else node.elector.retry_period
            node.next_election = self.now + period

        self._safely(node, "election", step)

    def do_ledger_watch(self, node: Node) -> None:
        def step() -> None:
            node.api.watch_limit = self.rng.choice((1, 2, 5, None))
            node.watch_version = node.runtime.watch.step(node.watch_version)

        self._safely(node, "ledger-watch", step)

    def do_workload_watch(self, node: Node) -> None:
        def step() -> None:
            watcher, reconciler = node.workloads, node.reconciler
            if watcher is None or reconciler is None:
                return
            node.api.watch_limit = self.rng.choice((1, 3, None))
            try:
                if node.workload_version is None:
                    node.needs_sync = node.needs_sync or not watcher.listed.is_set()
                    node.workload_version = watcher.list_once()
                else:
                    node.workload_version = watcher.watch_once(node.workload_version, 60)
            except Gone:
                node.workload_version = None

        self._safely(node, "workload-watch", step)

    def do_folds(self, node: Node) -> None:
        self._safely(node, "fold", lambda: node.ledger.flush(patient=True))
        self._safely(node, "tidy", lambda: node.ledger.tidy(patient=True))

    def do_maintain(self, node: Node) -> None:
        node.next_maintain = self.now + 2.0
        self._safely(node, "maintain", node.runtime.maintain)

    def do_resync(self, node: Node) -> None:
        """The controller's upkeep: the first sync once listed (the totals replaced), then a resync now and then
        (not a watch's own work: it takes the groups' writer turns)."""

        def resync() -> None:
            if node.reconciler is not None and node.needs_sync:
                node.needs_sync = False
                node.reconciler.synced()
            elif node.reconciler is not None and node.workloads is not None and node.workloads.listed.is_set():
                node.next_resync = self.now + self.rng.uniform(5, 20)
                node.reconciler.recompute()

        self._safely(node, "resync", resync)

    # --------------------------------------------------------- admissions
    def admitter(self) -> Node | None:
        nodes = [n for n in self.alive() if self.may_run(n, "admit")]
        return self.rng.choice(nodes) if nodes else None

    def live(self) -> dict[str, dict[str, Any]]:
        return {path.rsplit("/", 1)[1]: obj for path, obj in self.server.objects.items()
                if path.startswith(DEPLOYMENTS + "/")}

    def admit(self, node: Node, obj: dict[str, Any], operation: str, *, old: dict[str, Any] | None = None,
              parent: Mapping[str, Any] | None = None, dry_run: bool = False, kind: str = "Deployment") -> bool:
        """One review through `node`'s store, as the engine makes it; whether it was allowed in time."""
        name = obj["metadata"]["name"]
        identity = ObjectKey("apps", kind, "default", name)
        self.stats.admissions += 1
        started = self.now
        allowed = drew = False
        # A review nested at a yield point gets a short deadline: it runs to its end there, and the actor it
        # interrupted (really running meanwhile) waits for it, so its waits must not be the whole 10 s.
        timeout = TIMEOUT if len(self.active) == 0 else NESTED_TIMEOUT
        deadline = node.clock.monotonic() + deadlines.budget(timeout)
        ask = ask_for(self.policy, obj, operation, old=old, parent=parent, dry_run=dry_run, identity=identity,
                      deadline=deadline)
        with self.acting(node, "admit"):
            try:
                decision = None
                if self.rng.random() < 0.3:  # the event loop's try-now first, as the server does
                    decision = node.ledger.try_reserve(ask)
                if decision is None:
                    decision = node.ledger.reserve(ask)
                allowed = decision.allowed
                drew = bool(decision.borrowed or decision.touches)
            except LedgerUnavailable:
                allowed = False  # failure mode deny: fail closed
        late = self.now - started > deadlines.budget(timeout)
        self.note(f"{node.name} {operation} {name} {'dry ' if dry_run else ''}"
                  f"{'allowed' if allowed else 'denied'}{' (too late)' if late else ''}")
        if allowed and not late:
            self.stats.allowed += 1
            self.stats.borrowed += drew and not dry_run
        return allowed and not late and not dry_run

    def act_create(self) -> None:
        node = self.admitter()
        if node is None:
            return
        self.objects += 1
        obj = deployment(f"w{self.objects}", self.rng.choice("abc"), self.rng.randint(1, 3),
                         self.rng.choice((250, 500, 1000)), self.rng.choice((256, 512, 1024)))
        if self.admit(node, obj, "CREATE") and not self.rejected_later():
            with contextlib.suppress(InternalError):
                self.server.create(DEPLOYMENTS, obj)

    def rejected_later(self) -> bool:
        """Another admission webhook (or the storage) refuses what this one allowed: it never appears."""
        if self.config.faults and self.rng.random() < 0.04:
            self.stats.count("never-created")
            return True
        return False

    def _some_live(self) -> dict[str, Any] | None:
        live = self.live()
        return json.loads(json.dumps(live[self.rng.choice(sorted(live))])) if live else None

    def _update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        node = self.admitter()
        if node is None:
            return
        if self.admit(node, new, "UPDATE", old=old) and not self.rejected_later():
            self._apply(old, new)

    def _apply(self, old: Mapping[str, Any], new: dict[str, Any]) -> None:
        """The storage's own compare-and-swap: an update against a version no longer current fails (409)."""
        path = f"{DEPLOYMENTS}/{new['metadata']['name']}"
        with contextlib.suppress(InternalError):
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            self.server.replace(path, new)

    def act_update(self) -> None:
        old = self._some_live()
        if old is None:
            return
        new = json.loads(json.dumps(old))
        if self.rng.random() < 0.5:
            new["spec"]["replicas"] = self.rng.randint(1, 4)
        else:
            requests = new["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
            requests["cpu"] = f"{self.rng.choice((250, 500, 1000, 1500))}m"
            requests["memory"] = f"{self.rng.choice((256, 512, 1024))}Mi"
        self._update(old, new)

    def act_move(self) -> None:
        old = self._some_live()
        if old is None:
            return
        new = json.loads(json.dumps(old))
        new["metadata"]["labels"]["team"] = self.rng.choice([g for g in "abc" if g != old["metadata"]["labels"]
                                                             ["team"]])
        self._update(old, new)

    def act_scale(self) -> None:
        live = self._some_live()
        node = self.admitter()
        if live is None or node is None:
            return
        name, rv = live["metadata"]["name"], live["metadata"]["resourceVersion"]
        replicas = self.rng.randint(0, 4)
        scale = {"apiVersion": "autoscaling/v1", "kind": "Scale",
                 "metadata": {"name": name, "namespace": "default", "resourceVersion": rv},
                 "spec": {"replicas": replicas}}
        old_scale = {**scale, "spec": {"replicas": live["spec"]["replicas"]}}
        parent = node.ledger.lookup(ObjectKey("apps", "Deployment", "default", name), version=rv) \
            if self.config.scale_parent == "lookup" else live
        if self.admit(node, scale, "UPDATE", old=old_scale, parent=parent) and not self.rejected_later():
            current = self.server.objects.get(f"{DEPLOYMENTS}/{name}")
            if current is not None and current["metadata"]["resourceVersion"] == rv:  # the scale's own CAS
                scaled = json.loads(json.dumps(current))
                scaled["spec"]["replicas"] = replicas
                self._apply(current, scaled)

    def act_delete(self) -> None:
        live = self._some_live()
        if live is not None:
            self.note(f"delete {live['metadata']['name']}")
            self.server.delete(f"{DEPLOYMENTS}/{live['metadata']['name']}")
            self.check()

    def act_retry_create(self) -> None:
        """A CREATE sent again (its answer was lost): admitted again, refused by the storage as AlreadyExists."""
        live = self._some_live()
        node = self.admitter()
        if live is not None and node is not None:
            obj = json.loads(json.dumps(live))
            obj["metadata"].pop("resourceVersion", None)
            self.admit(node, obj, "CREATE")

    def act_dry_run(self) -> None:
        node = self.admitter()
        if node is not None:
            self.admit(node, deployment("dry", self.rng.choice("abc"), 1, 250, 256), "CREATE", dry_run=True)

    # ------------------------------------------------------------- faults
    def leader(self) -> Node | None:
        return next((n for n in self.alive() if n.elector.is_leader), None)

    def fault_crash(self) -> None:
        nodes = [n for n in self.alive() if all(name != n.name for name, _ in self.active)]
        if len(nodes) < 2:
            return
        node = self.rng.choice(nodes)
        if node.elector.is_leader or node.elector.holder() == node.name:
            if self.now - self.last_leader_fault < self.config.leader_fault_gap:
                return
            self.last_leader_fault = self.now
        self.stats.count("crash")
        self.note(f"{node.name} crashes")
        self.nodes[node.index] = None

    def fault_restart(self) -> None:
        dead = [i for i, n in enumerate(self.nodes) if n is None]
        if dead:
            index = self.rng.choice(dead)
            name = f"r{index}-same" if self.config.restart_same_name else None
            self.nodes[index] = node = self._node(index, name)
            self.stats.count("restart")
            self.note(f"{node.name} starts with empty memory")

    def fault_stall(self) -> None:
        leader = self.leader()
        if leader is not None and self.now - self.last_leader_fault >= self.config.leader_fault_gap:
            self.last_leader_fault = self.now
            leader.stall_next = True

    def fault_watch_gap(self) -> None:
        self.stats.count("watch-gap")
        self.note("watch history compacted: every watch relists")
        self.server.compact()

    def fault_network(self) -> None:
        nodes = self.alive()
        node = self.rng.choice(nodes)
        node.fault_rate = self.rng.choice((0.1, 0.3, 0.6))
        node.faulty_until = self.now + self.rng.uniform(0.2, 3.0)
        self.note(f"{node.name}'s calls fail at {node.fault_rate} until t={node.faulty_until:.2f}")

    def fault_heal(self) -> None:
        for node in self.alive():
            node.faulty_until = 0.0

    # ------------------------------------------------------------- checks
    def fail(self, message: str) -> None:
        trace = "\n".join(self.trace)
        raise SimulationFailure(
            f"seed {self.seed}, step {self.step}, t={self.now:.3f}: {message}\n"
            f"replay: PYTHONHASHSEED=0 python -m tests.controller.ledger.simulation --seed {self.seed}"
            f"{replay_flags(self.config)}\nlast actions:\n{trace}")

    def live_usage(self) -> dict[str, tuple[dict[str, int], int]]:
        if self._live[0] != self.server.revision:
            self._live = (self.server.revision, self._live_usage())
        return self._live[1]

    def _live_usage(self) -> dict[str, tuple[dict[str, int], int]]:
        out: dict[str, tuple[dict[str, int], int]] = {g: ({CPU_KEY: 0, MEM_KEY: 0}, 0) for g in LIMITS}
        for obj in self.live().values():
            group = obj["metadata"]["labels"]["team"]
            usage, count = out[group]
            cpu, mem = charge(obj)
            usage[CPU_KEY] += cpu
            usage[MEM_KEY] += mem
            out[group] = (usage, count + 1)
        return out

    def stored(self, group: str) -> Any:
        obj = self.server.objects.get(f"{COLLECTION_PATH}/{group}")
        if obj is None:
            return None
        version = obj["metadata"]["resourceVersion"]
        cached = self._parsed.get(group)
        if cached is None or cached[0] != version:
            cached = self._parsed[group] = (version, from_object(obj, group))
        return cached[1]

    def check(self) -> None:
        """After every action: never over-admitted, never under-counted."""
        if self._checked == (self.server.revision, self.now):
            return  # nothing moved since the last check
        self._checked = (self.server.revision, self.now)
        wall = WALL0 + self.now
        live = self.live_usage()
        if self.config.borrowing:
            self.check_balances({group: usage for group, (usage, _) in live.items()})
        for group, (usage, _) in live.items():
            for key, limit in LIMITS[group].items():
                if usage[key] > limit and not self.config.borrowing:  # there: a, b and c may borrow
                    self.fail(f"over-admitted: group {group} runs {usage[key]} of {key}, hard limit {limit}")
            state = self.stored(group)
            counted = state.used(wall) if state is not None else {}
            for key, value in usage.items():
                if counted.get(key, 0) < value:
                    self.fail(f"under-counted: group {group}'s ledger holds {counted.get(key, 0)} of {key}, "
                              f"its live objects use {value}")

    def check_balances(self, used: Mapping[str, Mapping[str, int]]) -> None:
        """No balance below −borrow (a root: 0), and no guarantee lent: what the subtrees use beyond their
        guarantees fits in what their parent may hand out. Both by hand from the live objects and TREE."""
        for key in (CPU_KEY, MEM_KEY):
            for group, (parent, terms) in TREE.items():
                floor = -terms[key][2] if parent is not None else 0
                if (balance := tree_balance(used, group, key)) < floor:
                    self.fail(f"balance below -borrow: T({group}) = {balance} of {key}, floor {floor}")
                children = [c for c, (p, _) in TREE.items() if p == group]
                if not children:
                    continue
                hard, _, borrow = terms[key]
                beyond = sum(max(0, subtree_used(used, c, key) - (TREE[c][1][key][0] - TREE[c][1][key][1]))
                             for c in children)
                room = (hard - sum(TREE[c][1][key][0] for c in children) - used.get(group, {}).get(key, 0)
                        + sum(TREE[c][1][key][1] for c in children) + (borrow if parent is not None else 0))
                if beyond > room:
                    self.fail(f"guarantee lent: under {group}, {key} used beyond the children's guarantees is "
                              f"{beyond}, more than the {room} {group} may hand out")

    def check_settled(self) -> None:
        for node in self.alive():
            for group in LIMITS:
                state = self.stored(group)
                entry = state.reservations.get(node.name) if state is not None else None
                mine = node.ledger.reservations(group)
                total: dict[str, int] = {}
                for usage in mine.values():
                    for key, value in usage.items():
                        total[key] = total.get(key, 0) + value
                total = {k: v for k, v in total.items() if v}
                held = (entry.usage, entry.count) if entry is not None else ({}, 0)
                if held != (total, len(mine)):
                    self.fail(f"settled: {node.name}'s entry in {group} holds {held}, its admissions {total} "
                              f"in {len(mine)}")
        self.check_observed()

    def check_observed(self) -> None:
        for group, (usage, count) in self.live_usage().items():
            state = self.stored(group)
            observed = ({k: v for k, v in state.observed.items() if v and k in usage}, state.objects) \
                if state else ({}, 0)
            if observed != ({k: v for k, v in usage.items() if v}, count):
                self.fail(f"settled: group {group} observes {observed}, its live objects are {usage} in {count}")

    def check_drained(self) -> None:
        for group in LIMITS:
            state = self.stored(group)
            if state is not None and state.reservations:
                self.fail(f"drained: group {group} still holds entries {sorted(state.reservations)}")
        if self.config.borrowing:
            self.check_draws()
        for node in self.alive():
            if list(node.ledger.pending()):
                self.fail(f"drained: {node.name} still holds admissions {sorted(map(str, node.ledger.pending()))}")
        self.check_observed()

    def check_draws(self) -> None:
        """Drained: no registration is left at a pool, and each pool's `drawn[c]` is what c's live objects
        draw, by hand: max(0, U(c) - K(c)), K = T0 - min(lend, T0), U the child's live usage plus what its own
        children draw (nothing counted forever, nothing lost)."""
        live = {group: usage for group, (usage, _) in self.live_usage().items()}
        for key in (CPU_KEY, MEM_KEY):
            expected: dict[str, int] = {}
            for group in ("a", "b", "c", "m"):  # children before their parents
                parent, terms = TREE[group]
                rest = tree_balance({}, group, key)
                lend = terms[key][1]
                counted = live.get(group, {}).get(key, 0) + sum(
                    expected.get(c, 0) for c, (p, _) in TREE.items() if p == group)
                expected[group] = max(0, counted - (rest - min(lend, rest)))
            for group, (parent, _) in TREE.items():
                if parent is None:
                    continue
                state = self.stored(parent)
                held = state.drawn.get(group, {}).get(key, 0) if state is not None else 0
                if held != expected[group]:
                    self.fail(f"drained: {parent} counts {held} of {key} drawn by {group}, its live objects "
                              f"draw {expected[group]}")
        for pool in ("m", "root"):
            state = self.stored(pool)
            if state is not None and state.reservations:
                self.fail(f"drained: pool {pool} still holds entries {sorted(state.reservations)}")

    # ---------------------------------------------------------------- run
    def run(self) -> Stats:
        with quiet_logs():
            for node in self.alive():
                self.do_election(node)
            self.sleep(0.5)
            for step in range(1, self.config.steps + 1):
                self.step = step
                self.random_action()
                self.check()
            self.quiesce()
        self.stats.schedules = 1
        return self.stats

    def quiesce(self) -> None:
        """Faults healed, everything delivered and written: the numbers must be exact, then drain to nothing."""
        self.step += 1
        self.note("quiescence")
        self.fault_heal()
        for index, node in enumerate(self.nodes):
            if node is None:
                self.nodes[index] = self._node(index, f"r{index}-same" if self.config.restart_same_name else None)
        self.quiet = True
        self.sleep(self.config.lease_duration + 10.0)
        for _ in range(2):
            for node in self.alive():
                self.do_ledger_watch(node)
                self.do_workload_watch(node)
            leader = self.leader()
            if leader is not None:
                self.do_resync(leader)
                self._safely(leader, "fold", leader.ledger.flush)
            for node in self.alive():
                self._safely(node, "tidy", node.ledger.tidy)
            for node in self.alive():
                self.do_ledger_watch(node)
        if self.leader() is None:
            self.fail("quiescence: no leader")
        self.check_settled()
        self.sleep(self.config.ttl + Tuning().lease_window + self.config.max_skew + 5.0)
        for node in self.alive():
            self._safely(node, "tidy", node.ledger.tidy)
        self.sleep(3.0)
        self.check_drained()


def compile_policy(borrowing: bool = False) -> CompiledPolicy:
    return compile_sources(load_text(BORROW_POLICY if borrowing else POLICY, "sim.quota"))


def subtree_used(used: Mapping[str, Mapping[str, int]], group: str, key: str) -> int:
    return used.get(group, {}).get(key, 0) + sum(subtree_used(used, c, key) for c, (p, _) in TREE.items()
                                                 if p == group)


def tree_balance(used: Mapping[str, Mapping[str, int]], group: str, key: str) -> int:
    """T(group) by hand: own room left plus Σ children's min(lend, max(T, −borrow)) (issue 29's rule)."""
    hard = TREE[group][1][key][0]
    children = [c for c, (p, _) in TREE.items() if p == group]
    total = hard - sum(TREE[c][1][key][0] for c in children) - used.get(group, {}).get(key, 0)
    for child in children:
        _, lend, borrow = TREE[child][1][key]
        total += min(lend, max(tree_balance(used, child, key), -borrow))
    return total


def deployment(name: str, group: str, replicas: int, cpu_milli: int, mem_mi: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "labels": {"team": group}},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [
            {"name": "app", "image": "app",
             "resources": {"requests": {"cpu": f"{cpu_milli}m", "memory": f"{mem_mi}Mi"}}}]}}},
    }


def charge(obj: Mapping[str, Any]) -> tuple[int, int]:
    """(cpu, memory) nanos a Deployment of `deployment`'s shape runs, by hand: replicas × requests."""
    replicas = int(obj["spec"]["replicas"])
    requests = obj["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    cpu = int(requests["cpu"].removesuffix("m")) * 10**6
    mem = int(requests["memory"].removesuffix("Mi")) * 2**20 * 10**9
    return replicas * cpu, replicas * mem


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    logger = logging.getLogger("quotalang")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def replay_flags(config: Config) -> str:
    flags = ""
    if config.steps != Config.steps:
        flags += f" --steps {config.steps}"
    if config.restart_same_name:
        flags += " --restart-same-name"
    if not config.faults:
        flags += " --no-faults"
    if config.lease_faults:
        flags += " --lease-faults"
    if config.max_hang != Config.max_hang:
        flags += f" --max-hang {config.max_hang:g}"
    if config.borrowing:
        flags += " --borrowing"
    if config.scale_parent != Config.scale_parent:
        flags += f" --scale-parent {config.scale_parent}"
    plant = os.environ.get("QUOTALANG_SIM_PLANT")
    return flags + (f" --plant {plant}" if plant else "")


# ------------------------------------------------------------ planted bugs
def _others_without_leases(self: KubernetesLedger, state: Any, now: float) -> dict[str, int]:
    others: dict[str, int] = dict(state.observed)
    for name, held in state.reservations.items():
        if name not in (self.replica, self._lease_name) and held.expires > now \
                and not name.endswith(LEASE_SUFFIX):
            add_usage(others, held.usage)
    return others


def _refilling_confirm(original: Callable[..., None]) -> Callable[..., None]:
    def confirm(self: KubernetesLedger, state: Any) -> None:
        before = self.reservations(state.group)
        original(self, state)
        after = self.reservations(state.group)
        lease = self._leases.get(state.group)
        if lease is not None:
            for slot in before.keys() - after.keys():
                add_usage(lease.left, before[slot])

    return confirm


def _dropping_observe_many(original: Callable[..., None]) -> Callable[..., None]:
    def observe_many(self: KubernetesLedger, observations: Any) -> None:
        seen = list(observations)
        original(self, seen)
        for observation in seen:
            if observation.group is not None:
                self._drop_mine(observation.group, [identity_key(observation.identity)])
                with self._index_lock:
                    self._dirty[observation.group] = 0.0

    return observe_many


def _unconditional_write(original: Callable[..., Any]) -> Callable[..., Any]:
    def write(self: KubernetesLedger, state: Any, until: float) -> Any:
        blind = state.copy()
        blind.resource_version = None
        return original(self, blind, until)

    return write


def _summed_without_told(original: Callable[..., Any]) -> Callable[..., Any]:
    def summed(observed: Any, told: Any = None, **keywords: Any) -> Any:
        return original(observed, {}, **keywords)

    return summed


PLANTS: dict[str, tuple[str, str, Callable[[Any], Any]]] = {
    # name: (object, attribute, lambda original: replacement)
    "lease-uncounted": ("KubernetesLedger", "_others", lambda original: _others_without_leases),
    "fold-refills-lease": ("KubernetesLedger", "_confirm", _refilling_confirm),
    "sum-lowered-before-fold": ("KubernetesLedger", "observe_many", _dropping_observe_many),
    "write-without-version": ("KubernetesLedger", "write", _unconditional_write),
    "resync-forgets-told": ("module", "summed", _summed_without_told),
    # The kubernetes store decides a group against its own object only: a draw admitted without registering
    # it with the ancestors (`registering`) lends what they do not hold. Found with `--borrowing`.
    "drawing-unregistered": ("KubernetesLedger", "_register", lambda original: lambda self, *args: None),
    # The leader never publishes what a group draws on its parent (`drawn`): once the registrations expire
    # the pool counts nothing for it. Found at drain (`check_draws`).
    "draw-unpublished": ("KubernetesLedger", "_publish_draw",
                         lambda original: lambda self, state, lower_only=False: False),
}
BORROWING_PLANTS = frozenset({"drawing-unregistered", "draw-unpublished"})


@contextlib.contextmanager
def planted(name: str | None) -> Iterator[None]:
    """Plant one known bug in the store for the block (the simulation must find it)."""
    if name is None:
        yield
        return
    owner_name, attribute, make = PLANTS[name]
    # `resync` reads `summed` in tidy
    owner: Any = {"KubernetesLedger": KubernetesLedger, "module": tidy}[owner_name]
    original = getattr(owner, attribute)
    setattr(owner, attribute, make(original))
    os.environ["QUOTALANG_SIM_PLANT"] = name
    try:
        yield
    finally:
        setattr(owner, attribute, original)
        os.environ.pop("QUOTALANG_SIM_PLANT", None)


def explore(seeds: range | list[int], config: Config, *, budget: float | None = None,
            stop_at_failure: bool = True) -> dict[str, Any]:
    """Run schedules; a summary (schedules, faults, virtual and wall seconds, the first failure)."""
    policy = compile_policy(config.borrowing)
    total = Stats()
    started = time.monotonic()
    failure: str | None = None
    failed_seed: int | None = None
    for seed in seeds:
        if budget is not None and time.monotonic() - started > budget:
            break
        sim = Simulation(seed, config, policy)
        try:
            stats = sim.run()
        except SimulationFailure as exc:
            failure, failed_seed = str(exc), seed
            total.schedules += 1
            if stop_at_failure:
                break
            continue
        total.schedules += 1
        total.actions += stats.actions
        total.admissions += stats.admissions
        total.allowed += stats.allowed
        total.borrowed += stats.borrowed
        total.virtual_seconds += stats.virtual_seconds
        for name, count in stats.faults.items():
            total.faults[name] = total.faults.get(name, 0) + count
    return {"schedules": total.schedules, "actions": total.actions, "admissions": total.admissions,
            "allowed": total.allowed, "borrowed": total.borrowed, "faults": dict(sorted(total.faults.items())),
            "virtual_seconds": round(total.virtual_seconds), "wall_seconds": round(time.monotonic() - started, 1),
            "failed_seed": failed_seed, "failure": failure}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, help="replay one schedule")
    parser.add_argument("--first", type=int, default=0, help="the first seed of a run")
    parser.add_argument("--schedules", type=int, default=500)
    parser.add_argument("--budget", type=float, help="stop starting schedules after this many seconds")
    parser.add_argument("--steps", type=int, default=Config.steps)
    parser.add_argument("--plant", choices=sorted(PLANTS), help="plant a known bug: the run must find it")
    parser.add_argument("--restart-same-name", action="store_true")
    parser.add_argument("--no-faults", action="store_true")
    parser.add_argument("--max-hang", type=float, default=Config.max_hang)
    parser.add_argument("--lease-faults", action="store_true")
    parser.add_argument("--scale-parent", choices=("live", "lookup"), default=Config.scale_parent)
    parser.add_argument("--borrowing", action="store_true", help="a lend/borrow tree (TREE)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    args = parser.parse_args(argv)
    config = Config(steps=args.steps, restart_same_name=args.restart_same_name, faults=not args.no_faults,
                    scale_parent=args.scale_parent, max_hang=args.max_hang,
                    lease_faults=args.lease_faults, borrowing=args.borrowing)
    seeds = [args.seed] if args.seed is not None else range(args.first, args.first + args.schedules)
    with planted(args.plant):
        summary = explore(seeds, config, budget=args.budget)
    if args.json:
        print(json.dumps(summary))
    else:
        failure = summary.pop("failure")
        print(json.dumps(summary, indent=1))
        if failure:
            print(failure)
    return 1 if summary.get("failed_seed") is not None else 0


if __name__ == "__main__":
    sys.exit(main())

"""Controller benchmark: a synthetic watch stream through the `Reconciler` (issue 5, item 7).

Run: `python bench/bench_controller.py [--pods 100000] [--workloads 20000]
[--groups 1000] [--quick]`. `--quick` is a tenth of each. Prints figures and a
table against the targets (≥ 20,000 events/s, a full resync under 5 s, under
500 MB); exits 1 only when the usage the ledger ends up with is wrong (the
figures are reported, never asserted).

What is fed, all generated before any clock starts:

- a policy of `--groups` groups (root → ~√groups mids → leaves), every group
  with requests.cpu, requests.memory, requests.nvidia.com/gpu and a
  `cash requests.nvidia.com/gpu … per week` budget, plus the shipped kind rules
  (`import "quotalang:policies"`), compiled once;
- `--workloads` workloads over the leaves (80% Deployments, 8% StatefulSets,
  7% Jobs, 5% TFJobs) from 200 pod templates with distinct resources (so the
  per-template usage cache sees 200 shapes), each Deployment with its
  ReplicaSet, and `--pods` pods owned by the ReplicaSets / StatefulSets /
  Jobs / TFJobs (scheduled: `spec.nodeName` and `PodScheduled=True`; a quarter
  of the templates ask for GPUs). Objects look like a watch delivers them:
  uid, resourceVersion, namespace, labels, ownerReferences and a
  `managedFields` entry; immutable parts (containers, managedFields, owner
  references) are shared between objects to keep the generator's own memory
  down, which the reconciler cannot tell;
- the stream: ADDED for every object (workloads, then ReplicaSets, then pods),
  then, shuffled, realistic changes: workload status updates, pod status
  updates, Deployment/StatefulSet scale-ups and -downs (workload, ReplicaSet,
  pods added or terminating and deleted), Jobs finishing (pods Succeeded) and
  workloads deleted with everything they own.

Measured: events/s of the feed loop (overall, workload events, pod events;
each `apply` is timed with `perf_counter`), a full resync (`replace` of every
source the policy watches with its current listing: once unchanged, once with
every resourceVersion bumped so everything is re-observed; each followed by
the one `recompute` of every group a controller's resync ends with), one
`recompute` alone, one `accrue` over every group, and memory:
`ru_maxrss` (the process peak, the generated stream included), the RSS growth
over the feed (VmRSS after the feed − before it: the reconciler's and the
ledger's state, an upper bound since freed memory Python keeps counts too) and
an estimate of a controller process (VmRSS with the policy compiled + that
growth). The generated stream is moved out of the cyclic GC's sight
(`gc.freeze()`) before feeding: a controller holds one event at a time, not
the whole stream; after the feed (the first sync) the state is frozen too, as
the controller does; the bumped listing is built after the feed and left to
the GC (a relisting controller holds its listing).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from quotalang.compiler import CompiledPolicy, compile_sources
from quotalang.controller import MemoryLedger, ObjectKey
from quotalang.controller.reconcile import PODS, Reconciler
from quotalang.controller.runner import sources
from quotalang.loader import load_text

GROUP_LABEL = "quota.group"
TEMPLATES = 200
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC).timestamp()  # a Monday: the week's cash window is 9 h old
TARGET_EVENTS = 20_000.0
TARGET_RESYNC = 5.0
TARGET_MB = 500.0

DEPLOY = "apps/v1/deployments"
RS = "apps/v1/replicasets"
STS = "apps/v1/statefulsets"
JOB = "batch/v1/jobs"
TFJOB = "kubeflow.org/v1/tfjobs"
KINDS = {  # source -> (apiVersion, kind)
    DEPLOY: ("apps/v1", "Deployment"),
    RS: ("apps/v1", "ReplicaSet"),
    STS: ("apps/v1", "StatefulSet"),
    JOB: ("batch/v1", "Job"),
    TFJOB: ("kubeflow.org/v1", "TFJob"),
    PODS: ("v1", "Pod"),
}
MIX = ((DEPLOY, 0.80), (STS, 0.08), (JOB, 0.07), (TFJOB, 0.05))


# ------------------------------------------------------------------ policy
def policy_text(groups: int) -> tuple[str, list[str]]:
    """root → mids → leaves; every group declares every key and the cash budget; children sum to the parent."""
    mids = max(1, int((groups - 1) ** 0.5))
    leaves = max(1, groups - 1 - mids)
    per_mid = [leaves // mids + (1 if m < leaves % mids else 0) for m in range(mids)]
    lines = ['import "quotalang:policies"', "", "settings {", f'  group label "{GROUP_LABEL}"', "}", ""]

    def block(name: str, parent: str | None, n: int) -> None:
        lines.append(f"group {name}" + (f" in {parent}" if parent else "") + " {")
        lines.append(f"  requests.cpu {1000 * n}")
        lines.append(f"  requests.memory {4 * n}Ti")
        lines.append(f"  requests.nvidia.com/gpu {64 * n}")
        lines.append(f"  cash requests.nvidia.com/gpu {100 * n}h per week")
        lines.append("}")

    block("root", None, leaves)
    leaf_names = []
    for m, count in enumerate(per_mid):
        block(f"mid-{m}", "root", count)
        for t in range(count):
            leaf_names.append(f"leaf-{m}-{t}")
            block(leaf_names[-1], f"mid-{m}", 1)
    return "\n".join(lines) + "\n", leaf_names


# ----------------------------------------------------------------- objects
@dataclass(frozen=True, slots=True)
class Template:
    template: dict[str, Any]  # the pod template (metadata.labels filled per workload)
    cpu_milli: int  # Σ container requests.cpu of one pod
    gpu: int


def templates() -> list[Template]:
    """200 pod shapes with distinct resources: the usage cache sees 200 keys."""
    out = []
    for t in range(TEMPLATES):
        cpu = 100 * (1 + t % 16)
        gpu = (1 + t % 8 // 4) if t % 4 == 0 else 0
        requests: dict[str, str] = {"cpu": f"{cpu}m", "memory": f"{256 + t}Mi"}
        if gpu:
            requests["nvidia.com/gpu"] = str(gpu)
        limits = dict(requests, cpu=f"{2 * cpu}m")
        containers = [{
            "name": "app", "image": f"registry.example/app-{t}:1.{t % 7}",
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "resources": {"requests": requests, "limits": limits},
            "terminationMessagePath": "/dev/termination-log", "imagePullPolicy": "IfNotPresent",
        }]
        total = cpu
        if t % 3 == 0:
            containers.append({
                "name": "proxy", "image": "envoy:1.30",
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                              "limits": {"cpu": "100m", "memory": "128Mi"}},
            })
            total += 50
        spec = {"containers": containers, "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                "schedulerName": "default-scheduler", "terminationGracePeriodSeconds": 30}
        out.append(Template({"spec": spec}, total, gpu))
    return out


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _managed(api_version: str, manager: str) -> list[dict[str, Any]]:
    return [{
        "manager": manager, "operation": "Update", "apiVersion": api_version, "time": _stamp(NOW - 86400),
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": {"f:labels": {".": {}, f"f:{GROUP_LABEL}": {}}},
                     "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {}}}},
                     "f:status": {"f:conditions": {}, "f:observedGeneration": {}}},
    }]


MANAGED = {source: _managed(api, "kubectl-client-side-apply" if kind != "Pod" else "kubelet")
           for source, (api, kind) in KINDS.items()}


@dataclass(slots=True)
class Workload:
    source: str
    obj: dict[str, Any]
    group: str
    parts: list[tuple[Template, int]]  # (template, replicas) as charged
    rs: dict[str, Any] | None = None  # a Deployment's ReplicaSet
    pods: list[dict[str, Any]] = field(default_factory=list)

    @property
    def cpu_milli(self) -> int:
        return sum(t.cpu_milli * r for t, r in self.parts)


class World:
    """The generated cluster: current objects per source, and the events that led there."""

    def __init__(self, seed: int, leaves: list[str], n_workloads: int, n_pods: int) -> None:
        self.rng = random.Random(seed)
        self.leaves = leaves
        self.templates = templates()
        self.version = 1000
        self.serial = 0
        self.current: dict[str, dict[ObjectKey, dict[str, Any]]] = {s: {} for s in KINDS}
        self.workloads: list[Workload] = []
        self.build(n_workloads, n_pods)

    # -------------------------------------------------------------- naming
    def rv(self) -> str:
        self.version += 1
        return str(self.version)

    def uid(self) -> str:
        self.serial += 1
        return f"{self.serial:08x}-0000-4000-8000-{self.serial:012x}"

    def meta(self, source: str, name: str, namespace: str, labels: dict[str, Any],
             owner: dict[str, Any] | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": name, "namespace": namespace, "uid": self.uid(), "resourceVersion": self.rv(),
            "generation": 1, "creationTimestamp": _stamp(NOW - 7200), "labels": labels,
            "managedFields": MANAGED[source],
        }
        if owner is not None:
            meta["ownerReferences"] = [owner]
        return meta

    @staticmethod
    def owner_ref(obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"], "uid": meta["uid"],
                "controller": True, "blockOwnerDeletion": True}

    def obj(self, source: str, meta: dict[str, Any], spec: dict[str, Any],
            status: dict[str, Any] | None = None) -> dict[str, Any]:
        api, kind = KINDS[source]
        out = {"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec}
        if status is not None:
            out["status"] = status
        return out

    # -------------------------------------------------------------- build
    def build(self, n_workloads: int, n_pods: int) -> None:
        rng = self.rng
        kinds = rng.choices([s for s, _ in MIX], [w for _, w in MIX], k=n_workloads)
        replicas = [2 if k == TFJOB else 1 for k in kinds]
        spare = n_pods - sum(replicas)
        if spare > 0:  # a skewed spread: a few big workloads, many small ones
            weights = [rng.paretovariate(1.5) for _ in kinds]
            for i in rng.choices(range(n_workloads), weights, k=spare):
                replicas[i] += 1
        for i, (source, count) in enumerate(zip(kinds, replicas, strict=True)):
            self.workloads.append(self.workload(i, source, count))

    def pod_template(self, tpl: Template, labels: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": {"labels": labels}, "spec": tpl.template["spec"]}

    def workload(self, i: int, source: str, count: int) -> Workload:
        rng = self.rng
        group = self.leaves[i % len(self.leaves)]
        namespace = f"ns-{group}"
        name = f"w{i}"
        labels = {GROUP_LABEL: group, "app": name}
        tpl = self.templates[rng.randrange(TEMPLATES)]
        if source == TFJOB:
            worker = self.templates[rng.randrange(TEMPLATES)]
            parts = [(tpl, 1), (worker, count - 1)]
            spec: dict[str, Any] = {"tfReplicaSpecs": {
                "Chief": {"replicas": 1, "restartPolicy": "Never", "template": self.pod_template(tpl, labels)},
                "Worker": {"replicas": count - 1, "restartPolicy": "Never",
                           "template": self.pod_template(worker, labels)},
            }}
        else:
            parts = [(tpl, count)]
            spec = {"selector": {"matchLabels": {"app": name}}, "template": self.pod_template(tpl, labels)}
            if source == JOB:
                spec.update(parallelism=count, completions=count, backoffLimit=6)
            else:
                spec["replicas"] = count
            if source == DEPLOY:
                spec["strategy"] = {"type": "RollingUpdate",
                                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
        obj = self.obj(source, self.meta(source, name, namespace, labels), spec,
                       {"observedGeneration": 1, "replicas": count, "readyReplicas": count})
        work = Workload(source, obj, group, parts)
        self.current[source][ObjectKey.of(obj)] = obj
        owner = obj
        if source == DEPLOY:
            rs_name = f"{name}-{i % 100000:05d}f7c9"
            rs_spec = {"replicas": count, "selector": spec["selector"], "template": spec["template"]}
            work.rs = self.obj(RS, self.meta(RS, rs_name, namespace, labels, self.owner_ref(obj)), rs_spec,
                               {"observedGeneration": 1, "replicas": count, "readyReplicas": count})
            self.current[RS][ObjectKey.of(work.rs)] = work.rs
            owner = work.rs
        ref = self.owner_ref(owner)
        for part, n in parts:
            for _ in range(n):
                work.pods.append(self.pod(owner, ref, part, labels, namespace))
        return work

    def pod(self, owner: dict[str, Any], ref: dict[str, Any], tpl: Template, labels: dict[str, Any],
            namespace: str) -> dict[str, Any]:
        name = f"{owner['metadata']['name']}-{self.serial:x}"
        scheduled = NOW - self.rng.uniform(60, 6 * 3600)
        spec = dict(tpl.template["spec"], nodeName=f"node-{self.rng.randrange(2000)}")
        status = {"phase": "Running", "qosClass": "Burstable", "startTime": _stamp(scheduled), "conditions": [
            {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": _stamp(scheduled)},
        ]}
        pod = self.obj(PODS, self.meta(PODS, name, namespace, labels, ref), spec, status)
        self.current[PODS][ObjectKey.of(pod)] = pod
        return pod

    # -------------------------------------------------------------- changes
    def changed(self, obj: dict[str, Any], *, spec: dict[str, Any] | None = None,
                status: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
        """A new version of `obj` (new resourceVersion), the current one of its source from now on."""
        out = dict(obj, metadata=dict(obj["metadata"], resourceVersion=self.rv(), **meta))
        if spec is not None:
            out["spec"] = spec
        if status is not None:
            out["status"] = status
        source = next(s for s, k in KINDS.items() if k == (obj["apiVersion"], obj["kind"]))
        self.current[source][ObjectKey.of(out)] = out
        return out

    def gone(self, source: str, obj: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
        del self.current[source][ObjectKey.of(obj)]
        return source, "DELETED", obj

    def added(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for work in self.workloads:
            yield work.source, "ADDED", work.obj
        for work in self.workloads:
            if work.rs is not None:
                yield RS, "ADDED", work.rs
        for work in self.workloads:
            for pod in work.pods:
                yield PODS, "ADDED", pod

    def changes(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Shuffled actions, each a run of events in the order the watches would see them."""
        rng = self.rng
        actions: list[list[tuple[str, str, dict[str, Any]]]] = []
        for work in self.workloads:
            roll = rng.random()
            if roll < 0.02:
                actions.append(self.delete(work))
                continue
            if roll < 0.12 and work.source in (DEPLOY, STS):
                actions.append(self.scale(work, rng.choice((-1, 1, 2))))
            elif work.source == JOB and roll < 0.40:
                actions.append(self.finish(work))
            if rng.random() < 0.3:
                work.obj = self.changed(work.obj, status=dict(work.obj["status"], readyReplicas=0))
                actions.append([(work.source, "MODIFIED", work.obj)])
            for p, pod in enumerate(work.pods):
                if rng.random() < 0.5:
                    work.pods[p] = self.ready(pod)
                    actions.append([(PODS, "MODIFIED", work.pods[p])])
        rng.shuffle(actions)
        return [event for action in actions for event in action]

    def ready(self, pod: dict[str, Any]) -> dict[str, Any]:
        ready = {"type": "Ready", "status": "True", "lastProbeTime": None, "lastTransitionTime": _stamp(NOW - 30)}
        status = dict(pod["status"], conditions=[*pod["status"]["conditions"], ready],
                      containerStatuses=[{"name": "app", "ready": True, "restartCount": 0,
                                          "state": {"running": {"startedAt": _stamp(NOW - 60)}}}])
        return self.changed(pod, status=status)

    def delete(self, work: Workload) -> list[tuple[str, str, dict[str, Any]]]:
        events = [self.gone(work.source, work.obj)]
        if work.rs is not None:
            events.append(self.gone(RS, work.rs))
        for pod in work.pods:
            terminating = self.changed(pod, deletionTimestamp=_stamp(NOW), deletionGracePeriodSeconds=30)
            events += [(PODS, "MODIFIED", terminating), self.gone(PODS, terminating)]
        work.parts, work.pods = [], []
        return events

    def scale(self, work: Workload, by: int) -> list[tuple[str, str, dict[str, Any]]]:
        tpl, count = work.parts[0]
        new = max(0, count + by)
        work.parts = [(tpl, new)]
        work.obj = self.changed(work.obj, spec=dict(work.obj["spec"], replicas=new), generation=2)
        events = [(work.source, "MODIFIED", work.obj)]
        owner = work.obj
        if work.rs is not None:
            work.rs = self.changed(work.rs, spec=dict(work.rs["spec"], replicas=new), generation=2)
            events.append((RS, "MODIFIED", work.rs))
            owner = work.rs
        labels = work.obj["metadata"]["labels"]
        while len(work.pods) < new:
            pod = self.pod(owner, self.owner_ref(owner), tpl, labels, work.obj["metadata"]["namespace"])
            work.pods.append(pod)
            events.append((PODS, "ADDED", pod))
        while len(work.pods) > new:
            terminating = self.changed(work.pods.pop(), deletionTimestamp=_stamp(NOW), deletionGracePeriodSeconds=30)
            events += [(PODS, "MODIFIED", terminating), self.gone(PODS, terminating)]
        return events

    def finish(self, work: Workload) -> list[tuple[str, str, dict[str, Any]]]:
        """Every pod of a Job succeeded (the Job keeps charging its parallelism until deleted)."""
        events = []
        for p, pod in enumerate(work.pods):
            status = dict(pod["status"], phase="Succeeded", containerStatuses=[{
                "name": "app", "ready": False, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": _stamp(NOW - 600)}}}])
            work.pods[p] = self.changed(pod, status=status)
            events.append((PODS, "MODIFIED", work.pods[p]))
        return events

    def bumped(self) -> dict[str, list[dict[str, Any]]]:
        """Every current object with a new resourceVersion (what a relist after a long partition shows)."""
        out = {}
        for source, objects in self.current.items():
            out[source] = [dict(o, metadata=dict(o["metadata"], resourceVersion=self.rv())) for o in objects.values()]
        return out

    def expected_cpu_nanos(self) -> int:
        return sum(w.cpu_milli for w in self.workloads) * 10**6


# ------------------------------------------------------------------ measuring
def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def observed_cpu(ledger: MemoryLedger, policy: CompiledPolicy) -> int:
    return sum(ledger.group_usage(g).observed.get("requests.cpu", 0) for g in policy.groups)


def feed(reconciler: Reconciler, events: list[tuple[str, str, dict[str, Any]]]) -> tuple[float, dict[str, list[float]]]:
    """Seconds for the whole loop, and [events, seconds] per kind of event (workload or pod)."""
    per = {"workload": [0, 0.0], "pod": [0, 0.0]}
    clock = time.perf_counter
    apply = reconciler.apply
    start = clock()
    for source, event, obj in events:
        t0 = clock()
        apply(source, event, obj)
        slot = per["pod" if source == PODS else "workload"]
        slot[0] += 1
        slot[1] += clock() - t0
    return clock() - start, per


def resync(reconciler: Reconciler, listing: dict[str, list[dict[str, Any]]]) -> float:
    """A full resync as the controller runs it: every collection relisted, then one recompute of every group."""
    start = time.perf_counter()
    for source, items in listing.items():
        reconciler.replace(source, items)
    reconciler.recompute()
    return time.perf_counter() - start


def check(label: str, ledger: MemoryLedger, policy: CompiledPolicy, expected: int) -> bool:
    got = observed_cpu(ledger, policy)
    ok = got == expected
    print(f"check {label:<22} Σ observed requests.cpu {got / 1e9:>12,.3f} cores, expected "
          f"{expected / 1e9:,.3f}: {'ok' if ok else 'WRONG'}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=100_000)
    parser.add_argument("--workloads", type=int, default=20_000)
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="a tenth of each (a fast check)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.quick:
        args.pods, args.workloads, args.groups = args.pods // 10, args.workloads // 10, args.groups // 10
    if args.groups < 3 or args.workloads < 1:
        parser.error("need at least 3 groups and 1 workload")

    load = os.getloadavg()[0]
    rss_base = rss_mb()
    start = time.perf_counter()
    text, leaves = policy_text(args.groups)
    policy = compile_sources(load_text(text, "bench.quota"))
    compile_s = time.perf_counter() - start
    names = sources(policy)
    rss_policy = rss_mb()

    start = time.perf_counter()
    world = World(args.seed, leaves, args.workloads, args.pods)
    events = list(world.added())
    n_added = len(events)
    counts = {s: sum(1 for e in events if e[0] == s) for s in (RS, PODS)}
    changes = world.changes()
    n_deleted = sum(1 for e in changes if e[1] == "DELETED")
    events += changes
    del changes
    expected = world.expected_cpu_nanos()
    unchanged = {s: list(world.current.get(s, {}).values()) for s in names}
    build_s = time.perf_counter() - start
    listed = sum(len(v) for v in unchanged.values())
    print(f"policy: {len(policy.groups)} groups ({len(leaves)} leaves), {len(policy.kinds)} kinds, "
          f"{len(names)} watched sources, compiled in {compile_s:.2f} s")
    print(f"stream: {n_added:,} ADDED ({args.workloads:,} workloads, {counts[RS]:,} ReplicaSets, "
          f"{counts[PODS]:,} pods), then {len(events) - n_added:,} changes ({n_deleted:,} DELETED); "
          f"built in {build_s:.1f} s")
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.2f} at start (figures are "
          "noisy when other work shares the cores)")
    print(f"final state: {listed:,} objects ({len(unchanged[PODS]):,} pods) in {len(names)} listings")

    gc.collect()
    gc.freeze()  # the stream is the benchmark's, not the controller's: keep it out of the GC's traversals
    rss_before = rss_mb()

    ledger = MemoryLedger(standalone=False)
    reconciler = Reconciler(ledger, lambda: policy, clock=lambda: NOW)
    feed_s, per = feed(reconciler, events)
    rss_after = rss_mb()
    gc.collect()
    gc.freeze()  # as the controller does after its first sync (controller/runner.py)
    n_events = len(events)
    del events  # the stream's old versions; the current objects stay (the listings)
    ok = check("after the feed", ledger, policy, expected)

    unchanged_s = resync(reconciler, unchanged)
    ok &= check("after resync (same)", ledger, policy, expected)
    bumped_all = world.bumped()
    bumped = {s: bumped_all.get(s, []) for s in names}
    del bumped_all
    gc.collect()  # not frozen: a relisting controller holds its listing too
    bumped_s = resync(reconciler, bumped)
    ok &= check("after resync (bumped)", ledger, policy, expected)
    start = time.perf_counter()
    reconciler.recompute()
    recompute_s = time.perf_counter() - start

    runs = len(reconciler.runs())
    start = time.perf_counter()
    changed = reconciler.accrue(NOW + 600)
    accrue_s = time.perf_counter() - start
    gpu_hours = sum(ledger.group_usage(g).cash.get("requests.nvidia.com/gpu", 0) for g in policy.groups) / 1e9 / 3600
    peak = peak_mb()
    state = rss_after - rss_before
    estimate = rss_policy + state

    rate = n_events / feed_s
    w_rate = per["workload"][0] / per["workload"][1] if per["workload"][1] else 0.0
    p_rate = per["pod"][0] / per["pod"][1] if per["pod"][1] else 0.0
    print(f"accrue: {len(policy.groups)} groups, {runs:,} pod runs, {changed} groups accrued, "
          f"{gpu_hours:,.1f} GPU-hours this week")
    print(f"reconciler: {len(reconciler):,} objects seen; ledger: {len(ledger):,} observed objects")
    print(f"memory (VmRSS): {rss_base:,.0f} MB at start, {rss_policy:,.0f} MB with the policy, "
          f"{rss_before:,.0f} MB with the stream built, {rss_after:,.0f} MB after the feed "
          f"(+{state:,.0f} MB controller state); peak (ru_maxrss) {peak:,.0f} MB")
    print()
    rows = [
        ("events/s, all", f"{rate:,.0f}", f"≥ {TARGET_EVENTS:,.0f}", rate >= TARGET_EVENTS,
         f"{n_events:,} events in {feed_s:.2f} s"),
        ("events/s, workload events", f"{w_rate:,.0f}", f"≥ {TARGET_EVENTS:,.0f}", w_rate >= TARGET_EVENTS,
         f"{per['workload'][0]:,} events, {per['workload'][1]:.2f} s in apply"),
        ("events/s, pod events", f"{p_rate:,.0f}", f"≥ {TARGET_EVENTS:,.0f}", p_rate >= TARGET_EVENTS,
         f"{per['pod'][0]:,} events, {per['pod'][1]:.2f} s in apply"),
        ("resync, nothing changed", f"{unchanged_s:.2f} s", f"< {TARGET_RESYNC:g} s", unchanged_s < TARGET_RESYNC,
         f"{listed:,} objects, {len(names)} replace() calls"),
        ("resync, all re-observed", f"{bumped_s:.2f} s", f"< {TARGET_RESYNC:g} s", bumped_s < TARGET_RESYNC,
         f"x{bumped_s / unchanged_s:.1f} the unchanged one" if unchanged_s else ""),
        ("recompute, once", f"{recompute_s * 1000:.0f} ms", "-", None,
         "included once in each resync above"),
        ("accrue, all groups", f"{accrue_s * 1000:.0f} ms", "-", None, f"{runs:,} pod runs"),
        ("peak memory (ru_maxrss)", f"{peak:,.0f} MB", f"< {TARGET_MB:g} MB", peak < TARGET_MB,
         "the whole process, the generated stream included"),
        ("controller state (RSS Δ)", f"{state:,.0f} MB", "-", None, "VmRSS after the feed − before it"),
        ("controller process (est.)", f"{estimate:,.0f} MB", f"< {TARGET_MB:g} MB", estimate < TARGET_MB,
         "VmRSS with the policy + the Δ above"),
    ]
    header = f"{'figure':<28}{'value':>12}  {'target':<11}{'':<6}notes"
    print(header)
    print("-" * len(header))
    for name, value, target, passed, notes in rows:
        verdict = "-" if passed is None else ("PASS" if passed else "MISS")
        print(f"{name:<28}{value:>12}  {target:<11}{verdict:<6}{notes}")
    if not ok:
        print("observed usage differs from the generator's: the reconciler lost or double-counted usage")
        sys.exit(1)


if __name__ == "__main__":
    main()

"""Core benchmark: compile a 10,000-group policy; decide Deployments and TFJobs.

Run: `python bench/bench_core.py [--groups 1000 10000] [--seconds 2] [--bindings]`. Compiles
a generated policy of each size (by default 1,000 and 10,000 groups) and times
decisions against the largest. Prints figures; asserts nothing. "Cold" decisions see pod resources the usage cache
has never seen (a new memory request each time: the cache is keyed by what pod
usage reads, so a new image alone would hit it); "warm" ones repeat one
object, as the webhook does for a re-sent review or another team's copy.
`--bindings` binds every group's namespace (`namespaces "team-0-0"`, the
platforms `platform-0-*`) and reads the GPU model from the node label the
workloads pin (`node label gpu`), so the two runs compare the cost of the
binding and model checks.
"""

from __future__ import annotations

import argparse
import copy
import gc
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quotalang import Snapshot, compile_policy, evaluate

# The shipped kind rules (Deployment, TFJob, ...), as a real policy imports them.
IMPORTS = 'import "quotalang:policies/core.quota"\nimport "quotalang:policies/kubeflow.quota"\n\n'

KEYS = (
    ("limits.cpu", 8),
    ("requests.cpu", 8),
    ("limits.memory", "32Gi"),
    ("requests.nvidia.com/gpu", 4),
    ("requests.nvidia.com/gpu.A100", 4),
    ("pods", 20),
)


def _scaled(value: int | str, factor: int) -> str:
    if isinstance(value, int):
        return str(value * factor)
    number = int(value[:-2])
    return f"{number * factor}{value[-2:]}"


MODELS = ['  model gpu A100 "NVIDIA-A100-SXM4-80GB"', '  node label gpu "nvidia.com/gpu.product"']


def generate_policy(directory: Path, groups: int, bindings: bool = False) -> None:
    """root → platforms → teams, ~√groups platforms; every key carved exactly."""
    platforms = max(1, int((groups - 1) ** 0.5))
    teams_per = max(1, (groups - 1 - platforms) // platforms)
    lines = [
        IMPORTS,
        "settings {",
        '  group label "quota.group"',
        '  model label gpu "quota.group/gpu-type"',
        *(MODELS if bindings else []),
        "}",
        "",
    ]

    def block(name: str, parent: str | None, factor: int) -> None:
        lines.append(f"group {name}" + (f" in {parent}" if parent else "") + " {")
        if bindings and parent is not None:
            lines.append(f'  namespaces "{name}"' + (f', "{name}-*"' if parent == "root" else ""))
        for key, value in KEYS:
            lines.append(f"  {key} {_scaled(value, factor)}")
        lines.append(f"  cash requests.nvidia.com/gpu {100 * factor}h per week")
        lines.append("}")

    block("root", None, platforms * (teams_per + 1))
    for p in range(platforms):
        block(f"platform-{p}", "root", teams_per + 1)
        for t in range(teams_per):
            block(f"team-{p}-{t}", f"platform-{p}", 1)
    (directory / "org.quota").write_text("\n".join(lines) + "\n")


PIN = {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}}


def deployment(tag: int = 0) -> dict[str, Any]:
    container = {
        "name": "app",
        "image": f"registry.example/app:{tag}",
        "resources": {
            "requests": {"cpu": "500m", "memory": f"{1048576 + tag}Ki", "nvidia.com/gpu": "1"},
            "limits": {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1"},
        },
    }
    sidecar = {
        "name": "proxy",
        "image": "envoy:1.30",
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "200m", "memory": "256Mi"}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "team-0-0",
            "labels": {"quota.group": "team-0-0", "quota.group/gpu-type": "A100"},
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [container, sidecar], **PIN}},
        },
    }


def tfjob(tag: int = 0) -> dict[str, Any]:
    def spec(replicas: int, gpus: int) -> dict[str, Any]:
        res = {"cpu": "1", "memory": f"{2097152 + tag}Ki", "nvidia.com/gpu": str(gpus)}
        container = {"name": "tensorflow", "image": f"tf:{tag}", "resources": {"requests": res, "limits": res}}
        return {"replicas": replicas, "template": {"spec": {"containers": [container], **PIN}}}

    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {"name": "train", "namespace": "team-0-0",
                     "labels": {"quota.group": "team-0-0", "quota.group/gpu-type": "A100"}},
        "spec": {"tfReplicaSpecs": {"Chief": spec(1, 0), "Worker": spec(1, 1)}},
    }


def rate(fn: Callable[[int], object], seconds: float) -> tuple[float, float]:
    """Calls per second and µs per call over about `seconds`."""
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            fn(n)
            n += 1
        now = time.perf_counter()
        if now >= deadline:
            break
    elapsed = now - start
    return n / elapsed, elapsed / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--groups", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--bindings", action="store_true", help="namespace bindings and node-label models")
    args = parser.parse_args()

    for groups in sorted(args.groups):
        with tempfile.TemporaryDirectory() as tmp:
            generate_policy(Path(tmp), groups, args.bindings)
            lines = (Path(tmp) / "org.quota").read_text().count("\n")
            gc.collect()
            start = time.perf_counter()
            policy = compile_policy(tmp)
            compile_s = time.perf_counter() - start
        print(f"compile: {len(policy.groups)} groups, {lines} lines in {compile_s:.2f} s "
              f"({compile_s / lines * 1e6:.1f} µs/line)")
    print(f"decisions against the {len(policy.groups)}-group policy")

    # Some usage already there, well below the 90% warning threshold: the common case.
    usage = Snapshot.parse({"team-0-0": {"limits.cpu": "2", "requests.cpu": "1", "pods": "3"}})
    warm_deploy, warm_tf = deployment(), tfjob()
    assert evaluate(policy, warm_deploy, usage=usage).reason == "charged"
    assert evaluate(policy, warm_tf, usage=usage).reason == "charged"
    cold_deploys = [deployment(i + 1) for i in range(200_000)]
    cold_tfs = [tfjob(i + 1) for i in range(100_000)]

    def cold(objs: list[dict[str, Any]]) -> Callable[[int], object]:
        return lambda i: evaluate(policy, objs[i % len(objs)], usage=usage)

    results = {
        "Deployment warm": rate(lambda i: evaluate(policy, warm_deploy, usage=usage), args.seconds),
        "Deployment cold": rate(cold(cold_deploys), args.seconds),
        "TFJob warm": rate(lambda i: evaluate(policy, warm_tf, usage=usage), args.seconds),
        "TFJob cold": rate(cold(cold_tfs), args.seconds),
    }
    old, new = deployment(), copy.deepcopy(deployment())
    new["spec"]["replicas"] = 3
    results["Deployment UPDATE warm"] = rate(
        lambda i: evaluate(policy, new, "UPDATE", old=old, usage=usage), args.seconds
    )
    print(f"{'decision':<24} {'per second':>12} {'µs each':>9}")
    for name, (per_s, us) in results.items():
        print(f"{name:<24} {per_s:>12,.0f} {us:>9.1f}")
    print("targets: compile < 2 s; Deployment warm ≥ 50,000/s; cold ≥ 10,000/s")


if __name__ == "__main__":
    main()

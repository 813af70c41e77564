"""How a denial reads (issue 13, item 7): rollout surge named, one unit within one message.

Every expected message is worked out by hand in the comments; the policy uses
the shipped kind rules (`import "quotalang:policies"`), never a pasted copy.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from quotalang.compiler import compile_policy, compile_sources
from quotalang.decision import MAX_WARNING, Violation
from quotalang.evaluator import evaluate
from quotalang.loader import load_text
from quotalang.policy import CompiledPolicy
from quotalang.units import NANO

ROOT = Path(__file__).resolve().parents[2]
MILLI = NANO // 1000
MI = NANO << 20
GI = NANO << 30

POLICY = """\
import "quotalang:policies"

settings {
  group label "g"
}

group web {
  requests.cpu      10
  requests.memory   2Gi
}

group canary {
  mode warn
  requests.cpu      10
  requests.memory   2Gi
}
"""


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    return compile_sources(load_text(POLICY, "p.quota"))


def deployment(group: str, replicas: int, cpu: str = "500m", memory: str = "64Mi", image: str = "app:1",
               kind: str = "Deployment") -> dict[str, Any]:
    api = "argoproj.io/v1alpha1" if kind == "Rollout" else "apps/v1"
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": "site", "namespace": "ns", "labels": {"g": group}},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": [
                {"name": "c", "image": image, "resources": {"requests": {"cpu": cpu, "memory": memory}}},
            ]}},
        },
    }


def new_image(obj: dict[str, Any], replicas: int | None = None) -> dict[str, Any]:
    new = copy.deepcopy(obj)
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "app:2"
    if replicas is not None:
        new["spec"]["replicas"] = replicas
    return new


# ------------------------------------------------------------------ rollout surge


def test_a_rollout_denied_by_its_surge_says_so(policy: CompiledPolicy) -> None:
    # 8 × 500m = 4 cores, re-imaged: no change in size, but the Deployment rule's maxSurge
    # (default 25% of 8 = 2 pods) needs room for 2 × 500m = 1000m; used 9500m + 1000m > 10.
    old = deployment("web", 8)
    d = evaluate(policy, new_image(old), "UPDATE", old=old, usage={"web": {"requests.cpu": "9500m"}})
    assert not d.allowed
    assert d.message == (
        "quota exceeded in group web: requests.cpu: requested 1000m (including rollout surge: 2 × pod 500m), "
        "used 9500m of 10000m, 500m free"
    )
    # The same change with room for the surge is allowed and charges nothing (room is checked only).
    d = evaluate(policy, new_image(old), "UPDATE", old=old, usage={"web": {"requests.cpu": "9"}})
    assert d.allowed and d.charges == {}


def test_growth_and_surge_are_told_apart(policy: CompiledPolicy) -> None:
    # 8 → 9 replicas with a new image: +500m for the ninth pod, and ceil(25% × 9) = 3 surge
    # pods × 500m = 1500m of room: requested 2000m; used 8600m + 2000m = 10600m > 10.
    old = deployment("web", 8)
    d = evaluate(policy, new_image(old, 9), "UPDATE", old=old, usage={"web": {"requests.cpu": "8600m"}})
    assert not d.allowed
    assert d.message == (
        "quota exceeded in group web: requests.cpu: requested 2000m "
        "(+500m to 9 × pod 500m, including rollout surge: 3 × pod 500m), used 8600m of 10000m, 1400m free"
    )


def test_growth_alone_says_nothing_of_surge(policy: CompiledPolicy) -> None:
    # The same template: no rollout, no surge: 8 → 10 replicas adds 1000m; 9500m + 1000m > 10.
    old = deployment("web", 8)
    grown = copy.deepcopy(old)
    grown["spec"]["replicas"] = 10
    d = evaluate(policy, grown, "UPDATE", old=old, usage={"web": {"requests.cpu": "9500m"}})
    assert "surge" not in d.message
    assert "requests.cpu: requested 1000m (+1000m to 10 × pod 500m), used 9500m of 10000m, 500m free" in d.message


def test_an_argo_rollout_names_its_canary_surge(policy: CompiledPolicy) -> None:
    # The shipped Rollout rule reads spec.strategy.canary.maxSurge: 1 pod of 2 cores; used 9 + 2 > 10.
    old = deployment("web", 4, cpu="2", kind="Rollout")
    old["spec"]["strategy"] = {"canary": {"maxSurge": 1}}
    d = evaluate(policy, new_image(old), "UPDATE", old=old, usage={"web": {"requests.cpu": "9"}})
    assert not d.allowed
    assert "requests.cpu: requested 2 (including rollout surge: 1 × pod 2), used 9 of 10, 1 free" in d.message


def test_a_surge_warning_stays_short_and_keeps_its_figures(policy: CompiledPolicy) -> None:
    old = deployment("canary", 8)
    d = evaluate(policy, new_image(old, 9), "UPDATE", old=old, usage={"canary": {"requests.cpu": "8600m"}})
    assert d.allowed and d.warnings
    assert all(len(w) <= MAX_WARNING for w in d.warnings)
    # The full text would be 134 characters: the breakdown is left out, never the figures.
    assert d.warnings[0] == "canary: requests.cpu: requested 2000m, used 8600m of 10000m, 1400m free"


# ------------------------------------------------------------------ one unit within one message


def test_milli_figures_share_the_milli_unit(policy: CompiledPolicy) -> None:
    # 1 × 500m on top of 9600m: 10100m > 10; every figure in m (not `used 9600m of 10`).
    d = evaluate(policy, deployment("web", 1), usage={"web": {"requests.cpu": "9600m"}})
    assert d.message == (
        "quota exceeded in group web: requests.cpu: requested 500m (1 × pod 500m), used 9600m of 10000m, 400m free"
    )


def test_whole_requests_against_milli_usage_are_printed_in_milli(policy: CompiledPolicy) -> None:
    # 1 × 1 core on top of 9600m: the pod's `1` is printed `1000m` beside `9600m`.
    d = evaluate(policy, deployment("web", 1, cpu="1"), usage={"web": {"requests.cpu": "9600m"}})
    assert "requests.cpu: requested 1000m (1 × pod 1000m), used 9600m of 10000m, 400m free" in d.message


def test_memory_figures_share_a_binary_suffix(policy: CompiledPolicy) -> None:
    # 1 × 1Gi on top of 1536Mi: 2560Mi > 2Gi, all in Mi (1Gi = 1024Mi, 2Gi = 2048Mi, 512Mi free).
    d = evaluate(policy, deployment("web", 1, cpu="1", memory="1Gi"), usage={"web": {"requests.memory": "1536Mi"}})
    assert "requests.memory: requested 1024Mi (1 × pod 1024Mi), used 1536Mi of 2048Mi, 512Mi free" in d.message


def test_a_near_full_warning_uses_one_unit(policy: CompiledPolicy) -> None:
    # 8700m + 500m = 9200m of 10: 92%, past the 90% default.
    d = evaluate(policy, deployment("web", 1), usage={"web": {"requests.cpu": "8700m"}})
    assert d.allowed and d.warnings == ["web at 92% of requests.cpu (9200m of 10000m)"]


@pytest.mark.parametrize(
    ("key", "figures", "expected"),
    [
        # (requested, used, carved, hard); free = hard - carved - used
        ("requests.cpu", (500 * MILLI, 8600 * MILLI, 0, 10 * NANO),
         "requested 500m, used 8600m of 10000m, 1400m free"),
        ("requests.memory", (GI, 512 * MI, 0, 2 * GI), "requested 1024Mi, used 512Mi of 2048Mi, 1536Mi free"),
        # 1500M is no whole number of Ki, 2Gi no whole number of k: each keeps its own form.
        ("requests.memory", (1500 * 10**6 * NANO, 0, 0, 2 * GI), "requested 1500000000, used 0 of 2Gi, 2Gi free"),
        ("requests.cpu", (2 * NANO, 4 * NANO, 3 * NANO, 8 * NANO),
         "requested 2, used 7 of 8 (3 carved for children), 1 free"),
        ("requests.cpu", (1500 * MILLI, 2 * NANO, 4 * NANO, 8 * NANO),
         "requested 1500m, used 6000m of 8000m (4000m carved for children), 2000m free"),
        # Whole numbers share the plain unit: not `1500, used 0 of 10k`.
        ("requests.cpu", (1500 * NANO, 0, 0, 10000 * NANO), "requested 1500, used 0 of 10000, 10000 free"),
    ],
)
def test_violation_figures_share_one_unit(key: str, figures: tuple[int, int, int, int], expected: str) -> None:
    requested, used, carved, hard = figures
    assert Violation(key, requested, used, carved, hard, "").describe() == f"{key}: {expected}"


def test_the_documented_denial_is_unchanged() -> None:
    # README, examples/reviews, the e2e and pages tests quote it byte for byte.
    policy = compile_policy(str(ROOT / "examples" / "policies"))
    workload = yaml.safe_load((ROOT / "examples" / "workloads" / "tfjob-too-big.yaml").read_text(encoding="utf-8"))
    assert evaluate(policy, workload).message == (
        "quota exceeded in group root/ai-platform/nlp/bob: requests.nvidia.com/gpu.A100: "
        "requested 21 (1 × Chief 1 + 5 × Worker 4), used 0 of 16, 16 free"
    )

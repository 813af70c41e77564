"""The policy's memos (group resolution, models of a part): bounded under a flood, never a stale answer.

A namespace, a label value and a pin are what a request names, so an attacker
picks as many as they like: each memo holds at most `MEMO_ENTRIES`, and an
answer read from it is the one computed afresh. Expected values are worked
out by hand from `test_bindings.POLICY`.
"""

from __future__ import annotations

import copy

from quotalang.compiler import compile_sources
from quotalang.evaluator import evaluate
from quotalang.loader import load_text
from quotalang.memo import MEMO_ENTRIES, Memo
from quotalang.policy import CompiledPolicy
from tests.quotalang.test_bindings import A100, POLICY, deployment

GPU = 10**9  # one of anything, in nanos


def fresh() -> CompiledPolicy:
    return compile_sources(load_text(POLICY, "p.quota"))


def test_a_full_memo_drops_its_oldest_entry() -> None:
    memo: Memo[str, int] = Memo(size=3)
    for n, key in enumerate("abcde"):
        assert memo.put(key, n) == n
    assert len(memo) == 3
    assert [memo.get(k) for k in "abcde"] == [None, None, 2, 3, 4]
    memo.put("c", 9)  # replacing a key evicts nothing
    assert len(memo) == 3 and memo.get("c") == 9 and memo.get("d") == 3


def test_a_flood_of_namespaces_stays_bounded_and_answers_stay_right() -> None:
    policy = fresh()
    for n in range(MEMO_ENTRIES + 500):  # llm-* binds every one of them to llm
        assert evaluate(policy, deployment(f"llm-{n}", "llm")).group == "llm"
    assert len(policy.resolved) == MEMO_ENTRIES
    # the oldest were dropped and are computed again, the same; a group's answer differs by namespace
    assert evaluate(policy, deployment("llm-0", "llm")).charges["llm"]["requests.cpu"] == 2 * GPU
    denied = evaluate(policy, deployment("vision-dev", "llm"))
    assert not denied.allowed and denied.reason == "not-bound"
    assert evaluate(policy, deployment("llm", "llm"), namespace="vision").reason == "not-bound"
    assert evaluate(policy, deployment("shared", "vision"), cluster="eu-1").reason == "charged"
    assert evaluate(policy, deployment("shared", "vision"), cluster="us-1").reason == "outside-quota"


def test_names_longer_than_a_label_value_are_not_memoized() -> None:
    policy = fresh()
    long = "llm-" + "x" * 60  # 64 characters: longer than any namespace Kubernetes accepts
    assert evaluate(policy, deployment(long, "llm")).group == "llm"
    assert evaluate(policy, deployment("llm", "l" * 64)).reason == "unknown-group"
    assert len(policy.resolved) == 0


def test_the_models_memo_tells_pins_and_claims_apart() -> None:
    policy = fresh()
    a100 = evaluate(policy, deployment("llm", gpus=1, selector=A100))
    assert a100.allowed and a100.charges["llm"]["requests.nvidia.com/gpu.A100"] == 2 * GPU
    # the same template content pinned to T4: charged to no A100 key (llm limits none for T4)
    t4 = evaluate(policy, deployment("llm", gpus=1, selector={"nvidia.com/gpu.product": "Tesla-T4"}))
    assert t4.allowed and "requests.nvidia.com/gpu.A100" not in t4.charges["llm"]
    assert t4.charges["llm"]["requests.nvidia.com/gpu.T4"] == 2 * GPU
    # the A100 pin again, now with a T4 label on the workload, then on the pod template: both conflict
    labelled = deployment("llm", gpus=1, selector=A100, labels={"acme.io/gpu-model": "T4"})
    assert evaluate(policy, labelled).reason == "model-conflict"
    on_template = deployment("llm", gpus=1, selector=A100)
    on_template["spec"]["template"]["metadata"] = {"labels": {"acme.io/gpu-model": "T4"}}
    d = evaluate(policy, on_template)
    assert d.reason == "model-conflict" and d.message.startswith("part pod: pod template label acme.io/gpu-model")
    # no pin: denied in a group limiting A100
    assert evaluate(policy, deployment("llm", gpus=1)).reason == "model-not-pinned"
    assert evaluate(policy, deployment("llm", gpus=1, selector=A100)).allowed


def test_what_a_part_is_read_for_is_worked_out_once_per_policy() -> None:
    """POLICY declares a gpu model label and a gpu node label, no cpu or memory model: one kind to read, the
    label on labels (no `annotation`), and a `dataclasses.replace`d settings works it out again."""
    import dataclasses

    settings = fresh().settings
    assert settings.model_reads == (("gpu", "acme.io/gpu-model", "label", "nvidia.com/gpu.product"),)
    unpinned = dataclasses.replace(settings, node_labels={})
    assert unpinned.model_reads == (("gpu", "acme.io/gpu-model", "label", None),)
    assert dataclasses.replace(settings, model_labels={}, node_labels={}).model_reads == ()


def test_node_affinity_is_read_every_time_and_a_pin_flood_stays_bounded() -> None:
    policy = fresh()
    pinned = deployment("llm", gpus=1, selector=A100)
    assert evaluate(policy, pinned).allowed
    # the same nodeSelector plus an affinity that also allows T4 nodes: both must hold, so A100 alone
    loose = copy.deepcopy(pinned)
    either = {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-A100-SXM4-80GB", "Tesla-T4"]}
    loose["spec"]["template"]["spec"]["affinity"] = {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [either]}]}}}
    assert evaluate(policy, loose).allowed
    # without the nodeSelector the affinity allows two models: not pinned (read afresh, not from the memo)
    loose["spec"]["template"]["spec"].pop("nodeSelector")
    assert evaluate(policy, loose).reason == "model-not-pinned"
    for n in range(MEMO_ENTRIES + 100):
        d = evaluate(policy, deployment("llm", gpus=1, selector={"nvidia.com/gpu.product": f"GPU-{n}"}))
        assert d.reason == "unknown-model"
    assert len(policy.settings.models_of) == MEMO_ENTRIES
    assert evaluate(policy, pinned).allowed

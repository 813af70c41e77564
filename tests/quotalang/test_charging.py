"""Which groups a namespace may charge (`quotalang.charging`), on the example organisation by hand.

ai-platform binds "ai-platform"; nlp (under it) binds "nlp" and "nlp-*" and has alice, bob and carol;
alice is nlp-alice's default group. A binding covers the group's subtree.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from quotalang.charging import chargeable, is_label
from quotalang.compiler import compile_policy, compile_sources
from quotalang.loader import load_text
from quotalang.policy import CompiledPolicy

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    return compile_policy([str(EXAMPLES)])


def test_a_namespace_may_charge_the_groups_bound_to_it_and_everything_under_them(policy: CompiledPolicy) -> None:
    answer = chargeable(policy, "nlp-alice")
    assert answer.groups == ("nlp", "alice", "bob", "carol")  # nlp-* binds nlp, so its subtree
    assert (answer.default, answer.bound, answer.any_group) == ("alice", True, False)
    assert chargeable(policy, "ai-platform").groups[:2] == ("ai-platform", "nlp")  # every group under it
    assert chargeable(policy, "nlp").default is None


def test_a_namespace_no_group_binds_may_charge_none(policy: CompiledPolicy) -> None:
    answer = chargeable(policy, "kube-public")
    assert (answer.groups, answer.default, answer.bound) == ((), None, False)
    assert chargeable(policy, "nlpx").groups == ()  # "nlp-*" needs the dash


def test_without_bindings_any_namespace_may_charge_any_group() -> None:
    policy = compile_sources(load_text("group root {\n  pods 10\n}\ngroup a in root {\n  pods 1\n}\n", "p.quota"))
    answer = chargeable(policy, "anything")
    assert (answer.groups, answer.any_group, answer.bound) == (("root", "a"), True, True)


@pytest.mark.parametrize(("text", "ok"), [("nlp-alice", True), ("a", True), ("a" * 63, True), ("a" * 64, False),
                                          ("Nlp", False), ("-x", False), ("x-", False), ("", False),
                                          ("nlp/alice", False), ("ns\n", False)])
def test_only_dns_labels_are_namespace_names(text: str, ok: bool) -> None:
    assert is_label(text) is ok

"""The checker: every lint code, at its exact `file:line:col`, with the message that explains it.

Every expected value here is worked out by hand from the policy text above it
(columns are 1-based; a two-space indent puts a key at column 3).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from quotalang import parser
from quotalang.checker import check
from quotalang.errors import Diagnostic
from quotalang.loader import load, load_text


def findings(text: str) -> list[Diagnostic]:
    """The findings of `text`, less W301 (most snippets here have no kind rules), W302 (rules without
    `creates`) and W401 (no namespace bindings); their own tests ask `check`."""
    return [d for d in check(load_text(text, "p.quota")) if d.code not in ("W301", "W302", "W401")]


def where(found: list[Diagnostic]) -> list[tuple[str, str]]:
    return [(d.code, str(d.span)) for d in found]


def only(text: str) -> Diagnostic:
    """The single finding of `text` (fails, listing them all, if there is not exactly one)."""
    found = findings(text)
    assert len(found) == 1, "\n".join(d.render() for d in found)
    return found[0]


def load_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str]) -> list[Diagnostic]:
    """A multi-file policy; run from inside it so files are named `a.quota`, `b.quota`."""
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return [d for d in check(load(".")) if d.code not in ("W301", "W302", "W401")]


# ------------------------------------------------------------------ a clean policy
CLEAN = """\
settings {
  group label  "biz.group.resource.quota"
  model label  cpu    "biz.group.resource.quota/cpu-type"
  model label  gpu    "biz.group.resource.quota/gpu-type"
  model label  memory "biz.group.resource.quota/memory-type"
  gpu resource "nvidia.com/gpu"
  unlabelled   group default
  warn at      90%
}

group root {
  namespaces "ai-*"
  limits.cpu                     2000
  limits.cpu.A4                   400
  limits.memory                   8Ti
  requests.nvidia.com/gpu          64
  requests.nvidia.com/gpu.A100     32
  pods                           1000
  cash requests.nvidia.com/gpu  20000h per week
}

group ai-lab in root {
  mode warn
  limits.cpu                      800
  limits.cpu.A4                   400
  limits.memory                   4Ti
  requests.nvidia.com/gpu          48
  requests.nvidia.com/gpu.A100     32
  pods                            500
  cash requests.nvidia.com/gpu  12000.5h per week
}

group default in root {
  limits.cpu                     1200
  limits.cpu.A4                     0
  limits.memory                 4096Gi
  requests.nvidia.com/gpu          16
  requests.nvidia.com/gpu.A100      0
  pods                            500
  cash requests.nvidia.com/gpu   7999.5h per week
}

kind apps/v1 Deployment {
  creates apps/v1 ReplicaSet
  pods {
    replicas spec.replicas default 1
    template spec.template
  }
  scale spec.replicas
  surge spec.strategy.rollingUpdate.maxSurge default 25%
}

kind kubeflow.org/v1 TFJob {
  creates v1 Pod
  pods each spec.tfReplicaSpecs.* {
    replicas .replicas default 1
    template .template
  }
}

kind leaderworkerset.x-k8s.io/v1 LeaderWorkerSet {
  pods "workers" {
    replicas spec.replicas default 1 * (spec.leaderWorkerTemplate.size default 1 - 1)
    template spec.leaderWorkerTemplate.workerTemplate or spec.leaderWorkerTemplate.leaderTemplate
  }
  scale spec.replicas
}
"""


def test_a_clean_policy_has_no_findings() -> None:
    # Carving is exactly full everywhere: 800 + 1200 = 2000 cpu, 400 + 0 = 400 A4,
    # 4Ti + 4096Gi = 8Ti, 48 + 16 = 64 gpu, 32 + 0 = 32 A100, 500 + 500 = 1000 pods,
    # 12000.5h + 7999.5h = 20000h: equal is allowed.
    assert findings(CLEAN) == []


def test_the_shipped_kind_library_is_clean() -> None:
    assert findings('import "quotalang:policies"\n') == []


# ------------------------------------------------------------------ groups and the tree
def test_e101_duplicate_group_points_at_the_second_name() -> None:
    d = only("group a {}\ngroup a {}\n")
    assert (d.code, str(d.span)) == ("E101", "p.quota:2:7")
    assert "group a is declared twice (first at p.quota:1:7)" in d.message


def test_e101_across_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = load_dir(tmp_path, monkeypatch, {"a.quota": "group team {}\n", "b.quota": "\ngroup team {}\n"})
    assert where(found) == [("E101", "b.quota:2:7")]
    assert "first at a.quota:1:7" in found[0].message


def test_e102_unknown_parent_points_at_the_parent_name() -> None:
    d = only("group root {}\ngroup a in rot {}\n")
    assert (d.code, str(d.span)) == ("E102", "p.quota:2:12")
    assert d.message == "group a is in unknown group rot"
    assert d.hint == "did you mean `root`?"


def test_e103_one_finding_per_cycle_at_its_first_group() -> None:
    text = "group a in c {}\ngroup b in a {}\ngroup c in b {}\ngroup d in a {}\n"
    found = findings(text)
    # a is in c, c in b, b in a; d hangs off the cycle but is not part of it.
    assert where(found) == [("E103", "p.quota:1:7")]
    assert found[0].message == "cycle in the group tree: a → c → b → a"


def test_e103_cycle_starts_at_the_first_declared_member() -> None:
    # Walking up from d meets the cycle at b, but a is the member declared first.
    text = "group d in b {}\ngroup a in b {}\ngroup b in a {}\n"
    found = findings(text)
    assert where(found) == [("E103", "p.quota:2:7")]
    assert found[0].message == "cycle in the group tree: a → b → a"


def test_e103_a_group_in_itself() -> None:
    d = only("group a in a {}\n")
    assert (d.code, str(d.span)) == ("E103", "p.quota:1:7")
    assert d.message.endswith("a → a")


E104 = """\
group root {
  limits.cpu 10
  cash requests.nvidia.com/gpu 100h per week
}
group child in root {
}
"""


def test_e104_child_must_declare_every_parent_key_and_cash_key() -> None:
    found = findings(E104)
    assert where(found) == [("E104", "p.quota:5:7"), ("E104", "p.quota:5:7")]
    assert found[0].message == "group child does not declare limits.cpu, which its parent root limits"
    assert found[0].hint == "declare `limits.cpu 0` to give it none"
    assert "cash requests.nvidia.com/gpu" in found[1].message
    assert found[1].hint == "declare `cash requests.nvidia.com/gpu 0h per week` to give it none"


def test_e104_hints_fix_it() -> None:
    declared = "  limits.cpu 0\n  cash requests.nvidia.com/gpu 0h per week\n"
    fixed = E104.replace("group child in root {\n", "group child in root {\n" + declared)
    assert findings(fixed) == []


def test_e104_not_for_a_key_that_is_already_e111() -> None:
    d = only("group root {\n  limits.nvidia.com/gpu 4\n}\ngroup child in root {}\n")
    # Renaming the parent's key fixes it; asking the child to copy it would repeat the mistake.
    assert (d.code, str(d.span)) == ("E111", "p.quota:2:3")


E105 = """\
group root {
  limits.cpu 2000
}
group ai-lab in root {
  limits.cpu 800
}
group platform in root {
  limits.cpu 1300
}
"""


def test_e105_full_message_at_the_parent_limit() -> None:
    d = only(E105)
    assert (d.code, str(d.span)) == ("E105", "p.quota:2:3")
    # 800 + 1300 = 2100 > 2000. Quantities print in Kubernetes' canonical form, where the
    # largest exponent that loses nothing wins: 2000 is `2k`; 2100, 800 and 1300 have none.
    assert d.message == "children of root over-allocate limits.cpu: 2100 > 2k (ai-lab 800, platform 1300)"


def test_e105_prints_canonical_quantities() -> None:
    text = """\
group root {
  limits.memory 8Ti
  limits.cpu.A4 1
}
group a in root {
  limits.memory 4096Gi
  limits.cpu.A4 0.5
}
group b in root {
  limits.memory 4608Gi
  limits.cpu.A4 600m
}
"""
    found = [d for d in findings(text) if d.code == "E105"]
    # 4096Gi is 4Ti; 4608Gi is 4.5Ti (no whole Ti), so it stays Gi; 4096 + 4608 = 8704Gi > 8192Gi.
    # 0.5 cpu is 500m; 500m + 600m = 1100m > 1.
    assert where(found) == [("E105", "p.quota:2:3"), ("E105", "p.quota:3:3")]
    assert found[0].message == "children of root over-allocate limits.memory: 8704Gi > 8Ti (a 4Ti, b 4608Gi)"
    assert found[1].message == "children of root over-allocate limits.cpu.A4: 1100m > 1 (a 500m, b 600m)"


def test_e105_only_the_middle_level_of_three_over_carves() -> None:
    text = """\
group root {
  limits.cpu 100
}
group mid in root {
  limits.cpu 60
}
group leaf1 in mid {
  limits.cpu 40
}
group leaf2 in mid {
  limits.cpu 30
}
group sibling in root {
  limits.cpu 40
}
"""
    # root: mid 60 + sibling 40 = 100, exactly full (fine); mid: 40 + 30 = 70 > 60.
    d = only(text)
    assert (d.code, str(d.span)) == ("E105", "p.quota:5:3")
    assert d.message == "children of mid over-allocate limits.cpu: 70 > 60 (leaf1 40, leaf2 30)"


def test_e106_cash_over_allocation_in_hours() -> None:
    text = """\
group root {
  cash requests.nvidia.com/gpu 20000h per week
}
group ai-lab in root {
  cash requests.nvidia.com/gpu 8000h per week
}
group platform in root {
  cash requests.nvidia.com/gpu 12000.5h per week
}
"""
    d = only(text)
    # "  cash " is 7 characters: the key starts at column 8. 8000 + 12000.5 = 20000.5 > 20000.
    assert (d.code, str(d.span)) == ("E106", "p.quota:2:8")
    assert d.message == (
        "children of root over-allocate cash requests.nvidia.com/gpu per week: "
        "20000.5h > 20000h (ai-lab 8000h, platform 12000.5h)"
    )


def test_e106_lifetime_budget_sums_decimals_exactly() -> None:
    text = """\
group root {
  cash limits.cpu 20h
}
group a in root {
  cash limits.cpu 12.50h
}
group b in root {
  cash limits.cpu 7.75h
}
"""
    d = only(text)
    # 12.5 + 7.75 = 20.25 > 20; floats would also get this one right, but 0.1 + 0.2 style sums would not.
    assert (d.code, str(d.span)) == ("E106", "p.quota:2:8")
    assert d.message == "children of root over-allocate cash limits.cpu: 20.25h > 20h (a 12.5h, b 7.75h)"


def test_e106_decimal_sum_equal_to_budget_is_fine() -> None:
    text = """\
group root {
  cash limits.cpu 0.3h
}
group a in root {
  cash limits.cpu 0.1h
}
group b in root {
  cash limits.cpu 0.2h
}
"""
    assert findings(text) == []  # 0.1 + 0.2 == 0.3 exactly (in floats it is 0.30000000000000004)


def test_e107_key_given_twice() -> None:
    text = """\
group root {
  limits.cpu 10
  limits.cpu 20
  cash limits.cpu 5h
  cash limits.cpu 6h per day
}
"""
    found = findings(text)
    assert where(found) == [("E107", "p.quota:3:3"), ("E107", "p.quota:5:3")]
    assert found[0].message == "limits.cpu is given twice in group root (first at p.quota:2:3)"
    assert found[1].message == "cash limits.cpu is given twice in group root (first at p.quota:4:3)"


def test_e108_mode_given_twice() -> None:
    d = only("group root {\n  mode warn\n  mode audit\n}\n")
    assert (d.code, str(d.span)) == ("E108", "p.quota:3:3")
    assert "mode is given twice in group root (first at p.quota:2:3)" in d.message


def test_e109_malformed_quantity() -> None:
    # The grammar takes any exponent; Kubernetes only takes exponents that fit in 32 bits.
    d = only("group root {\n  limits.cpu 1e99999999999\n}\n")
    # "  limits.cpu " is 13 characters: the quantity starts at column 14.
    assert (d.code, str(d.span)) == ("E109", "p.quota:2:14")
    assert d.message.startswith("malformed quantity 1e99999999999 for limits.cpu: ")


MALFORMED = [
    # (value, what the message says is wrong with it)
    ("1.5.5", "1.5.5 has more than one decimal point"),
    ("1e1.5", "'e1.5' is not a unit suffix or exponent"),
    ("12Qi", "'Qi' is not a unit suffix or exponent"),
    ("0x10", "'x10' is not a unit suffix or exponent"),
]


@pytest.mark.parametrize(("value", "reason"), MALFORMED)
@pytest.mark.parametrize("path", ["fast", "lark"])
def test_e109_a_typo_in_a_value_is_reported_at_the_value(
    value: str, reason: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not E001 "unexpected '.5'" after the well-formed prefix: the whole run is the
    # quantity, the same on the parser's line-by-line path and on lark's.
    if path == "lark":
        monkeypatch.setattr(parser, "_fast_items", lambda text, filename: None)
    d = only(f"group root {{\n  limits.cpu {value}\n}}\n")
    # "  limits.cpu " is 13 characters: the quantity starts at column 14 and spans the value.
    assert (d.code, str(d.span), d.span and d.span.end_column) == ("E109", "p.quota:2:14", 14 + len(value))
    assert d.message == f"malformed quantity {value} for limits.cpu: {reason}"
    assert d.hint is not None and "500m" in d.hint and "suffix" in d.hint


@pytest.mark.parametrize("path", ["fast", "lark"])
def test_a_negative_value_is_e110_at_the_value(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # `-3` is a well-formed quantity (Kubernetes reads it), so it is not E109: it does
    # not fit a hard limit, which is E110, at the same column on both paths.
    if path == "lark":
        monkeypatch.setattr(parser, "_fast_items", lambda text, filename: None)
    d = only("group root {\n  limits.cpu -3\n}\n")
    assert (d.code, str(d.span), d.message) == ("E110", "p.quota:2:14", "limits.cpu -3 is negative")


def test_e109_does_not_hide_other_findings() -> None:
    # A syntax error stops at the first one; E109 is a finding among the rest.
    text = "group root {\n  limits.cpu 1.5.5\n  limits.cpu 2\n}\ngroup a in nowhere {\n}\n"
    assert where(findings(text)) == [("E109", "p.quota:2:14"), ("E107", "p.quota:3:3"), ("E102", "p.quota:5:12")]


def test_e109_skips_carving_with_an_unknown_value() -> None:
    text = "group root {\n  limits.cpu 10\n}\ngroup a in root {\n  limits.cpu 1e99999999999\n}\n"
    # The sum is unknown, so no E105 is guessed at; only the malformed value is reported.
    assert where(findings(text)) == [("E109", "p.quota:5:14")]


@pytest.mark.parametrize(
    ("line", "column", "text"),
    [
        # "  limits.cpu " is 13 characters: the quantity starts at column 14.
        ("  limits.cpu -1", 14, "limits.cpu -1 is negative"),
        # "  requests.nvidia.com/gpu " is 2 + 23 + 1 = 26 characters.
        ("  requests.nvidia.com/gpu 1.5", 27, "requests.nvidia.com/gpu 1.5 is not a whole number"),
        ("  pods 500m", 8, "pods 500m is not a whole number"),
        ("  count/pods 2.5", 14, "count/pods 2.5 is not a whole number"),
        ("  requests.nvidia.com/gpu.A100 0.5", 32, "requests.nvidia.com/gpu.A100 0.5 is not a whole number"),
        ("  limits.memory -1Gi", 17, "limits.memory -1Gi is negative"),
    ],
)
def test_e110_quantity_does_not_fit(line: str, column: int, text: str) -> None:
    settings = 'settings {\n  model label gpu "g"\n}\n'
    d = only(f"{settings}group root {{\n{line}\n}}\n")
    assert (d.code, str(d.span)) == ("E110", f"p.quota:5:{column}")
    assert text in d.message


def test_e110_whole_values_in_other_units_are_fine() -> None:
    assert (
        findings(
            "group root {\n  count/pods 1000m\n  pods 1k\n  requests.nvidia.com/gpu 2e1\n}\n"
        )
        == []
    )


def test_e111_limits_of_an_extended_resource() -> None:
    d = only("group root {\n  limits.nvidia.com/gpu 4\n}\n")
    assert (d.code, str(d.span)) == ("E111", "p.quota:2:3")
    assert "extended resources have no limits. form" in d.message
    assert d.hint is not None and "use `requests.nvidia.com/gpu`" in d.hint


def test_e111_on_a_cash_key() -> None:
    d = only("group root {\n  cash limits.nvidia.com/gpu 10h\n}\n")
    assert (d.code, str(d.span)) == ("E111", "p.quota:2:8")


def test_e112_cash_period_differs_from_the_parent() -> None:
    text = """\
group root {
  cash requests.nvidia.com/gpu 100h per week
}
group a in root {
  cash requests.nvidia.com/gpu 500h per day
}
group b in root {
  cash requests.nvidia.com/gpu 50h
}
"""
    found = findings(text)
    # Different periods are not summed: no E106 although 500 + 50 > 100.
    assert where(found) == [("E112", "p.quota:5:3"), ("E112", "p.quota:8:3")]
    assert found[0].message == (
        "cash requests.nvidia.com/gpu of group a is per day, but its parent root's is per week"
    )
    assert found[1].message.endswith("group b is lifetime, but its parent root's is per week")
    assert found[0].hint is not None and found[0].hint.startswith("write `per week`")


# ------------------------------------------------------------------ keys and units (warnings)
def test_w101_model_limit_larger_than_generic() -> None:
    text = """\
settings {
  model label cpu "c"
  model label gpu "g"
}
group root {
  limits.cpu 300
  limits.cpu.A4 400
  requests.nvidia.com/gpu 8
  requests.nvidia.com/gpu.A100 9
  requests.nvidia.com/gpu.H100 8
  cash requests.nvidia.com/gpu 10h per week
  cash requests.nvidia.com/gpu.A100 12h per week
  cash requests.nvidia.com/gpu.H100 12h per day
}
"""
    found = findings(text)
    # H100 8 equals the generic 8 (fine); the H100 cash is per day, so not comparable.
    assert where(found) == [("W101", "p.quota:7:3"), ("W101", "p.quota:9:3"), ("W101", "p.quota:12:8")]
    assert found[0].message.startswith("limits.cpu.A4 400 is larger than limits.cpu 300 in group root")
    assert found[1].message.startswith(
        "requests.nvidia.com/gpu.A100 9 is larger than requests.nvidia.com/gpu 8 in group root"
    )
    assert found[2].message.startswith(
        "cash requests.nvidia.com/gpu.A100 12h is larger than requests.nvidia.com/gpu 10h"
    )
    assert all(d.severity == "warning" for d in found)


def test_e113_unknown_resource_name_with_suggestion() -> None:
    """Issue 26 #4: an unknown name was a warning (W102), so a typo passed CI with exit 0."""
    d = only("group root {\n  limit.cpu 10\n}\n")
    assert (d.code, str(d.span), d.severity) == ("E113", "p.quota:2:3", "error")
    assert d.message == "unknown resource name limit.cpu"
    assert d.hint == "did you mean `limits.cpu`?"


@pytest.mark.parametrize(
    ("line", "column", "text"),
    [
        ("  limits.cpu 2Gi", 14, "limits.cpu 2Gi has a binary (byte) suffix"),
        ("  cpu 1Ki", 7, "cpu 1Ki has a binary (byte) suffix"),
        # "  limits.memory " is 16 characters.
        ("  limits.memory 500m", 17, "limits.memory 500m is a fraction of a byte"),
        ("  requests.memory 0.5", 19, "requests.memory 0.5 is a fraction of a byte"),
        ("  limits.ephemeral-storage 10u", 28, "limits.ephemeral-storage 10u"),
        ("  hugepages-2Mi 1.5", 17, "hugepages-2Mi 1.5 is a fraction of a byte"),
    ],
)
def test_w103_unit_looks_wrong(line: str, column: int, text: str) -> None:
    d = only(f"group root {{\n{line}\n}}\n")
    assert (d.code, str(d.span)) == ("W103", f"p.quota:2:{column}")
    assert text in d.message


def test_w103_plausible_units_are_fine() -> None:
    text = "group root {\n  limits.cpu 500m\n  requests.cpu 1.5\n  memory 1.5Gi\n  limits.memory 512M\n}\n"
    assert findings(text) == []


def test_w104_model_key_without_model_label() -> None:
    text = """\
settings {
  model label gpu "g"
}
group root {
  limits.cpu.A4 10
  requests.nvidia.com/gpu.A100 8
  requests.memory.M1 1Gi
  pods.A4 5
}
"""
    found = findings(text)
    assert where(found) == [("W104", "p.quota:5:3"), ("W104", "p.quota:7:3"), ("W104", "p.quota:8:3")]
    assert "limits.cpu.A4 is a cpu model key, but settings declare no `model label cpu`" in found[0].message
    assert "`model label memory`" in found[1].message
    assert "models apply only to cpu, memory and gpu keys" in found[2].message


def test_w104_gpu_resources_come_from_settings() -> None:
    text = """\
settings {
  gpu resource "example.com/tpu"
}
group root {
  requests.example.com/tpu.V5 4
  requests.nvidia.com/gpu.A100 8
}
"""
    found = findings(text)
    # Once settings list the gpu resources, nvidia.com/gpu is not one of them:
    # `nvidia.com/gpu.A100` is then just an extended resource name, not a model key.
    assert where(found) == [("W104", "p.quota:5:3")]
    assert "requests.example.com/tpu.V5 is a gpu model key" in found[0].message


# ------------------------------------------------------------------ settings
def test_e201_setting_given_twice() -> None:
    text = """\
settings {
  warn at 80%
  model label cpu "a"
  model label gpu "b"
  gpu resource "x.com/g"
  gpu resource "y.com/g"
  gpu resource "x.com/g"
  model label cpu "c"
}
"""
    found = findings(text)
    assert where(found) == [("E201", "p.quota:7:3"), ("E201", "p.quota:8:3")]
    assert found[0].message == '`gpu resource "x.com/g"` is set twice (first at p.quota:5:3)'
    assert found[1].message == "`model label cpu` is set twice (first at p.quota:3:3)"


def test_e201_across_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = load_dir(
        tmp_path,
        monkeypatch,
        {
            "a.quota": 'settings {\n  group label "x"\n  warn at 80%\n}\n',
            "b.quota": "settings {\n  warn at 70%\n}\nsettings {\n  unlabelled deny\n  unlabelled allow\n}\n",
        },
    )
    assert where(found) == [("E201", "b.quota:2:3"), ("E201", "b.quota:6:3")]
    assert found[0].message == "`warn at` is set twice (first at a.quota:3:3)"
    assert found[1].message == "`unlabelled` is set twice (first at b.quota:5:3)"


def test_e202_unlabelled_group_must_exist() -> None:
    d = only("settings {\n  unlabelled group dflt\n}\ngroup default {}\n")
    assert (d.code, str(d.span)) == ("E202", "p.quota:2:3")
    assert d.message == "`unlabelled group dflt` names no group"
    assert d.hint == "did you mean `default`?"


@pytest.mark.parametrize(
    ("percent", "bad"), [("0", True), ("100.5", True), ("250", True), ("100", False), ("0.5", False)]
)
def test_e203_warn_at_range(percent: str, bad: bool) -> None:
    found = findings(f"settings {{\n  warn at {percent}%\n}}\n")
    if not bad:
        assert found == []
        return
    assert where(found) == [("E203", "p.quota:2:3")]
    assert found[0].message == f"`warn at {percent}%` is outside (0, 100]%"


# ------------------------------------------------------------------ kind rules
DEPLOYMENT = "kind apps/v1 Deployment {\n  pods {\n    template spec.template\n  }\n}\n"


def test_e301_duplicate_kind_rule_across_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = load_dir(tmp_path, monkeypatch, {"a.quota": DEPLOYMENT, "b.quota": "# again\n" + DEPLOYMENT})
    assert where(found) == [("E301", "b.quota:2:1")]
    assert found[0].message == "kind rule apps/v1 Deployment is declared twice (first at a.quota:1:1)"


def test_e301_same_kind_other_version_is_fine() -> None:
    assert findings(DEPLOYMENT + DEPLOYMENT.replace("apps/v1", "apps/v2")) == []


def test_e302_part_without_template() -> None:
    text = 'kind example.com/v1 Thing {\n  pods "workers" {\n    replicas spec.replicas\n  }\n}\n'
    d = only(text)
    assert (d.code, str(d.span)) == ("E302", "p.quota:2:3")
    assert d.message == 'part "workers" of kind rule example.com/v1 Thing has no template'


def test_e302_unnamed_part() -> None:
    d = only("kind v1 Pod {\n  pods {\n    replicas 1\n  }\n}\n")
    assert (d.code, str(d.span)) == ("E302", "p.quota:2:3")
    assert d.message == "a part of kind rule v1 Pod has no template"


def test_e303_scale_path_must_be_a_replicas_path() -> None:
    text = """\
kind apps/v1 Deployment {
  pods {
    replicas spec.replicas default 1
    template spec.template
  }
  scale spec.size
}
"""
    d = only(text)
    # "  scale " is 8 characters.
    assert (d.code, str(d.span)) == ("E303", "p.quota:6:9")
    assert "scale path spec.size is not a replicas path" in d.message
    assert d.hint == "name one of the replicas paths: spec.replicas"


def test_e303_finds_paths_inside_expressions() -> None:
    text = """\
kind example.com/v1 Group {
  pods {
    replicas 2 * (spec.size default 1 - 1)
    template spec.template
  }
  scale spec.size
}
"""
    assert findings(text) == []


def test_e304_wildcard_outside_each() -> None:
    text = """\
kind example.com/v1 Thing {
  pods each spec.roles.* {
    replicas .replicas
    template .template
  }
  pods {
    replicas spec.groups.*.size
    template spec.x.*.template
  }
  surge spec.*.maxSurge
}
"""
    found = findings(text)
    # "    replicas " is 13 characters, "    template " 13, "  surge " 8; the `each` path is fine.
    assert where(found) == [("E304", "p.quota:7:14"), ("E304", "p.quota:8:14"), ("E304", "p.quota:10:9")]
    assert found[0].message == "`*` in spec.groups.*.size: only a part's `each` path may iterate"


def test_e305_scale_or_surge_given_twice() -> None:
    text = """\
kind apps/v1 Deployment {
  pods {
    replicas spec.replicas
    template spec.template
  }
  scale spec.replicas
  scale spec.replicas
  surge spec.strategy.rollingUpdate.maxSurge default 25%
  surge spec.strategy.rollingUpdate.maxSurge default 25%
}
"""
    found = findings(text)
    # The parser keeps the path span of each `scale` (column 9) and the statement span of each `surge`.
    assert where(found) == [("E305", "p.quota:7:9"), ("E305", "p.quota:9:3")]
    assert found[0].message == "`scale` is given twice in kind rule apps/v1 Deployment (first at p.quota:6:9)"
    assert found[1].message.startswith("`surge` is given twice")


def test_e305_replicas_given_twice_in_a_part() -> None:
    text = """\
kind apps/v1 Deployment {
  pods {
    replicas spec.replicas
    template spec.template
    replicas 2
  }
}
"""
    d = only(text)
    # The parser keeps the span of the repeated replicas expression: "    replicas " is 13 characters.
    assert (d.code, str(d.span)) == ("E305", "p.quota:5:14")
    assert (
        d.message
        == "`replicas` is given twice in a part of kind rule apps/v1 Deployment (first at p.quota:3:14)"
    )


def test_e306_kind_rule_without_parts() -> None:
    d = only("\nkind example.com/v1 Empty {}\n")
    assert (d.code, str(d.span)) == ("E306", "p.quota:2:1")
    assert d.message == "kind rule example.com/v1 Empty has no parts"


# ------------------------------------------------------------------ the result as a whole
def test_findings_are_sorted_by_file_line_column_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = load_dir(
        tmp_path,
        monkeypatch,
        {
            "b.quota": "group x in nowhere {\n  limit.cpu -1\n}\n",
            "a.quota": "kind v1 Pod {}\ngroup x {}\n",
        },
    )
    # a.quota: E306 at 1:1; b.quota: E101 at 1:7, E102 at 1:12, E113 at 2:3, E110 at 2:13.
    assert where(found) == [
        ("E306", "a.quota:1:1"),
        ("E101", "b.quota:1:7"),
        ("E102", "b.quota:1:12"),
        ("E113", "b.quota:2:3"),
        ("E110", "b.quota:2:13"),
    ]


def test_every_checker_code_is_in_the_code_table() -> None:
    from quotalang.errors import CODES

    tested = {
        *(f"E10{n}" for n in range(1, 10)),
        "E110",
        "E111",
        "E112",
        "W101",
        "W103",
        "W104",
        *(f"E20{n}" for n in range(1, 5)),
        "E113",
        "E114",
        "E115",
        "W301",
        "W302",
        *(f"E30{n}" for n in range(1, 9)),
    }
    assert tested <= set(CODES)


def test_e307_a_kind_that_creates_its_own_kind() -> None:
    d = only("kind apps/v1 Deployment {\n  creates apps/v2 Deployment\n  pods {\n    template spec.template\n  }\n}\n")
    assert (d.code, str(d.span)) == ("E307", "p.quota:2:11")
    assert "creates Deployment, its own kind" in d.message


def test_e307_creating_through_itself() -> None:
    d = only("kind v1 Pod {\n  creates apps/v1 StatefulSet via v1 Pod\n  pods {\n    template .\n  }\n}\n")
    assert d.code == "E307"


def test_e308_function_arity() -> None:
    found = findings(
        "kind v1 K {\n  pods {\n    replicas clamp(.a, 1) + min(.b) + max(.c, 1)\n    template .t\n  }\n}\n"
    )
    assert where(found) == [("E308", "p.quota:3:14"), ("E308", "p.quota:3:29")]
    assert found[0].message == "clamp() takes 3 (value, lower bound, upper bound) arguments, given 2"
    assert found[1].message == "min() takes at least 2 arguments, given 1"


def test_scale_may_name_a_path_inside_a_function() -> None:
    assert findings(
        "kind v1 K {\n  pods {\n    replicas max(spec.replicas default 1, 2)\n    template .t\n  }\n"
        "  scale spec.replicas\n}\n"
    ) == []


def test_e113_the_issues_typo_and_a_name_without_its_domain() -> None:
    d = only("group root {\n  requets.ephemeral-storage 100Gi\n}\n")
    assert (d.code, d.hint) == ("E113", "did you mean `requests.ephemeral-storage`?")
    d = only("group root {\n  requests.fpga 2\n}\n")
    assert d.code == "E113" and "requests.example.com/NAME" in d.hint
    assert findings("group root {\n  requests.example.com/fpga 2\n}\n") == []  # a deliberate extended resource


@pytest.mark.parametrize("key", ["count/pytorchjobs.kubeflow.org", "count/foo", "count/deployments.apps"])
def test_e114_object_counts_nothing_charges(key: str) -> None:
    d = only(f"group root {{\n  {key} 10\n}}\n")
    assert (d.code, str(d.span)) == ("E114", "p.quota:2:3")
    assert f"nothing charges {key}" in d.message


@pytest.mark.parametrize(
    ("label", "problem"),
    [
        ("acme team/x/y", "more than one '/'"),
        ("acme team", "the name 'acme team' must be"),
        ("Acme.io/team", "the prefix 'Acme.io' is not a DNS subdomain"),
        ("/team", "the prefix before '/' is empty"),
        ("acme.io/", "the name is empty"),
        ("acme.io/" + "x" * 64, "64 characters long"),
        ("acme.io/-team", "starting and ending alphanumeric"),
    ],
)
def test_e204_invalid_label_keys(label: str, problem: str) -> None:
    for setting in (f'group label "{label}"', f'model label gpu "{label}"'):
        d = only(f"settings {{\n  {setting}\n}}\n")
        assert (d.code, str(d.span)) == ("E204", "p.quota:2:3")
        assert problem in d.message


def test_valid_label_keys_pass() -> None:
    for label in ("team", "acme.io/team", "a-b.c/x_y.z-1", "biz.group.resource.quota/cpu-type"):
        assert findings(f'settings {{\n  group label "{label}"\n}}\n') == []


def test_w301_a_policy_without_kind_rules_warns() -> None:
    found = check(load_text("group root {\n  pods 10\n}\n", "p.quota"))
    assert [(d.code, str(d.span), d.severity) for d in found] == [("W301", "p.quota:1:7", "warning")]
    assert 'import "quotalang:policies"' in found[0].hint
    with_rules = 'import "quotalang:policies"\ngroup root {\n  namespaces "ops"\n  pods 10\n}\n'  # W401 without
    assert check(load_text(with_rules, "p.quota")) == []


def test_a_cycle_is_reported_alone() -> None:
    """Issue 26 #4: a cycle cascaded into E105/E106 errors about carving that has no root."""
    text = (
        "group a in c {\n  requests.cpu 10\n  cash requests.cpu 10h per day\n}\n"
        "group b in a {\n  requests.cpu 20\n  cash requests.cpu 20h per day\n}\n"
        "group c in b {\n  requests.cpu 30\n  cash requests.cpu 30h per week\n}\n"
        "group d in c {\n}\n"
    )
    assert where(findings(text)) == [("E103", "p.quota:1:7")]


DECLARED = (
    'settings {\n  node label gpu "nvidia.com/gpu.product"\n  model gpu A100 "NVIDIA-A100-SXM4-80GB"\n'
    '  model gpu T4 "Tesla-T4"\n}\n'
)


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("requests.nvidia.com/gpu.T04", "did you mean `requests.nvidia.com/gpu.T4`?"),
        ("requests.nvidia.com/gpu.a100", "did you mean `requests.nvidia.com/gpu.A100`?"),  # matching is exact
        ("requests.nvidia.com/gpu.H100", "declare `model gpu H100 ...`"),
    ],
)
def test_e115_a_model_key_naming_an_undeclared_model(key: str, hint: str) -> None:
    """Issue 26 #4: `requests.nvidia.com/gpu.T04` was silent, and never charged."""
    d = only(f"{DECLARED}group root {{\n  requests.nvidia.com/gpu 8\n  {key} 4\n}}\n")
    assert (d.code, str(d.span), d.hint) == ("E115", "p.quota:8:3", hint)
    assert d.message == f"{key} names model {key.rsplit('.', 1)[1]}, which is not a declared gpu model (A100, T4)"


def test_declared_models_and_undeclared_kinds_pass() -> None:
    # cpu models are not declared: a cpu model key is left to W104's rules (a model label is set here)
    text = (DECLARED.replace("}\n", '  model label cpu "c"\n}\n', 1)
            + "group root {\n  requests.nvidia.com/gpu.A100 4\n  requests.nvidia.com/gpu.T4 4\n  limits.cpu.X9 4\n}\n")
    assert findings(text) == []


def test_docs_language_lists_every_code() -> None:
    """docs/language.md's code table names each code of errors.CODES, and no other (issue 26 item 5)."""
    import re

    from quotalang.errors import CODES

    doc = (Path(__file__).resolve().parents[2] / "docs" / "language.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| ([EW]\d{3})\b", doc, re.M))
    for first, last in re.findall(r"^\| E(\d{3})–E(\d{3})", doc, re.M):
        listed |= {f"E{n:03d}" for n in range(int(first), int(last) + 1)}
    for pair in re.findall(r"^\| (E\d{3}) / (E\d{3})", doc, re.M):
        listed |= set(pair)
    assert listed == set(CODES)


def test_w302_a_kind_rule_without_creates() -> None:
    """After issue 25 #1 a rule without `creates` exempts nothing: its operator's pods are charged again."""
    rule = "kind example.com/v1 Trainer {\n  pods {\n    template spec.template\n  }\n}\n"
    found = [(d.code, str(d.span)) for d in check(load_text(rule, "p.quota"))]
    assert found == [("W302", "p.quota:1:1")]
    assert check(load_text(rule.replace("{\n  pods", "{\n  creates v1 Pod\n  pods", 1), "p.quota")) == []
    pod = "kind v1 Pod {\n  pods {\n    template .\n  }\n}\n"  # a Pod creates nothing
    assert check(load_text(pod, "p.quota")) == []

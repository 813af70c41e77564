"""The parser: node shapes, spans, and syntax errors that point at the problem."""

from __future__ import annotations

import pytest

from quotalang import nodes
from quotalang.errors import PolicyError
from quotalang.parser import parse

POLICY = """\
import "kinds.quota"

settings {
  group label "biz/group"
  model label gpu "biz/gpu-type"
  gpu resource "example.com/tpu"
  unlabelled group default
  warn at 85%
}

group root {
  limits.cpu 100
  requests.nvidia.com/gpu.A100 8   # model key
  cash requests.nvidia.com/gpu 1000h per week
  cash limits.cpu 12.5h
  mode warn
}

group default in root {}

kind kubeflow.org/v1 TFJob {
  pods each spec.tfReplicaSpecs.* {
    replicas .replicas default 1
    template .template
  }
}

kind leaderworkerset.x-k8s.io/v1 LeaderWorkerSet {
  pods "workers" {
    replicas spec.replicas default 1 * (spec.leaderWorkerTemplate.size default 1 - 1)
    template spec.leaderWorkerTemplate.workerTemplate or spec.x
  }
  scale spec.replicas
  surge spec.a."b.c" default 25%
}
"""


def test_parses_every_construct() -> None:
    pf = parse(POLICY, "p.quota")
    assert [i.target for i in pf.imports] == ["kinds.quota"]
    entries = pf.settings[0].entries
    assert entries[0] == nodes.GroupLabel("biz/group", entries[0].span)
    assert isinstance(entries[1], nodes.ModelLabel) and entries[1].model_kind == "gpu"
    assert isinstance(entries[2], nodes.GpuResource) and entries[2].resource == "example.com/tpu"
    assert isinstance(entries[3], nodes.Unlabelled) and (entries[3].action, entries[3].group) == ("group", "default")
    assert isinstance(entries[4], nodes.WarnAt) and entries[4].percent == "85"

    root, default = pf.groups
    assert (root.name, root.parent, default.parent) == ("root", None, "root")
    limit, model, cash, lifetime, mode = root.body
    assert isinstance(limit, nodes.Limit) and (limit.key, limit.quantity) == ("limits.cpu", "100")
    assert isinstance(model, nodes.Limit) and model.key == "requests.nvidia.com/gpu.A100"
    assert isinstance(cash, nodes.Cash) and (cash.key, cash.hours, cash.period) == (
        "requests.nvidia.com/gpu", "1000", "week")
    assert isinstance(lifetime, nodes.Cash) and (lifetime.hours, lifetime.period) == ("12.5", None)
    assert isinstance(mode, nodes.ModeStmt) and mode.mode == "warn"
    assert default.body == ()


def test_spans_are_one_based_and_exact() -> None:
    pf = parse(POLICY, "p.quota")
    root = pf.groups[0]
    assert str(root.name_span) == "p.quota:11:7"
    limit = root.body[0]
    assert isinstance(limit, nodes.Limit)
    assert str(limit.key_span) == "p.quota:12:3"
    assert str(limit.quantity_span) == "p.quota:12:14"
    assert str(pf.groups[1].parent_span) == "p.quota:19:18"


def test_kind_rules_paths_and_expressions() -> None:
    pf = parse(POLICY, "p.quota")
    tf, lws = pf.kinds
    assert (tf.api_version, tf.kind, tf.group) == ("kubeflow.org/v1", "TFJob", "kubeflow.org")
    part = tf.parts[0]
    assert part.each is not None and part.each.segments == ("spec", "tfReplicaSpecs", "*")
    assert isinstance(part.replicas, nodes.PathRef)
    assert part.replicas.path.relative and part.replicas.path.segments == ("replicas",)
    assert part.replicas.default == 1
    workers = lws.parts[0]
    assert workers.name == "workers"
    expr = workers.replicas
    assert isinstance(expr, nodes.BinOp) and expr.op == "*"
    assert isinstance(expr.right, nodes.BinOp) and expr.right.op == "-"
    assert [t.text for t in workers.templates] == ["spec.leaderWorkerTemplate.workerTemplate", "spec.x"]
    assert lws.scale is not None and lws.scale.segments == ("spec", "replicas")
    assert lws.surge is not None and lws.surge.default == "25%"
    assert lws.surge.path.segments == ("spec", "a", "b.c")


def test_comments_are_collected_but_not_inside_strings() -> None:
    pf = parse('settings {\n  group label "a#b"  # real\n}\n# end\n', "c.quota")
    assert [(c.text, str(c.span)) for c in pf.comments] == [("# real", "c.quota:2:22"), ("# end", "c.quota:4:1")]


def test_group_named_like_a_keyword_still_parses() -> None:
    pf = parse("group default {}\ngroup warn in default {}\n", "k.quota")
    assert [g.name for g in pf.groups] == ["default", "warn"]


@pytest.mark.parametrize(
    ("text", "code", "where", "in_hint"),
    [
        ("group a {\n  limits.cpu 1 2\n}\n", "E001", "e.quota:2:16", "new line"),
        ("group a {\n  limits.cpu 1\n", "E003", "e.quota:2:15", "'}'"),
        ("group a { $ }\n", "E002", "e.quota:1:11", "'}'"),
        ("group A {}\n", "E001", "e.quota:1:7", "group name"),
        ("kind apps/v1 Deployment {\n  pods {\n    replicas spec.x default\n  }\n}\n", "E001", "e.quota:3:28",
         "integer"),
        ("settings {\n  warn at 90\n}\n", "E001", "e.quota:2:11", "percentage"),
        ("group a {\n  cash limits.cpu 10 per week\n}\n", "E001", "e.quota:2:19", "hours"),
    ],
)
def test_syntax_errors_name_file_line_col(text: str, code: str, where: str, in_hint: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse(text, "e.quota")
    (diag,) = info.value.diagnostics
    assert diag.code == code
    assert str(diag.span) == where
    assert diag.hint is not None and in_hint in diag.hint
    rendered = info.value.render()
    assert rendered.startswith(f"{where}: error {code}")
    assert "^" in rendered


def _errors(text: str) -> list[tuple[str, str, str]]:
    with pytest.raises(PolicyError) as info:
        parse(text, "e.quota")
    return [(d.code, str(d.span), d.message) for d in info.value.diagnostics]


def test_every_syntax_error_of_a_file_is_reported() -> None:
    """Issue 26 #4: only the first syntax error per file was reported; now each statement's, in order."""
    text = (
        "group a {\n  limits.cpu 1 2\n  pods 3\n}\n"  # 2:16
        "group B {\n  pods 1\n}\n"  # 5:7: the whole block is skipped
        "kind v1 Pod {\n  pods {\n    replicas 1 +\n    template .\n  }\n}\n"  # 10:17
        "group c {\n  cash limits.cpu 10 per week\n}\n"  # 15:19
    )
    assert [(code, where) for code, where, _ in _errors(text)] == [
        ("E001", "e.quota:2:16"), ("E001", "e.quota:5:7"), ("E001", "e.quota:10:17"), ("E001", "e.quota:15:19"),
    ]


def test_recovery_stops_at_a_missing_closing_brace() -> None:
    assert [(c, w) for c, w, _ in _errors("group a {\n  pods 1 1\n  pods 2\n")] == [
        ("E001", "e.quota:2:10"), ("E003", "e.quota:3:9"),
    ]


@pytest.mark.parametrize(
    ("text", "where", "message", "hint"),
    [
        ("group a {\n  mdoe warn\n}\n", "e.quota:2:3", "unknown statement `mdoe`", "did you mean `mode`?"),
        ("grop a {\n  pods 1\n}\n", "e.quota:1:1", "unknown statement `grop`", "did you mean `group`?"),
        ("group a {\n  mode warning\n}\n", "e.quota:2:8", "`mode warning`: mode takes enforce, warn, audit",
         "did you mean `mode warn`?"),
        ("group a {\n  cash requests.cpu 1h per wek\n}\n", "e.quota:2:28", "`per wek`: per takes day, week, month",
         "did you mean `per week`?"),
        ("settings {\n  unlabelled alow\n}\n", "e.quota:2:14", "`unlabelled alow`: unlabelled takes allow, deny, group",
         "did you mean `unlabelled allow`?"),
    ],
)
def test_misspelt_keywords_get_did_you_mean(text: str, where: str, message: str, hint: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse(text, "e.quota")
    (diag,) = info.value.diagnostics
    assert (diag.code, str(diag.span), diag.message, diag.hint) == ("E001", where, message, hint)


def test_recovery_in_a_large_file_is_bounded() -> None:
    """Each error reads the file again: a large broken file reports fewer (a reload stays quick)."""
    text = "group a {\n  pods 1 2\n}\n" * 8000  # 23 × 8,000 = 184,000 characters, an error in every group
    assert len(text) == 184_000
    with pytest.raises(PolicyError) as info:
        parse(text, "e.quota")
    assert len(info.value.diagnostics) == 4_000_000 // 184_000 == 21

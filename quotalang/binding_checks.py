"""Checks of namespace bindings and declared models (E401–E404, W401), part of stage 2.

Their own module so that the checker's group and kind rules and these evolve
apart; `checker.check` calls `check` and sorts everything together. Each
rule guards what the compiler or evaluator relies on: a pattern parses, a
namespace has at most one default group, a node label value means one model.

Decisions where the issue is silent:

- Two `default namespaces` patterns of different groups conflict when some
  namespace matches both (`team-*` and `team-a`, or `a-*` and `a-b-*`): the
  reader of a policy should never need a precedence rule to know where an
  unlabelled workload goes. Patterns naming different clusters never conflict.
- A policy with groups and kind rules and no binding warns once (W401), at
  its first group. Without kind rules nothing is charged at all: W301 says so,
  and W401 would be noise.
"""

from __future__ import annotations

from collections.abc import Iterator

from quotalang import nodes
from quotalang.bindings import Pattern, parse_pattern
from quotalang.errors import Diagnostic


def check(files: tuple[nodes.PolicyFile, ...]) -> list[Diagnostic]:
    groups = [g for f in files for g in f.groups]
    settings = [e for f in files for block in f.settings for e in block.entries]
    charges = any(f.kinds for f in files)
    return [*_patterns(groups, charges), *_models(settings)]


def _patterns(groups: list[nodes.Group], charges: bool) -> Iterator[Diagnostic]:
    """E401, E402, W401."""
    bound = False
    defaults: list[tuple[Pattern, str, nodes.Span]] = []
    for group in groups:
        for stmt in group.body:
            if not isinstance(stmt, nodes.Namespaces):
                continue
            bound = True
            for text, span in zip(stmt.patterns, stmt.pattern_spans, strict=True):
                pattern = parse_pattern(text)
                if pattern is None:
                    yield Diagnostic(
                        "E401",
                        f'"{text}" is not a namespace pattern',
                        span,
                        'give a namespace name ("nlp"), a prefix glob ("nlp-*", "*"), '
                        'optionally after a cluster ("eu-1/nlp-*")',
                    )
                    continue
                if not stmt.default:
                    continue
                for other, owner, where in defaults:
                    if owner != group.name and pattern.overlaps(other):
                        yield Diagnostic(
                            "E402",
                            f'"{text}" makes {group.name} a default group where "{other.text}" '
                            f"already makes {owner} one (at {where})",
                            span,
                            "a namespace has one default group: narrow one of the patterns, or drop `default`",
                        )
                        break
                defaults.append((pattern, group.name, span))
    if groups and charges and not bound:
        yield Diagnostic(
            "W401",
            "no group binds a namespace: a workload in any namespace may charge any group it names",
            groups[0].name_span,
            'bind each team\'s namespaces to its group: `namespaces "nlp", "nlp-*"`',
        )


def _models(settings: list[nodes.Setting]) -> Iterator[Diagnostic]:
    """E403, E404."""
    meaning: dict[tuple[str, str], tuple[str, nodes.Span]] = {}
    declared = {s.model_kind for s in settings if isinstance(s, nodes.ModelDecl)}
    for setting in settings:
        if isinstance(setting, nodes.NodeLabel) and setting.model_kind not in declared:
            yield Diagnostic(
                "E404",
                f"`node label {setting.model_kind}` is set but no {setting.model_kind} model is declared: "
                f"every workload requesting it would be denied",
                setting.span,
                f'declare the models and their node label values: `model {setting.model_kind} NAME "VALUE"`',
            )
        if not isinstance(setting, nodes.ModelDecl):
            continue
        spans = setting.value_spans or (setting.name_span,)
        for value, span in zip(setting.values or (setting.name,), spans, strict=True):
            first = meaning.setdefault((setting.model_kind, value), (setting.name, span))
            if first[0] != setting.name:
                yield Diagnostic(
                    "E403",
                    f'"{value}" stands for {setting.model_kind} model {first[0]} (at {first[1]}) and {setting.name}',
                    span,
                    "a node label value names one model: keep it in one declaration",
                )


__all__ = ["check"]

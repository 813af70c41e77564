"""Compare a decision with what a case expects, field by field.

A mismatch carries the expected and the actual value as a person would write
them, so a failure reads as a small `- expected / + actual` diff.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from quotalang.decision import Decision
from quotalang.policytest.spec import Expectation, Outcome, Vector
from quotalang.usage import to_quantity


@dataclass(frozen=True, slots=True)
class Mismatch:
    field: str
    expected: str
    actual: str


def outcome(decision: Decision) -> Outcome:
    """What the request amounts to: deny > audit (would have denied) > warn > allow."""
    if not decision.allowed:
        return "deny"
    if decision.audit_annotations:
        return "audit"
    if decision.warnings:
        return "warn"
    return "allow"


def message_text(decision: Decision) -> str:
    """What a user sees: the denial (or would-be denial) message and every warning."""
    return "\n".join(t for t in (decision.message, *decision.warnings) if t)


def violated(decision: Decision) -> tuple[str, ...]:
    return tuple(sorted({v.resource for v in decision.violations}))


def _show(keys: tuple[str, ...]) -> str:
    return "[" + ", ".join(keys) + "]"


def _vector(field: str, expected: Vector, actual: Mapping[str, int], out: list[Mismatch]) -> None:
    for key, want in expected:
        got = actual.get(key, 0)
        if got != want:
            out.append(Mismatch(f"{field}.{key}", str(to_quantity(key, want)), str(to_quantity(key, got))))


def compare(expect: Expectation, decision: Decision, used_after: Mapping[str, Mapping[str, int]]) -> list[Mismatch]:
    """Every way `decision` (and the chain's usage after it) differs from `expect`."""
    out: list[Mismatch] = []
    actual = outcome(decision)
    if actual != expect.decision:
        out.append(Mismatch("decision", expect.decision, actual))
    if expect.resources is not None and violated(decision) != expect.resources:
        out.append(Mismatch("resources", _show(expect.resources), _show(violated(decision))))
    text = message_text(decision)
    shown = repr(text) if text else "(no message)"
    for wanted in expect.contains:
        if wanted not in text:
            out.append(Mismatch("message", f"contains {wanted!r}", shown))
    for pattern in expect.matches:
        if not pattern.search(text):
            out.append(Mismatch("message", f"matches /{pattern.pattern}/", shown))
    if expect.group is not None and decision.group != expect.group:
        out.append(Mismatch("group", expect.group, decision.group or "(none)"))
    _vector("usage", expect.usage, decision.total, out)
    _vector("delta", expect.delta, decision.delta, out)
    for group, keys in expect.used:
        _vector(f"used.{group}", keys, used_after.get(group, {}), out)
    return out

"""One exception hierarchy, and one finding type for every stage of the pipeline.

A `Diagnostic` is a finding with a stable code (`E…` errors, `W…` warnings),
an exact location and a hint; `PolicyError` carries the diagnostics that made
a policy unusable.

Every error quotalang raises on purpose is a `QuotalangError`, and falls on
one side of a line that callers act on:

- `UserInputError`: what someone gave us is wrong (a policy, a workload, a
  usage snapshot, a quantity, a test file, a request body). Tell them, and how
  to fix it: exit 2, an HTTP 400, a denial. Retrying will not help.
- `InternalError`: not the requester's fault (a store or a cluster that
  failed, stored data that cannot be read, a bug). Log it; the webhook
  answers per its failure mode.

The controller and the server subclass these bases for their own errors
(`KubeError`, `LedgerUnavailable`, `NotLeader`, `LedgerFormatError` under
`InternalError`; `BadReview` under `ReviewError`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from quotalang.nodes import Span

Severity = Literal["error", "warning"]

# Every code, with a one-line meaning. Tests and docs read this table.
CODES: dict[str, str] = {
    # reading and parsing
    "E001": "syntax error: unexpected token",
    "E002": "syntax error: unexpected character",
    "E003": "syntax error: unexpected end of file",
    "E004": "import not found",
    "E005": "cannot read policy file",
    "E006": "no policy files found",
    # settings
    "E201": "setting given twice",
    "E202": "unlabelled rule names an unknown group",
    "E203": "warn threshold out of range",
    "E204": "label key is not a valid Kubernetes label key",
    # groups and the tree
    "E101": "duplicate group",
    "E102": "unknown parent group",
    "E103": "cycle in the group tree",
    "E104": "child does not declare a key its parent declares",
    "E105": "children's limits exceed the parent's",
    "E106": "children's cash budgets exceed the parent's",
    "E107": "key given twice in a group",
    "E108": "mode given twice in a group",
    "E109": "malformed quantity",
    "E110": "quantity does not fit the resource",
    "E111": "extended resources have no limits. form",
    "E112": "cash period differs from the parent's",
    "E113": "unknown resource name",
    "E114": "object count that nothing charges",
    "E115": "model key names an undeclared model",
    "E116": "lend larger than the hard limit",
    "E117": "borrow with nothing that could be lent",
    "E118": "cash budgets never lend or borrow",
    "W101": "model limit larger than its generic limit",
    "W103": "unit looks wrong for the resource",
    "W104": "model key but no model label in settings",
    "W105": "a root lends to no one",
    # namespace bindings and models (binding_checks)
    "E401": "malformed namespace pattern",
    "E402": "two groups are the default group of one namespace",
    "E403": "one node label value stands for two models",
    "E404": "node label set but no model of that kind declared",
    "W401": "no group binds a namespace: any namespace may charge any group",
    # kind rules
    "E301": "duplicate kind rule",
    "E302": "part without a template",
    "E303": "scale path is not a replicas path of any part",
    "E304": "wildcard outside an each path",
    "E305": "statement given twice in a kind rule",
    "E306": "kind rule without parts",
    "E307": "kind rule creates its own kind",
    "E308": "wrong number of arguments to min, max or clamp",
    "E309": "suspend path reclaim cannot set",
    "W301": "policy without kind rules",
    "W302": "kind rule without creates",
    "W303": "suspend path that does not look like a boolean switch",
}


@dataclass(frozen=True, slots=True)
class Diagnostic:
    code: str
    message: str
    span: Span | None
    hint: str | None = None

    @property
    def severity(self) -> Severity:
        return "warning" if self.code.startswith("W") else "error"

    def location(self) -> str:
        return str(self.span) if self.span else "<policy>"

    def render(self, sources: dict[str, str] | None = None) -> str:
        """`file:line:col: error E105: message`, the source line, a caret, the hint."""
        head = f"{self.location()}: {self.severity} {self.code}: {self.message}"
        lines = [head]
        text = sources.get(self.span.file) if (sources and self.span) else None
        if self.span and text is not None:
            source_lines = text.splitlines()
            if 0 < self.span.line <= len(source_lines):
                line = source_lines[self.span.line - 1]
                width = 1
                if self.span.end_line == self.span.line:
                    width = max(1, self.span.end_column - self.span.column)
                lines.append(f"  {line}")
                lines.append("  " + " " * (self.span.column - 1) + "^" * width)
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)

    def as_json(self) -> dict[str, object]:
        return {
            "file": self.span.file if self.span else None,
            "line": self.span.line if self.span else None,
            "column": self.span.column if self.span else None,
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
        }


class QuotalangError(Exception):
    """Base of every error quotalang raises on purpose."""


class UserInputError(QuotalangError):
    """Input that cannot be used as given: report it to whoever gave it (never a bug)."""


class InternalError(QuotalangError):
    """A failure that is not the requester's: a store, a cluster, stored data, a bug."""


class PolicyError(UserInputError):
    """A policy that cannot be used: it holds every error found."""

    def __init__(self, diagnostics: Iterable[Diagnostic], sources: dict[str, str] | None = None):
        self.diagnostics = tuple(diagnostics)
        self.sources = dict(sources or {})
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(d.render(self.sources) for d in self.diagnostics)


class InputError(UserInputError):
    """A workload, usage snapshot or other input that cannot be evaluated."""


class QuantityError(UserInputError, ValueError):
    """Text that Kubernetes would not accept as a quantity.

    Also a `ValueError`, as a malformed number is anywhere in Python: callers
    that parse quantities among other values catch them together.
    """


class ReviewError(UserInputError):
    """A request body (an AdmissionReview, an explain request) that cannot be read: an HTTP 400."""

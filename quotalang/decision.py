"""The result of one admission decision, and how it reads to a person.

Messages are built on demand: an allowed request in enforce mode (the common
case) never formats a string.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quotalang.quantity import Quantity
from quotalang.usage import PartUsage, to_quantity

MAX_WARNING = 120


def qty(key: str, nanos: int) -> str:
    return str(to_quantity(key, nanos))


def hours(nanos: int) -> str:
    """Nano-unit-seconds as unit-hours, trimmed: 200h, 12.5h."""
    whole, rest = divmod(nanos, 3600 * 10**9)
    if not rest:
        return f"{whole}h"
    return f"{nanos / (3600 * 10**9):.2f}".rstrip("0").rstrip(".") + "h"


@dataclass(frozen=True, slots=True)
class Violation:
    """A key that does not fit: the numbers a person needs to act."""

    resource: str
    requested: int
    used: int  # the group's own usage plus pending reservations
    carved: int  # Σ children hard
    hard: int
    detail: str  # "2 × Worker 4"
    cash_period: str | None = None  # set for cash violations ("week", "lifetime")

    @property
    def free(self) -> int:
        return max(self.hard - self.carved - self.used, 0)

    def describe(self) -> str:
        if self.cash_period is not None:
            return (
                f"cash {self.resource} per {self.cash_period} spent: "
                f"used {hours(self.used)} of {hours(self.hard)}"
            )
        k = self.resource
        taken = self.used + self.carved
        carved = f" ({qty(k, self.carved)} carved for children)" if self.carved else ""
        detail = f" ({self.detail})" if self.detail else ""
        return (
            f"{k}: requested {qty(k, self.requested)}{detail}, "
            f"used {qty(k, taken)} of {qty(k, self.hard)}{carved}, {qty(k, self.free)} free"
        )

    def as_json(self) -> dict[str, Any]:
        if self.cash_period is not None:
            return {
                "resource": self.resource,
                "cash": True,
                "period": self.cash_period,
                "requested": qty(self.resource, self.requested),
                "used": hours(self.used),
                "hard": hours(self.hard),
                "free": hours(max(self.hard - self.used, 0)),
            }
        return {
            "resource": self.resource,
            "requested": qty(self.resource, self.requested),
            "used": qty(self.resource, self.used),
            "carved": qty(self.resource, self.carved),
            "hard": qty(self.resource, self.hard),
            "free": qty(self.resource, self.free),
        }


@dataclass(slots=True)
class Decision:
    """Allowed or not, why, and what the ledger must charge if it is."""

    allowed: bool
    operation: str
    group: str | None = None
    path: str | None = None
    mode: str = "enforce"
    reason: str = "charged"  # charged | no-rule | unlabelled | unknown-group | over-quota | ...
    total: dict[str, int] = field(default_factory=dict)  # the new object's usage
    delta: dict[str, int] = field(default_factory=dict)  # what this request adds to `group`
    charges: dict[str, dict[str, int]] = field(default_factory=dict)  # group -> key -> delta
    violations: list[Violation] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    parts: tuple[PartUsage, ...] = ()
    notes: list[str] = field(default_factory=list)  # explanation lines
    error: str | None = None  # set for denials that are not quota (unknown group, ...)

    @property
    def usage(self) -> dict[str, Quantity]:
        return {k: to_quantity(k, v) for k, v in sorted(self.total.items())}

    @property
    def message(self) -> str:
        if self.error is not None:
            return self.error
        if not self.violations:
            return ""
        quota = [v for v in self.violations if v.cash_period is None]
        cash = [v for v in self.violations if v.cash_period is not None]
        out = []
        if quota:
            out.append(f"quota exceeded in group {self.path}: " + "; ".join(v.describe() for v in quota))
        if cash:
            out.append(f"cash budget spent in group {self.path}: " + "; ".join(v.describe() for v in cash))
        return "; ".join(out)

    @property
    def audit_annotations(self) -> dict[str, str]:
        if self.mode != "audit" or not self.violations:
            return {}
        return {"quotalang.dev/would-deny": self.message}

    def explanation(self) -> list[str]:
        lines = []
        if self.path:
            lines.append(f"group {self.path} (mode {self.mode})")
        for part in self.parts:
            if part.missing_template:
                lines.append(f"part {part.name}: no pod template found; charged nothing")
                continue
            per_pod = ", ".join(f"{k} {qty(k, v)}" for k, v in part.per_pod)
            lines.append(f"part {part.name}: {part.replicas} × pod {{{per_pod}}}")
            for kind, model, where in part.models:
                lines.append(f"  {kind} model {model} from {where}")
        lines.extend(self.notes)
        return lines

    def as_json(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "operation": self.operation,
            "group": self.group,
            "path": self.path,
            "mode": self.mode,
            "reason": self.reason,
            "usage": {k: str(q) for k, q in self.usage.items()},
            "delta": {k: qty(k, v) for k, v in sorted(self.delta.items())},
            "violations": [v.as_json() for v in self.violations],
            "warnings": list(self.warnings),
            "message": self.message,
            "audit_annotations": self.audit_annotations,
            "explanation": self.explanation(),
        }


def clip(text: str, limit: int = MAX_WARNING) -> str:
    """Kubernetes truncates long warnings; we keep them short on purpose."""
    return text if len(text) <= limit else text[: limit - 1] + "…"

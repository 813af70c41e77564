"""The result of one admission decision, and how it reads to a person.

A `Decision` also says what a ledger store records for the request (`stored`,
`stored_usage`, `reservation`, `reserves`), so that stores never look at the
request again. Messages are built on demand: an allowed request in enforce
mode (the common case) never formats a string.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args

from quotalang.borrowing import Draw
from quotalang.quantity import Quantity, canonical_together
from quotalang.reclaimable import Borrower, Reclaim
from quotalang.units import format_hours
from quotalang.usage import Measured, PartUsage, to_quantity

MAX_WARNING = 120

# Why a request was decided as it was: a closed set (metrics and logs label by it).
Reason = Literal[
    "charged",  # checked against its group and fits (or, in warn/audit mode, does not and is allowed)
    "over-quota",  # does not fit its group: see `violations`
    "must-specify",  # a container leaves unset a cpu or memory resource its group limits (as native quota)
    "no-rule",  # no kind rule charges the kind (or the scaled kind has no scale path)
    "owned",  # controlled by an owner a kind rule already charges
    "unlabelled",  # no group label: allowed or denied per the policy's `unlabelled` setting
    "unknown-group",  # the group label names no group of the policy
    "not-bound",  # the group (and its ancestors) does not bind the workload's namespace: denied
    "not-authorized",  # `authorize users`: the request's user may not `use` the group (SubjectAccessReview)
    "outside-quota",  # no group binds the namespace: allowed, not charged (as without a ResourceQuota)
    "unbound-namespace",  # no group binds the namespace and `unbound namespaces deny`: denied
    "model-not-pinned",  # the group limits a model key, the pod template pins no single declared model
    "unknown-model",  # a model label or a node selector names a model the policy does not declare
    "model-conflict",  # the model label says one model, the node selector pins another
    "not-intercepted",  # an operation other than CREATE / UPDATE
    "scale-parent-missing",  # a Scale whose workload cannot be found: denied
    "hpa-target-missing",  # an HPA whose target cannot be found: allowed with a warning
]
REASONS: tuple[Reason, ...] = get_args(Reason)


def qty(key: str, nanos: int) -> str:
    return str(to_quantity(key, nanos))


def qtys(key: str, *nanos: int) -> list[str]:
    """Several figures of `key` for one message, in one unit (`quantity.canonical_together`)."""
    return canonical_together(list(nanos), to_quantity(key, 0).format)


# (pods, part name, one pod's quantity of the key): `2 × Worker 4`
Term = tuple[int, str, int]


class UsageSource(Protocol):
    """What a group has used: own usage plus pending reservations, and cash (a store, a snapshot)."""

    def used(self, group: str) -> Mapping[str, int]: ...

    def cash_used(self, group: str) -> Mapping[str, int]: ...


@dataclass(frozen=True, slots=True)
class Violation:
    """A key that does not fit: the numbers a person needs to act.

    `terms` (and, on an UPDATE, `added` and `surge`) say where `requested`
    comes from; they are kept as numbers, not text, so that `describe` prints
    every figure of the violation in one unit. `detail` is text given by a
    caller that has no terms; it is printed as it is.
    """

    resource: str
    requested: int  # for an UPDATE: what it adds, plus the room its rollout's surge pods need
    used: int  # the group's own usage plus pending reservations
    carved: int  # Σ children hard
    hard: int
    detail: str  # "2 × Worker 4", when there are no `terms`
    cash_period: str | None = None  # set for cash violations ("week", "lifetime")
    terms: tuple[Term, ...] = ()  # the workload's parts that charge the key
    added: int | None = None  # an UPDATE: what it adds to the key (`+4 to 11 × pod 4`)
    surge: tuple[Term, ...] = ()  # an UPDATE that rolls pods out: the surge pods it needs room for
    beyond: str = ""  # where the balance rule fails when the group lends or borrows (`1 short at root/ai`)

    @property
    def free(self) -> int:
        return max(self.hard - self.carved - self.used, 0)

    def describe(self, detail: bool = True) -> str:
        """`requests.cpu: requested 500m (…), used 8600m of 10000m, 900m free`, one unit throughout.

        `detail=False` leaves out the breakdown in parentheses (for a warning
        that must stay short); the figures are the same.
        """
        if self.cash_period is not None:
            carved = f" ({format_hours(self.carved)} carved for children)" if self.carved else ""
            return (
                f"cash {self.resource} per {self.cash_period} spent: "
                f"used {format_hours(self.used)} of {format_hours(self.hard)}{carved}"
            )
        k = self.resource
        figures = [self.requested, self.used + self.carved, self.hard, self.free, self.carved]
        figures += [nanos for _, _, nanos in self.terms + self.surge]
        if self.added is not None:
            figures.append(self.added)
        texts = qtys(k, *figures)
        requested, taken, hard, free, carved_text = texts[:5]
        carved = f" ({carved_text} carved for children)" if self.carved else ""
        shown = self._breakdown(texts[5:]) if detail else ""
        shown = f" ({shown})" if shown else ""
        beyond = f", {self.beyond}" if self.beyond else ""
        return f"{k}: requested {requested}{shown}, used {taken} of {hard}{carved}, {free} free{beyond}"

    def _breakdown(self, texts: list[str]) -> str:
        """`+4 to 11 × pod 4, including rollout surge: 2 × pod 500m`, from figures already printed."""
        if not self.terms and not self.surge:
            return self.detail
        count = len(self.terms)
        parts = " + ".join(f"{n} × {name} {t}" for (n, name, _), t in zip(self.terms, texts, strict=False))
        surge = " + ".join(
            f"{n} × {name} {t}" for (n, name, _), t in zip(self.surge, texts[count:], strict=False)
        )
        if self.added is not None:  # an UPDATE: what it adds, to what the workload becomes
            parts = f"+{texts[-1]} to {parts}" if parts and self.added > 0 else ""
        if not surge:
            return parts
        surge = f"including rollout surge: {surge}"
        return f"{parts}, {surge}" if parts else surge

    def as_json(self) -> dict[str, Any]:
        if self.cash_period is not None:
            return {
                "resource": self.resource,
                "cash": True,
                "period": self.cash_period,
                "requested": qty(self.resource, self.requested),
                "used": format_hours(self.used),
                "carved": format_hours(self.carved),
                "hard": format_hours(self.hard),
                "free": format_hours(self.free),
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
    """Allowed or not, why, and what a ledger store records if it is.

    The evaluator builds it whole and never changes it afterwards (it is not
    frozen only because a frozen dataclass is slower to build on the hot path).
    """

    allowed: bool
    operation: str
    group: str | None = None
    path: str | None = None
    mode: str = "enforce"
    reason: Reason = "charged"
    total: dict[str, int] = field(default_factory=dict)  # the usage of `stored` (the new object)
    delta: dict[str, int] = field(default_factory=dict)  # what this request adds to `group`
    # group -> key -> signed change this request makes there (a label move releases the old
    # group); empty when denied, and for HPAs, which are checked, never charged
    charges: dict[str, dict[str, int]] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    parts: tuple[PartUsage, ...] = ()
    notes: list[str] = field(default_factory=list)  # explanation lines
    error: str | None = None  # set for denials that are not quota (unknown group, ...)
    # The workload as it will be stored after this request: the object itself, or for a
    # Scale its parent with the new replicas. None when no workload is stored: an HPA,
    # an operation that is not intercepted, a Scale of a kind with no scale path.
    stored: Mapping[str, Any] | None = None
    dry_run: bool = False  # evaluated and answered, but nothing is reserved
    # what would have denied it in enforce mode besides `violations` (a namespace the group does not
    # bind, an unpinned model, ...): warned in warn mode, recorded in audit mode
    findings: list[str] = field(default_factory=list)
    # Borrowing (issue 29): the ancestors whose balance an admitted request changes, nearest first (a
    # store decides it under their locks too; empty: its group alone), and what it borrows from which.
    touches: tuple[str, ...] = ()
    borrowed: tuple[Draw, ...] = ()
    reclaim: Reclaim | None = None  # how a borrowing admission is given back (None when it borrows nothing)
    # borrowers this admission takes its lendable part back from: the controller suspends or deletes them
    reclaims: tuple[Borrower, ...] = ()
    # `total` and `parts` as the usage of `stored` and what they were computed under, where the decision
    # computed them in full (charged or over quota): a caller keeping `stored` may hand them back
    measured: Measured | None = None

    @property
    def usage(self) -> dict[str, Quantity]:
        return {k: to_quantity(k, v) for k, v in sorted(self.total.items())}

    @property
    def reserves(self) -> bool:
        """Whether a store records this request at all: allowed, not a dry run, and a workload is stored."""
        return self.allowed and not self.dry_run and self.stored is not None

    @property
    def reservation(self) -> dict[str, dict[str, int]]:
        """What a store reserves: per group, the positive part of `charges`; empty unless `reserves`.

        Releases (negative changes, a label move's old group) are never reserved:
        the watch gives them back when the stored object shows them.
        """
        if not self.reserves:
            return {}
        out: dict[str, dict[str, int]] = {}
        for group, delta in self.charges.items():
            positive = {k: v for k, v in delta.items() if v > 0}
            if positive:
                out[group] = positive
        return out

    @property
    def stored_usage(self) -> dict[str, int]:
        """The usage `stored` holds in `group` after this request; {} when no group is charged for it
        (unlabelled, no kind rule, owned)."""
        return dict(self.total) if self.group is not None else {}

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
        if self.mode != "audit" or not (self.violations or self.findings):
            return {}
        said = [*self.findings, self.message] if self.violations else self.findings
        return {"quotalang.dev/would-deny": "; ".join(said)}

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
        out = self._json()
        if self.borrowed:  # only when it borrows: every other answer reads as before
            out["borrowed"] = [{"from": d.group, "resource": d.key, "amount": qty(d.key, d.amount)}
                               for d in self.borrowed]
        if self.reclaims:  # only when it takes lent quota back
            out["reclaims"] = [{"name": b.name, "group": b.group, "how": b.reclaim.how} for b in self.reclaims]
        return out

    def _json(self) -> dict[str, Any]:
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

"""The syntax tree of a policy: plain immutable records with source spans.

The parser builds these; the checker, compiler and formatter read them. They
hold source text (quantities as written) so that `fmt` can print exactly what
the author wrote and the checker can point at it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Span:
    """Where a node sits: 1-based line and column, end exclusive."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Comment:
    text: str
    span: Span


@dataclass(frozen=True, slots=True)
class Import:
    target: str
    span: Span


# ------------------------------------------------------------------ settings
Source = Literal["label", "annotation"]


@dataclass(frozen=True, slots=True)
class GroupLabel:
    """`group label "KEY"` or `group annotation "KEY"`: where a workload names its group."""

    label: str
    span: Span
    source: Source = "label"


ModelKind = Literal["cpu", "gpu", "memory"]


@dataclass(frozen=True, slots=True)
class ModelLabel:
    """`model label|annotation KIND "KEY"`: where a workload names its model itself (self-declared)."""

    model_kind: ModelKind
    label: str
    span: Span
    source: Source = "label"


@dataclass(frozen=True, slots=True)
class ModelDecl:
    """`model gpu A100 "NVIDIA-A100-SXM4-80GB" ...`: a model and the node label values it stands for.

    Without values the model stands for the node label value spelled as its name.
    """

    model_kind: ModelKind
    name: str
    values: tuple[str, ...]
    span: Span
    name_span: Span
    value_spans: tuple[Span, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeLabel:
    """`node label gpu "nvidia.com/gpu.product"`: the node label the scheduler matches models on."""

    model_kind: ModelKind
    label: str
    span: Span


@dataclass(frozen=True, slots=True)
class Unbound:
    """`unbound namespaces allow|deny`: what happens in a namespace no group binds."""

    action: Literal["allow", "deny"]
    span: Span


@dataclass(frozen=True, slots=True)
class AuthorizeUsers:
    """`authorize users`: charging a group also needs the user's `use` grant on it (SubjectAccessReview)."""

    span: Span


@dataclass(frozen=True, slots=True)
class GpuResource:
    resource: str
    span: Span


@dataclass(frozen=True, slots=True)
class Unlabelled:
    """What happens to a workload without the group label."""

    action: Literal["allow", "deny", "group"]
    group: str | None
    span: Span


@dataclass(frozen=True, slots=True)
class WarnAt:
    percent: str  # as written, without the % sign
    span: Span


@dataclass(frozen=True, slots=True)
class BorrowBelow:
    """`borrow below priority 100`: the priority below which a workload may borrow (it can be preempted)."""

    priority: int
    span: Span


@dataclass(frozen=True, slots=True)
class ReclaimDelete:
    """`reclaim by delete`: borrowers with no suspend rule are deleted when a lender needs its room."""

    span: Span


Setting = (GroupLabel | ModelLabel | ModelDecl | NodeLabel | GpuResource | Unlabelled | Unbound | WarnAt | BorrowBelow
           | AuthorizeUsers | ReclaimDelete)


@dataclass(frozen=True, slots=True)
class Settings:
    entries: tuple[Setting, ...]
    span: Span


# ------------------------------------------------------------------ groups
Mode = Literal["enforce", "warn", "audit"]
Period = Literal["day", "week", "month"]


@dataclass(frozen=True, slots=True)
class Lending:
    """`lend Q` and `borrow Q` after a limit (after a cash budget they are an error): as written."""

    lend: str | None = None
    borrow: str | None = None
    lend_span: Span | None = None  # the quantity's
    borrow_span: Span | None = None


NO_LENDING = Lending()


@dataclass(frozen=True, slots=True)
class Limit:
    key: str
    quantity: str
    span: Span
    key_span: Span
    quantity_span: Span
    lending: Lending = NO_LENDING


@dataclass(frozen=True, slots=True)
class Cash:
    key: str
    hours: str  # as written, without the trailing h
    period: Period | None  # None: a lifetime budget
    span: Span
    key_span: Span
    amount_span: Span
    lending: Lending = NO_LENDING  # never valid on cash (E117): kept so that lint can point at it


@dataclass(frozen=True, slots=True)
class ModeStmt:
    mode: Mode
    span: Span


@dataclass(frozen=True, slots=True)
class Namespaces:
    """`[default] namespaces "nlp", "nlp-*"`: the namespaces whose workloads may charge the group.

    A pattern is a namespace name or `prefix-*`, optionally `cluster/...`;
    `default` also makes the group the one unlabelled workloads there charge.
    """

    patterns: tuple[str, ...]
    default: bool
    span: Span
    pattern_spans: tuple[Span, ...]


GroupStmt = Limit | Cash | ModeStmt | Namespaces


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    parent: str | None
    body: tuple[GroupStmt, ...]
    span: Span
    name_span: Span
    parent_span: Span | None


# ------------------------------------------------------------------ kind rules
@dataclass(frozen=True, slots=True)
class Path:
    """A field path: `spec.replicas` from the object, `.replicas` from the item.

    `segments` are the keys to follow; `*` iterates map values or list items.
    """

    text: str
    segments: tuple[str, ...]
    relative: bool
    span: Span


@dataclass(frozen=True, slots=True)
class IntLit:
    value: int
    span: Span


@dataclass(frozen=True, slots=True)
class PathRef:
    path: Path
    default: int | None
    span: Span


@dataclass(frozen=True, slots=True)
class BinOp:
    op: Literal["+", "-", "*"]
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Call:
    """`min(a, b, ...)`, `max(a, b, ...)` or `clamp(x, lo, hi)`: what operators compute from bounds."""

    func: Literal["min", "max", "clamp"]
    args: tuple[Expr, ...]
    span: Span


Expr = IntLit | PathRef | BinOp | Call


@dataclass(frozen=True, slots=True)
class Part:
    """`replicas × template`, once, or once per item of `each`."""

    name: str | None
    each: Path | None
    replicas: Expr | None
    templates: tuple[Path, ...]  # the first one present wins
    span: Span
    # Spans of `replicas` statements after the first, so the checker can report them.
    repeated_spans: tuple[Span, ...] = ()


@dataclass(frozen=True, slots=True)
class Surge:
    path: Path
    default: str | None  # "25%" or "1"
    span: Span


@dataclass(frozen=True, slots=True)
class Creates:
    """`creates API_VERSION KIND [via API_VERSION KIND]`: what the kind's controller creates.

    An object of the created kind whose controller ownerReference names the
    rule's kind is charged through its owner; with `via`, one whose controller
    is an object of the `via` kind in this kind's tree (LWS: leader pod → worker
    StatefulSet).
    """

    api_version: str
    kind: str
    via_api_version: str | None
    via_kind: str | None
    span: Span


@dataclass(frozen=True, slots=True)
class KindRule:
    api_version: str
    kind: str
    parts: tuple[Part, ...]
    scale: Path | None
    surge: Surge | None
    span: Span
    # Every `scale` / `surge` statement, so the checker can report repeats.
    scale_spans: tuple[Span, ...] = ()
    surge_spans: tuple[Span, ...] = ()
    creates: tuple[Creates, ...] = ()
    # `suspend PATH`: the boolean field that pauses the workload (spec.suspend), so it may borrow
    suspend: Path | None = None
    suspend_spans: tuple[Span, ...] = ()

    @property
    def group(self) -> str:
        """The API group: '' for the core group (`v1`)."""
        return self.api_version.rpartition("/")[0]


@dataclass(frozen=True, slots=True)
class PolicyFile:
    path: str
    imports: tuple[Import, ...]
    settings: tuple[Settings, ...]
    groups: tuple[Group, ...]
    kinds: tuple[KindRule, ...]
    comments: tuple[Comment, ...]
    # Top-level items in source order, for the formatter.
    items: tuple[Import | Settings | Group | KindRule, ...]

"""Which model (cpu, gpu, memory type) a pod template runs on, and what is wrong with the claim.

Two ways to know, per model kind, as the settings say:

- With a `node label` (`nvidia.com/gpu.product`), the model is what the
  scheduler will enforce: the values the template's `nodeSelector` and
  required node affinity (`In` expressions) allow on that label, mapped to
  the declared models (`model gpu A100 "NVIDIA-A100-SXM4-80GB" ...`). A
  model label or annotation, where one is configured, must agree with the pin.
- Without one, the workload names its model itself (self-declared): the
  model label (or annotation) on the workload, else on its pod template;
  once models of that kind are declared, an undeclared value is refused.

Matching is exact. What is found goes to the per-pod usage cache key (so it
must stay cheap and plain); what is wrong is returned as `ModelProblem`s, and
the evaluator decides whether it denies (an unpinned template matters only
in a group that limits a model key of that kind, for a pod requesting it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from quotalang.objects import metadata_of
from quotalang.policy import MODEL_KINDS, Settings

Models = tuple[tuple[str, str, str], ...]  # (model kind, model, where it came from)
ProblemReason = Literal["model-not-pinned", "unknown-model", "model-conflict"]
_EMPTY: Mapping[str, Any] = {}


@dataclass(frozen=True, slots=True)
class ModelProblem:
    kind: str  # cpu | gpu | memory
    reason: ProblemReason
    message: str

    @property
    def unpinned(self) -> bool:
        """Only denied where the group limits a model key of `kind` and the pod requests that resource."""
        return self.reason == "model-not-pinned"


def _mapping(node: Any, key: str) -> Mapping[str, Any]:
    """`node[key]` when both are mappings, else empty; `type(...) is dict` first: the hot path sees dicts."""
    found = node.get(key) if type(node) is dict or isinstance(node, Mapping) else None
    if found is None:
        return _EMPTY
    return found if type(found) is dict or isinstance(found, Mapping) else _EMPTY


def pinned_values(template: Mapping[str, Any] | None, label: str) -> frozenset[str] | None:
    """The values of node label `label` the template's pods may be scheduled on; None when unrestricted.

    `nodeSelector` and every term of required node affinity must hold (terms
    are ORed, a term's expressions ANDed); only `In` restricts to a finite set
    of values (`NotIn`, `Exists`, ... leave the label open).
    """
    spec = _mapping(template, "spec")
    found: frozenset[str] | None = None
    selected = _mapping(spec, "nodeSelector").get(label)
    if isinstance(selected, str):
        found = frozenset((selected,))
    if spec.get("affinity") is None:  # the common case: a nodeSelector or nothing
        return found
    affinity = _mapping(_mapping(spec, "affinity"), "nodeAffinity")
    required = _mapping(affinity, "requiredDuringSchedulingIgnoredDuringExecution")
    terms = required.get("nodeSelectorTerms")
    if isinstance(terms, list) and terms:
        union: set[str] = set()
        for term in terms:
            allowed: set[str] | None = None
            expressions = term.get("matchExpressions") if isinstance(term, Mapping) else None
            for expression in expressions if isinstance(expressions, list) else ():
                if not isinstance(expression, Mapping) or expression.get("key") != label:
                    continue
                values = expression.get("values")
                if expression.get("operator") == "In" and isinstance(values, list):
                    these = {v for v in values if isinstance(v, str)}
                    allowed = these if allowed is None else allowed & these
            if allowed is None:  # this term lets the pod onto any value of the label
                return found
            union |= allowed
        found = frozenset(union) if found is None else found & union
    return found


def declared_text(settings: Settings, kind: str) -> str:
    """`A100 (NVIDIA-A100-SXM4-80GB, NVIDIA-A100-PCIE-40GB), T4 (Tesla-T4)` for messages."""
    by_model: dict[str, list[str]] = {}
    for value, model in settings.node_values.get(kind, _EMPTY).items():
        by_model.setdefault(model, []).append(value)
    return ", ".join(f"{m} ({', '.join(by_model[m])})" for m in sorted(by_model)) or "none"


_MEMO_LEN = 63  # a label value's longest: longer claims and pins are read each time, not memoized
Found = tuple[Models, tuple[ModelProblem, ...]]


def part_models(settings: Settings, obj: Mapping[str, Any], template: Mapping[str, Any] | None) -> Found:
    """The models one part's pods run on, and what is wrong with the claim (see the module doc).

    Memoized on the settings by what it reads (`_reads`): the claims and the
    `nodeSelector` pins, so a decision pays for the reads and a lookup, not
    for mapping values to models and writing messages again.
    """
    reads = _reads(settings, obj, template)
    if reads is None:
        return _part_models(settings, obj, template)
    found: Found | None = settings.models_of.get(reads)
    if found is None:
        found = settings.models_of.put(reads, _part_models(settings, obj, template))
    return found


def _reads(settings: Settings, obj: Mapping[str, Any], template: Mapping[str, Any] | None) -> tuple[Any, ...] | None:
    """Everything `_part_models` reads of `obj` and `template`, as a memo key; None when it is not short
    plain strings, or the template has node affinity (read in full each time: rare and unbounded)."""
    reads: list[Any] = []
    spec: Mapping[str, Any] | None = None
    pins: Mapping[str, Any] = _EMPTY
    for _, key, source, node_label in settings.model_reads:
        if key is not None:
            value = metadata_of(obj, source).get(key)
            on_template = value is None
            if on_template:
                value = metadata_of(template, source).get(key)
            if value is not None and (type(value) is not str or len(value) > _MEMO_LEN):
                return None
            reads.append((on_template, value))
        if node_label is not None:
            if spec is None:
                spec = _mapping(template, "spec")
                if spec.get("affinity") is not None:
                    return None
                pins = _mapping(spec, "nodeSelector")
            selected = pins.get(node_label)
            if selected is not None and (type(selected) is not str or len(selected) > _MEMO_LEN):
                return None
            reads.append(selected)
    return tuple(reads)


def _part_models(settings: Settings, obj: Mapping[str, Any], template: Mapping[str, Any] | None) -> Found:
    found: list[tuple[str, str, str]] = []
    problems: list[ModelProblem] = []
    labels = settings.model_labels
    node_labels = settings.node_labels
    for kind in MODEL_KINDS:
        key = labels.get(kind)
        node_label = node_labels.get(kind)
        if key is None and node_label is None:
            continue
        claimed: str | None = None
        where = ""
        if key is not None:
            source = settings.model_sources.get(kind, "label")
            value = metadata_of(obj, source).get(key)
            where = f"workload {source} {key}"
            if value is None:
                value = metadata_of(template, source).get(key)
                where = f"pod template {source} {key}"
            claimed = value if isinstance(value, str) and value else None
        if node_label is not None:
            _pinned(settings, kind, node_label, template, claimed, where, found, problems)
        elif claimed is not None:
            declared = settings.models.get(kind)
            if declared is not None and claimed not in declared:
                problems.append(ModelProblem(kind, "unknown-model", (
                    f"{where} is {claimed!r}, not a declared {kind} model; declared: {', '.join(sorted(declared))}"
                )))
            else:
                found.append((kind, claimed, where))
    return tuple(found), tuple(problems)


def _pinned(
    settings: Settings,
    kind: str,
    node_label: str,
    template: Mapping[str, Any] | None,
    claimed: str | None,
    where: str,
    found: list[tuple[str, str, str]],
    problems: list[ModelProblem],
) -> None:
    """The model the scheduler enforces for `kind`, or the problem with the template's pin."""
    pinned = pinned_values(template, node_label)
    by_value = settings.node_values.get(kind, _EMPTY)
    if pinned is not None and len(pinned) == 1:  # the common case: one value, no sorting
        (value,) = pinned
        model = by_value.get(value)
        if model is not None and (claimed is None or claimed == model):
            found.append((kind, model, f"node selector {node_label}={value}"))
            return
    if not pinned:
        problems.append(ModelProblem(kind, "model-not-pinned", (
            f"set nodeSelector {node_label} to one {kind} model: {declared_text(settings, kind)}"
        )))
        return
    undeclared = sorted(v for v in pinned if v not in by_value)
    if undeclared:
        problems.append(ModelProblem(kind, "unknown-model", (
            f"the pod template pins {node_label} to {', '.join(undeclared)}, not a declared {kind} model; "
            f"declared: {declared_text(settings, kind)}"
        )))
        return
    models = sorted({by_value[v] for v in pinned})
    if len(models) > 1:
        problems.append(ModelProblem(kind, "model-not-pinned", (
            f"the pod template allows {node_label} values of {len(models)} {kind} models ({', '.join(models)}); "
            f"pin one: {declared_text(settings, kind)}"
        )))
        return
    model = models[0]
    if claimed is not None and claimed != model:
        problems.append(ModelProblem(kind, "model-conflict", (
            f"{where} says {claimed} but the pod template pins {node_label} to {', '.join(sorted(pinned))} ({model})"
        )))
        return
    found.append((kind, model, f"node selector {node_label}={', '.join(sorted(pinned))}"))


__all__ = ["MODEL_KINDS", "ModelProblem", "Models", "declared_text", "part_models", "pinned_values"]

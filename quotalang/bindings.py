"""Namespace bindings: which namespaces' workloads may charge which groups.

A pattern is a namespace name (`nlp`) or a prefix glob (`nlp-*`, `*` for
all), optionally naming a cluster (`eu-1/nlp-*`: only that cluster's
namespaces; without one, every cluster's). A binding on a group covers its
subtree, so a group's patterns are its own and its ancestors'. The checker
rejects malformed patterns; the compiler builds one `Bindings` index per
policy, which answers in time independent of the number of groups (a dict
lookup per prefix of the namespace name, at most 63).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from quotalang import nodes

# A DNS-1123 label (what a namespace name is), or a prefix of one followed by `*`.
_NAME = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
PATTERN = re.compile(rf"^(?:(?P<cluster>[A-Za-z0-9][-A-Za-z0-9_.]*)/)?(?P<ns>{_NAME}|[a-z0-9][-a-z0-9]*\*|\*)$")


@dataclass(frozen=True, slots=True)
class Pattern:
    text: str  # as written
    cluster: str | None  # None: any cluster
    prefix: str  # the name, or the glob's prefix
    glob: bool

    def matches(self, namespace: str, cluster: str = "") -> bool:
        if self.cluster is not None and self.cluster != cluster:
            return False
        return namespace.startswith(self.prefix) if self.glob else namespace == self.prefix

    def overlaps(self, other: Pattern) -> bool:
        """Whether some namespace of some cluster matches both (for `default` claims)."""
        if self.cluster is not None and other.cluster is not None and self.cluster != other.cluster:
            return False
        if self.glob and other.glob:
            return self.prefix.startswith(other.prefix) or other.prefix.startswith(self.prefix)
        if self.glob:
            return other.prefix.startswith(self.prefix)
        if other.glob:
            return self.prefix.startswith(other.prefix)
        return self.prefix == other.prefix


def parse_pattern(text: str) -> Pattern | None:
    """The pattern `text` stands for, or None when it is not one (the checker reports it)."""
    match = PATTERN.match(text)
    if match is None or len(match.group("ns").rstrip("*")) > 63:
        return None
    ns = match.group("ns")
    glob = ns.endswith("*")
    return Pattern(text, match.group("cluster"), ns[:-1] if glob else ns, glob)


class _Index:
    """Patterns by what they match: exact names in a dict, globs by prefix."""

    __slots__ = ("_exact", "_globs")

    def __init__(self, entries: Iterable[tuple[Pattern, str]]) -> None:
        exact: dict[str, list[tuple[Pattern, str]]] = {}
        globs: dict[str, list[tuple[Pattern, str]]] = {}
        for pattern, group in entries:
            (globs if pattern.glob else exact).setdefault(pattern.prefix, []).append((pattern, group))
        self._exact = exact
        self._globs = globs

    def first(self, namespace: str, cluster: str) -> str | None:
        """The group of a pattern matching (namespace, cluster): an exact name first, then the longest glob."""
        for pattern, group in self._exact.get(namespace, ()):
            if pattern.matches(namespace, cluster):
                return group
        globs = self._globs
        if globs:
            for end in range(len(namespace), -1, -1):
                for pattern, group in globs.get(namespace[:end], ()):
                    if pattern.matches(namespace, cluster):
                        return group
        return None


@dataclass(frozen=True, slots=True)
class Bindings:
    """Every group's patterns (own and inherited) and the namespaces' default groups."""

    allowed: Mapping[str, tuple[Pattern, ...]]  # group -> its patterns and its ancestors'
    bound: _Index  # every pattern of every group
    defaults: _Index  # the `default namespaces` patterns

    @classmethod
    def build(
        cls,
        own: Mapping[str, tuple[Pattern, ...]],
        defaults: Mapping[str, tuple[Pattern, ...]],
        chains: Mapping[str, list[str]],
    ) -> Bindings:
        """`own` and `defaults` per group; `chains` each group's path from its root."""
        allowed = {name: tuple(p for g in chain for p in own.get(g, ())) for name, chain in chains.items()}
        every = [(p, g) for g, patterns in own.items() for p in patterns]
        claimed = [(p, g) for g, patterns in defaults.items() for p in patterns]
        return cls(MappingProxyType(allowed), _Index(every), _Index(claimed))

    def allows(self, group: str, namespace: str, cluster: str = "") -> bool:
        for pattern in self.allowed.get(group, ()):  # noqa: SIM110 - a plain loop: no generator per decision
            if pattern.matches(namespace, cluster):
                return True
        return False

    def is_bound(self, namespace: str, cluster: str = "") -> bool:
        """Whether any group binds the namespace (else it is outside quota)."""
        return self.bound.first(namespace, cluster) is not None

    def bound_group(self, namespace: str, cluster: str = "") -> str | None:
        """A group that binds the namespace (an exact name first, then the longest glob), for hints."""
        return self.bound.first(namespace, cluster)

    def default_group(self, namespace: str, cluster: str = "") -> str | None:
        return self.defaults.first(namespace, cluster)


Declared = dict[str, tuple[Pattern, ...]]


def declared(files: Iterable[nodes.PolicyFile]) -> tuple[Declared, Declared]:
    """Each group's `namespaces` patterns and its `default namespaces` ones, as written (a malformed pattern,
    which the checker reports, is left out)."""
    own: dict[str, list[Pattern]] = {}
    defaults: dict[str, list[Pattern]] = {}
    for file in files:
        for g in file.groups:
            for stmt in g.body:
                if not isinstance(stmt, nodes.Namespaces):
                    continue
                for text in stmt.patterns:
                    pattern = parse_pattern(text)
                    if pattern is None:
                        continue
                    own.setdefault(g.name, []).append(pattern)
                    if stmt.default:
                        defaults.setdefault(g.name, []).append(pattern)
    return {k: tuple(v) for k, v in own.items()}, {k: tuple(v) for k, v in defaults.items()}


__all__ = ["PATTERN", "Bindings", "Declared", "Pattern", "declared", "parse_pattern"]

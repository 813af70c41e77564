"""Which groups a namespace may charge: the question a team asks before it labels a workload.

The answer of the policy's namespace bindings (`bindings.Bindings`, the same
index the evaluator resolves groups with), in the groups' declaration order:
a group may be charged from a namespace that it or one of its ancestors
binds; the namespace's default group is the one a workload naming none
charges. A policy with no bindings lets any namespace charge any group; a
namespace no group binds is outside quota, or denied with
`unbound namespaces deny`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from quotalang.policy import CompiledPolicy

# A namespace's (and a registered cluster's) name: a DNS-1123 label. Anything else is refused before a lookup.
LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def is_label(text: str) -> bool:
    return LABEL.fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class Chargeable:
    namespace: str
    cluster: str
    groups: tuple[str, ...]  # every group the namespace may charge, in declaration order
    default: str | None  # the group a workload naming none charges
    bound: bool  # some group binds the namespace (with no bindings at all: every namespace is)
    unbound: str  # the policy's answer to a namespace no group binds: allow (outside quota) | deny
    any_group: bool  # the policy binds no namespace: any namespace may charge any group

    def as_json(self) -> dict[str, object]:
        return {"namespace": self.namespace, "cluster": self.cluster, "groups": list(self.groups),
                "default": self.default, "bound": self.bound, "unbound": self.unbound, "anyGroup": self.any_group}


def chargeable(policy: CompiledPolicy, namespace: str, cluster: str = "") -> Chargeable:
    """What `namespace` (of `cluster`) may charge under `policy`."""
    bindings = policy.bindings
    unbound = policy.settings.unbound
    if bindings is None:
        return Chargeable(namespace, cluster, tuple(policy.groups), None, True, unbound, True)
    groups = tuple(name for name in policy.groups if bindings.allows(name, namespace, cluster))
    return Chargeable(namespace, cluster, groups, bindings.default_group(namespace, cluster),
                      bindings.is_bound(namespace, cluster), unbound, False)


__all__ = ["LABEL", "Chargeable", "chargeable", "is_label"]

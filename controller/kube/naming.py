"""Naming: API groups from apiVersions, resource plurals from kinds, API paths from both.

Plurals are derived the way Kubernetes' own `UnsafeGuessKindToResource`
guesses them (lowercase, then `s` → `ses`, `y` → `ies`, else `+s`), plus a
small table of irregular kinds. Every kind the shipped library covers is
regular; a CRD with an unusual plural needs an entry in `IRREGULAR`.
"""

from __future__ import annotations

from collections.abc import Iterator

from quotalang.compiler import CompiledPolicy

IRREGULAR: dict[str, str] = {
    "endpoints": "endpoints",
    "podsecuritypolicy": "podsecuritypolicies",
}


def api_group(api_version: str) -> str:
    """`apps/v1` → `apps`; `v1` → `` (the core group)."""
    return api_version.rpartition("/")[0]


def api_version_parts(api_version: str) -> tuple[str, str]:
    """`apps/v1` → (`apps`, `v1`); `v1` → (``, `v1`)."""
    group, _, version = api_version.rpartition("/")
    return group, version


def plural(kind: str) -> str:
    """The resource name of a kind: `Deployment` → `deployments`, `Policy` → `policies`."""
    lower = kind.lower()
    if lower in IRREGULAR:
        return IRREGULAR[lower]
    if lower.endswith("s"):
        return lower + "es"
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    return lower + "s"


def collection_path(api_version: str, kind: str, namespace: str | None = None) -> str:
    """The API path of a kind's objects, cluster-wide or in one namespace.

    `apps/v1 Deployment` → `/apis/apps/v1/deployments`; with namespace `ns`,
    `/apis/apps/v1/namespaces/ns/deployments`; `v1 Pod` → `/api/v1/pods`.
    """
    group, version = api_version_parts(api_version)
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    if namespace:
        base = f"{base}/namespaces/{namespace}"
    return f"{base}/{plural(kind)}"


def policy_kinds(policy: CompiledPolicy) -> Iterator[tuple[str, str, str, bool]]:
    """(group, version, kind, has a scale path) for every kind rule, sorted."""
    for api_version, kind in sorted(policy.kinds):
        group, version = api_version_parts(api_version)
        yield group, version, kind, policy.kinds[(api_version, kind)].scale_path is not None


def kind_of_resource(policy: CompiledPolicy, group: str, resource: str) -> str | None:
    """The kind a policy rule names for `group`/`resource` (a `/scale` parent), if any."""
    for rule_group, _version, kind, _scales in policy_kinds(policy):
        if rule_group == group and plural(kind) == resource:
            return kind
    return None

"""RBAC: every rule is one the code calls, and the call is named next to it.

A rule too few and `serve` fails (the end-to-end install test runs the image
under exactly these rules); a rule too many is a grant nobody reviews.
"""

from __future__ import annotations

from typing import Any

from quotalang.compiler import CompiledPolicy
from quotalang.controller.kube.naming import plural, policy_kinds
from quotalang.controller.ledger import crd as ledger_crd
from quotalang.server.manifests.objects import meta
from quotalang.server.manifests.options import LEASE_NAME, METRICS_READER, NAME, TLS_SECRET, VIEWER


def watch_rules(policy: CompiledPolicy) -> list[dict[str, Any]]:
    """What the controller reads in a cluster it watches: list + watch, and get for /scale parents."""
    # pods: the controller accrues cash per pod. limitranges: every replica (the kubernetes store's
    # runtime) and the controller list + watch them to charge templates with their namespace's
    # LimitRange defaults, as the LimitRanger will fill them in (controller/kube/limit_ranges.py).
    # priorityclasses: the controller lists + watches them for the value a template's priorityClassName
    # stands for: only workloads below `borrow below priority` may borrow (controller/kube/priority_classes.py).
    watched: dict[str, set[str]] = {"": {"pods", "limitranges"}, "scheduling.k8s.io": {"priorityclasses"}}
    scaled: dict[str, set[str]] = {}
    for group, _version, kind, scales in policy_kinds(policy):
        watched.setdefault(group, set()).add(plural(kind))
        if scales:
            scaled.setdefault(group, set()).add(plural(kind))
    rules: list[dict[str, Any]] = []
    for group in sorted(set(watched) | set(scaled)):
        # list + watch: the leader's controller (controller/runner.py) lists and watches every policy
        # kind and pods cluster-wide to reconcile observed usage.
        if watched.get(group):
            rules.append({"apiGroups": [group], "resources": sorted(watched[group]), "verbs": ["list", "watch"]})
        # get: a replica asked about a /scale it did not admit fetches the parent (server/stores.py
        # live_lookup); only kinds whose rule names a scale path get /scale reviews.
        if scaled.get(group):
            rules.append({"apiGroups": [group], "resources": sorted(scaled[group]), "verbs": ["get"]})
    return rules


def reclaim_rules(policy: CompiledPolicy) -> list[dict[str, Any]]:
    """What reclaim writes in a cluster it watches (issue 29, controller/reclaim.py): the one cluster, or
    each fleet member (`install.member_objects`), where that member's borrowers run."""
    reclaimed: dict[tuple[str, str], set[str]] = {}  # (group, verb) -> resources
    for group, version, kind, _scales in policy_kinds(policy):
        verb = reclaim_verb(policy, group, version, kind)
        if verb is not None:
            reclaimed.setdefault((group, verb), set()).add(plural(kind))
    rules: list[dict[str, Any]] = []
    for group in sorted({g for g, _ in reclaimed}):
        # get + patch: reclaim reads a borrower and sets its suspend path; delete: with `reclaim by
        # delete`, a borrower of a kind that cannot be suspended is deleted.
        if reclaimed.get((group, "patch")):
            rules.append({"apiGroups": [group], "resources": sorted(reclaimed[group, "patch"]),
                          "verbs": ["get", "patch"]})
        if reclaimed.get((group, "delete")):
            rules.append({"apiGroups": [group], "resources": sorted(reclaimed[group, "delete"]),
                          "verbs": ["delete"]})
    if reclaimed:  # create: every reclaim is an Event on the workload (controller/reclaim.py)
        rules.append({"apiGroups": [""], "resources": ["events"], "verbs": ["create"]})
    return rules


def reclaim_verb(policy: CompiledPolicy, group: str, version: str, kind: str) -> str | None:
    """What reclaim does to a kind's borrowers: `patch` its suspend path, `delete` (`reclaim by delete`), or
    None (it never touches the kind)."""
    rule = policy.kinds.get((f"{group}/{version}" if group else version, kind))
    if rule is not None and rule.suspend_path is not None:
        return "patch"
    return "delete" if policy.settings.reclaim_delete else None


def rbac(
    policy: CompiledPolicy, namespace: str, *, keeps_secret: bool, watches: bool = True
) -> list[dict[str, Any]]:
    """ServiceAccount, roles and bindings: every rule is one the code calls, with the call named.

    `keeps_secret`: serve keeps its certificates in a Secret and publishes the CA
    to the webhook configuration (the default), which needs three more rules.
    `watches`: serve watches this cluster (False: a hub that only holds the
    ledger; the members grant the watch, `member_objects`).
    """
    # A hub that is no member watches nothing there: every replica watches each member's LimitRanges
    # instead (kubernetes.runtime.StoreRuntime.limit_ranges_from).
    rules = [*watch_rules(policy), *reclaim_rules(policy)] if watches else []
    # The shared ledger (controller/ledger/kubernetes/): get/create/update one object per group on
    # every admission (compare-and-swap), list + watch to follow other replicas' writes, delete to
    # drop an empty ledger of a group the policy no longer has.
    rules.append({"apiGroups": [ledger_crd.GROUP], "resources": [ledger_crd.PLURAL],
                  "verbs": ["get", "list", "watch", "create", "update", "delete"]})
    # get: `serve --store kubernetes` checks at start that the QuotaLedger CRD is installed
    # (controller/ledger/kubernetes/runtime.py install_crd); it never creates it, the manifests do.
    rules.append({"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
                  "resourceNames": [ledger_crd.CRD_NAME], "verbs": ["get"]})
    # create: the API port asks who a bearer token belongs to (TokenReview) and whether that user may
    # read what it asks for (SubjectAccessReview); server/apiauth.py KubeReviews. With `authorize
    # users` the engine asks whether a review's user may `use` the group it charges (server/grants.py,
    # the same client). Both are reviews, not objects: create is the only verb they have.
    rules.append({"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]})
    rules.append({"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"],
                  "verbs": ["create"]})
    if keeps_secret:
        # get + update: every replica keeps the caBundle of this webhook configuration equal to the
        # CAs in its certificate Secret (server/certs.py _publish).
        rules.append({"apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations"],
                      "resourceNames": [NAME], "verbs": ["get", "update"]})
    role_rules: list[dict[str, Any]] = [
        # get + update: the Lease holder renews, a follower reads and takes over an expired Lease
        # (controller/kube/election.py); create: the first replica makes it (create cannot be
        # limited by name).
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [LEASE_NAME],
         "verbs": ["get", "update"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]
    if keeps_secret:
        # get + update: read the CA and serving pair, renew them by compare-and-swap
        # (server/certs.py); create: the first replica makes the Secret.
        role_rules += [
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [TLS_SECRET], "verbs": ["get", "update"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        ]
    subject = [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(NAME, namespace)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta(NAME),
         "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": meta(NAME),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
         "subjects": subject},
        *readers(),
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta(NAME, namespace),
         "rules": role_rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": meta(NAME, namespace),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
         "subjects": subject},
    ]


def group_user_role(group: str) -> dict[str, Any]:
    """The ClusterRole `authorize users` asks about (server/grants.py): `use` on one quota group, to bind with
    a RoleBinding in the namespace its users share (or a ClusterRoleBinding for every namespace)."""
    from quotalang.server.apiauth import API_GROUP, RESOURCE
    from quotalang.server.grants import USE

    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": meta(f"{NAME}-use-{group}"),
            "rules": [{"apiGroups": [API_GROUP], "resources": [RESOURCE], "resourceNames": [group], "verbs": [USE]}]}


def readers() -> list[dict[str, Any]]:
    """ClusterRoles for the API port's readers, bound by admins (nothing is bound here).

    `quotalang-viewer`: the whole tree or nothing (server/apiauth.py: `get` on
    `groups.quotalang.dev` for the JSON API and the pages, `create` on
    `groups/explain` for what-if and propose, which reserve nothing).
    `quotalang-metrics-reader`: `get` on the non-resource URL /metrics, for Prometheus.
    """
    from quotalang.server.apiauth import API_GROUP, EXPLAIN, RESOURCE

    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta(VIEWER),
         "rules": [{"apiGroups": [API_GROUP], "resources": [RESOURCE], "verbs": ["get"]},
                   {"apiGroups": [API_GROUP], "resources": [f"{RESOURCE}/{EXPLAIN}"], "verbs": ["create"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta(METRICS_READER),
         "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]},
    ]


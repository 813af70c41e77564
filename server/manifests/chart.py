"""The Helm chart (charts/quotalang) and `quotalang manifests` are one install: `chart_values` maps an
`Options` and a policy to the chart's values, and tests/server/test_chart.py renders the chart with
them and checks that it holds the very objects `manifests` prints, for a matrix of options.

`quotalang manifests --helm-values` prints these values, so a chart user gets the policy's files
and the kinds the webhook and RBAC must cover (the chart cannot compile a policy) from the same
code. What the chart does not offer: several clusters (`--cluster`) and `--embed-self-signed` (a
private key in values); use `quotalang manifests` for those.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from quotalang.compiler import CompiledPolicy
from quotalang.controller.kube.naming import plural, policy_kinds
from quotalang.errors import InputError
from quotalang.server.manifests.objects import plain, resizes
from quotalang.server.manifests.options import CONTAINER_SECURITY_CONTEXT, POD_SECURITY_CONTEXT, RESOURCES, Options
from quotalang.server.manifests.policyfiles import policy_files
from quotalang.server.manifests.rbac import reclaim_verb


def kinds(policy: CompiledPolicy, kube_version: tuple[int, int] = (1, 21)) -> list[dict[str, Any]]:
    """The policy's workload kinds as the chart's `kinds` value (what to watch and intercept; `resize`: its
    `pods/resize` too, on a cluster that has it; `reclaim`: what reclaim does to its borrowers, patch or
    delete, for the RBAC rules)."""
    out = []
    for group, version, kind, scales in policy_kinds(policy):
        reclaim = reclaim_verb(policy, group, version, kind)
        out.append({"group": group, "version": version, "resource": plural(kind), "scale": scales,
                    **({"resize": True} if resizes(group, kind, kube_version) else {}),
                    **({"reclaim": reclaim} if reclaim is not None else {})})
    return out


def chart_values(paths: Sequence[str], options: Options) -> dict[str, Any]:
    """The chart's values that make it render what `manifests(paths, namespace, options)` prints."""
    if options.embed_self_signed:
        raise InputError("--helm-values: the chart takes no private key in values; use --tls-secret NAME "
                         "--ca-bundle FILE, --cert-manager, or serve's own Secret (the default)")
    policy, files = policy_files(paths)
    tls = {"mode": options.tls, "secretName": options.tls_secret or "",
           "caBundle": options.ca_bundle.decode() if options.ca_bundle is not None else ""}
    issuer = ({"kind": options.cert_manager_issuer[0], "name": options.cert_manager_issuer[1]}
              if options.cert_manager_issuer else {})
    return {
        "image": options.image,
        "replicas": options.replicas,
        "kubeVersion": "{}.{}".format(*options.kube_version),
        "resources": _replacing(options.resources, RESOURCES),
        "priorityClassName": options.priority_class or "",
        "podSecurityContext": _replacing(options.pod_security_context, POD_SECURITY_CONTEXT),
        "securityContext": _replacing(options.container_security_context, CONTAINER_SECURITY_CONTEXT),
        "webhook": {"failurePolicy": options.failure_policy, "timeoutSeconds": options.timeout_seconds,
                    "namespaceSelector": dict(options.namespace_selector),
                    "exemptNamespaces": list(options.exempt_namespaces)},
        "tls": tls,
        "certManager": {"issuerRef": issuer},
        "mutualTLS": {"clientCA": options.client_ca.decode() if options.client_ca is not None else "",
                      "clientNames": list(options.client_names)},
        "store": {"type": options.store, "sqliteClaim": options.sqlite_claim or ""},
        "pdb": {"enabled": options.pdb},
        "networkPolicy": {"enabled": options.network_policy, "webhookFrom": list(options.webhook_from),
                          "metricsFromNamespace": options.metrics_from_namespace or ""},
        "metrics": {"serviceMonitor": {"enabled": options.prometheus_operator}},
        "alerts": {"prometheusRule": {"enabled": options.prometheus_operator}},
        "aggregatedAPI": {"enabled": options.aggregated_api},
        "kinds": kinds(policy, options.kube_version),
        "policy": {"files": files},
    }


def _replacing(given: Mapping[str, Any], default: Mapping[str, Any]) -> dict[str, Any]:
    """`given` as values that replace the chart's default map: Helm merges maps, and a null deletes a key."""
    out: dict[str, Any] = {k: None for k in default if k not in given}
    for key, value in given.items():
        inner = default.get(key)
        if isinstance(value, Mapping) and isinstance(inner, Mapping):
            out[key] = _replacing(value, inner)
        else:
            out[key] = plain(value)
    return out

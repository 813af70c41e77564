"""An install's objects in apply order: one cluster (`manifests`) or a hub and its members (`fleet_manifests`)."""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from quotalang.compiler import CompiledPolicy
from quotalang.controller.ledger import crd_schema as ledger_crd
from quotalang.errors import InputError
from quotalang.server.clusters import cluster_name
from quotalang.server.exemptions import exempt_list, namespace_name
from quotalang.server.manifests.monitoring import prometheus_rule, service_monitor
from quotalang.server.manifests.objects import (
    cert_manager_objects,
    client_ca_configmap,
    deployment,
    labels,
    meta,
    namespaces,
    network_policy,
    pdb,
    service_hosts,
    webhook_configuration,
)
from quotalang.server.manifests.options import (
    API_PORT,
    CERTIFICATE,
    HUB,
    NAME,
    POLICY_CONFIGMAP,
    TLS_SECRET,
    TOKEN_SECRET,
    WATCHER,
    Options,
)
from quotalang.server.manifests.policyfiles import policy_files
from quotalang.server.manifests.rbac import rbac, reclaim_rules, watch_rules


def manifests(paths: Sequence[str], namespace: str, options: Options) -> list[dict[str, Any]]:
    """Every object, in apply order (the webhook configuration last)."""
    return _install(paths, namespace, options).docs


@dataclass(frozen=True, slots=True)
class _Install:
    docs: list[dict[str, Any]]
    policy: CompiledPolicy
    client_config: dict[str, Any]
    exempt: tuple[str, ...]


def _install(
    paths: Sequence[str], namespace: str, options: Options, clusters: Sequence[str] = (),
    webhook_host: str | None = None,
) -> _Install:
    """`manifests`, or with `clusters` the hub's part of `fleet_manifests` (no webhook configuration)."""
    namespace = namespace_name(namespace, "--namespace")
    exempt = exempt_list(namespace, options.exempt_namespaces)
    tls = options.tls
    if clusters and tls in ("secret", "cert-manager"):
        # Both publish the CA into a webhook configuration in the cluster they run in; the members'
        # configurations need it at install time.
        raise InputError(
            "--cluster: the members' webhook configurations need the hub's CA now: give --tls-secret NAME "
            "--ca-bundle FILE (a certificate naming the --webhook-url host), or --embed-self-signed")
    policy, files = policy_files(paths)
    hosts = service_hosts(namespace)
    if webhook_host is not None:
        hosts.insert(0, webhook_host)  # the members call the hub by its URL
    docs: list[dict[str, Any]] = [
        ledger_crd.crd(),
        *namespaces(namespace, exempt, options.by_name),
        *rbac(policy, namespace, keeps_secret=tls == "secret", watches=not clusters),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(POLICY_CONFIGMAP, namespace), "data": files},
    ]
    if options.client_ca is not None:
        docs.append(client_ca_configmap(namespace, options.client_ca))
    client_config: dict[str, Any] = {
        "service": {"namespace": namespace, "name": NAME, "path": "/validate", "port": 443},
    }
    annotations: dict[str, str] = {}
    if tls == "embedded":
        from quotalang.server.tls import issue, make_ca

        ca = make_ca(f"quotalang webhook CA ({namespace})")
        pair = issue(ca, hosts)
        docs.append({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": meta(TLS_SECRET, namespace),
            "data": {"tls.crt": base64.b64encode(pair.cert).decode(),
                     "tls.key": base64.b64encode(pair.key).decode()},
        })
        client_config["caBundle"] = base64.b64encode(ca.cert).decode()
    elif tls == "existing":
        assert options.ca_bundle is not None
        client_config["caBundle"] = base64.b64encode(options.ca_bundle).decode()
    elif tls == "cert-manager":
        # cert-manager's cainjector copies the Certificate's CA into every webhook's caBundle.
        annotations["cert-manager.io/inject-ca-from"] = f"{namespace}/{CERTIFICATE}"
    # tls == "secret": no caBundle here; every replica writes it (server/certs.py). Re-applying
    # these manifests leaves it alone: kubectl apply only touches fields it set.
    docs.append(
        {"apiVersion": "v1", "kind": "Service", "metadata": meta(NAME, namespace),
         "spec": {"selector": labels(), "ports": [{"name": "https", "port": 443, "targetPort": "https"},
                                                  {"name": "api", "port": API_PORT, "targetPort": "api"}]}})
    if tls == "cert-manager":
        docs += cert_manager_objects(namespace, hosts, options)
    docs.append(deployment(namespace, options, exempt, clusters))
    if options.pdb:
        docs.append(pdb(namespace, options))
    if options.network_policy:
        docs.append(network_policy(namespace, options))
    if options.prometheus_operator:
        docs += [service_monitor(namespace, options), prometheus_rule(namespace)]
    if not clusters:
        docs.append(webhook_configuration(policy, client_config, options, exempt, annotations))
    if options.aggregated_api:
        if clusters:
            raise InputError("--aggregated-api is for one cluster's install: leave out --cluster")
        from quotalang.server.aggregated_manifests import with_aggregated_api

        docs = with_aggregated_api(docs, namespace, NAME)
    return _Install(docs, policy, client_config, exempt)


def webhook_url_host(url: str) -> tuple[str, str]:
    """`https://host[:port][/path]` → (the URL without a trailing '/', host); anything else: InputError."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "https" or not parsed.hostname or parsed.query or parsed.fragment or "@" in parsed.netloc:
        raise InputError(f"--webhook-url {url!r} is not an https URL like https://quota.example.com "
                         "(the apiserver calls webhooks over TLS; no query, fragment or user)")
    return url.rstrip("/"), parsed.hostname


def fleet_manifests(
    paths: Sequence[str],
    namespace: str,
    clusters: Sequence[str],
    webhook_url: str,
    options: Options,
) -> dict[str, list[dict[str, Any]]]:
    """Several clusters: the hub's objects (`HUB`) and each member's, by where they are applied.

    The hub runs serve (`--store kubernetes`, the ledger and Lease in the hub,
    not watched) with one `--cluster NAME=...` per member, each kubeconfig
    mounted from the Secret `cluster_secret(NAME)` that the admin fills from
    the member's token. A member gets no Deployment: a webhook configuration
    calling `URL/validate/NAME` with the hub's CA, and a ServiceAccount whose
    read-only ClusterRole is what the hub's watcher lists, watches and gets
    there, with a token Secret for the hub's kubeconfig.
    """
    names = [cluster_name(c) for c in clusters]  # as serve --cluster wants them
    if len(set(names)) != len(names):
        raise InputError("--cluster: each member cluster is named once")
    if HUB in names:
        raise InputError(f"--cluster {HUB}: the hub is named {HUB} in its own logs; give the member another name")
    if not names:
        raise InputError("--webhook-url is the hub's address for member clusters: name them with --cluster NAME")
    url, host = webhook_url_host(webhook_url)
    hub = _install(paths, namespace, options, clusters=names, webhook_host=host)
    out = {HUB: hub.docs}
    for name in names:
        out[name] = member_objects(hub, namespace, name, url, options)
    return out


def member_objects(
    hub: _Install, namespace: str, name: str, url: str, options: Options,
) -> list[dict[str, Any]]:
    """What member `name` needs: its namespace, the hub's access, and its webhook configuration."""
    namespace = namespace_name(namespace, "--namespace")
    subject = [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}]
    client_config = {"url": f"{url}/validate/{name}", "caBundle": hub.client_config["caBundle"]}
    # list + watch: the hub's Controller for this cluster (controller/runner.py) lists and watches every
    # policy kind, pods and LimitRanges here; get: the hub fetches a /scale parent it has not indexed
    # (server/stores.py live_lookup, by the review's cluster). Written here only what reclaim writes
    # (rbac.reclaim_rules): the borrowers recorded in this cluster, suspended or deleted by this member's
    # Controller through this client (controller/reclaim.py), and their Events.
    return [
        *namespaces(namespace, hub.exempt, options.by_name),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(NAME, namespace)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta(WATCHER),
         "rules": [*watch_rules(hub.policy), *reclaim_rules(hub.policy)]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": meta(WATCHER),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": WATCHER},
         "subjects": subject},
        # A long-lived token for the hub's kubeconfig (the token controller fills it in).
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
         "metadata": {**meta(TOKEN_SECRET, namespace), "annotations": {"kubernetes.io/service-account.name": NAME}}},
        webhook_configuration(hub.policy, client_config, options, hub.exempt),
    ]


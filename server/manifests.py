"""`quotalang manifests`: everything needed to run the webhook in a cluster, as YAML.

The output applies as is (`quotalang manifests ... | kubectl apply -f -`, or
`--output-dir DIR` and `kubectl apply -k DIR`): the QuotaLedger CRD, the
namespaces, ServiceAccount, least-privilege RBAC, the policy as a ConfigMap,
Service, Deployment, PodDisruptionBudget, NetworkPolicy and the
ValidatingWebhookConfiguration.

Decisions:

* RBAC: every rule is one the code calls, and `rbac()` names the call next to
  it. A rule too few and `serve` fails (the end-to-end install test runs the
  image under exactly these rules); a rule too many is a grant nobody reviews.
* The `QuotaLedger` CRD comes first, so that everything after it applies in
  one go.
* TLS: by default nothing secret is printed: `serve --cert-secret` creates a
  CA and serving pair in a Secret, publishes the CA as the webhook's
  `caBundle` and renews both (server/certs.py). `--cert-manager` asks
  cert-manager instead (Issuer, Certificate, CA injection annotation);
  `--tls-secret NAME --ca-bundle FILE` mounts a Secret made elsewhere; only
  `--embed-self-signed` prints a private key, with a warning.
* The webhook registers CREATE and UPDATE of every kind in the policy, the
  `/scale` subresource of kinds whose rule names a scale path (others are
  not charged on scale anyway), and HorizontalPodAutoscalers; DELETE is not
  intercepted. Exempt namespaces are a list fixed here (`--exempt-namespace`;
  kube-system and the webhook's own are always in it, or a webhook that is
  down would block the pods that restart it) and passed to `serve` too. On
  Kubernetes >= 1.21 the `namespaceSelector` names them through
  `kubernetes.io/metadata.name`, which the apiserver sets and guards. 1.20
  has no such label: the manifests label the listed namespaces
  `quotalang.dev/exempt`, the selector skips labelled namespaces, and a
  second webhook (namespaces, only when the label is involved) lets serve
  refuse the label on any namespace not in the list (server/exemptions.py).
  There is no opt-out label anyone could set.
* Production: restricted Pod Security (namespace labels, and a pod that
  satisfies them: non-root, RuntimeDefault seccomp, no capabilities, no
  privilege escalation, read-only root with an emptyDir /tmp); a
  NetworkPolicy that admits only the webhook port (from `--webhook-from`
  CIDRs, else anywhere: the apiserver's source address is not known in
  general) and the API port (from `--metrics-from-namespace` when given,
  else anywhere: every request there needs a token RBAC allows);
  requests and limits from the benchmarks (`RESOURCES`); a
  PodDisruptionBudget of maxUnavailable 1, which lets a drain evict one pod
  even at one replica (minAvailable 1 would block a single-node drain
  forever); `priorityClassName`.
* Two ports: the webhook port (8443, Service port 443) answers only
  admission and health; the API port (8444, Service port `api`) serves
  /metrics, the JSON API and the pages to bearer tokens the apiserver
  accepts and RBAC allows (server/apiauth.py). The ClusterRole
  `quotalang-viewer` grants reading the whole tree (and what-if), and
  `quotalang-metrics-reader` scraping /metrics: bind teams and Prometheus
  to them.
* `--output-dir DIR`: one file per object and a `kustomization.yaml` listing
  them in apply order (`kubectl apply -k DIR`).
* The ConfigMap holds the policy directory's `*.quota` files flat; the shipped
  kind library (`quotalang:policies`) is in the image. A policy that imports a
  file from outside its directory cannot be put in one ConfigMap: an error.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from quotalang import loader
from quotalang.compiler import CompiledPolicy, compile_sources
from quotalang.controller.kube.election import DEFAULT_NAME as DEFAULT_LEASE_NAME
from quotalang.controller.kube.naming import plural, policy_kinds
from quotalang.controller.ledger import crd as ledger_crd
from quotalang.errors import InputError
from quotalang.server.clusters import cluster_name
from quotalang.server.exemptions import LABEL as EXEMPT_LABEL
from quotalang.server.exemptions import PATH as NAMESPACES_PATH
from quotalang.server.exemptions import exempt_list, namespace_name

DEFAULT_IMAGE = "ghcr.io/quotalang/quotalang:0.1.0"
NAME = "quotalang"
WEBHOOK_NAME = "quota.quotalang.dev"
NAMESPACE_WEBHOOK_NAME = "namespaces.quotalang.dev"  # Kubernetes < 1.21: guards the exemption label
POLICY_MOUNT = "/etc/quotalang/policy"
CLUSTERS_MOUNT = "/etc/quotalang/clusters"  # the hub: a member's kubeconfig at NAME/kubeconfig
HUB = "hub"  # the hub's name in its own logs (it holds the ledger and is not a member)
TOKEN_SECRET = f"{NAME}-token"  # a member: the hub's watcher token
WATCHER = f"{NAME}-watcher"  # a member: what the hub may read there
TLS_MOUNT = "/etc/quotalang/tls"
PORT = 8443
API_PORT = 8444  # /metrics, the JSON API and the pages, behind TokenReview + SubjectAccessReview
VIEWER = f"{NAME}-viewer"
METRICS_READER = f"{NAME}-metrics-reader"
TLS_SECRET = f"{NAME}-tls"
CERTIFICATE = f"{NAME}-serving"  # the cert-manager Certificate
LEASE_NAME = DEFAULT_LEASE_NAME
DEFAULT_PRIORITY_CLASS = "system-cluster-critical"
DEFAULT_KUBE_VERSION = (1, 21)
NAME_LABEL_SINCE = (1, 21)  # kubernetes.io/metadata.name: set and guarded by the apiserver from 1.21
# Restricted Pod Security for the webhook's namespace (enforced by the PodSecurity admission from
# 1.23, alpha in 1.22; older clusters keep the labels for when they upgrade). The pod spec satisfies it.
POD_SECURITY = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
# Sized from the benchmarks (README "Install on a cluster"): bench/bench_controller.py at 100k pods,
# 20k workloads and 1,000 groups estimates a controller process at 170 MB (36 MB with the policy
# compiled + 134 MB of reconciler and ledger state), and an idle `serve` with the example policy holds
# 46 MB: the request, 256Mi, is the leader's steady state at that size. A full relist holds a listing
# beside the state (the bench's 136k generated objects took ~400 MB): the limit, 1Gi, covers
# 170 + 46 + 400 MB with headroom. No CPU limit: throttling would show up as admission latency.
RESOURCES: dict[str, dict[str, str]] = {"requests": {"cpu": "200m", "memory": "256Mi"},
                                        "limits": {"memory": "1Gi"}}


def parse_kube_version(text: str) -> tuple[int, int]:
    """`1.20` or `v1.20.2` → (1, 20): the oldest Kubernetes the output must apply to."""
    parts = text.strip().removeprefix("v").split(".")
    try:
        major, minor = int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        raise InputError(f"--kube-version {text!r} is not a Kubernetes version like 1.20") from None
    if (major, minor) < (1, 19):
        raise InputError(f"--kube-version {text}: Kubernetes before 1.19 lacks admissionregistration/v1 features "
                         "these manifests use")
    return major, minor
CONFIGMAP_LIMIT = 1024 * 1024  # the apiserver refuses larger ConfigMaps
FailurePolicy = Literal["Fail", "Ignore"]


def _labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "webhook"}


def _meta(name: str, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = _labels()
    return meta


def policy_files(paths: Sequence[str]) -> tuple[CompiledPolicy, dict[str, str]]:
    """Compile the policy and collect its files for a flat ConfigMap (file name → text)."""
    sources = loader.load(list(paths))
    policy = compile_sources(sources)
    library = os.path.abspath(loader.library_dir())
    own: dict[str, str] = {}  # abspath -> flat key
    for root in paths:
        path = Path(root)
        found = sorted(p for p in path.iterdir() if p.suffix == ".quota") if path.is_dir() else [path]
        for file in found:
            if file.name in own.values():
                raise InputError(f"two policy files are named {file.name}: a ConfigMap holds one flat folder")
            own[os.path.abspath(file)] = file.name
    files: dict[str, str] = {}
    for name, text in sources.texts.items():
        absolute = os.path.abspath(name)
        if absolute.startswith(library + os.sep):
            continue  # the shipped kind rules: part of the image
        if absolute not in own:
            raise InputError(
                f"the policy imports {name}, which is outside the policy directory; "
                "move it into the directory so the ConfigMap can hold it"
            )
        files[own[absolute]] = text
    size = sum(len(k) + len(v.encode()) for k, v in files.items())
    if size > CONFIGMAP_LIMIT:
        raise InputError(f"the policy files hold {size} bytes, over a ConfigMap's limit of {CONFIGMAP_LIMIT}")
    return policy, dict(sorted(files.items()))


def watch_rules(policy: CompiledPolicy) -> list[dict[str, Any]]:
    """What the controller reads in a cluster it watches: list + watch, and get for /scale parents."""
    # pods: the controller accrues cash per pod. limitranges: every replica (the kubernetes store's
    # runtime) and the controller list + watch them to charge templates with their namespace's
    # LimitRange defaults, as the LimitRanger will fill them in (controller/kube/limit_ranges.py).
    watched: dict[str, set[str]] = {"": {"pods", "limitranges"}}
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
    # instead (kubestore_runtime.StoreRuntime.limit_ranges_from).
    rules = watch_rules(policy) if watches else []
    # The shared ledger (controller/ledger/kubestore.py): get/create/update one object per group on
    # every admission (compare-and-swap), list + watch to follow other replicas' writes, delete to
    # drop an empty ledger of a group the policy no longer has.
    rules.append({"apiGroups": [ledger_crd.GROUP], "resources": [ledger_crd.PLURAL],
                  "verbs": ["get", "list", "watch", "create", "update", "delete"]})
    # get: `serve --store kubernetes` checks at start that the QuotaLedger CRD is installed
    # (controller/ledger/kubestore_runtime.py install_crd); it never creates it, the manifests do.
    rules.append({"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
                  "resourceNames": [ledger_crd.CRD_NAME], "verbs": ["get"]})
    # create: the API port asks who a bearer token belongs to (TokenReview) and whether that user may
    # read what it asks for (SubjectAccessReview); server/apiauth.py KubeReviews. Both are reviews,
    # not objects: create is the only verb they have.
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
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(NAME, namespace)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": _meta(NAME),
         "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": _meta(NAME),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
         "subjects": subject},
        *readers(),
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(NAME, namespace),
         "rules": role_rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": _meta(NAME, namespace),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
         "subjects": subject},
    ]


def readers() -> list[dict[str, Any]]:
    """ClusterRoles for the API port's readers, bound by admins (nothing is bound here).

    `quotalang-viewer`: the whole tree or nothing (server/apiauth.py: `get` on
    `groups.quotalang.dev` for the JSON API and the pages, `create` on
    `groups/explain` for what-if and propose, which reserve nothing).
    `quotalang-metrics-reader`: `get` on the non-resource URL /metrics, for Prometheus.
    """
    from quotalang.server.apiauth import API_GROUP, EXPLAIN, RESOURCE

    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": _meta(VIEWER),
         "rules": [{"apiGroups": [API_GROUP], "resources": [RESOURCE], "verbs": ["get"]},
                   {"apiGroups": [API_GROUP], "resources": [f"{RESOURCE}/{EXPLAIN}"], "verbs": ["create"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": _meta(METRICS_READER),
         "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]},
    ]


def webhook_rules(policy: CompiledPolicy) -> list[dict[str, Any]]:
    by_gv: dict[tuple[str, str], list[str]] = {}
    for group, version, kind, scales in policy_kinds(policy):
        resources = by_gv.setdefault((group, version), [])
        resources.append(plural(kind))
        if scales:
            resources.append(f"{plural(kind)}/scale")
    rules = [
        {"apiGroups": [group], "apiVersions": [version], "operations": ["CREATE", "UPDATE"],
         "resources": sorted(resources), "scope": "Namespaced"}
        for (group, version), resources in sorted(by_gv.items())
    ]
    rules.append({"apiGroups": ["autoscaling"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
                  "resources": ["horizontalpodautoscalers"], "scope": "Namespaced"})
    return rules


TlsMode = Literal["secret", "cert-manager", "embedded", "existing"]


def deployment(
    namespace: str, image: str, replicas: int, tls: TlsMode, tls_secret: str, failure_mode: str,
    priority_class: str | None, exempt: Sequence[str] = (), clusters: Sequence[str] = (),
) -> dict[str, Any]:
    """The webhook's Deployment; with `clusters`, the hub's: each member's kubeconfig mounted from a Secret."""
    args = ["serve", "--policy", POLICY_MOUNT, "--host", "0.0.0.0", "--port", str(PORT), "--api-port", str(API_PORT)]
    for name in exempt:  # the same list the webhook configuration skips (serve judges the label by it)
        args += ["--exempt-namespace", name]
    mounts: list[dict[str, Any]] = [{"name": "policy", "mountPath": POLICY_MOUNT, "readOnly": True}]
    volumes: list[dict[str, Any]] = [{"name": "policy", "configMap": {"name": f"{NAME}-policy"}}]
    if tls == "secret":
        # serve keeps the CA and serving pair in the Secret itself and serves them from /tmp.
        args += ["--cert-secret", tls_secret, "--cert-service", NAME, "--webhook-configuration", NAME]
    else:
        args += ["--tls-cert", f"{TLS_MOUNT}/tls.crt", "--tls-key", f"{TLS_MOUNT}/tls.key"]
        mounts.append({"name": "tls", "mountPath": TLS_MOUNT, "readOnly": True})
        volumes.append({"name": "tls", "secret": {"secretName": tls_secret}})
    # /tmp: certificate reloads validate in a scratch folder, and the kept pair is served from there.
    mounts.append({"name": "tmp", "mountPath": "/tmp"})
    volumes.append({"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}})
    # Replicas share the ledger on the apiserver; the Lease holder watches and accrues cash.
    args += ["--failure-mode", failure_mode, "--log-format", "json"]
    if clusters:
        # The hub: watches every member through the kubeconfig in its Secret, keeps the ledger, the
        # Lease and the token checks in the cluster it runs in (not watched: it runs no workloads).
        for name in clusters:
            folder = f"{CLUSTERS_MOUNT}/{name}"
            args += ["--cluster", f"{name}={folder}/kubeconfig"]
            mounts.append({"name": f"cluster-{name}", "mountPath": folder, "readOnly": True})
            volumes.append({"name": f"cluster-{name}", "secret": {"secretName": cluster_secret(name)}})
        args += ["--ledger-cluster", f"{HUB}=in-cluster", "--store", "kubernetes"]
    else:
        args += ["--in-cluster", "--store", "kubernetes"]
    probe = {"scheme": "HTTPS", "port": "https"}
    container = {
        "name": "webhook",
        "image": image,
        "args": args,
        "ports": [{"name": "https", "containerPort": PORT}, {"name": "api", "containerPort": API_PORT}],
        # The kubernetes store names each replica (reservations, the Lease holder) and finds the
        # Lease's (and the certificate Secret's) namespace from these.
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
        "readinessProbe": {"httpGet": {"path": "/readyz", **probe}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", **probe}, "initialDelaySeconds": 5,
                          "periodSeconds": 10, "failureThreshold": 3},
        "resources": {k: dict(v) for k, v in RESOURCES.items()},
        # Everything Pod Security "restricted" asks of a container, and a read-only root.
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "volumeMounts": mounts,
    }
    pod: dict[str, Any] = {
        "serviceAccountName": NAME,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": _labels()},
                                                "topologyKey": "kubernetes.io/hostname"}}]}},
        "containers": [container],
        "volumes": volumes,
    }
    if priority_class:
        # Evicted last: while no replica runs, failurePolicy Fail blocks every covered write.
        pod["priorityClassName"] = priority_class
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(NAME, namespace),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": _labels()},
            "template": {"metadata": {"labels": _labels()}, "spec": pod},
        },
    }


def cert_manager_objects(namespace: str, hosts: list[str]) -> list[dict[str, Any]]:
    """A self-signed Issuer and the serving Certificate; cert-manager writes and renews the Secret."""
    return [
        {"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": _meta(f"{NAME}-selfsigned", namespace),
         "spec": {"selfSigned": {}}},
        {"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": _meta(CERTIFICATE, namespace),
         "spec": {"secretName": TLS_SECRET, "dnsNames": hosts, "duration": "2160h", "renewBefore": "720h",
                  "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
                  "issuerRef": {"name": f"{NAME}-selfsigned", "kind": "Issuer"}}},
    ]


def manifests(
    paths: Sequence[str],
    namespace: str,
    *,
    image: str = DEFAULT_IMAGE,
    failure_policy: FailurePolicy = "Fail",
    replicas: int = 2,
    tls_secret: str | None = None,
    ca_bundle: bytes | None = None,
    cert_manager: bool = False,
    embed_self_signed: bool = False,
    priority_class: str | None = DEFAULT_PRIORITY_CLASS,
    kube_version: tuple[int, int] = DEFAULT_KUBE_VERSION,
    exempt_namespaces: Sequence[str] = (),
    webhook_from: Sequence[str] = (),
    metrics_from_namespace: str | None = None,
) -> list[dict[str, Any]]:
    """Every object, in apply order (the webhook configuration last).

    TLS, one of four ways: by default serve keeps its own CA and serving pair in
    a Secret (nothing secret is printed); `cert_manager` asks cert-manager for
    them; `tls_secret` + `ca_bundle` mount a Secret made elsewhere; and only
    `embed_self_signed` prints a private key (the caller warns).
    `exempt_namespaces` adds to kube-system and `namespace`, which are always exempt.
    """
    return _install(
        paths, namespace, image=image, failure_policy=failure_policy, replicas=replicas, tls_secret=tls_secret,
        ca_bundle=ca_bundle, cert_manager=cert_manager, embed_self_signed=embed_self_signed,
        priority_class=priority_class, kube_version=kube_version, exempt_namespaces=exempt_namespaces,
        webhook_from=webhook_from, metrics_from_namespace=metrics_from_namespace,
    ).docs


@dataclass(frozen=True, slots=True)
class _Install:
    docs: list[dict[str, Any]]
    policy: CompiledPolicy
    client_config: dict[str, Any]
    exempt: tuple[str, ...]
    by_name: bool


def _install(
    paths: Sequence[str],
    namespace: str,
    *,
    image: str = DEFAULT_IMAGE,
    failure_policy: FailurePolicy = "Fail",
    replicas: int = 2,
    tls_secret: str | None = None,
    ca_bundle: bytes | None = None,
    cert_manager: bool = False,
    embed_self_signed: bool = False,
    priority_class: str | None = DEFAULT_PRIORITY_CLASS,
    kube_version: tuple[int, int] = DEFAULT_KUBE_VERSION,
    exempt_namespaces: Sequence[str] = (),
    webhook_from: Sequence[str] = (),
    metrics_from_namespace: str | None = None,
    clusters: Sequence[str] = (),
    webhook_host: str | None = None,
) -> _Install:
    """`manifests`, or with `clusters` the hub's part of `fleet_manifests` (no webhook configuration)."""
    namespace = namespace_name(namespace, "--namespace")
    exempt = exempt_list(namespace, exempt_namespaces)
    by_name = kube_version >= NAME_LABEL_SINCE
    if metrics_from_namespace is not None:
        namespace_name(metrics_from_namespace, "--metrics-from-namespace")
        if not by_name:
            raise InputError(
                "--metrics-from-namespace selects the namespace by its kubernetes.io/metadata.name label, which "
                "Kubernetes sets (and guards) from 1.21; on an older cluster any namespace could claim it. "
                "Leave it out, or give --kube-version 1.21 or later")
    blocks = [_cidr(c) for c in webhook_from]
    if (tls_secret is None) != (ca_bundle is None):
        raise InputError(
            "--tls-secret and --ca-bundle go together: the Secret to mount and the CA that signed it"
        )
    chosen = [flag for flag, on in (("--tls-secret", tls_secret is not None), ("--cert-manager", cert_manager),
                                    ("--embed-self-signed", embed_self_signed)) if on]
    if len(chosen) > 1:
        raise InputError(f"{' and '.join(chosen)} are different ways to get a certificate: choose one")
    tls: TlsMode = ("existing" if tls_secret is not None else "cert-manager" if cert_manager
                    else "embedded" if embed_self_signed else "secret")
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
        *namespaces(namespace, exempt, by_name),
        *rbac(policy, namespace, keeps_secret=tls == "secret", watches=not clusters),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(f"{NAME}-policy", namespace),
         "data": files},
    ]
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
            "metadata": _meta(TLS_SECRET, namespace),
            "data": {"tls.crt": base64.b64encode(pair.cert).decode(),
                     "tls.key": base64.b64encode(pair.key).decode()},
        })
        client_config["caBundle"] = base64.b64encode(ca.cert).decode()
    elif tls == "existing":
        assert ca_bundle is not None
        client_config["caBundle"] = base64.b64encode(ca_bundle).decode()
    elif tls == "cert-manager":
        # cert-manager's cainjector copies the Certificate's CA into every webhook's caBundle.
        annotations["cert-manager.io/inject-ca-from"] = f"{namespace}/{CERTIFICATE}"
    # tls == "secret": no caBundle here; every replica writes it (server/certs.py). Re-applying
    # these manifests leaves it alone: kubectl apply only touches fields it set.
    failure_mode = "deny" if failure_policy == "Fail" else "allow"
    docs.append(
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(NAME, namespace),
         "spec": {"selector": _labels(), "ports": [{"name": "https", "port": 443, "targetPort": "https"},
                                                   {"name": "api", "port": API_PORT, "targetPort": "api"}]}})
    if tls == "cert-manager":
        docs += cert_manager_objects(namespace, hosts)
    docs += [
        deployment(namespace, image, replicas, tls, tls_secret or TLS_SECRET, failure_mode, priority_class, exempt,
                   clusters),
        # maxUnavailable, not minAvailable: at one replica (or on a one-node cluster) minAvailable 1
        # would block every drain forever. policy/v1 arrived in 1.21; v1beta1 is the same object.
        {"apiVersion": "policy/v1" if kube_version >= (1, 21) else "policy/v1beta1",
         "kind": "PodDisruptionBudget", "metadata": _meta(NAME, namespace),
         "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _labels()}}},
        network_policy(namespace, blocks, metrics_from_namespace),
    ]
    if not clusters:
        docs.append(webhook_configuration(policy, client_config, failure_policy, exempt, by_name, annotations))
    return _Install(docs, policy, client_config, exempt, by_name)


def cluster_secret(name: str) -> str:
    """The hub's Secret holding member `name`'s kubeconfig (key `kubeconfig`)."""
    return f"{NAME}-cluster-{name}"


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
    **options: Any,
) -> dict[str, list[dict[str, Any]]]:
    """Several clusters: the hub's objects (`HUB`) and each member's, by where they are applied.

    The hub runs serve (`--store kubernetes`, the ledger and Lease in the hub,
    not watched) with one `--cluster NAME=...` per member, each kubeconfig
    mounted from the Secret `cluster_secret(NAME)` that the admin fills from
    the member's token. A member gets no Deployment: a webhook configuration
    calling `URL/validate/NAME` with the hub's CA, and a ServiceAccount whose
    read-only ClusterRole is what the hub's watcher lists, watches and gets
    there, with a token Secret for the hub's kubeconfig. `options`: those of
    `manifests`.
    """
    names = [cluster_name(c) for c in clusters]  # as serve --cluster wants them
    if len(set(names)) != len(names):
        raise InputError("--cluster: each member cluster is named once")
    if HUB in names:
        raise InputError(f"--cluster {HUB}: the hub is named {HUB} in its own logs; give the member another name")
    if not names:
        raise InputError("--webhook-url is the hub's address for member clusters: name them with --cluster NAME")
    url, host = webhook_url_host(webhook_url)
    hub = _install(paths, namespace, clusters=names, webhook_host=host, **options)
    out = {HUB: hub.docs}
    for name in names:
        out[name] = member_objects(hub, namespace, name, url, options.get("failure_policy", "Fail"),
                                   options.get("kube_version", DEFAULT_KUBE_VERSION))
    return out


def member_objects(
    hub: _Install, namespace: str, name: str, url: str, failure_policy: FailurePolicy, kube_version: tuple[int, int],
) -> list[dict[str, Any]]:
    """What member `name` needs: its namespace, the hub's read-only access, and its webhook configuration."""
    namespace = namespace_name(namespace, "--namespace")
    subject = [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}]
    client_config = {"url": f"{url}/validate/{name}", "caBundle": hub.client_config["caBundle"]}
    # list + watch: the hub's Controller for this cluster (controller/runner.py) lists and watches every
    # policy kind, pods and LimitRanges here; get: the hub fetches a /scale parent it has not indexed
    # (server/stores.py live_lookup, by the review's cluster). Nothing is written here.
    return [
        *namespaces(namespace, hub.exempt, kube_version >= NAME_LABEL_SINCE),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(NAME, namespace)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": _meta(WATCHER),
         "rules": watch_rules(hub.policy)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": _meta(WATCHER),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": WATCHER},
         "subjects": subject},
        # A long-lived token for the hub's kubeconfig (the token controller fills it in).
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
         "metadata": {**_meta(TOKEN_SECRET, namespace), "annotations": {"kubernetes.io/service-account.name": NAME}}},
        webhook_configuration(hub.policy, client_config, failure_policy, hub.exempt, hub.by_name),
    ]


def webhook_configuration(
    policy: CompiledPolicy,
    client_config: Mapping[str, Any],
    failure_policy: FailurePolicy,
    exempt: Sequence[str],
    by_name: bool,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ValidatingWebhookConfiguration: the quota webhook, and before 1.21 the namespaces one."""
    meta = _meta(NAME)
    if annotations:
        meta["annotations"] = dict(annotations)
    quota_hook: dict[str, Any] = {
        "name": WEBHOOK_NAME,
        "admissionReviewVersions": ["v1"],
        "sideEffects": "NoneOnDryRun",
        "timeoutSeconds": 5,
        "failurePolicy": failure_policy,
        "matchPolicy": "Equivalent",
        "clientConfig": dict(client_config),
        "namespaceSelector": {"matchExpressions": [
            # By name where Kubernetes guards the name label; else by a label only listed namespaces
            # may carry (the namespaces webhook below refuses it elsewhere).
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": list(exempt)} if by_name
            else {"key": EXEMPT_LABEL, "operator": "DoesNotExist"},
        ]},
        "rules": webhook_rules(policy),
    }
    hooks = [quota_hook]
    if not by_name:
        hooks.append(namespace_webhook(client_config))
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": meta, "webhooks": hooks}


def namespaces(namespace: str, exempt: Sequence[str], by_name: bool) -> list[dict[str, Any]]:
    """The webhook's namespace (restricted Pod Security) and, before 1.21, the exemption labels.

    Only kube-system besides the own namespace is labelled here: `kubectl delete -f`
    of this output would delete any other namespace it names (kube-system cannot be
    deleted). Other listed namespaces are labelled by hand; the header says how.
    """
    own: dict[str, Any] = {"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": namespace, "labels": dict(POD_SECURITY)}}
    if by_name:
        return [own]
    own["metadata"]["labels"][EXEMPT_LABEL] = "true"
    docs = [own]
    if "kube-system" in exempt and namespace != "kube-system":
        docs.insert(0, {"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": "kube-system", "labels": {EXEMPT_LABEL: "true"}}})
    return docs


def namespace_webhook(client_config: Mapping[str, Any]) -> dict[str, Any]:
    """Kubernetes < 1.21: namespace CREATE/UPDATE that involve the exemption label go to serve.

    The objectSelector sends only namespaces whose old or new labels carry the
    label, so creating or editing any other namespace never waits on quotalang.
    failurePolicy is always Fail: a label taken while the webhook is down would
    outlive the outage. The price: while no replica answers, the labelled
    namespaces' own objects (not their pods) cannot be updated.
    """
    if "url" in client_config:  # a member of several clusters calls the hub by URL
        hub = str(client_config["url"]).rsplit("/validate/", 1)[0]
        target: dict[str, Any] = {**client_config, "url": f"{hub}{NAMESPACES_PATH}"}
    else:
        target = {**client_config, "service": dict(client_config["service"], path=NAMESPACES_PATH)}
    return {
        "name": NAMESPACE_WEBHOOK_NAME,
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "timeoutSeconds": 5,
        "failurePolicy": "Fail",
        "matchPolicy": "Equivalent",
        "clientConfig": target,
        "objectSelector": {"matchExpressions": [{"key": EXEMPT_LABEL, "operator": "Exists"}]},
        "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                   "resources": ["namespaces"], "scope": "Cluster"}],
    }


def _cidr(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise InputError(f"--webhook-from {text!r} is not a CIDR like 10.0.0.0/16") from None


def network_policy(namespace: str, webhook_from: Sequence[str], metrics_from: str | None) -> dict[str, Any]:
    """Ingress to the webhook pods: the webhook port and the API port, nothing else.

    The webhook port from `webhook_from` (ipBlocks: the control plane's
    addresses) when given, else from anywhere: where the apiserver's calls come
    from depends on the cluster (host network, a cloud's control plane). The
    API port (/metrics, the JSON API, the pages) from `metrics_from` (a
    namespace, by the name label Kubernetes guards) when given, else from
    anywhere: every request there needs a token RBAC allows. Egress is left
    open: the apiserver's address is not known here either.
    """
    port = [{"protocol": "TCP", "port": PORT}]
    api = [{"protocol": "TCP", "port": API_PORT}]
    ingress: list[dict[str, Any]] = [
        {"ports": port, **({"from": [{"ipBlock": {"cidr": c}} for c in webhook_from]} if webhook_from else {})},
    ]
    if metrics_from is not None:
        ingress.append({"ports": api, "from": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": metrics_from}}}]})
    else:
        ingress.append({"ports": api})
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": _meta(NAME, namespace),
            "spec": {"podSelector": {"matchLabels": _labels()}, "policyTypes": ["Ingress"], "ingress": ingress}}


def service_hosts(namespace: str) -> list[str]:
    """The DNS names the apiserver may use for the Service (it calls `<name>.<namespace>.svc`)."""
    service = f"{NAME}.{namespace}.svc"
    return [service, f"{service}.cluster.local", f"{NAME}.{namespace}", NAME]


def has_private_key(docs: list[dict[str, Any]]) -> bool:
    return any(d.get("kind") == "Secret" and "tls.key" in (d.get("data") or {}) for d in docs)


def _hand_labelled(docs: list[dict[str, Any]]) -> list[str]:
    """Exempt namespaces this output does not label itself (before 1.21): the header says to."""
    hooks: list[dict[str, Any]] = next(
        (d["webhooks"] for d in docs if d.get("kind") == "ValidatingWebhookConfiguration"), [])
    if not any(h.get("name") == NAMESPACE_WEBHOOK_NAME for h in hooks):
        return []
    labelled = {d["metadata"]["name"] for d in docs if d.get("kind") == "Namespace"}
    deploy = next((d for d in docs if d.get("kind") == "Deployment"), None)
    args: list[str] = deploy["spec"]["template"]["spec"]["containers"][0]["args"] if deploy else []
    listed = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--exempt-namespace"]
    return [n for n in listed if n not in labelled]


def header(docs: list[dict[str, Any]], namespace: str, apply: str, notes: Sequence[str] = ()) -> list[str]:
    lines = [
        f"# quotalang webhook for namespace {namespace}: generated by `quotalang manifests`.",
        f"# Apply with: {apply}",
        *(f"# {note}" for note in notes),
    ]
    for name in _hand_labelled(docs):
        lines.append(f"# Exempt namespace {name}: kubectl label namespace {name} {EXEMPT_LABEL}=true")
    if has_private_key(docs):
        lines.append("# WARNING: this output holds a private key (--embed-self-signed); keep it out of Git and logs.")
    return lines


def render_yaml(docs: list[dict[str, Any]], namespace: str, replicas: int, notes: Sequence[str] = ()) -> str:
    body = yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, width=120)
    return "\n".join(header(docs, namespace, "quotalang manifests ... | kubectl apply -f -", notes)) + "\n" + body


def fleet_notes(target: str, namespace: str, clusters: Sequence[str]) -> list[str]:
    """What to do besides applying: where each part goes, and the kubeconfig Secrets the hub reads."""
    if target == HUB:
        secrets = ", ".join(cluster_secret(c) for c in clusters)
        return [
            "The hub (several clusters): apply to the cluster that keeps the ledger. Expose Service "
            f"{namespace}/{NAME} (port 443) at --webhook-url, and create the Secrets {secrets} "
            "(key kubeconfig) as each member's output says.",
        ]
    return [
        f"Member cluster {target}: apply to {target}; its webhook calls the hub at /validate/{target}.",
        f"Then give the hub a kubeconfig for {target} with the token of Secret {namespace}/{TOKEN_SECRET} here:",
        f"  kubectl -n {namespace} create secret generic {cluster_secret(target)} --from-file=kubeconfig=FILE "
        "(in the hub)",
    ]


def write_fleet_dir(
    targets: Mapping[str, list[dict[str, Any]]], namespace: str, folder: Path
) -> list[Path]:
    """One folder per target (`hub`, each member), each as `write_dir` writes it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--output-dir {folder} is a file, not a directory")
    if folder.is_dir():
        foreign = sorted(p.name for p in folder.iterdir() if p.name not in targets)
        if foreign:
            raise InputError(
                f"--output-dir {folder} holds files this command did not write ({', '.join(foreign[:5])}); "
                "give an empty or new directory")
    written: list[Path] = []
    for target, docs in targets.items():
        written += write_dir(docs, namespace, folder / target, fleet_notes(target, namespace, list(targets)[1:]))
    return written


KUSTOMIZATION = "kustomization.yaml"
_MARK = "# written by `quotalang manifests --output-dir`"


def file_name(index: int, doc: Mapping[str, Any]) -> str:
    """`03-clusterrole-quotalang.yaml`: apply order first, then what the object is."""
    name = str(doc["metadata"]["name"]).replace(":", "-")
    return f"{index:02d}-{str(doc['kind']).lower()}-{name}.yaml"


def write_dir(docs: list[dict[str, Any]], namespace: str, folder: Path, notes: Sequence[str] = ()) -> list[Path]:
    """One file per object and a kustomization.yaml naming them in apply order; returns what was written.

    A folder that holds other files is refused (the output would mix with them);
    one written by an earlier run is replaced whole, so an object dropped since
    does not linger as a file nobody applies. A private key (--embed-self-signed)
    goes into a file only its owner can read.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--output-dir {folder} is a file, not a directory")
    if folder.is_dir():
        present = sorted(p.name for p in folder.iterdir())
        ours = _previous_output(folder)
        foreign = [n for n in present if n not in ours]
        if foreign:
            raise InputError(
                f"--output-dir {folder} holds files this command did not write ({', '.join(foreign[:5])}); "
                "give an empty or new directory")
        for name in ours & set(present):
            (folder / name).unlink()
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    names: list[str] = []
    for index, doc in enumerate(docs, start=1):
        name = file_name(index, doc)
        secret = doc.get("kind") == "Secret" and "tls.key" in (doc.get("data") or {})
        path = folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
        with os.fdopen(fd, "w") as out:
            out.write(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=120))
        names.append(name)
        written.append(path)
    lines = [_MARK, *header(docs, namespace, f"kubectl apply -k {folder}", notes)]
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": names}
    path = folder / KUSTOMIZATION
    path.write_text("\n".join(lines) + "\n" + yaml.safe_dump(kustomization, sort_keys=False))
    written.append(path)
    return written


def _previous_output(folder: Path) -> set[str]:
    """The files an earlier `--output-dir` run wrote here (its kustomization and what that lists)."""
    path = folder / KUSTOMIZATION
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return set()
    if not text.startswith(_MARK):
        return set()
    try:
        listed = (yaml.safe_load(text) or {}).get("resources") or []
    except yaml.YAMLError:
        return set()
    return {KUSTOMIZATION, *(n for n in listed if isinstance(n, str) and "/" not in n and n != "..")}

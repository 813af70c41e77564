"""`quotalang manifests`: everything needed to run the webhook in a cluster, as YAML.

The output applies as is (`quotalang manifests ... | kubectl apply -f -`):
the QuotaLedger CRD, Namespace, ServiceAccount, least-privilege RBAC, the
policy as a ConfigMap, Service, Deployment, PodDisruptionBudget and the
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
  intercepted. kube-system and the webhook's own namespace are excluded by
  name (the `kubernetes.io/metadata.name` label, which Kubernetes >= 1.21
  sets and guards); there is no opt-out label anyone could set.
* The ConfigMap holds the policy directory's `*.quota` files flat; the shipped
  kind library (`quotalang:policies`) is in the image. A policy that imports a
  file from outside its directory cannot be put in one ConfigMap: an error.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from quotalang import loader
from quotalang.compiler import CompiledPolicy, compile_sources
from quotalang.controller.kube.election import DEFAULT_NAME as DEFAULT_LEASE_NAME
from quotalang.controller.kube.naming import plural, policy_kinds
from quotalang.controller.ledger import crd as ledger_crd
from quotalang.errors import InputError

DEFAULT_IMAGE = "ghcr.io/quotalang/quotalang:0.1.0"
NAME = "quotalang"
WEBHOOK_NAME = "quota.quotalang.dev"
POLICY_MOUNT = "/etc/quotalang/policy"
TLS_MOUNT = "/etc/quotalang/tls"
PORT = 8443
TLS_SECRET = f"{NAME}-tls"
CERTIFICATE = f"{NAME}-serving"  # the cert-manager Certificate
LEASE_NAME = DEFAULT_LEASE_NAME
DEFAULT_PRIORITY_CLASS = "system-cluster-critical"
DEFAULT_KUBE_VERSION = (1, 21)


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


def rbac(policy: CompiledPolicy, namespace: str, *, keeps_secret: bool) -> list[dict[str, Any]]:
    """ServiceAccount, roles and bindings: every rule is one the code calls, with the call named.

    `keeps_secret`: serve keeps its certificates in a Secret and publishes the CA
    to the webhook configuration (the default), which needs three more rules.
    """
    watched: dict[str, set[str]] = {"": {"pods"}}  # the controller accrues cash per pod
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
    # The shared ledger (controller/ledger/kubestore.py): get/create/update one object per group on
    # every admission (compare-and-swap), list + watch to follow other replicas' writes, delete to
    # drop an empty ledger of a group the policy no longer has.
    rules.append({"apiGroups": [ledger_crd.GROUP], "resources": [ledger_crd.PLURAL],
                  "verbs": ["get", "list", "watch", "create", "update", "delete"]})
    # get: `serve --store kubernetes` checks at start that the QuotaLedger CRD is installed
    # (controller/ledger/kubestore_runtime.py install_crd); it never creates it, the manifests do.
    rules.append({"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
                  "resourceNames": [ledger_crd.CRD_NAME], "verbs": ["get"]})
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
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(NAME, namespace),
         "rules": role_rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": _meta(NAME, namespace),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
         "subjects": subject},
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
    priority_class: str | None,
) -> dict[str, Any]:
    args = ["serve", "--policy", POLICY_MOUNT, "--host", "0.0.0.0", "--port", str(PORT)]
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
    args += [
        "--failure-mode", failure_mode, "--log-format", "json",
        # Replicas share the ledger on the apiserver; the Lease holder watches and accrues cash.
        "--in-cluster", "--store", "kubernetes",
    ]
    probe = {"scheme": "HTTPS", "port": "https"}
    container = {
        "name": "webhook",
        "image": image,
        "args": args,
        "ports": [{"name": "https", "containerPort": PORT}],
        # The kubernetes store names each replica (reservations, the Lease holder) and finds the
        # Lease's (and the certificate Secret's) namespace from these.
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
        "readinessProbe": {"httpGet": {"path": "/readyz", **probe}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", **probe}, "initialDelaySeconds": 5,
                          "periodSeconds": 10, "failureThreshold": 3},
        # No CPU limit: throttling would show up as admission latency at the apiserver.
        "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
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
) -> list[dict[str, Any]]:
    """Every object, in apply order (the webhook configuration last).

    TLS, one of four ways: by default serve keeps its own CA and serving pair in
    a Secret (nothing secret is printed); `cert_manager` asks cert-manager for
    them; `tls_secret` + `ca_bundle` mount a Secret made elsewhere; and only
    `embed_self_signed` prints a private key (the caller warns).
    """
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
    policy, files = policy_files(paths)
    hosts = service_hosts(namespace)
    docs: list[dict[str, Any]] = [
        ledger_crd.crd(),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        *rbac(policy, namespace, keeps_secret=tls == "secret"),
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
        # cert-manager's cainjector copies the Certificate's CA into caBundle.
        annotations["cert-manager.io/inject-ca-from"] = f"{namespace}/{CERTIFICATE}"
    # tls == "secret": no caBundle here; every replica writes it (server/certs.py). Re-applying
    # these manifests leaves it alone: kubectl apply only touches fields it set.
    failure_mode = "deny" if failure_policy == "Fail" else "allow"
    docs.append(
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(NAME, namespace),
         "spec": {"selector": _labels(), "ports": [{"name": "https", "port": 443, "targetPort": "https"}]}})
    if tls == "cert-manager":
        docs += cert_manager_objects(namespace, hosts)
    webhook_meta = _meta(NAME)
    if annotations:
        webhook_meta["annotations"] = annotations
    docs += [
        deployment(namespace, image, replicas, tls, tls_secret or TLS_SECRET, failure_mode, priority_class),
        # policy/v1 arrived in 1.21; v1beta1 is the same object for older clusters.
        {"apiVersion": "policy/v1" if kube_version >= (1, 21) else "policy/v1beta1",
         "kind": "PodDisruptionBudget", "metadata": _meta(NAME, namespace),
         "spec": {"minAvailable": 1, "selector": {"matchLabels": _labels()}}},
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": webhook_meta,
            "webhooks": [{
                "name": WEBHOOK_NAME,
                "admissionReviewVersions": ["v1"],
                "sideEffects": "NoneOnDryRun",
                "timeoutSeconds": 5,
                "failurePolicy": failure_policy,
                "matchPolicy": "Equivalent",
                "clientConfig": client_config,
                # By name, never by a label anyone may set: Kubernetes >= 1.21 sets this label on
                # every namespace and refuses changes to it.
                "namespaceSelector": {"matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                     "values": sorted({"kube-system", namespace})},
                ]},
                "rules": webhook_rules(policy),
            }],
        },
    ]
    return docs


def service_hosts(namespace: str) -> list[str]:
    """The DNS names the apiserver may use for the Service (it calls `<name>.<namespace>.svc`)."""
    service = f"{NAME}.{namespace}.svc"
    return [service, f"{service}.cluster.local", f"{NAME}.{namespace}", NAME]


def has_private_key(docs: list[dict[str, Any]]) -> bool:
    return any(d.get("kind") == "Secret" and "tls.key" in (d.get("data") or {}) for d in docs)


def render_yaml(docs: list[dict[str, Any]], namespace: str, replicas: int) -> str:
    header = [
        f"# quotalang webhook for namespace {namespace}: generated by `quotalang manifests`.",
        "# Apply with: quotalang manifests ... | kubectl apply -f -",
    ]
    if has_private_key(docs):
        header.append("# WARNING: this output holds a private key (--embed-self-signed); keep it out of Git and logs.")
    body = yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, width=120)
    return "\n".join(header) + "\n" + body

"""The objects of an install, one function each; `install.py` puts them in apply order.

Production choices: restricted Pod Security (namespace labels, and a pod that
satisfies them); a NetworkPolicy that admits only the two ports; requests and
limits from the benchmarks; a PodDisruptionBudget of maxUnavailable 1, which
lets a drain evict one pod even at one replica (minAvailable 1 would block a
single-node drain forever); `priorityClassName`, so the webhook is evicted last.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from quotalang.compiler import CompiledPolicy
from quotalang.controller.kube.naming import plural, policy_kinds
from quotalang.server.exemptions import LABEL as EXEMPT_LABEL
from quotalang.server.exemptions import PATH as NAMESPACES_PATH
from quotalang.server.manifests.options import (
    API_PORT,
    CERTIFICATE,
    CLIENT_CA_CONFIGMAP,
    CLIENT_CA_MOUNT,
    CLUSTERS_MOUNT,
    HUB,
    NAME,
    NAMESPACE_WEBHOOK_NAME,
    POD_SECURITY,
    POLICY_CONFIGMAP,
    POLICY_MOUNT,
    PORT,
    STATE_MOUNT,
    TLS_MOUNT,
    TLS_SECRET,
    WEBHOOK_NAME,
    Options,
    cluster_secret,
)


def labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "webhook"}


def meta(name: str, namespace: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name}
    if namespace is not None:
        out["namespace"] = namespace
    out["labels"] = labels()
    return out


RESIZE_SINCE = (1, 33)  # pods/resize (in-place resize) is served from Kubernetes 1.33


def resizes(group: str, kind: str, kube_version: tuple[int, int]) -> bool:
    """Whether `pods/resize` changes what this kind charges on this cluster (a Pod, Kubernetes ≥ 1.33)."""
    return group == "" and kind == "Pod" and kube_version >= RESIZE_SINCE


def webhook_rules(policy: CompiledPolicy, kube_version: tuple[int, int] = (1, 21)) -> list[dict[str, Any]]:
    """Every kind the policy charges, its `/scale`, and where the cluster has it `pods/resize`; HPAs."""
    by_gv: dict[tuple[str, str], list[str]] = {}
    for group, version, kind, scales in policy_kinds(policy):
        resources = by_gv.setdefault((group, version), [])
        resources.append(plural(kind))
        if scales:
            resources.append(f"{plural(kind)}/scale")
        if resizes(group, kind, kube_version):
            resources.append(f"{plural(kind)}/resize")
    rules = [
        {"apiGroups": [group], "apiVersions": [version], "operations": ["CREATE", "UPDATE"],
         "resources": sorted(resources), "scope": "Namespaced"}
        for (group, version), resources in sorted(by_gv.items())
    ]
    rules.append({"apiGroups": ["autoscaling"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
                  "resources": ["horizontalpodautoscalers"], "scope": "Namespaced"})
    return rules


def deployment(
    namespace: str, options: Options, exempt: Sequence[str] = (), clusters: Sequence[str] = (),
) -> dict[str, Any]:
    """The webhook's Deployment; with `clusters`, the hub's: each member's kubeconfig mounted from a Secret."""
    args = ["serve", "--policy", POLICY_MOUNT, "--host", "0.0.0.0", "--port", str(PORT), "--api-port", str(API_PORT)]
    for host in service_hosts(namespace):  # the API port answers its Service's names (else 421: DNS rebinding)
        args += ["--api-hostname", host]
    for name in exempt:  # the same list the webhook configuration skips (serve judges the label by it)
        args += ["--exempt-namespace", name]
    mounts: list[dict[str, Any]] = [{"name": "policy", "mountPath": POLICY_MOUNT, "readOnly": True}]
    volumes: list[dict[str, Any]] = [{"name": "policy", "configMap": {"name": POLICY_CONFIGMAP}}]
    if options.tls == "secret":
        # serve keeps the CA and serving pair in the Secret itself and serves them from /tmp.
        args += ["--cert-secret", tls_secret_name(options), "--cert-service", NAME, "--webhook-configuration", NAME]
    else:
        args += ["--tls-cert", f"{TLS_MOUNT}/tls.crt", "--tls-key", f"{TLS_MOUNT}/tls.key"]
        mounts.append({"name": "tls", "mountPath": TLS_MOUNT, "readOnly": True})
        volumes.append({"name": "tls", "secret": {"secretName": tls_secret_name(options)}})
    if options.client_ca is not None:
        # Mutual TLS: only a client certificate from this CA (the apiserver's) may call the webhook.
        args += ["--client-ca", f"{CLIENT_CA_MOUNT}/ca.crt"]
        for name in options.client_names:
            args += ["--client-name", name]
        mounts.append({"name": "client-ca", "mountPath": CLIENT_CA_MOUNT, "readOnly": True})
        volumes.append({"name": "client-ca", "configMap": {"name": CLIENT_CA_CONFIGMAP}})
    # /tmp: certificate reloads validate in a scratch folder, and the kept pair is served from there.
    mounts.append({"name": "tmp", "mountPath": "/tmp"})
    volumes.append({"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}})
    # Replicas share the ledger on the apiserver; the Lease holder watches and accrues cash.
    failure_mode = "deny" if options.failure_policy == "Fail" else "allow"
    args += ["--failure-mode", failure_mode, "--log-format", "json"]
    if clusters:
        # The hub: watches every member through the kubeconfig in its Secret, keeps the ledger, the
        # Lease and the token checks in the cluster it runs in (not watched: it runs no workloads).
        for name in clusters:
            folder = f"{CLUSTERS_MOUNT}/{name}"
            args += ["--cluster", f"{name}={folder}/kubeconfig"]
            mounts.append({"name": f"cluster-{name}", "mountPath": folder, "readOnly": True})
            volumes.append({"name": f"cluster-{name}", "secret": {"secretName": cluster_secret(name)}})
        args += ["--ledger-cluster", f"{HUB}=in-cluster", "--store", options.store]
    else:
        args += ["--in-cluster", "--store", options.store]
    if options.store == "sqlite":
        # One replica's ledger in a file that outlives the pod (options check replicas == 1).
        args += ["--state", f"{STATE_MOUNT}/ledger.sqlite"]
        mounts.append({"name": "state", "mountPath": STATE_MOUNT})
        volumes.append({"name": "state", "persistentVolumeClaim": {"claimName": options.sqlite_claim}})
    probe = {"scheme": "HTTPS", "port": "https"}
    container = {
        "name": "webhook",
        "image": options.image,
        "args": args,
        "ports": [{"name": "https", "containerPort": PORT}, {"name": "api", "containerPort": API_PORT}],
        # The kubernetes store names each replica (reservations, the Lease holder) and finds the
        # Lease's (and the certificate Secret's) namespace from these.
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
        "readinessProbe": {"httpGet": {"path": "/readyz", **probe}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", **probe}, "initialDelaySeconds": 5,
                          "periodSeconds": 10, "failureThreshold": 3},
        "resources": {k: dict(v) for k, v in options.resources.items()},
        "securityContext": plain(options.container_security_context),
        "volumeMounts": mounts,
    }
    pod: dict[str, Any] = {
        "serviceAccountName": NAME,
        "securityContext": plain(options.pod_security_context),
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": labels()},
                                                "topologyKey": "kubernetes.io/hostname"}}]}},
        "containers": [container],
        "volumes": volumes,
    }
    if options.priority_class:
        # Evicted last: while no replica runs, failurePolicy Fail blocks every covered write.
        pod["priorityClassName"] = options.priority_class
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(NAME, namespace),
        "spec": {
            "replicas": options.replicas,
            "selector": {"matchLabels": labels()},
            "template": {"metadata": {"labels": labels()}, "spec": pod},
        },
    }


def plain(value: Any) -> Any:
    """A plain deep copy of nested mappings and lists (the output must not share the defaults' dicts)."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def tls_secret_name(options: Options) -> str:
    return options.tls_secret or TLS_SECRET


def pdb(namespace: str, options: Options) -> dict[str, Any]:
    """maxUnavailable, not minAvailable: at one replica (or on a one-node cluster) minAvailable 1
    would block every drain forever. policy/v1 arrived in 1.21; v1beta1 is the same object."""
    return {"apiVersion": "policy/v1" if options.kube_version >= (1, 21) else "policy/v1beta1",
            "kind": "PodDisruptionBudget", "metadata": meta(NAME, namespace),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels()}}}


def client_ca_configmap(namespace: str, pem: bytes) -> dict[str, Any]:
    """Mutual TLS: the CA that signed the apiserver's client certificate (public, so a ConfigMap)."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(CLIENT_CA_CONFIGMAP, namespace),
            "data": {"ca.crt": pem.decode()}}


def cert_manager_objects(namespace: str, hosts: list[str], options: Options) -> list[dict[str, Any]]:
    """The serving Certificate, issued by your issuer or a self-signed Issuer made here; cert-manager
    writes and renews the Secret."""
    docs: list[dict[str, Any]] = []
    if options.cert_manager_issuer is None:
        docs.append({"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
                     "metadata": meta(f"{NAME}-selfsigned", namespace), "spec": {"selfSigned": {}}})
        kind, name = "Issuer", f"{NAME}-selfsigned"
    else:
        kind, name = options.cert_manager_issuer
    docs.append(
        {"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": meta(CERTIFICATE, namespace),
         "spec": {"secretName": TLS_SECRET, "dnsNames": hosts, "duration": "2160h", "renewBefore": "720h",
                  "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
                  "issuerRef": {"name": name, "kind": kind}}})
    return docs


def webhook_configuration(
    policy: CompiledPolicy,
    client_config: Mapping[str, Any],
    options: Options,
    exempt: Sequence[str],
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ValidatingWebhookConfiguration: the quota webhook, and before 1.21 the namespaces one."""
    head = meta(NAME)
    if annotations:
        head["annotations"] = dict(annotations)
    selector: dict[str, Any] = {"matchExpressions": [
        # By name where Kubernetes guards the name label; else by a label only listed namespaces
        # may carry (the namespaces webhook below refuses it elsewhere).
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": list(exempt)} if options.by_name
        else {"key": EXEMPT_LABEL, "operator": "DoesNotExist"},
    ]}
    if options.namespace_selector:
        selector["matchLabels"] = dict(options.namespace_selector)
    quota_hook: dict[str, Any] = {
        "name": WEBHOOK_NAME,
        "admissionReviewVersions": ["v1"],
        "sideEffects": "NoneOnDryRun",
        "timeoutSeconds": options.timeout_seconds,
        "failurePolicy": options.failure_policy,
        "matchPolicy": "Equivalent",
        "clientConfig": dict(client_config),
        "namespaceSelector": selector,
        "rules": webhook_rules(policy, options.kube_version),
    }
    hooks = [quota_hook]
    if not options.by_name:
        hooks.append(namespace_webhook(client_config))
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": head, "webhooks": hooks}


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


def network_policy(namespace: str, options: Options) -> dict[str, Any]:
    """Ingress to the webhook pods: the webhook port and the API port, nothing else.

    The webhook port from `webhook_from` (ipBlocks: the control plane's
    addresses) when given, else from anywhere: where the apiserver's calls come
    from depends on the cluster (host network, a cloud's control plane). The
    API port (/metrics, the JSON API, the pages) from `metrics_from` (a
    namespace, by the name label Kubernetes guards) when given, else from
    anywhere: every request there needs a token RBAC allows. Egress is left
    open: the apiserver's address is not known here either.
    """
    webhook_from, metrics_from = options.webhook_from, options.metrics_from_namespace
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
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta(NAME, namespace),
            "spec": {"podSelector": {"matchLabels": labels()}, "policyTypes": ["Ingress"], "ingress": ingress}}


def service_hosts(namespace: str) -> list[str]:
    """The DNS names the apiserver may use for the Service (it calls `<name>.<namespace>.svc`)."""
    service = f"{NAME}.{namespace}.svc"
    return [service, f"{service}.cluster.local", f"{NAME}.{namespace}", NAME]


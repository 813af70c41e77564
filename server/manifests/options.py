"""What a `quotalang manifests` install is made of: one `Options` value, checked when built, and the names.

Every caller (the CLI, the fleet install, the Helm chart's values in
`chart.py`, tests) builds one `Options` and passes it whole: defaults are
written once, here, and so is every check that needs no policy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from quotalang.controller.kube.election import DEFAULT_NAME as DEFAULT_LEASE_NAME
from quotalang.errors import InputError
from quotalang.server.exemptions import namespace_name

NAME = "quotalang"
WEBHOOK_NAME = "quota.quotalang.dev"
NAMESPACE_WEBHOOK_NAME = "namespaces.quotalang.dev"  # Kubernetes < 1.21: guards the exemption label
POLICY_MOUNT = "/etc/quotalang/policy"
CLUSTERS_MOUNT = "/etc/quotalang/clusters"  # the hub: a member's kubeconfig at NAME/kubeconfig
CLIENT_CA_MOUNT = "/etc/quotalang/client-ca"  # mutual TLS: the CA of the apiserver's client certificate
STATE_MOUNT = "/var/lib/quotalang"  # --store sqlite: the ledger file on a PersistentVolumeClaim
HUB = "hub"  # the hub's name in its own logs (it holds the ledger and is not a member)
TOKEN_SECRET = f"{NAME}-token"  # a member: the hub's watcher token
WATCHER = f"{NAME}-watcher"  # a member: what the hub may read there
TLS_MOUNT = "/etc/quotalang/tls"
PORT = 8443
API_PORT = 8444  # /metrics, the JSON API and the pages, behind TokenReview + SubjectAccessReview
VIEWER = f"{NAME}-viewer"
METRICS_READER = f"{NAME}-metrics-reader"
TLS_SECRET = f"{NAME}-tls"
POLICY_CONFIGMAP = f"{NAME}-policy"
CLIENT_CA_CONFIGMAP = f"{NAME}-client-ca"
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
# The image's user (Containerfile) and everything Pod Security "restricted" asks of a pod.
POD_SECURITY_CONTEXT: dict[str, Any] = {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                        "seccompProfile": {"type": "RuntimeDefault"}}
# Everything "restricted" asks of a container, and a read-only root.
CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
TIMEOUT_SECONDS = 5  # the apiserver's wait for one review; admission/v1 allows 1..30
FailurePolicy = Literal["Fail", "Ignore"]
TlsMode = Literal["secret", "cert-manager", "embedded", "existing"]
Store = Literal["kubernetes", "sqlite"]


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


def cluster_secret(name: str) -> str:
    """The hub's Secret holding member `name`'s kubeconfig (key `kubeconfig`)."""
    return f"{NAME}-cluster-{name}"


def _cidr(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise InputError(f"--webhook-from {text!r} is not a CIDR like 10.0.0.0/16") from None


@dataclass(frozen=True, slots=True)
class Options:
    """One install's choices. `image` has no default: the cluster runs what you built and pushed.

    TLS, one of four ways: by default serve keeps its own CA and serving pair in
    a Secret (nothing secret is printed); `cert_manager` asks cert-manager for
    them (a self-signed Issuer here, or `cert_manager_issuer` = (kind, name) of
    yours); `tls_secret` + `ca_bundle` mount a Secret made elsewhere; and only
    `embed_self_signed` prints a private key (the caller warns).
    `exempt_namespaces` adds to kube-system and the install's namespace, which
    are always exempt. `client_ca` (PEM): mutual TLS, only the apiserver's
    client certificate may call the webhook (`client_names` narrows it).
    `namespace_selector`: labels a namespace must carry for the webhook to
    see it (matchLabels), besides not being exempt. `prometheus_operator`: a
    ServiceMonitor and the alerts as a PrometheusRule (monitoring.py).
    `aggregated_api`: serve the aggregated API `visibility.quotalang.dev` too
    (`kubectl get quotagroups`; server/aggregated_manifests.py), one cluster only.
    """

    image: str
    failure_policy: FailurePolicy = "Fail"
    replicas: int = 2
    tls_secret: str | None = None
    ca_bundle: bytes | None = None
    cert_manager: bool = False
    cert_manager_issuer: tuple[str, str] | None = None
    embed_self_signed: bool = False
    priority_class: str | None = DEFAULT_PRIORITY_CLASS
    kube_version: tuple[int, int] = DEFAULT_KUBE_VERSION
    exempt_namespaces: tuple[str, ...] = ()
    webhook_from: tuple[str, ...] = ()
    metrics_from_namespace: str | None = None
    timeout_seconds: int = TIMEOUT_SECONDS
    namespace_selector: Mapping[str, str] = field(default_factory=dict)
    resources: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: RESOURCES)
    pod_security_context: Mapping[str, Any] = field(default_factory=lambda: POD_SECURITY_CONTEXT)
    container_security_context: Mapping[str, Any] = field(default_factory=lambda: CONTAINER_SECURITY_CONTEXT)
    pdb: bool = True
    network_policy: bool = True
    store: Store = "kubernetes"
    sqlite_claim: str | None = None
    client_ca: bytes | None = None
    client_names: tuple[str, ...] = ()
    prometheus_operator: bool = False
    aggregated_api: bool = False

    def __post_init__(self) -> None:
        if not self.image.strip():
            raise InputError("--image: name the image the cluster pulls (scripts/build-image.sh, then push it)")
        if self.replicas < 1:
            raise InputError(f"--replicas {self.replicas}: at least 1")
        if self.metrics_from_namespace is not None:
            namespace_name(self.metrics_from_namespace, "--metrics-from-namespace")
            if not self.by_name:
                raise InputError(
                    "--metrics-from-namespace selects the namespace by its kubernetes.io/metadata.name label, which "
                    "Kubernetes sets (and guards) from 1.21; on an older cluster any namespace could claim it. "
                    "Leave it out, or give --kube-version 1.21 or later")
        object.__setattr__(self, "webhook_from", tuple(_cidr(c) for c in self.webhook_from))
        object.__setattr__(self, "exempt_namespaces", tuple(self.exempt_namespaces))
        if (self.tls_secret is None) != (self.ca_bundle is None):
            raise InputError(
                "--tls-secret and --ca-bundle go together: the Secret to mount and the CA that signed it"
            )
        chosen = [flag for flag, on in (("--tls-secret", self.tls_secret is not None),
                                        ("--cert-manager", self.cert_manager),
                                        ("--embed-self-signed", self.embed_self_signed)) if on]
        if len(chosen) > 1:
            raise InputError(f"{' and '.join(chosen)} are different ways to get a certificate: choose one")
        if self.cert_manager_issuer is not None and not self.cert_manager:
            raise InputError("--cert-manager-issuer names cert-manager's issuer: give --cert-manager too")
        if not 1 <= self.timeout_seconds <= 30:
            raise InputError(f"--timeout-seconds {self.timeout_seconds}: the apiserver allows 1 to 30")
        if self.store == "sqlite":
            if self.replicas != 1:
                raise InputError("--store sqlite keeps the ledger in one pod's file: --replicas 1 (or the "
                                 "kubernetes store, shared by every replica)")
            if not self.sqlite_claim:
                raise InputError("--store sqlite needs --sqlite-claim NAME: a PersistentVolumeClaim for the "
                                 "ledger file, or a restarted pod forgets every reservation")
        elif self.sqlite_claim:
            raise InputError("--sqlite-claim holds the sqlite store's file: give --store sqlite too")
        if self.client_names and self.client_ca is None:
            raise InputError("--client-name narrows --client-ca: give --client-ca FILE too")

    @property
    def by_name(self) -> bool:
        """Exempt namespaces by the name label Kubernetes guards (>= 1.21), else by quotalang's own label."""
        return self.kube_version >= NAME_LABEL_SINCE

    @property
    def tls(self) -> TlsMode:
        return ("existing" if self.tls_secret is not None else "cert-manager" if self.cert_manager
                else "embedded" if self.embed_self_signed else "secret")

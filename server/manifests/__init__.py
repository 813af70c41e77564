"""`quotalang manifests`: everything needed to run the webhook in a cluster, as YAML.

The output applies as is (`quotalang manifests ... | kubectl apply -f -`, or
`--output-dir DIR` and `kubectl apply -k DIR`): the QuotaLedger CRD, the
namespaces, ServiceAccount, least-privilege RBAC, the policy as a ConfigMap,
Service, Deployment, PodDisruptionBudget, NetworkPolicy and the
ValidatingWebhookConfiguration. One `Options` value (options.py) carries every
choice; each module makes one part:

* options.py: the choices, their defaults and checks, and the objects' names.
* rbac.py: every RBAC rule is one the code calls, with the call named.
* objects.py: the Deployment, Service, webhook configuration, NetworkPolicy, ...
* policyfiles.py: the policy directory as ConfigMap data.
* install.py: the objects in apply order, for one cluster or a fleet.
* output.py: one YAML stream with its header, or a kustomize base.

Decisions:

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
* Two ports: the webhook port (8443, Service port 443) answers only
  admission and health; the API port (8444, Service port `api`) serves
  /metrics, the JSON API and the pages to bearer tokens the apiserver
  accepts and RBAC allows (server/apiauth.py). The ClusterRole
  `quotalang-viewer` grants reading the whole tree (and what-if), and
  `quotalang-metrics-reader` scraping /metrics: bind teams and Prometheus
  to them.
"""

from quotalang.server.manifests.install import fleet_manifests, manifests, member_objects, webhook_url_host
from quotalang.server.manifests.objects import (
    cert_manager_objects,
    deployment,
    namespace_webhook,
    namespaces,
    network_policy,
    service_hosts,
    webhook_configuration,
    webhook_rules,
)
from quotalang.server.manifests.options import (
    API_PORT,
    HUB,
    NAME,
    PORT,
    FailurePolicy,
    Options,
    cluster_secret,
    parse_kube_version,
)
from quotalang.server.manifests.output import (
    fleet_notes,
    has_private_key,
    header,
    render_yaml,
    write_dir,
    write_fleet_dir,
)
from quotalang.server.manifests.policyfiles import policy_files
from quotalang.server.manifests.rbac import group_user_role, rbac, readers, watch_rules

__all__ = [
    "API_PORT", "HUB", "NAME", "PORT", "FailurePolicy", "Options", "cert_manager_objects", "cluster_secret",
    "deployment", "fleet_manifests", "fleet_notes", "group_user_role", "has_private_key", "header", "manifests",
    "member_objects",
    "namespace_webhook", "namespaces", "network_policy", "parse_kube_version", "policy_files", "rbac", "readers",
    "render_yaml", "service_hosts", "watch_rules", "webhook_configuration", "webhook_rules", "webhook_url_host",
    "write_dir", "write_fleet_dir",
]

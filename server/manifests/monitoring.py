"""The Prometheus Operator's objects: a ServiceMonitor for the API port and the alerts as a PrometheusRule.

The rules are one file, alerts.yaml beside this module (a plain Prometheus rules
file, also copied into the chart and tested with promtool in tests/alerts/).
Scraping needs a token: bind Prometheus' ServiceAccount to the ClusterRole
`quotalang-metrics-reader`; the ServiceMonitor sends that token and checks the
serving certificate against the CA in the TLS Secret (`ca.crt`).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from quotalang.server.manifests.objects import labels, meta, tls_secret_name
from quotalang.server.manifests.options import NAME, Options

ALERTS_FILE = "alerts.yaml"


def alert_groups() -> list[dict[str, Any]]:
    """The rule groups of alerts.yaml."""
    text = resources.files("quotalang.server.manifests").joinpath(ALERTS_FILE).read_text()
    groups: list[dict[str, Any]] = yaml.safe_load(text)["groups"]
    return groups


def service_monitor(namespace: str, options: Options) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": meta(NAME, namespace),
        "spec": {
            "selector": {"matchLabels": labels()},
            "namespaceSelector": {"matchNames": [namespace]},
            "endpoints": [{
                "port": "api", "scheme": "https", "path": "/metrics", "interval": "30s",
                "bearerTokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token",
                "tlsConfig": {"serverName": f"{NAME}.{namespace}.svc",
                              "ca": {"secret": {"name": tls_secret_name(options), "key": "ca.crt"}}},
            }],
        },
    }


def prometheus_rule(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": meta(NAME, namespace),
            "spec": {"groups": alert_groups()}}

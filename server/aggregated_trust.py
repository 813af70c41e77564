"""Who may call the aggregated API port: the apiserver's aggregator, and nobody else.

The aggregator authenticates the user (any kubeconfig: certificates, tokens,
OIDC, exec plugins), authorises the request with RBAC, then calls us with
its front-proxy client certificate (`--proxy-client-cert-file`) and the user
in `X-Remote-User` / `X-Remote-Group`. Those headers are anyone's to write,
so the port trusts a connection only when its certificate verifies against
the request-header CA (`--requestheader-client-ca-file`) and, when the
apiserver lists allowed names (`--requestheader-allowed-names`), names one
of them (common name or SAN). Any other connection gets a 401 before the
request reaches the app (`clientauth.ClientAuth`, the admission port's
mutual TLS, reused); a certificate of another CA fails the handshake.

Where the CA and names come from, in Kubernetes' order (what metrics-server
and every `k8s.io/apiserver` extension server do):

* `--requestheader-client-ca-file FILE` / `--requestheader-allowed-names`, or
* the `kube-system/extension-apiserver-authentication` ConfigMap, which
  kube-apiserver keeps with both: no extra secret to distribute (the
  manifests bind the built-in `extension-apiserver-authentication-reader`
  Role to read it).

Read once at start; a rotated front-proxy CA needs a restart (rolling, two
replicas). Use a CA of its own for the front proxy, as Kubernetes advises:
if it also signed users' client certificates, any user could present one
and claim to be the aggregator (the allowed names are then what stops it).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from quotalang.server.clientauth import ClientAuth, ClientAuthError

if TYPE_CHECKING:
    from quotalang.controller.kube.api import KubeApi

CONFIGMAP = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
CA_KEY = "requestheader-client-ca-file"
NAMES_KEY = "requestheader-allowed-names"


class TrustError(ClientAuthError):
    """The front-proxy CA could not be found or used."""


def from_files(ca_file: str, names: tuple[str, ...]) -> ClientAuth:
    """The trust given on the command line; refuses a file that holds no CA."""
    return _checked(ClientAuth(ca_file, names), "--requestheader-client-ca-file")


def _checked(trust: ClientAuth, source: str) -> ClientAuth:
    try:
        trust.check_file()
    except ClientAuthError as exc:
        raise TrustError(f"{source}: {exc}") from None
    return trust


def from_configmap(data: Any, folder: Path) -> ClientAuth:
    """The trust kube-apiserver publishes (the ConfigMap's `data`), its CA written under `folder`."""
    if not isinstance(data, dict) or not isinstance(data.get(CA_KEY), str) or not data[CA_KEY].strip():
        raise TrustError(f"{CONFIGMAP} has no {CA_KEY}: start kube-apiserver with --requestheader-client-ca-file "
                         "(and --proxy-client-cert-file), or give serve --requestheader-client-ca-file")
    names: tuple[str, ...] = ()
    raw = data.get(NAMES_KEY)
    if raw:
        try:
            listed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise TrustError(f"{CONFIGMAP}: {NAMES_KEY} is not a JSON list") from None
        if not isinstance(listed, list) or not all(isinstance(n, str) for n in listed):
            raise TrustError(f"{CONFIGMAP}: {NAMES_KEY} is not a list of names")
        names = tuple(listed)
    folder.mkdir(parents=True, exist_ok=True)
    handle, path = tempfile.mkstemp(prefix="requestheader-ca-", suffix=".crt", dir=folder)
    with os.fdopen(handle, "w") as out:
        out.write(data[CA_KEY])
    return _checked(ClientAuth(path, names), CONFIGMAP)


def from_cluster(api: KubeApi, folder: Path) -> ClientAuth:
    """Read the ConfigMap through `api` (serve's hub client)."""
    found = api.request("GET", CONFIGMAP)
    return from_configmap(found.get("data") if isinstance(found, dict) else None, folder)


__all__ = ["CONFIGMAP", "TrustError", "from_cluster", "from_configmap", "from_files"]

"""Mutual TLS on the admission port: only the apiserver may ask (`serve --client-ca FILE [--client-name NAME]`).

Whoever reaches a webhook that keeps a ledger can spend or free other teams'
quota with forged AdmissionReviews. With `--client-ca`, the TLS handshake
asks every client for a certificate and verifies it against that CA:

* a certificate that does not verify (another CA, expired, not for client
  authentication) fails the handshake: the connection never reaches HTTP;
* a connection with no certificate is accepted — the kubelet's probes carry
  none — but may only ask `GET /healthz` and `GET /readyz`; anything else
  (`/validate`, the API, metrics) is answered `401` with a `Status` naming
  the reason, before the request reaches the app, so it reserves nothing;
* with `--client-name` (repeatable), a verified certificate must also name
  one of them, as its common name or a subject alternative name (DNS, URI,
  email or IP), as Gatekeeper's `--client-cn-name` does; another name is
  answered `401`.

The apiserver presents a client certificate to webhooks when an
`AdmissionConfiguration` names a kubeconfig for them (see the README);
where the control plane cannot be configured, a NetworkPolicy is what keeps
strangers off the port.

Checked once per connection (the handshake's result), then per request only
a set lookup of the path: the hot path costs nothing measurable.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

OPEN_PATHS = frozenset({"/healthz", "/readyz"})  # probes: the kubelet presents no certificate


class ClientAuthError(ValueError):
    """A `--client-ca` file that cannot be used."""


@dataclass(frozen=True, slots=True)
class ClientAuth:
    ca_file: str
    names: tuple[str, ...] = ()

    def check_file(self) -> None:
        """Refuse a CA file that does not load (at start, with the reason), not at the first handshake."""
        if not Path(self.ca_file).is_file():
            raise ClientAuthError(f"no such file: {self.ca_file}")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_verify_locations(cafile=self.ca_file)
        except (ssl.SSLError, ValueError) as exc:
            raise ClientAuthError(f"--client-ca {self.ca_file} holds no usable CA certificate: {exc}") from None

    def uvicorn_options(self) -> dict[str, Any]:
        """uvicorn's own settings for it: verify against the CA, ask for a certificate, require it per path here."""
        return {"ssl_ca_certs": self.ca_file, "ssl_cert_reqs": ssl.CERT_OPTIONAL}

    def problem(self, peercert: Mapping[str, Any] | None) -> str | None:
        """Why a connection with this (verified) peer certificate may not call protected paths; None: it may."""
        if not peercert:
            return "a client certificate signed by the --client-ca is required (mutual TLS)"
        if not self.names:
            return None
        names = peer_names(peercert)
        if names & set(self.names):
            return None
        shown = ", ".join(sorted(names)[:5]) or "none"
        return f"the client certificate names {shown}, not one of --client-name"


def peer_names(peercert: Mapping[str, Any]) -> set[str]:
    """The common names and subject alternative names of a certificate as `ssl` decodes it."""
    names: set[str] = set()
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                names.add(str(value))
    for _, value in peercert.get("subjectAltName", ()):
        names.add(str(value))
    return names


def unauthorized(message: str) -> bytes:
    """A complete HTTP 401 carrying a `metav1.Status`, closing the connection."""
    body = orjson.dumps({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 401,
                         "reason": "Unauthorized", "message": message})
    return (b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)


__all__ = ["OPEN_PATHS", "ClientAuth", "ClientAuthError", "peer_names", "unauthorized"]

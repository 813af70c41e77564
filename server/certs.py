"""The webhook's own CA and serving certificate, kept in a Secret and renewed before they expire.

Why: the apiserver calls the webhook over TLS and trusts only the
`caBundle` in the ValidatingWebhookConfiguration. A certificate printed into
the manifests ends up in Git or a CI log, lasts as long as someone chose a
year ago, and nobody renews it; when it expires, every write the webhook
covers fails. So, by default, `serve --cert-secret NAME` does what
Gatekeeper's and Kyverno's certificate controllers do:

* the Secret (in the pod's namespace) holds a CA and a serving pair for the
  Service's DNS names; the first replica to start creates it, every replica
  writes the pair to a local folder (an emptyDir) and serves it, reloading it
  into the live `SSLContext` when it changes;
* every replica keeps the webhook configuration's `caBundle` equal to the
  CAs the Secret trusts (only for webhooks that point at our Service), and
  the aggregated API's APIService's with `--aggregated-port`;
* the serving pair is reissued when a third of its life is left (30 of 90
  days by default); the CA lives four times as long and is rotated in two
  steps so that no request fails: a *next* CA is added to the bundle first,
  and only after `grace` has passed (the apiserver has seen the new bundle)
  does it start signing; the old CA stays in the bundle until it expires, so
  a replica that has not reloaded yet is still trusted.

Every change is a compare-and-swap on the Secret's `resourceVersion`: two
replicas that renew at once do not overwrite each other; the loser re-reads
and serves what the winner wrote. Certificate expiry is exported as
`quotalang_tls_not_after_seconds{certificate="serving"|"ca"}`.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quotalang.controller.kube.api import ApiError, KubeError
from quotalang.errors import QuotalangError
from quotalang.server.logs import log_event
from quotalang.server.tls import Pem, expiry_gauge, issue, make_ca, write_pem

if TYPE_CHECKING:
    from quotalang.controller.kube.api import KubeApi
    from quotalang.server.metrics import Metrics

LOG = logging.getLogger("quotalang.certs")
DAY = 86400.0
DEFAULT_VALIDITY = 90 * DAY  # serving certificate; the CA lives CA_FACTOR times as long
CA_FACTOR = 4
NEXT_SINCE = "quotalang.dev/next-ca-since"
WEBHOOKS_PATH = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
APISERVICES_PATH = "/apis/apiregistration.k8s.io/v1/apiservices"


class CertificateError(QuotalangError):
    """The Secret or the webhook configuration cannot be read or written (serve exits 2 at start)."""


@dataclass(frozen=True, slots=True)
class CertSettings:
    """What to keep: where the Secret is, which names the certificate carries, how long it lives."""

    namespace: str
    secret: str
    service: str
    webhook_configuration: str | None = None
    validity: float = DEFAULT_VALIDITY
    api_service: str | None = None  # the aggregated API's APIService (server/aggregated.py), trusting the same CA

    @property
    def hosts(self) -> list[str]:
        svc = f"{self.service}.{self.namespace}.svc"
        return [svc, f"{svc}.cluster.local", f"{self.service}.{self.namespace}", self.service]

    @property
    def ca_validity(self) -> float:
        return self.validity * CA_FACTOR

    @property
    def grace(self) -> float:
        """How long a next CA is trusted before it signs: time for every apiserver to see the bundle."""
        return min(60.0, self.ca_validity / 12)

    @property
    def check_every(self) -> float:
        """Often enough that renewal (a third of the life left) is never late; at most a minute."""
        return max(0.2, min(60.0, self.validity / 12))


@dataclass
class _State:
    """The Secret's content, decoded."""

    ca: Pem | None = None
    next_ca: Pem | None = None
    next_since: dt.datetime | None = None
    previous_ca: bytes | None = None
    serving: Pem | None = None
    version: str | None = None  # resourceVersion; None: the Secret does not exist
    labels: dict[str, str] = field(default_factory=dict)

    def bundle(self, now: dt.datetime) -> bytes:
        """Every CA a client should trust now: active, next, and the previous one until it expires."""
        certs = [pem for pem in (self.ca.cert if self.ca else None, self.next_ca.cert if self.next_ca else None,
                                 self.previous_ca) if pem]
        return b"".join(c for c in dict.fromkeys(certs) if _not_after(c) > now)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(data: Mapping[str, Any], key: str) -> bytes | None:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return None


def _not_after(cert: bytes) -> dt.datetime:
    from cryptography import x509

    return x509.load_pem_x509_certificate(cert).not_valid_after_utc


def _issuer_is(cert: bytes, ca: bytes) -> bool:
    """Signed by this very CA (a rotated CA has the same name, so names do not tell)."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    try:
        x509.load_pem_x509_certificate(cert).verify_directly_issued_by(x509.load_pem_x509_certificate(ca))
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _names(cert: bytes) -> set[str]:
    from cryptography import x509

    try:
        san = x509.load_pem_x509_certificate(cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return set()
    return set(san.value.get_values_for_type(x509.DNSName))


def _decode(secret: Mapping[str, Any]) -> _State:
    data = secret.get("data") or {}
    meta = secret.get("metadata") or {}
    state = _State(version=str(meta.get("resourceVersion") or "") or None, labels=dict(meta.get("labels") or {}))
    try:
        ca, ca_key = _unb64(data, "ca.crt"), _unb64(data, "ca.key")
        if ca and ca_key:
            _not_after(ca)
            state.ca = Pem(ca, ca_key)
        nxt, nxt_key = _unb64(data, "next-ca.crt"), _unb64(data, "next-ca.key")
        since = (meta.get("annotations") or {}).get(NEXT_SINCE)
        if nxt and nxt_key and isinstance(since, str):
            _not_after(nxt)
            state.next_ca = Pem(nxt, nxt_key)
            state.next_since = dt.datetime.fromisoformat(since)
        previous = _unb64(data, "previous-ca.crt")
        if previous:
            _not_after(previous)
            state.previous_ca = previous
        cert, key = _unb64(data, "tls.crt"), _unb64(data, "tls.key")
        if cert and key:
            _not_after(cert)
            state.serving = Pem(cert, key)
    except ValueError as exc:  # a Secret someone edited by hand: start over, loudly
        log_event(LOG, logging.WARNING, "the certificate Secret holds an unreadable certificate; replacing it",
                  error=str(exc))
        return _State(version=state.version, labels=state.labels)
    return state


class SecretCertificates:
    """Keeps the Secret, the local PEM files and the webhook configuration's caBundle in step."""

    def __init__(
        self,
        api: KubeApi,
        settings: CertSettings,
        folder: Path,
        metrics: Metrics | None = None,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.api = api
        self.settings = settings
        self.folder = Path(folder)
        self.cert_file = self.folder / "tls.crt"
        self.key_file = self.folder / "tls.key"
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.metrics = metrics
        self.renewals = 0  # serving pairs this replica issued (tests count them)
        self._served: Pem | None = None
        self._bundle: bytes | None = None
        self._api_bundle: bytes | None = None

    @property
    def secret_path(self) -> str:
        return f"/api/v1/namespaces/{self.settings.namespace}/secrets/{self.settings.secret}"

    # ------------------------------------------------------------------ one round
    def sync(self) -> bool:
        """One round: renew what is due, serve the Secret's pair, publish its bundle. True if the files changed."""
        for _attempt in range(5):
            state = self._read()
            wanted = self._plan(state)
            if wanted is None:
                break
            if self._write(wanted):
                if wanted.serving != state.serving:
                    self.renewals += 1
                state = wanted
                break
        else:
            raise CertificateError(f"the Secret {self.settings.namespace}/{self.settings.secret} kept changing "
                                   "under this replica (five conflicts in a row)")
        changed = self._serve(state)
        self._publish(state.bundle(self.clock()))
        return changed

    def _read(self) -> _State:
        try:
            return _decode(self.api.request("GET", self.secret_path, timeout=10))
        except ApiError as exc:
            if exc.status == 404:
                return _State()
            raise CertificateError(f"cannot read the Secret {self.settings.namespace}/{self.settings.secret}: "
                                   f"{exc}") from None

    def _plan(self, state: _State) -> _State | None:
        """The Secret as it should be now, or None when nothing is due."""
        s = self.settings
        now = self.clock()
        third = dt.timedelta(seconds=s.validity / 3)
        changed = False
        new = _State(state.ca, state.next_ca, state.next_since, state.previous_ca, state.serving, state.version,
                     state.labels)
        if new.ca is None or _not_after(new.ca.cert) <= now:
            new.ca, new.next_ca, new.next_since = self._new_ca(now), None, None
            changed = True
        elif new.next_ca is None and _not_after(new.ca.cert) - now < dt.timedelta(seconds=s.ca_validity / 3):
            new.next_ca, new.next_since = self._new_ca(now), now  # trusted first, signs after the grace
            changed = True
        elif (new.next_ca is not None and new.next_since is not None
              and now - new.next_since >= dt.timedelta(seconds=s.grace)):
            new.previous_ca, new.ca, new.next_ca, new.next_since = new.ca.cert, new.next_ca, None, None
            changed = True
        if new.previous_ca is not None and _not_after(new.previous_ca) <= now:
            new.previous_ca = None
            changed = True
        serving = new.serving
        if (serving is None or _not_after(serving.cert) - now < third or not _issuer_is(serving.cert, new.ca.cert)
                or _names(serving.cert) != set(s.hosts)):
            new.serving = issue(new.ca, s.hosts, days=s.validity / DAY, now=now)
            changed = True
        return new if changed else None

    def _new_ca(self, now: dt.datetime) -> Pem:
        s = self.settings
        return make_ca(f"quotalang webhook CA ({s.namespace}/{s.service})", days=s.ca_validity / DAY, now=now)

    def _write(self, state: _State) -> bool:
        """Create or replace the Secret; False when another replica wrote first (re-read and retry)."""
        assert state.ca is not None and state.serving is not None
        data = {"ca.crt": _b64(state.ca.cert), "ca.key": _b64(state.ca.key),
                "tls.crt": _b64(state.serving.cert), "tls.key": _b64(state.serving.key)}
        annotations: dict[str, str] = {}
        if state.next_ca is not None and state.next_since is not None:
            data["next-ca.crt"], data["next-ca.key"] = _b64(state.next_ca.cert), _b64(state.next_ca.key)
            annotations[NEXT_SINCE] = state.next_since.isoformat()
        if state.previous_ca is not None:
            data["previous-ca.crt"] = _b64(state.previous_ca)
        meta: dict[str, Any] = {"name": self.settings.secret, "namespace": self.settings.namespace,
                                "labels": {**state.labels, "app.kubernetes.io/managed-by": "quotalang"},
                                "annotations": annotations}
        body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta, "data": data}
        try:
            if state.version is None:
                self.api.request("POST", self.secret_path.rsplit("/", 1)[0], body=body, timeout=10)
            else:
                meta["resourceVersion"] = state.version
                self.api.request("PUT", self.secret_path, body=body, timeout=10)
        except ApiError as exc:
            if exc.status == 409:
                return False
            raise CertificateError(f"cannot write the Secret {self.settings.namespace}/{self.settings.secret}: "
                                   f"{exc}") from None
        log_event(LOG, logging.INFO, "certificate Secret written", secret=self.settings.secret,
                  serving_not_after=_not_after(state.serving.cert).isoformat(),
                  ca_not_after=_not_after(state.ca.cert).isoformat(), next_ca=state.next_ca is not None)
        return True

    def _serve(self, state: _State) -> bool:
        """Write the Secret's pair to the local files (key first, each atomically) when it changed."""
        assert state.serving is not None and state.ca is not None
        if self.metrics is not None:
            gauge = expiry_gauge(self.metrics)
            gauge.labels("serving").set(_not_after(state.serving.cert).timestamp())
            gauge.labels("ca").set(_not_after(state.ca.cert).timestamp())
        if state.serving == self._served:
            return False
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_pem(self.key_file, state.serving.key, private=True)
        write_pem(self.cert_file, state.serving.cert, private=False)
        self._served = state.serving
        return True

    def _publish(self, bundle: bytes) -> None:
        """Set caBundle on our webhooks in the configuration, and on the aggregated API's APIService."""
        encoded = _b64(bundle)
        name = self.settings.webhook_configuration
        if name is not None and bundle != self._bundle:

            def webhooks(config: dict[str, Any]) -> bool:
                dirty = False
                for hook in config.get("webhooks") or []:
                    client = hook.get("clientConfig") or {}
                    if self._ours(client.get("service")) and client.get("caBundle") != encoded:
                        client["caBundle"] = encoded
                        dirty = True
                return dirty

            if self._update(f"{WEBHOOKS_PATH}/{name}", f"ValidatingWebhookConfiguration {name}", webhooks, bundle):
                self._bundle = bundle
        service = self.settings.api_service
        if service is not None and bundle != self._api_bundle:

            def api_service(found: dict[str, Any]) -> bool:
                spec = found.setdefault("spec", {})
                if not self._ours(spec.get("service")) or spec.get("caBundle") == encoded:
                    return False
                spec["caBundle"] = encoded
                return True

            if self._update(f"{APISERVICES_PATH}/{service}", f"APIService {service}", api_service, bundle):
                self._api_bundle = bundle

    def _ours(self, service: Any) -> bool:
        """Whether a clientConfig's or APIService's `service` is our Service (others keep their CA)."""
        return isinstance(service, dict) and service.get("name") == self.settings.service and \
            service.get("namespace") == self.settings.namespace

    def _update(self, path: str, what: str, change: Callable[[dict[str, Any]], bool], bundle: bytes) -> bool:
        """GET, `change` in place, then a PUT guarded by resourceVersion (again on 409). False: not there yet."""
        for _attempt in range(5):
            try:
                found = self.api.request("GET", path, timeout=10)
            except ApiError as exc:
                if exc.status == 404:  # not applied yet: the next round tries again
                    log_event(LOG, logging.WARNING, f"no {what.split()[0]} to give the CA to yet", name=path)
                    return False
                raise CertificateError(f"cannot read the {what}: {exc}") from None
            if not change(found):
                return True
            try:
                self.api.request("PUT", path, body=found, timeout=10)
            except ApiError as exc:
                if exc.status == 409:
                    continue
                raise CertificateError(f"cannot update the {what}: {exc}") from None
            log_event(LOG, logging.INFO, f"{what.split()[0]} caBundle updated", name=path, cas=bundle.count(b"BEGIN"))
            return True
        return False

    # ------------------------------------------------------------------ the loop
    def start(self, deadline: float = 60.0) -> None:
        """The first round, before the server listens: retried until `deadline` while the apiserver is away."""
        until = time.monotonic() + deadline
        while True:
            try:
                self.sync()
                return
            except KubeError as exc:
                if time.monotonic() > until:
                    raise CertificateError(f"cannot reach the apiserver to read the certificate Secret: {exc}") \
                        from None
                time.sleep(1.0)

    async def run(self, on_change: Callable[[], object]) -> None:
        """Every `check_every`: one round in a thread; `on_change` (reload the pair) when the files changed.

        `on_change` runs on the event loop's thread, not in a worker: it swaps the
        pair in the live SSLContext, which must not race the loop accepting a
        connection (tls.CertReloader.run says why).
        """
        while True:
            await asyncio.sleep(self.settings.check_every)
            try:
                changed = await asyncio.to_thread(self.sync)
            except (KubeError, CertificateError) as exc:  # keep serving the pair we have; try again
                log_event(LOG, logging.ERROR, "certificate round failed; the current pair keeps serving",
                          error=str(exc))
                continue
            if changed:
                on_change()


def default_folder() -> Path:
    """Where the served pair is written: under $TMPDIR (an emptyDir in the Deployment)."""
    return Path(os.environ.get("TMPDIR") or "/tmp") / "quotalang-tls"


__all__ = ["CertSettings", "CertificateError", "SecretCertificates", "default_folder"]

"""TLS for the webhook: a serving pair that reloads itself, or a self-signed one.

* `--tls-cert/--tls-key`: PEM files, re-read every 2 s; when their content
  changes (cert-manager renewed the Secret, the kubelet swapped the mount) the
  new pair is validated in a scratch context and then loaded into the live
  `SSLContext`, so new connections get it and nothing restarts. A half-written
  pair (new cert, old key) fails validation, is counted, and the old pair keeps
  serving until the files agree.
* neither: `serve` makes a local CA and a serving certificate for the listen
  host in a state folder (`$XDG_STATE_HOME/quotalang/tls`, else
  `~/.local/state/quotalang/tls`), reuses them while they are valid, and logs
  where the CA is so that curl can trust it.

`cryptography` is imported only when a certificate is made or inspected.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
import logging
import os
import socket
import ssl
import tempfile
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quotalang.server.logs import log_event

if TYPE_CHECKING:
    from prometheus_client import Gauge

    from quotalang.server.metrics import Metrics

LOG = logging.getLogger("quotalang.tls")
CA_DAYS = 3650
SERVING_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=30)


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "quotalang"


@dataclass(frozen=True, slots=True)
class Pem:
    cert: bytes
    key: bytes


@dataclass(frozen=True, slots=True)
class SelfSigned:
    cert: Path
    key: Path
    ca: Path
    created: bool  # False when valid files were reused


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def make_ca(common_name: str = "quotalang local CA", days: float = CA_DAYS, now: dt.datetime | None = None) -> Pem:
    """A fresh CA (EC P-256) that may sign serving certificates only; valid from `now` (default: the clock)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = now or _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Pem(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue(ca: Pem, hosts: Sequence[str], days: float = SERVING_DAYS, now: dt.datetime | None = None) -> Pem:
    """A serving certificate for `hosts` (DNS names or IP addresses) signed by `ca`, valid from `now`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate(ca.cert)
    ca_key = serialization.load_pem_private_key(ca.key, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    now = now or _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Pem(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def local_hosts(host: str) -> list[str]:
    """The names a local client may use for `host` (a wildcard bind adds the machine's name)."""
    hosts = ["localhost", "127.0.0.1", "::1"]
    if host in ("0.0.0.0", "::", ""):
        hosts.append(socket.gethostname())
    else:
        hosts.insert(0, host)
    return list(dict.fromkeys(hosts))


def write_pem(path: Path, data: bytes, private: bool) -> None:
    """Write atomically (a reader sees the old file or the new one, never half), keys as 0600."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def _usable(cert_path: Path, hosts: Sequence[str], issuer: bytes | None) -> bool:
    """The certificate exists, stays valid a while, and (with `issuer`) names every host and comes from it."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        return False
    if cert.not_valid_after_utc - RENEW_BEFORE < _now():
        return False
    if issuer is not None and cert.issuer != x509.load_pem_x509_certificate(issuer).subject:
        return False
    if issuer is None:
        return True
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    named = {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    named.update(san.get_values_for_type(x509.DNSName))
    return all(str(ipaddress.ip_address(h)) in named if _is_ip(h) else h in named for h in hosts)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def self_signed(state_dir: Path, hosts: Sequence[str]) -> SelfSigned:
    """A CA and a serving pair for `hosts` under `state_dir/tls`, made once and reused."""
    folder = state_dir / "tls"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_cert, ca_key = folder / "ca.crt", folder / "ca.key"
    cert, key = folder / "tls.crt", folder / "tls.key"
    created = False
    if not (ca_key.exists() and _usable(ca_cert, (), None)):
        ca = make_ca()
        write_pem(ca_key, ca.key, private=True)
        write_pem(ca_cert, ca.cert, private=False)
        created = True
    ca = Pem(ca_cert.read_bytes(), ca_key.read_bytes())
    if created or not (key.exists() and _usable(cert, hosts, ca.cert)):
        pair = issue(ca, hosts)
        write_pem(key, pair.key, private=True)
        write_pem(cert, pair.cert, private=False)
        created = True
    return SelfSigned(cert, key, ca_cert, created)


_EXPIRY: weakref.WeakKeyDictionary[Metrics, Gauge] = weakref.WeakKeyDictionary()


def expiry_gauge(metrics: Metrics) -> Gauge:
    """`quotalang_tls_not_after_seconds{certificate}`: when the served certificate (and CA) expire.

    An alert on `quotalang_tls_not_after_seconds - time() < 7 * 86400` catches a
    renewal that stopped (cert-manager gone, RBAC removed) weeks before TLS fails.
    Registered once per `Metrics`, by whichever of the Secret keeper or the file
    reloader runs.
    """
    gauge = _EXPIRY.get(metrics)
    if gauge is None:
        from prometheus_client import Gauge

        gauge = Gauge("quotalang_tls_not_after_seconds",
                      "When the certificate expires (unix seconds): serving, and ca when serve keeps its own.",
                      ["certificate"], registry=metrics.registry)
        _EXPIRY[metrics] = gauge
    return gauge


class CertReloader:
    """Re-reads a PEM pair and loads it into the live `SSLContext` when it changes."""

    def __init__(
        self,
        context: ssl.SSLContext,
        cert: Path,
        key: Path,
        metrics: Metrics | None = None,
        interval: float = 2.0,
        also: Sequence[ssl.SSLContext] = (),
    ) -> None:
        self.context = context
        self.also = tuple(also)  # more ports' contexts serving the same pair (serve's API port)
        self.cert = Path(cert)
        self.key = Path(key)
        self.metrics = metrics
        self.interval = interval
        self._digest = self._checksum()
        self._report_expiry()

    def _report_expiry(self) -> None:
        if self.metrics is None:
            return
        try:
            when = _not_after_time(self.cert.read_bytes())
        except OSError:
            return
        if when is not None:
            expiry_gauge(self.metrics).labels("serving").set(when.timestamp())

    def _read(self) -> Pem:
        return Pem(self.cert.read_bytes(), self.key.read_bytes())

    def _checksum(self) -> str | None:
        try:
            pem = self._read()
        except OSError:
            return None
        return hashlib.sha256(pem.cert + b"\0" + pem.key).hexdigest()

    def check(self) -> bool:
        """Reload if the files changed and hold a valid pair; True when the live context changed."""
        try:
            pem = self._read()
        except OSError as exc:
            error = f"cannot read {exc.filename}: {exc.strerror}"
            if error == self._digest:  # said once already; wait for the files to come back
                return False
            self._digest = error
            return self._failed(error)
        digest = hashlib.sha256(pem.cert + b"\0" + pem.key).hexdigest()
        if digest == self._digest:
            return False
        self._digest = digest
        with tempfile.TemporaryDirectory(prefix="quotalang-tls-") as tmp:
            cert, key = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
            write_pem(cert, pem.cert, private=False)
            write_pem(key, pem.key, private=True)
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
            except (ssl.SSLError, ValueError) as exc:
                return self._failed(f"{self.cert} / {self.key} do not hold a valid pair: {exc}")
            for context in (self.context, *self.also):
                context.load_cert_chain(cert, key)
        if self.metrics is not None:
            self.metrics.tls_reloads.inc()
        self._report_expiry()
        log_event(LOG, logging.INFO, "serving certificate reloaded", cert=str(self.cert),
                  not_after=not_after(pem.cert))
        return True

    def _failed(self, error: str) -> bool:
        if self.metrics is not None:
            self.metrics.tls_reload_errors.inc()
        log_event(LOG, logging.ERROR, "certificate reload failed; the previous pair keeps serving",
                  error=error)
        return False

    def changed(self) -> bool:
        """The files differ from the pair last looked at (a cheap look, fine in a worker thread)."""
        return self._checksum() != self._digest

    async def run(self) -> None:
        """Look in a worker thread; reload on the event loop's own thread.

        `load_cert_chain` on the live context sets the certificate, then the key:
        in between, the context holds a certificate without its key. A
        connection accepted in that window would fail its handshake, so the swap
        must not run beside the loop that accepts connections; on the loop
        thread, no connection starts between the two steps (each connection
        copies the pair when it starts, so handshakes under way are untouched).
        """
        while True:
            await asyncio.sleep(self.interval)
            if await asyncio.to_thread(self.changed):
                self.check()


def _not_after_time(cert_pem: bytes) -> dt.datetime | None:
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc
    except ValueError:
        return None


def not_after(cert_pem: bytes) -> str | None:
    when = _not_after_time(cert_pem)
    return when.isoformat() if when is not None else None

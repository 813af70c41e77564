"""A real etcd and kube-apiserver on 127.0.0.1, and `quotalang serve` registered with it.

The binaries come from `$KUBEBUILDER_ASSETS` (a folder holding kube-apiserver
and etcd, the controller-runtime envtest convention), else from the folder
`scripts/provision-kube.sh` fills (`$QUOTALANG_KUBE_ASSETS`, default
`~/.cache/quotalang/kube-1.20.2`). Certificates are made here with
`cryptography`: one CA signs the apiserver's serving pair, an admin client
pair in `system:masters`, and the webhook's serving pair; the service-account
signing key is a separate EC key; a second CA signs the aggregator's
front-proxy client pair (`--requestheader-*`, `--proxy-client-*`).

Without kube-controller-manager nothing is garbage-collected and no pods are
created for workloads: tests create what they need themselves.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ASSETS = Path.home() / ".cache" / "quotalang" / "kube-1.20.2"
WEBHOOK_NAME = "quota.quotalang.dev"
FRONT_PROXY_NAME = "front-proxy-client"


def assets() -> Path | None:
    """The folder holding kube-apiserver and etcd, or None."""
    for candidate in (
        os.environ.get("KUBEBUILDER_ASSETS"),
        os.environ.get("QUOTALANG_KUBE_ASSETS"),
        str(DEFAULT_ASSETS),
    ):
        if candidate and all(os.access(Path(candidate) / name, os.X_OK) for name in ("kube-apiserver", "etcd")):
            return Path(candidate)
    return None


def kubectl_binary(folder: Path) -> str | None:
    """kubectl from the assets folder, else from PATH."""
    here = folder / "kubectl"
    return str(here) if os.access(here, os.X_OK) else shutil.which("kubectl")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0,
               process: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    """Poll `condition` every 100 ms; raise with the log's tail when it never holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {process.returncode}\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}\n{_tail(log)}")
        time.sleep(0.1)


def _tail(log: Path | None, lines: int = 40) -> str:
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


# ------------------------------------------------------------------ certificates
@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


class Authority:
    """A throwaway CA that signs serving and client certificates."""

    def __init__(self, folder: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.folder = folder
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "quotalang e2e CA")])
        now = dt.datetime.now(dt.UTC)
        self._cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.cert = folder / "ca.crt"
        self.cert.write_bytes(self._pem_cert(self._cert))

    @staticmethod
    def _pem_cert(cert: Any) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return bytes(cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, *, hosts: Sequence[str] = (), groups: Sequence[str] = (), client: bool = False) -> Pair:
        """A pair for serving `hosts`, or (client=True) for user `name` in `groups`."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
        subject.append(x509.NameAttribute(NameOID.COMMON_NAME, name))
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder().subject_name(x509.Name(subject)).issuer_name(self._cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        )
        if hosts:
            names: list[x509.GeneralName] = []
            for host in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        pair = Pair(self.folder / f"{name}.crt", self.folder / f"{name}.key")
        pair.cert.write_bytes(self._pem_cert(cert))
        pair.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return pair


def _service_account_keys(folder: Path) -> Pair:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    pair = Pair(folder / "sa.pub", folder / "sa.key")
    pair.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    pair.cert.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo))
    return pair


# ------------------------------------------------------------------ the cluster
@dataclass
class Cluster:
    """etcd + kube-apiserver as child processes; `stop()` kills both."""

    assets: Path
    folder: Path
    authority: Authority = field(init=False)
    admin: Pair = field(init=False)
    port: int = field(init=False)
    kubeconfig: Path = field(init=False)
    _etcd: subprocess.Popen[bytes] | None = None
    _apiserver: subprocess.Popen[bytes] | None = None
    _etcd_url: str = ""
    # More kube-apiserver flags (the install test routes webhook calls to Endpoints with
    # --enable-aggregator-routing, since nothing here implements ClusterIPs).
    apiserver_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.authority = Authority(self.folder)
        self.serving = self.authority.issue("apiserver", hosts=["127.0.0.1", "localhost"])
        self.admin = self.authority.issue("admin", groups=["system:masters"], client=True)
        self.service_accounts = _service_account_keys(self.folder)
        # The aggregator's front proxy: a CA of its own (as Kubernetes advises) and the client pair it
        # presents to aggregated APIs (tests/e2e/test_aggregated.py).
        (self.folder / "front-proxy").mkdir(exist_ok=True)
        self.front_proxy_ca = Authority(self.folder / "front-proxy")
        self.front_proxy = self.front_proxy_ca.issue(FRONT_PROXY_NAME, client=True)
        self.port = free_port()
        self.kubeconfig = self.folder / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "e2e",
            "clusters": [{"name": "e2e", "cluster": {"server": self.url,
                                                     "certificate-authority": str(self.authority.cert)}}],
            "users": [{"name": "admin", "user": {"client-certificate": str(self.admin.cert),
                                                 "client-key": str(self.admin.key)}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "admin"}}],
        }))

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start etcd (once) and the apiserver; return when /readyz answers 200."""
        if self._etcd is None:
            client, peer = free_port(), free_port()
            self._etcd_url = f"http://127.0.0.1:{client}"
            log = self.folder / "etcd.log"
            self._etcd = _spawn(log,
                [str(self.assets / "etcd"), "--name", "e2e", "--data-dir", str(self.folder / "etcd-data"),
                 "--listen-client-urls", self._etcd_url, "--advertise-client-urls", self._etcd_url,
                 "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                 "--initial-cluster", f"e2e=http://127.0.0.1:{peer}", "--unsafe-no-fsync"])
        self.start_apiserver()

    def start_apiserver(self) -> None:
        log = self.folder / "apiserver.log"
        self._apiserver = _spawn(log,
            [str(self.assets / "kube-apiserver"),
             "--etcd-servers", self._etcd_url,
             "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
             "--secure-port", str(self.port), "--insecure-port", "0",
             "--cert-dir", str(self.folder / "apiserver-certs"),
             "--tls-cert-file", str(self.serving.cert), "--tls-private-key-file", str(self.serving.key),
             "--client-ca-file", str(self.authority.cert),
             "--authorization-mode", "RBAC",
             "--disable-admission-plugins", "ServiceAccount",
             "--endpoint-reconciler-type", "none",
             "--service-cluster-ip-range", "10.0.0.0/24",
             "--service-account-issuer", "https://kubernetes.default.svc",
             "--service-account-key-file", str(self.service_accounts.cert),
             "--service-account-signing-key-file", str(self.service_accounts.key),
             "--allow-privileged=true",
             "--requestheader-client-ca-file", str(self.front_proxy_ca.cert),
             "--requestheader-allowed-names", FRONT_PROXY_NAME,
             "--requestheader-username-headers", "X-Remote-User",
             "--requestheader-group-headers", "X-Remote-Group",
             "--requestheader-extra-headers-prefix", "X-Remote-Extra-",
             "--proxy-client-cert-file", str(self.front_proxy.cert),
             "--proxy-client-key-file", str(self.front_proxy.key),
             *self.apiserver_args])
        wait_until(self._ready, "kube-apiserver /readyz", 90, self._apiserver, log)

    def _ready(self) -> bool:
        try:
            with self.http(timeout=2) as client:
                return client.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def running(self) -> bool:
        """The apiserver was started and not stopped since."""
        return self._apiserver is not None

    def stop_apiserver(self) -> None:
        _stop(self._apiserver)
        self._apiserver = None

    def stop(self) -> None:
        _stop(self._apiserver)
        _stop(self._etcd)
        self._apiserver = self._etcd = None

    # -------------------------------------------------------------- clients
    def http(self, timeout: float = 15) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.authority.cert))
        context.load_cert_chain(str(self.admin.cert), str(self.admin.key))
        return httpx.Client(base_url=self.url, verify=context, timeout=timeout)

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        binary = kubectl_binary(self.assets)
        if binary is None:
            raise RuntimeError("no kubectl: run scripts/provision-kube.sh")
        done = subprocess.run([binary, "--kubeconfig", str(self.kubeconfig), *args], input=stdin,
                              capture_output=True, text=True, timeout=60)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done

    def apply(self, *docs: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", stdin="\n---\n".join(orjson.dumps(d).decode() for d in docs))

    def create(self, doc: dict[str, Any], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.kubectl("create", "-f", "-", stdin=orjson.dumps(doc).decode(), check=check)

    def kubeconfig_as(self, path: Path, namespace: str, account: str) -> Path:
        """A kubeconfig at `path` acting as ServiceAccount `account` in `namespace` (its bound token)."""
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": account,
            "clusters": [{"name": "e2e", "cluster": {"server": self.url,
                                                     "certificate-authority": str(self.authority.cert)}}],
            "users": [{"name": account, "user": {"token": self.token(namespace, account)}}],
            "contexts": [{"name": account, "context": {"cluster": "e2e", "user": account}}],
        }))
        return path

    def token(self, namespace: str, account: str) -> str:
        """A bound token for ServiceAccount `account` in `namespace`, from the TokenRequest API."""
        with self.http() as client:
            answer = client.post(f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
                                 json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                       "spec": {"expirationSeconds": 3600}})
        assert answer.status_code == 201, answer.text
        value: str = answer.json()["status"]["token"]
        return value

    def ensure_namespace(self, name: str) -> None:
        if self.kubectl("get", "namespace", name, check=False).returncode != 0:
            self.kubectl("create", "namespace", name)


def _spawn(log: Path, command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start `command` with its output appended to `log` (the child keeps its own descriptor)."""
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**os.environ, **env} if env else None)


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


# ------------------------------------------------------------------ the webhook
@dataclass
class Webhook:
    """`quotalang serve` on 127.0.0.1 over TLS, registered with the cluster."""

    cluster: Cluster
    policy: Path
    folder: Path
    args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    api_port: int = 0  # /metrics, /api/*: the API port
    api_auth: bool = False  # True: bearer tokens checked against the cluster; False: --api-insecure
    env: dict[str, str] = field(default_factory=dict)  # more environment (e.g. POD_NAME for a replica)
    hosts: tuple[str, ...] = ()  # more names its serving certificate carries (a Service's DNS name)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def log(self) -> Path:
        return self.folder / "serve.log"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        pair = self.cluster.authority.issue(f"webhook-{free_port()}", hosts=["127.0.0.1", "localhost", *self.hosts])
        self.port = self.port or free_port()
        self.api_port = self.api_port or free_port()
        self.process = _spawn(self.log,
            [sys.executable, "-m", "quotalang.server.cli", "serve", "--policy", str(self.policy), "--host", "127.0.0.1",
             "--port", str(self.port), "--tls-cert", str(pair.cert), "--tls-key", str(pair.key),
             "--api-port", str(self.api_port), *(() if self.api_auth else ("--api-insecure",)),
             "--log-format", "json", *self.args],
            # serve's default SQLite ledger lives under $XDG_STATE_HOME: one per webhook, never the user's.
            env={"XDG_STATE_HOME": str(self.folder / "state"), **self.env})
        wait_until(self.ready, "quotalang serve /readyz", 60, self.process, self.log)

    def ready(self) -> bool:
        try:
            with self.http(timeout=2) as client:
                return client.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        _stop(self.process)
        self.process = None

    def http(self, timeout: float = 10, *, api: bool = False, token: str | None = None) -> httpx.Client:
        """A client of the admission port, or of the API port (`api`), with a bearer `token` if given."""
        context = ssl.create_default_context(cafile=str(self.cluster.authority.cert))
        headers = {"authorization": f"Bearer {token}"} if token is not None else None
        return httpx.Client(base_url=self.api_url if api else self.url, verify=context, timeout=timeout,
                            headers=headers)

    def group(self, name: str) -> dict[str, Any]:
        with self.http(api=True) as client:
            answer = client.get(f"/api/groups/{name}")
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def register(self, rules: list[dict[str, Any]], failure_policy: str = "Fail", *,
                 name: str = "quotalang-e2e", object_selector: dict[str, Any] | None = None,
                 on: Cluster | None = None, route: str = "/validate") -> None:
        """A ValidatingWebhookConfiguration that sends `rules` to this server's `route`.

        `on`: the cluster to register with (default its own): a member cluster
        of a multi-cluster serve, which trusts this server's CA (its own
        cluster's) through the caBundle.
        """
        import base64

        (on or self.cluster).apply({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [{
                **({"objectSelector": object_selector} if object_selector else {}),
                "name": WEBHOOK_NAME,
                "admissionReviewVersions": ["v1"],
                "sideEffects": "NoneOnDryRun",
                "timeoutSeconds": 10,
                "failurePolicy": failure_policy,
                "matchPolicy": "Equivalent",
                "clientConfig": {"url": f"{self.url}{route}",
                                 "caBundle": base64.b64encode(self.cluster.authority.cert.read_bytes()).decode()},
                "rules": rules,
            }],
        })

"""Certificate renewal under load: serve renews its serving pair (and its CA) while admissions keep coming.

`quotalang serve --cert-secret` runs as a real process against a real
kube-apiserver with `--cert-validity 6` (seconds): the serving pair is
renewed whenever a third of its life is left (every ~4 s), and the CA (4x as
long: 24 s) is rotated in two steps within the run. Two clients send
admissions the whole time:

* the apiserver itself: dry-run Deployment creates, which it sends to the
  webhook Service (`quotalang.<ns>.svc`, resolved to Endpoints the test
  writes, `--enable-aggregator-routing`) over TLS, trusting the caBundle
  serve keeps in the ValidatingWebhookConfiguration (failurePolicy Fail, so a
  failed call fails the request);
* a strict direct client: a new TLS connection for every request, verifying
  the certificate for `quotalang.<ns>.svc` against the caBundle as the
  apiserver sees it at that moment — so every renewal is met by new
  handshakes, not hidden behind a kept-alive connection.

Passes when at least two renewals were served (distinct serving certificates
seen by the direct client), the CA rotated, and not one request failed.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from quotalang.compiler import compile_policy
from quotalang.server.manifests import webhook_rules
from tests.e2e.conftest import REQUIRED, wait_for_webhook
from tests.e2e.kube_cluster import ROOT, Cluster, _stop, assets, free_port, wait_until

NS = "quota-certs"
SERVICE_NAME = f"quotalang.{NS}.svc"
VALIDITY = 6.0  # seconds: renewed with 2 s left, every ~4 s; the CA lives 24 s
LOAD_SECONDS = 24.0

POLICY = """\
import "quotalang:policies/core.quota"

settings {
  group label  "quota.group"
}

group root {
  requests.cpu   20
}

group team-a in root {
  requests.cpu    4
}
"""


def workload(name: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "team-a", "labels": {"quota.group": "team-a"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "registry.example/app:1",
                                                       "resources": {"requests": {"cpu": "1"}}}]}}},
    }


def host_address() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent; the kernel picks the source address
        address: str = probe.getsockname()[0]
    if address.startswith("127."):
        pytest.fail("this machine has no non-loopback IPv4 address for the webhook's Endpoints")
    return address


@dataclass
class Renewing:
    cluster: Cluster
    address: str
    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.folder / "serve.log"

    def bundle(self) -> bytes:
        with self.cluster.http() as client:
            config = client.get("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/quotalang")
        assert config.status_code == 200, config.text
        encoded = config.json()["webhooks"][0]["clientConfig"].get("caBundle")
        return base64.b64decode(encoded) if encoded else b""


@pytest.fixture(scope="module")
def renewing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Renewing]:
    folder = assets()
    if folder is None:
        message = "no kube-apiserver/etcd: run scripts/provision-kube.sh or set KUBEBUILDER_ASSETS"
        if REQUIRED:
            pytest.fail(f"QUOTALANG_E2E_REQUIRED=1 but {message}", pytrace=False)
        pytest.skip(message)
    work = tmp_path_factory.mktemp("renewal")
    cluster = Cluster(folder, work / "cluster", apiserver_args=("--enable-aggregator-routing=true",))
    policy = work / "policy"
    policy.mkdir()
    (policy / "org.quota").write_text(POLICY)
    state = Renewing(cluster, host_address(), free_port(), work / "serve")
    state.folder.mkdir()
    try:
        cluster.start()
        cluster.ensure_namespace(NS)
        cluster.ensure_namespace("team-a")
        for doc in (
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "quotalang", "namespace": NS},
             "spec": {"ports": [{"name": "https", "port": 443, "targetPort": state.port}]}},
            {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "quotalang", "namespace": NS},
             "subsets": [{"addresses": [{"ip": state.address}],
                          "ports": [{"name": "https", "port": state.port, "protocol": "TCP"}]}]},
            {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
             "metadata": {"name": "quotalang"},
             "webhooks": [{"name": "quota.quotalang.dev", "admissionReviewVersions": ["v1"],
                           "sideEffects": "NoneOnDryRun", "timeoutSeconds": 5, "failurePolicy": "Fail",
                           "clientConfig": {"service": {"namespace": NS, "name": "quotalang",
                                                        "path": "/validate", "port": 443}},
                           "namespaceSelector": {"matchExpressions": [
                               {"key": "quotalang.dev/exempt", "operator": "DoesNotExist"}]},
                           "rules": webhook_rules(compile_policy(str(policy)))}]},
        ):
            cluster.apply(doc)  # one at a time: kubectl reads a JSON stream as one document
        tmp = state.folder / "tmp"
        tmp.mkdir()
        env = {**os.environ, "POD_NAMESPACE": NS, "POD_NAME": "renewing-0", "TMPDIR": str(tmp),
               "XDG_STATE_HOME": str(state.folder / "state")}
        with state.log.open("ab") as out:
            state.process = subprocess.Popen(
                [sys.executable, "-m", "quotalang.server.cli", "serve", "--policy", str(policy),
                 "--host", "0.0.0.0", "--port", str(state.port), "--kubeconfig", str(cluster.kubeconfig),
                 "--store", "memory", "--cert-secret", "quotalang-tls", "--cert-service", "quotalang",
                 "--webhook-configuration", "quotalang", "--cert-validity", str(VALIDITY),
                 "--api-port", str(free_port()), "--log-format", "json"],
                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        wait_until(lambda: bool(state.bundle()), "serve to publish its CA", 60, state.process, state.log)
        wait_for_webhook(cluster, workload("probe", 9))
        yield state
    finally:
        _stop(state.process)
        cluster.stop()


def _post_direct(state: Renewing, bundle: bytes, body: bytes) -> tuple[int, bytes, bytes]:
    """One admission on a fresh TLS connection, verified as the apiserver would; (status, body, cert DER).

    The response is read to its Content-Length, as an HTTP client does, not to EOF.
    """
    context = ssl.create_default_context(cadata=bundle.decode())
    with socket.create_connection((state.address, state.port), timeout=5) as raw:
        try:
            tls = context.wrap_socket(raw, server_hostname=SERVICE_NAME)
        except (OSError, ssl.SSLError) as exc:
            raise ConnectionError(f"handshake: {type(exc).__name__}: {exc}") from None
        with tls:
            der = tls.getpeercert(binary_form=True) or b""
            tls.sendall(b"POST /validate HTTP/1.1\r\nHost: " + SERVICE_NAME.encode() +
                        b"\r\nContent-Type: application/json\r\nContent-Length: " +
                        str(len(body)).encode() + b"\r\n\r\n" + body)
            data = b""
            try:
                while True:
                    head, sep, payload = data.partition(b"\r\n\r\n")
                    if sep:
                        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                                      if line.lower().startswith(b"content-length:"))
                        if len(payload) >= length:
                            return int(head.split(b" ", 2)[1]), payload[:length], der
                    chunk = tls.recv(65536)
                    if not chunk:
                        raise ConnectionError(f"closed after {len(data)} bytes")
                    data += chunk
            except (OSError, ssl.SSLError) as exc:
                raise ConnectionError(f"response: {type(exc).__name__}: {exc} after {len(data)} bytes") from None


def test_two_renewals_and_a_ca_rotation_under_load_fail_no_request(renewing: Renewing) -> None:
    from cryptography import x509

    review = orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "direct", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "name": "direct", "namespace": "team-a", "operation": "CREATE", "dryRun": True,
        "object": workload("direct", 2)}})
    serials: dict[int, bytes] = {}  # serving certificate serial -> its issuer's key id
    counts = {"apiserver": 0, "direct": 0}
    failures: list[str] = []
    start = time.monotonic()
    stop = start + LOAD_SECONDS

    def through_apiserver() -> None:
        with renewing.cluster.http() as client:
            while time.monotonic() < stop:
                for name, replicas, expected in (("fits", 2, 201), ("too-big", 9, 403)):
                    answer = client.post("/apis/apps/v1/namespaces/team-a/deployments?dryRun=All",
                                         json=workload(name, replicas))
                    counts["apiserver"] += 1
                    ok = answer.status_code == expected and (
                        expected == 201 or "quota exceeded in group root/team-a" in answer.text)
                    if not ok:
                        failures.append(f"apiserver {name}: {answer.status_code} {answer.text[:300]}")

    def direct() -> None:
        while time.monotonic() < stop:
            try:
                status, payload, der = _post_direct(renewing, renewing.bundle(), review)
            except (OSError, ssl.SSLError) as exc:
                failures.append(f"direct at {time.monotonic() - start:.1f} s: {type(exc).__name__}: {exc}")
                continue
            counts["direct"] += 1
            if status != 200 or orjson.loads(payload)["response"]["allowed"] is not True:
                failures.append(f"direct: {status} {payload[:300]!r}")
            cert = x509.load_der_x509_certificate(der)
            issuer = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
            serials[cert.serial_number] = issuer or b""

    threads = [threading.Thread(target=through_apiserver), threading.Thread(target=direct)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LOAD_SECONDS + 30)
    assert renewing.process is not None and renewing.process.poll() is None, renewing.log.read_text()[-3000:]
    log = renewing.log.read_text(errors="replace")
    print(f"admissions: {counts['apiserver']} through the apiserver, {counts['direct']} direct; "
          f"{len(serials)} serving certificates from {len(set(serials.values()))} CAs; "
          f"{log.count('serving certificate reloaded')} reloads")
    assert not failures, "\n".join(failures[:20]) + "\n" + log[-3000:]
    assert counts["apiserver"] > 20 and counts["direct"] > 20
    assert len(serials) >= 3, f"expected two renewals at least, saw {len(serials)} serving certificates"
    assert len(set(serials.values())) >= 2, "the CA was not rotated within the run"
    assert "certificate round failed" not in log and "reload failed" not in log, log[-3000:]

"""serve's own certificates: created once, renewed before expiry, the CA rotated without a gap of trust.

A fake apiserver (a dict of objects with resourceVersions, 409 on a stale
PUT) and an injected clock stand in for the cluster; the renewal under load
against the real apiserver is in tests/e2e/test_certs_e2e.py.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from quotalang.controller.kube.api import ApiError
from quotalang.server.certs import CertSettings, SecretCertificates
from quotalang.server.metrics import Metrics

SECRET = "/api/v1/namespaces/q/secrets/quotalang-tls"
HOOKS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/quotalang"


class FakeApi:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.conflicts = 0  # the next N PUTs fail with 409, as when another replica wrote first
        self.calls: list[tuple[str, str]] = []

    def request(self, method: str, path: str, *, body: Mapping[str, Any] | None = None,
                timeout: float = 10.0, **_: Any) -> dict[str, Any]:
        self.calls.append((method, path))
        if method == "GET":
            if path not in self.objects:
                raise ApiError(404, "NotFound", path)
            return _copy(self.objects[path])
        assert body is not None
        if method == "POST":
            path = f"{path}/{body['metadata']['name']}"
            if path in self.objects:
                raise ApiError(409, "AlreadyExists", path)
        elif method == "PUT":
            current = self.objects[path]["metadata"]["resourceVersion"]
            if self.conflicts or body["metadata"].get("resourceVersion") != current:
                self.conflicts = max(0, self.conflicts - 1)
                raise ApiError(409, "Conflict", path)
        self.version += 1
        stored = _copy(dict(body))
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.objects[path] = stored
        return _copy(stored)


def _copy(obj: dict[str, Any]) -> dict[str, Any]:
    import orjson

    out: dict[str, Any] = orjson.loads(orjson.dumps(obj))
    return out


def webhooks() -> dict[str, Any]:
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "quotalang", "resourceVersion": "1"},
            "webhooks": [
                {"name": "quota.quotalang.dev",
                 "clientConfig": {"service": {"namespace": "q", "name": "quotalang", "path": "/validate"}}},
                {"name": "someone-else.example",
                 "clientConfig": {"service": {"namespace": "other", "name": "x"}, "caBundle": "b3RoZXI="}},
            ]}


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


VALIDITY = 3000.0  # serving 3000 s, CA 12000 s, renewed with a third left


@pytest.fixture
def api() -> FakeApi:
    fake = FakeApi()
    fake.objects[HOOKS] = webhooks()
    return fake


def keeper(api: FakeApi, tmp_path: Path, clock: Clock, metrics: Metrics | None = None) -> SecretCertificates:
    settings = CertSettings("q", "quotalang-tls", "quotalang", "quotalang", VALIDITY)
    return SecretCertificates(api, settings, tmp_path / "tls", metrics, clock=clock)  # type: ignore[arg-type]


def secret_cert(api: FakeApi, key: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(api.objects[SECRET]["data"][key]))


def bundle(api: FakeApi) -> list[x509.Certificate]:
    pem = base64.b64decode(api.objects[HOOKS]["webhooks"][0]["clientConfig"]["caBundle"])
    return x509.load_pem_x509_certificates(pem)


def test_the_first_replica_creates_the_secret_serves_it_and_publishes_the_ca(
    api: FakeApi, tmp_path: Path
) -> None:
    clock = Clock()
    metrics = Metrics()
    k = keeper(api, tmp_path, clock, metrics)
    assert k.sync() is True
    serving, ca = secret_cert(api, "tls.crt"), secret_cert(api, "ca.crt")
    serving.verify_directly_issued_by(ca)
    assert bundle(api) == [ca]
    assert api.objects[HOOKS]["webhooks"][1]["clientConfig"]["caBundle"] == "b3RoZXI="  # not ours: untouched
    assert k.cert_file.read_bytes() == base64.b64decode(api.objects[SECRET]["data"]["tls.crt"])
    assert (k.key_file.stat().st_mode & 0o777) == 0o600
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [
        "quotalang.q.svc", "quotalang.q.svc.cluster.local", "quotalang.q", "quotalang"]
    assert metrics.registry.get_sample_value("quotalang_tls_not_after_seconds", {"certificate": "serving"}) == \
        serving.not_valid_after_utc.timestamp()
    # A second replica serves the same pair and writes nothing.
    writes = len([c for c in api.calls if c[0] != "GET"])
    other = keeper(api, tmp_path / "other", clock)
    assert other.sync() is True
    assert other.cert_file.read_bytes() == k.cert_file.read_bytes()
    assert len([c for c in api.calls if c[0] != "GET"]) == writes
    assert k.sync() is False  # nothing due, nothing changed


def test_the_serving_pair_is_renewed_with_a_third_of_its_life_left(api: FakeApi, tmp_path: Path) -> None:
    clock = Clock()
    k = keeper(api, tmp_path, clock)
    k.sync()
    first, ca = secret_cert(api, "tls.crt"), secret_cert(api, "ca.crt")
    clock.advance(VALIDITY * 2 / 3 - 5)
    assert k.sync() is False
    clock.advance(10)
    assert k.sync() is True
    second = secret_cert(api, "tls.crt")
    assert second.serial_number != first.serial_number
    second.verify_directly_issued_by(ca)  # same CA: the bundle did not change
    assert bundle(api) == [ca]
    assert k.renewals == 2


def test_the_ca_is_trusted_before_it_signs_and_the_old_one_until_it_expires(api: FakeApi, tmp_path: Path) -> None:
    clock = Clock()
    settings = CertSettings("q", "quotalang-tls", "quotalang", "quotalang", VALIDITY)
    k = keeper(api, tmp_path, clock)
    k.sync()
    old_ca = secret_cert(api, "ca.crt")
    # Two thirds of the CA's life: a next CA joins the bundle, but the serving pair stays on the old one.
    clock.advance(settings.ca_validity * 2 / 3 + 1)
    k.sync()
    assert "next-ca.crt" in api.objects[SECRET]["data"]
    new_ca = secret_cert(api, "next-ca.crt")
    assert bundle(api) == [old_ca, new_ca]
    secret_cert(api, "tls.crt").verify_directly_issued_by(old_ca)
    # After the grace the next CA signs; the old one stays trusted (a replica may not have reloaded).
    clock.advance(settings.grace + 1)
    k.sync()
    assert secret_cert(api, "ca.crt") == new_ca
    secret_cert(api, "tls.crt").verify_directly_issued_by(new_ca)
    assert bundle(api) == [new_ca, old_ca]
    # Once the old CA has expired it leaves the bundle.
    clock.now = old_ca.not_valid_after_utc + dt.timedelta(seconds=1)
    k.sync()
    assert bundle(api) == [new_ca]
    assert "previous-ca.crt" not in api.objects[SECRET]["data"]


def test_a_conflicting_write_is_reread_and_retried(api: FakeApi, tmp_path: Path) -> None:
    clock = Clock()
    k = keeper(api, tmp_path, clock)
    k.sync()
    clock.advance(VALIDITY)  # the serving pair is due
    api.conflicts = 2
    assert k.sync() is True
    assert secret_cert(api, "tls.crt").not_valid_after_utc > clock.now


def test_a_secret_edited_into_garbage_is_replaced(api: FakeApi, tmp_path: Path) -> None:
    clock = Clock()
    k = keeper(api, tmp_path, clock)
    k.sync()
    api.objects[SECRET]["data"]["tls.crt"] = base64.b64encode(b"not a certificate").decode()
    k.sync()
    secret_cert(api, "tls.crt").verify_directly_issued_by(secret_cert(api, "ca.crt"))


def test_no_webhook_configuration_yet_is_not_an_error(tmp_path: Path) -> None:
    api = FakeApi()
    k = keeper(api, tmp_path, Clock())
    assert k.sync() is True  # the pair is served; the bundle is published on a later round
    api.objects[HOOKS] = webhooks()
    k.sync()
    assert bundle(api) == [secret_cert(api, "ca.crt")]


APISERVICE = "/apis/apiregistration.k8s.io/v1/apiservices/v1alpha1.visibility.quotalang.dev"


def _api_service(namespace: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": "v1alpha1.visibility.quotalang.dev", "resourceVersion": "1"},
            "spec": {"group": "visibility.quotalang.dev", "version": "v1alpha1",
                     "service": {"namespace": namespace, "name": name, "port": 8445}}}


def test_the_aggregated_apis_apiservice_trusts_the_same_ca(api: FakeApi, tmp_path: Path) -> None:
    api.objects[APISERVICE] = _api_service("q", "quotalang")
    settings = CertSettings("q", "quotalang-tls", "quotalang", "quotalang", VALIDITY,
                            api_service="v1alpha1.visibility.quotalang.dev")
    SecretCertificates(api, settings, tmp_path / "tls", clock=Clock()).sync()  # type: ignore[arg-type]
    published = api.objects[APISERVICE]["spec"]["caBundle"]
    assert published == api.objects[HOOKS]["webhooks"][0]["clientConfig"]["caBundle"]
    assert x509.load_pem_x509_certificates(base64.b64decode(published))[0] == secret_cert(api, "ca.crt")
    puts = [c for c in api.calls if c == ("PUT", APISERVICE)]
    SecretCertificates(api, settings, tmp_path / "tls2", clock=Clock()).sync()  # type: ignore[arg-type]
    assert [c for c in api.calls if c == ("PUT", APISERVICE)] == puts  # already right: not written again


def test_an_apiservice_of_another_service_keeps_its_ca(api: FakeApi, tmp_path: Path) -> None:
    api.objects[APISERVICE] = _api_service("other", "quotalang")
    settings = CertSettings("q", "quotalang-tls", "quotalang", "quotalang", VALIDITY,
                            api_service="v1alpha1.visibility.quotalang.dev")
    SecretCertificates(api, settings, tmp_path / "tls", clock=Clock()).sync()  # type: ignore[arg-type]
    assert "caBundle" not in api.objects[APISERVICE]["spec"]

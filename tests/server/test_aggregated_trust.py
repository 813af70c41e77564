"""Where the aggregated API port's trust comes from (`aggregated_trust`), and the manifests that register it."""

from __future__ import annotations

from pathlib import Path

import pytest

from quotalang.server.aggregated_manifests import AGGREGATED_PORT, VIEWER, with_aggregated_api
from quotalang.server.aggregated_trust import TrustError, from_configmap, from_files
from quotalang.server.serveopts import ServeError, ServeOptions, check
from quotalang.server.tls import make_ca


def test_the_apiservers_configmap_gives_the_ca_and_the_allowed_names(tmp_path: Path) -> None:
    ca = make_ca("front proxy").cert.decode()
    trust = from_configmap({"requestheader-client-ca-file": ca,
                            "requestheader-allowed-names": '["front-proxy-client","aggregator"]'}, tmp_path)
    assert trust.names == ("front-proxy-client", "aggregator")
    assert Path(trust.ca_file).read_text() == ca
    assert trust.problem(None) is not None  # no certificate: refused
    assert trust.problem({"subject": ((("commonName", "mallory"),),)}) is not None
    assert trust.problem({"subject": ((("commonName", "aggregator"),),)}) is None
    anyone = from_configmap({"requestheader-client-ca-file": ca}, tmp_path)
    assert anyone.names == () and anyone.problem({"subject": ((("commonName", "x"),),)}) is None


@pytest.mark.parametrize(("data", "said"), [
    (None, "has no requestheader-client-ca-file"),
    ({}, "has no requestheader-client-ca-file"),
    ({"requestheader-client-ca-file": "  "}, "has no requestheader-client-ca-file"),
    ({"requestheader-client-ca-file": "not a pem"}, "holds no usable CA"),
    ({"requestheader-client-ca-file": "CA", "requestheader-allowed-names": "[1"}, "not a JSON list"),
    ({"requestheader-client-ca-file": "CA", "requestheader-allowed-names": '[1, 2]'}, "not a list of names"),
])
def test_a_configmap_that_cannot_be_used_is_a_clear_error(tmp_path: Path, data: object, said: str) -> None:
    if isinstance(data, dict) and data.get("requestheader-client-ca-file") == "CA":
        data = {**data, "requestheader-client-ca-file": make_ca("x").cert.decode()}
    with pytest.raises(TrustError, match=said):
        from_configmap(data, tmp_path)


def test_a_ca_file_that_is_not_one_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text("nope")
    with pytest.raises(TrustError, match="--requestheader-client-ca-file"):
        from_files(str(tmp_path / "ca.crt"), ())


@pytest.mark.parametrize(("options", "said"), [
    ({"requestheader_client_ca": "ca.crt"}, "give --aggregated-port too"),
    ({"aggregated_port": 8445, "insecure_http": True}, "cannot take --insecure-http"),
    ({"aggregated_port": 8444}, "taken by another port"),
    ({"aggregated_port": 8445, "requestheader_allowed_names": ("a",)}, "give the file too"),
    ({"aggregated_port": 8445}, "needs the front proxy's CA"),
])
def test_serve_refuses_an_aggregated_api_it_cannot_secure(options: dict[str, object], said: str) -> None:
    with pytest.raises(ServeError, match=said):
        check(ServeOptions(policy=["p"], **options))  # type: ignore[arg-type]


def test_the_manifests_register_the_api_before_the_webhook_configuration() -> None:
    docs = [
        {"kind": "Service", "metadata": {"name": "quotalang", "labels": {"a": "b"}},
         "spec": {"ports": [{"name": "https", "port": 443}]}},
        {"kind": "Deployment", "metadata": {"name": "quotalang"},
         "spec": {"template": {"spec": {"containers": [{"name": "serve", "args": ["serve"], "ports": []}]}}}},
        {"kind": "ValidatingWebhookConfiguration", "metadata": {"name": "quotalang"},
         "webhooks": [{"clientConfig": {"caBundle": "Q0E="}}]},
    ]
    out = with_aggregated_api(docs, "quota-system", "quotalang")
    assert [d["kind"] for d in out] == ["Service", "Deployment", "APIService", "ClusterRole", "RoleBinding",
                                        "ValidatingWebhookConfiguration"]
    service = out[2]["spec"]
    assert service["service"] == {"namespace": "quota-system", "name": "quotalang", "port": AGGREGATED_PORT}
    assert service["caBundle"] == "Q0E=" and out[2]["metadata"]["name"] == "v1alpha1.visibility.quotalang.dev"
    assert out[0]["spec"]["ports"][-1] == {"name": "aggregated", "port": AGGREGATED_PORT, "targetPort": "aggregated"}
    container = out[1]["spec"]["template"]["spec"]["containers"][0]
    assert f"--aggregated-port={AGGREGATED_PORT}" in container["args"]
    assert out[3]["metadata"]["name"] == VIEWER
    assert out[4]["roleRef"]["name"] == "extension-apiserver-authentication-reader"
    assert out[4]["metadata"]["namespace"] == "kube-system"
    assert docs[0]["spec"]["ports"] == [{"name": "https", "port": 443}]  # the input is left as it was


def _manifests(*args: str) -> tuple[int, str, str]:
    import contextlib
    import io

    from quotalang.server.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(["manifests", "--policy", str(EXAMPLES), "--namespace", "quota-system",
                         "--image", "registry.example/quotalang:test", *args], out)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"


def test_quotalang_manifests_prints_the_aggregated_api_with_the_webhooks_ca() -> None:
    import orjson

    code, text, _ = _manifests("--aggregated-api", "--embed-self-signed", "--format", "json")
    assert code == 0
    docs = orjson.loads(text)["items"]
    by_kind = {d["kind"]: d for d in docs}
    webhook_ca = by_kind["ValidatingWebhookConfiguration"]["webhooks"][0]["clientConfig"]["caBundle"]
    assert by_kind["APIService"]["spec"]["caBundle"] == webhook_ca
    assert by_kind["APIService"]["spec"]["service"] == {"namespace": "quota-system", "name": "quotalang",
                                                        "port": AGGREGATED_PORT}
    policy = by_kind["NetworkPolicy"]["spec"]["ingress"]
    assert {"protocol": "TCP", "port": AGGREGATED_PORT} in [p for rule in policy for p in rule["ports"]]
    assert docs[-1]["kind"] == "ValidatingWebhookConfiguration"
    plain = orjson.loads(_manifests("--embed-self-signed", "--format", "json")[1])["items"]
    assert "APIService" not in {d["kind"] for d in plain}  # opt-in: a cluster without a front proxy would fail


def test_with_serves_own_ca_serve_may_write_the_apiservices_ca_and_nothing_else() -> None:
    import orjson

    code, text, _ = _manifests("--aggregated-api", "--format", "json")
    assert code == 0
    docs = orjson.loads(text)["items"]
    (service,) = [d for d in docs if d["kind"] == "APIService"]
    assert "caBundle" not in service["spec"]  # serve writes it (--cert-secret), as it writes the webhook's
    (role,) = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "quotalang-apiservice"]
    assert role["rules"] == [{"apiGroups": ["apiregistration.k8s.io"], "resources": ["apiservices"],
                              "resourceNames": ["v1alpha1.visibility.quotalang.dev"], "verbs": ["get", "update"]}]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--cert-secret" in " ".join(args) and f"--aggregated-port={AGGREGATED_PORT}" in args
    with_ca = orjson.loads(_manifests("--aggregated-api", "--embed-self-signed", "--format", "json")[1])["items"]
    assert not [d for d in with_ca if d["metadata"]["name"] == "quotalang-apiservice"]  # nothing to write there

"""Mutual TLS on the admission port (server/clientauth.py): a real uvicorn over TLS on 127.0.0.1, on both event loops.

Certificates come from the end-to-end suite's throwaway CA (the same kind
the real apiserver is given). The app counts its calls: a refused request
must never reach it, so it can reserve nothing.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from quotalang.server.cli import main
from quotalang.server.clientauth import ClientAuth, peer_names
from quotalang.server.limits import ConnectionLimits, limited_protocol
from tests.e2e.kube_cluster import Authority, Pair
from tests.server.webhook_helpers import POLICY

CALLS: list[str] = []


async def validate(request: Request) -> Response:
    CALLS.append(request.url.path)
    return Response(b'{"allowed": true}', media_type="application/json")


async def readyz(request: Request) -> Response:
    return Response(b"ok")


APP = Starlette(routes=[Route("/validate", validate, methods=["POST"]), Route("/readyz", readyz)])


class Certs:
    def __init__(self, folder: Path) -> None:
        (folder / "ours").mkdir()
        (folder / "theirs").mkdir()
        self.ca = Authority(folder / "ours")
        self.serving = self.ca.issue("webhook", hosts=["127.0.0.1"])
        self.apiserver = self.ca.issue("kube-apiserver-webhook-client", client=True)
        self.someone = self.ca.issue("someone-else", client=True)
        self.stranger = Authority(folder / "theirs").issue("kube-apiserver-webhook-client", client=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(certs: Certs, names: tuple[str, ...] = (), loop: str = "asyncio") -> Iterator[str]:
    auth = ClientAuth(str(certs.ca.cert), names)
    port = free_port()
    config = uvicorn.Config(APP, host="127.0.0.1", port=port, http=limited_protocol(ConnectionLimits(), auth),
                            ssl_certfile=str(certs.serving.cert), ssl_keyfile=str(certs.serving.key),
                            log_config=None, lifespan="off", loop=loop, **auth.uvicorn_options())
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    CALLS.clear()
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def client(certs: Certs, pair: Pair | None) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(certs.ca.cert))
    if pair is not None:
        context.load_cert_chain(str(pair.cert), str(pair.key))
    return httpx.Client(verify=context, timeout=5)


LOOPS = pytest.mark.parametrize("loop", ["asyncio", "uvloop"])


@LOOPS
def test_a_client_certificate_from_the_ca_may_validate(certs: Certs, loop: str) -> None:
    with serving(certs, loop=loop) as url, client(certs, certs.apiserver) as http:
        assert http.post(f"{url}/validate", content=b"{}").status_code == 200
    assert CALLS == ["/validate"]


@LOOPS
def test_no_certificate_gets_401_for_validate_but_the_probes_answer(certs: Certs, loop: str) -> None:
    with serving(certs, loop=loop) as url, client(certs, None) as http:
        assert http.get(f"{url}/readyz").status_code == 200  # the kubelet presents no certificate
        answer = http.post(f"{url}/validate", content=b"{}")
        assert answer.status_code == 401
        assert answer.json()["reason"] == "Unauthorized"
        assert "client certificate signed by the --client-ca is required" in answer.json()["message"]
        assert http.get(f"{url}/api/groups").status_code == 401  # everything but the probes
    assert CALLS == []  # never reached the app: nothing reserved


@LOOPS
def test_another_cas_certificate_fails_the_handshake(certs: Certs, loop: str) -> None:
    refused = (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)
    with serving(certs, loop=loop) as url, client(certs, certs.stranger) as http, pytest.raises(refused):
        http.post(f"{url}/validate", content=b"{}")
    assert CALLS == []


def test_client_name_narrows_the_ca(certs: Certs) -> None:
    with serving(certs, names=("kube-apiserver-webhook-client",)) as url:
        with client(certs, certs.apiserver) as http:
            assert http.post(f"{url}/validate", content=b"{}").status_code == 200
        with client(certs, certs.someone) as http:
            answer = http.post(f"{url}/validate", content=b"{}")
        assert answer.status_code == 401
        assert "names someone-else, not one of --client-name" in answer.json()["message"]
    assert CALLS == ["/validate"]


def test_peer_names_reads_common_names_and_alternative_names() -> None:
    cert = {"subject": ((("organizationName", "system:masters"),), (("commonName", "apiserver"),)),
            "subjectAltName": (("DNS", "kube-apiserver.example"), ("IP Address", "10.0.0.1"))}
    assert peer_names(cert) == {"apiserver", "kube-apiserver.example", "10.0.0.1"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--client-name", "x"], "--client-name narrows --client-ca"),
        (["--client-ca", "ca.crt", "--insecure-http"], "--client-ca is mutual TLS"),
        (["--client-ca", "/nonexistent/ca.crt"], "no such file: /nonexistent/ca.crt"),
        (["--client-ca", "{garbage}"], "holds no usable CA certificate"),
    ],
    ids=["name-without-ca", "with-plain-http", "missing", "garbage"],
)
def test_serve_refuses_unusable_client_ca_options(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "org.quota").write_text(POLICY)
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("not a certificate")
    args = [str(garbage) if a == "{garbage}" else a for a in args]
    assert main(["serve", "--policy", str(tmp_path / "policy"), *args]) == 2
    assert message in capsys.readouterr().err

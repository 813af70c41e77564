"""The real thing: `quotalang serve` as a process on 127.0.0.1, spoken to over HTTPS.

Uses the example organisation (examples/policies). Numbers by hand, from the
workload files' own comments: bob may use 16 A100s; examples/workloads/tfjob.yaml
charges 1 × Chief 1 + 2 × Worker 4 = 9 of them, tfjob-too-big.yaml
1 × Chief 1 + 5 × Worker 4 = 21.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from quotalang.server.tls import Pem, issue, make_ca
from tests.server.webhook_helpers import response_of, review

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TOO_BIG_MESSAGE = (
    "quota exceeded in group root/ai-platform/nlp/bob: requests.nvidia.com/gpu.A100: "
    "requested 21 (1 × Chief 1 + 5 × Worker 4), used 0 of 16, 16 free"
)
ALICE_TOO_BIG_MESSAGE = TOO_BIG_MESSAGE.replace("nlp/bob", "nlp/alice")  # alice has bob's limits
SECOND_TFJOB_MESSAGE = (
    "quota exceeded in group root/ai-platform/nlp/bob: requests.nvidia.com/gpu.A100: "
    "requested 9 (1 × Chief 1 + 2 × Worker 4), used 9 of 16, 7 free"
)
NEW_KIND = "\nkind example.com/v1 Widget {\n  pods {\n    template spec.template\n  }\n}\n"


def workload(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load((EXAMPLES / "workloads" / name).read_text())
    return obj


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(
    condition: Callable[[], bool],
    what: str,
    process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
    timeout: float = 30.0,
) -> None:
    """Poll `condition` every 50 ms until it holds; fail with the server's log if it never does."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            text = log.read_text() if log else ""
            pytest.fail(f"server exited with {process.returncode} while waiting for {what}:\n{text}")
        if time.monotonic() > deadline:
            text = log.read_text() if log else ""
            pytest.fail(f"timed out waiting for {what}:\n{text}")
        time.sleep(0.05)


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    base: str
    ca: Path
    log: Path
    policy: Path
    tls: Path
    api_base: str = ""  # the API port: /metrics, /api/*, the pages

    def client(self, ca: Path | None = None, *, api: bool = False) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(ca or self.ca))
        return httpx.Client(base_url=self.api_base if api else self.base, verify=context, timeout=10)

    def validate(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.client() as client:
            answer = client.post(
                "/validate", content=orjson.dumps(body), headers={"content-type": "application/json"}
            )
        assert answer.status_code == 200, answer.text
        return response_of(answer.json())

    def ready(self) -> dict[str, Any]:
        with self.client() as client:
            body: dict[str, Any] = client.get("/readyz").json()
            return body

    def answers(self) -> bool:
        if not self.ca.exists():
            return False
        try:
            with self.client() as client:
                return client.get("/readyz").status_code == 200
        except (httpx.HTTPError, ssl.SSLError, OSError):
            return False


def start(folder: Path, *args: str, ca: Path, env: dict[str, str] | None = None) -> Iterator[Served]:
    policy = folder / "policy"
    shutil.copytree(EXAMPLES / "policies", policy)
    port, api_port = free_port(), free_port()
    log = folder / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "quotalang.server.cli",
                "serve",
                "--policy",
                str(policy),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--api-port",
                str(api_port),
                "--log-format",
                "json",
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            # serve's default SQLite ledger lives under $XDG_STATE_HOME: this server's own, never the user's.
            env={**os.environ, "XDG_STATE_HOME": str(folder / "state"), **(env or {})},
        )
    served = Served(process, f"https://127.0.0.1:{port}", ca, log, policy, folder / "tls",
                    f"https://127.0.0.1:{api_port}")
    try:
        wait_until(served.answers, "the server to answer /readyz", process, log)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    assert process.returncode == 0, log.read_text()


def write_pair(folder: Path, pair: Pem) -> None:
    for name, data in (("tls.key", pair.key), ("tls.crt", pair.cert)):
        tmp = folder / f".{name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, folder / name)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server with a certificate made here, re-reading its files every 0.2 s."""
    folder = tmp_path_factory.mktemp("served")
    tls = folder / "tls"
    tls.mkdir()
    ca = make_ca("test CA")
    (tls / "ca.crt").write_bytes(ca.cert)
    write_pair(tls, issue(ca, ["127.0.0.1", "localhost"]))
    yield from start(
        folder,
        "--tls-cert",
        str(tls / "tls.crt"),
        "--tls-key",
        str(tls / "tls.key"),
        "--reload-interval",
        "0.2",
        ca=tls / "ca.crt",
    )


def test_real_admission_reviews_over_https(served: Served) -> None:
    denied = served.validate(review(workload("tfjob-too-big.yaml"), uid="too-big"))
    assert denied["uid"] == "too-big"
    assert denied["allowed"] is False
    assert denied["status"] == {"code": 403, "reason": "Forbidden", "message": TOO_BIG_MESSAGE}

    assert served.validate(review(workload("tfjob.yaml"), uid="first"))["allowed"] is True
    second = workload("tfjob.yaml")
    second["metadata"]["name"] = "bert-pretrain-2"
    again = served.validate(review(second, uid="second"))  # usage comes from the server's own admissions
    assert again["status"]["message"] == SECOND_TFJOB_MESSAGE

    with served.client(api=True) as client:  # the API port: same certificate, no token with no cluster
        bob = client.get("/api/groups/bob").json()
        metrics = client.get("/metrics").text
    with served.client() as client:
        assert client.get("/api/groups/bob").status_code == 404  # never on the admission port
    a100 = next(r for r in bob["limits"] if r["key"] == "requests.nvidia.com/gpu.A100")
    assert (a100["used"], a100["free"]) == ("9", "7")
    assert (
        'quotalang_admissions_total{decision="deny",group="bob",kind="TFJob",operation="CREATE"} 2.0'
        in metrics
    )


def test_curl_gets_the_documented_denial(served: Served, tmp_path: Path) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    too_big = workload("tfjob-too-big.yaml")
    too_big["metadata"]["labels"]["biz.group.resource.quota"] = "alice"  # a group no other test fills
    body = tmp_path / "review.json"
    body.write_bytes(orjson.dumps(review(too_big, uid="curl-1")))
    result = subprocess.run(
        [
            curl,
            "-sS",
            "--fail",
            "--cacert",
            str(served.ca),
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            f"@{body}",
            f"{served.base}/validate",
        ],
        capture_output=True,
        check=True,
        timeout=30,
    )
    response = response_of(orjson.loads(result.stdout))
    assert response["uid"] == "curl-1"
    assert response["status"]["message"] == ALICE_TOO_BIG_MESSAGE


def test_bad_bodies_get_4xx_and_the_server_keeps_serving(served: Served) -> None:
    with served.client() as client:
        not_json = client.post("/validate", content=b"{oops")
        too_big = client.post("/validate", content=b" " * (3 * 1024 * 1024 + 10))
    assert not_json.status_code == 400
    assert "body is not JSON" in not_json.json()["message"]
    assert too_big.status_code == 413
    assert served.process.poll() is None
    assert served.ready()["ready"] is True


def test_policy_changes_are_picked_up_and_bad_ones_rejected(served: Served) -> None:
    first = served.ready()["policy"]
    settings = served.policy / "settings.quota"
    original = settings.read_text()
    settings.write_text(original + NEW_KIND)
    wait_until(lambda: served.ready()["policy"] != first, "the changed policy to be served")
    second = served.ready()["policy"]

    (served.policy / "broken.quota").write_text("group {\n")
    wait_until(lambda: served.ready()["last_reload_error"] is not None, "the broken policy to be rejected")
    assert served.ready()["policy"] == second  # the last good one keeps serving
    with served.client(api=True) as client:
        assert "quotalang_policy_reload_errors_total 1.0" in client.get("/metrics").text

    (served.policy / "broken.quota").unlink()
    settings.write_text(original)
    wait_until(lambda: served.ready()["policy"] == first, "the original policy to come back")
    assert served.ready()["last_reload_error"] is None


def test_a_renewed_certificate_is_served_without_a_restart(served: Served) -> None:
    new_ca = make_ca("renewed CA")
    (served.tls / "new-ca.crt").write_bytes(new_ca.cert)
    write_pair(served.tls, issue(new_ca, ["127.0.0.1", "localhost"]))

    def trusts_new_ca() -> bool:
        try:  # both ports: one pair, reloaded into each port's context
            with served.client(served.tls / "new-ca.crt") as client:
                admission = client.get("/healthz").status_code == 200
            with served.client(served.tls / "new-ca.crt", api=True) as client:
                return admission and client.get("/api/groups").status_code == 200
        except (httpx.HTTPError, ssl.SSLError):
            return False

    wait_until(trusts_new_ca, "the renewed certificate to be served", served.process, served.log)
    served.ca = served.tls / "new-ca.crt"  # later tests in this module talk to the renewed server
    assert served.ready()["ready"] is True


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server given no certificate (it makes its own) that only reloads on SIGHUP."""
    folder = tmp_path_factory.mktemp("self-signed")
    state = folder / "state"
    yield from start(
        folder,
        "--reload-interval",
        "3600",
        ca=state / "quotalang" / "tls" / "ca.crt",
        env={"XDG_STATE_HOME": str(state)},
    )


def test_with_no_certificate_a_local_ca_is_made_and_logged(self_signed: Served) -> None:
    lines = [orjson.loads(line) for line in self_signed.log.read_text().splitlines() if line.startswith("{")]
    made = next(line for line in lines if line["message"].startswith("self-signed certificate created"))
    assert made["ca"] == str(self_signed.ca)
    assert self_signed.ready()["ready"] is True  # verified against that CA


def test_sighup_reloads_the_policy(self_signed: Served) -> None:
    first = self_signed.ready()["policy"]
    settings = self_signed.policy / "settings.quota"
    settings.write_text(settings.read_text() + NEW_KIND)
    self_signed.process.send_signal(signal.SIGHUP)
    wait_until(
        lambda: self_signed.ready()["policy"] != first,
        "SIGHUP to reload the policy",
        self_signed.process,
        self_signed.log,
    )

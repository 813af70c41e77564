"""The console script: core verbs plus `serve` and `manifests`, one error handling, exit 0/1/2."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from quotalang import cli as core
from quotalang.server import logs
from quotalang.server.cli import build_parser, main
from tests.server.webhook_helpers import POLICY

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "policies"


@pytest.fixture(autouse=True)
def own_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`serve` may open its default SQLite ledger before it fails: this test's, never the user's."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.fixture(autouse=True)
def keep_logging() -> Iterator[None]:
    """`serve` configures logging before it fails; put the loggers back afterwards."""
    names = (*logs.OUR_LOGGERS, "uvicorn.access")
    saved = {
        n: (
            logging.getLogger(n).handlers[:],
            logging.getLogger(n).level,
            logging.getLogger(n).propagate,
            logging.getLogger(n).disabled,
        )
        for n in names
    }
    yield
    for name, (handlers, level, propagate, disabled) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled


def test_the_parser_has_the_core_verbs_and_the_server_ones() -> None:
    parser = build_parser()
    args = parser.parse_args(["serve", "--policy", "p"])
    assert (args.host, args.port, args.failure_mode, args.log_format) == ("127.0.0.1", 8443, "deny", "text")
    assert args.max_body_bytes == 3 * 1024 * 1024
    # manifests: the image is named explicitly; flags left out take Options' defaults (tests/server/test_manifests.py).
    args = parser.parse_args(["manifests", "--policy", "p", "--namespace", "n", "--image", "r.example/q:1"])
    assert (args.image, args.failure_policy, args.replicas) == ("r.example/q:1", None, None)
    with pytest.raises(SystemExit):
        parser.parse_args(["manifests", "--policy", "p", "--namespace", "n"])
    assert parser.parse_args(["lint", "x"]).paths == ["x"]


def test_core_verbs_still_run_and_the_core_parser_is_restored() -> None:
    out = io.StringIO()
    assert main(["lint", str(EXAMPLES)], out) == 0
    assert "ok" in out.getvalue() or "warning" in out.getvalue()
    assert core.build_parser is not build_parser


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tls-cert", "a.pem"], "--tls-cert and --tls-key go together"),
        (["--insecure-http", "--tls-cert", "a", "--tls-key", "b"], "--insecure-http serves plain HTTP"),
        (
            ["--tls-cert", "/nonexistent/a.pem", "--tls-key", "/nonexistent/b.pem"],
            "no such file: /nonexistent/a.pem",
        ),
        (["--store", "kubernetes"], "--store kubernetes keeps the ledger on the apiserver"),
        (["--store", "memory", "--state", "cash.json"], "the memory store keeps nothing"),
        (["--kubeconfig", "k", "--in-cluster"], "--kubeconfig and --in-cluster are two ways"),
        (["--kubeconfig", "k", "--store", "kubernetes", "--state", "c"], "--state is for the memory store"),
        (["--kubeconfig", "/nonexistent/kubeconfig", "--port", "1"], "cannot configure the kubernetes client"),
        (["--resync-interval", "0"], "is not a positive number of seconds"),
        (["--api-host", "0.0.0.0"], "--api-host 0.0.0.0 is not a loopback address, and with no cluster nothing checks"),
        (["--api-host", "quotalang.example"], "give --kubeconfig or --in-cluster, or --api-insecure"),
        (["--api-port", "8443"], "--api-port 8443 is the admission port too"),
    ],
    ids=["cert-without-key", "insecure-with-cert", "missing-files", "store-without-cluster",
         "state-with-memory-store", "two-clusters", "state-with-kubernetes-store", "bad-kubeconfig", "zero-resync",
         "api-host-without-cluster", "api-host-a-name", "api-port-is-the-port"],
)
def test_serve_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    assert main(["serve", "--policy", str(EXAMPLES), *args]) == 2
    assert message in capsys.readouterr().err


def test_serve_with_a_broken_policy_exits_2_with_the_diagnostic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "org.quota").write_text(
        POLICY.replace("requests.cpu                    40", "requests.cpu                   400", 1)
    )
    assert main(["serve", "--policy", str(tmp_path), "--insecure-http"]) == 2
    err = capsys.readouterr().err
    assert "E105" in err
    assert "Traceback" not in err


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--policy", "p", "--port", "70000"]) == 2
    assert "port 70000 is not in 1..65535" in capsys.readouterr().err
    assert main(["manifests", "--policy", "p"]) == 2  # --namespace is required


def test_lint_does_not_import_the_server_stack() -> None:
    code = (
        "import sys; from server.cli import main; main(['lint', sys.argv[1]]); "
        "heavy = ('uvicorn', 'starlette', 'cryptography', 'prometheus_client'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(EXAMPLES)], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"

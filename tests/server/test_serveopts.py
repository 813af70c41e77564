"""serve's options declared once (server/serveopts.py): the parser is built from it, serve checks against it."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from quotalang.server import serveopts
from quotalang.server.cli import build_parser, main
from quotalang.server.serveopts import RULES, ServeError, ServeOptions, check, from_args

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "policies"

# What `quotalang serve --policy p` ran with before the declaration, written out by hand.
DEFAULTS = {
    "policy": ["p"], "host": "127.0.0.1", "port": 8443, "api_port": 8444, "api_host": None, "api_hostnames": (),
    "api_insecure": False, "aggregated_port": None, "requestheader_client_ca": None,
    "requestheader_allowed_names": (), "tls_cert": None, "tls_key": None, "insecure_http": False,
    "state_dir": None, "failure_mode": "deny", "log_format": "text", "log_level": "info",
    "max_body": 3 * 1024 * 1024, "reload_interval": 2.0, "header_timeout": 10.0, "body_timeout": 10.0,
    "max_headers": 100, "max_header_bytes": 32 * 1024, "max_connections": None, "client_ca": None,
    "client_names": (), "kubeconfig": None, "in_cluster": False, "clusters": (), "ledger_cluster": None,
    "store": None, "state_file": None, "resync_interval": 300.0, "accrue_interval": 30.0,
    "reservation_ttl": 30.0, "lease_namespace": None, "lease_duration": 15.0, "cert_secret": None,
    "cert_service": "quotalang", "webhook_configuration": None, "cert_validity": None, "exempt_namespaces": (),
}

# One flag per field, each given a value other than its default, and the field value it must become.
GIVEN: dict[str, tuple[list[str], object]] = {
    "policy": (["--policy", "a", "--policy", "b"], ["a", "b"]),
    "host": (["--host", "0.0.0.0"], "0.0.0.0"),
    "port": (["--port", "9001"], 9001),
    "api_port": (["--api-port", "9002"], 9002),
    "api_host": (["--api-host", "127.0.0.2"], "127.0.0.2"),
    "api_hostnames": (["--api-hostname", "q.example", "--api-hostname", "r.example"], ("q.example", "r.example")),
    "api_insecure": (["--api-insecure"], True),
    "aggregated_port": (["--aggregated-port", "9003"], 9003),
    "requestheader_client_ca": (["--requestheader-client-ca-file", "front.crt"], "front.crt"),
    "requestheader_allowed_names": (["--requestheader-allowed-names", "front-proxy,,aggregator"],
                                    ("front-proxy", "aggregator")),
    "tls_cert": (["--tls-cert", "c.pem"], "c.pem"),
    "tls_key": (["--tls-key", "k.pem"], "k.pem"),
    "insecure_http": (["--insecure-http"], True),
    "state_dir": (["--state-dir", "sd"], "sd"),
    "failure_mode": (["--failure-mode", "allow"], "allow"),
    "log_format": (["--log-format", "json"], "json"),
    "log_level": (["--log-level", "debug"], "debug"),
    "max_body": (["--max-body-bytes", "1000"], 1000),
    "reload_interval": (["--reload-interval", "0.5"], 0.5),
    "header_timeout": (["--header-timeout", "3"], 3.0),
    "body_timeout": (["--body-timeout", "4"], 4.0),
    "max_headers": (["--max-headers", "7"], 7),
    "max_header_bytes": (["--max-header-bytes", "999"], 999),
    "max_connections": (["--max-connections", "12"], 12),
    "client_ca": (["--client-ca", "ca.crt"], "ca.crt"),
    "client_names": (["--client-name", "kube-apiserver"], ("kube-apiserver",)),
    "kubeconfig": (["--kubeconfig", "kc"], "kc"),
    "in_cluster": (["--in-cluster"], True),
    "clusters": (["--cluster", "east=k1", "--cluster", "west=k2"], ("east=k1", "west=k2")),
    "ledger_cluster": (["--ledger-cluster", "east"], "east"),
    "store": (["--store", "kubernetes"], "kubernetes"),
    "state_file": (["--state", "ledger.sqlite3"], "ledger.sqlite3"),
    "resync_interval": (["--resync-interval", "60"], 60.0),
    "accrue_interval": (["--accrue-interval", "5"], 5.0),
    "reservation_ttl": (["--reservation-ttl", "9"], 9.0),
    "lease_namespace": (["--lease-namespace", "ops"], "ops"),
    "lease_duration": (["--lease-duration", "20"], 20.0),
    "cert_secret": (["--cert-secret", "tls"], "tls"),
    "cert_service": (["--cert-service", "svc"], "svc"),
    "webhook_configuration": (["--webhook-configuration", "vwc"], "vwc"),
    "cert_validity": (["--cert-validity", "3600"], 3600.0),
    "exempt_namespaces": (["--exempt-namespace", "monitoring"], ("monitoring",)),
}


def parsed(*argv: str) -> ServeOptions:
    return from_args(build_parser().parse_args(["serve", *argv]))


def test_each_default_reaches_serve_as_it_was() -> None:
    assert dataclasses.asdict(parsed("--policy", "p")) == DEFAULTS
    # The parser and a ServeOptions built in code take the same defaults: there is one declaration of them.
    assert parsed("--policy", "p") == ServeOptions(policy=["p"])


def test_every_flag_reaches_its_own_field() -> None:
    assert set(GIVEN) == {f.name for f in dataclasses.fields(ServeOptions)}
    for name, (argv, expected) in GIVEN.items():
        extra = [] if name == "policy" else ["--policy", "p"]
        opts = parsed(*extra, *argv)
        assert getattr(opts, name) == expected, name
        assert getattr(opts, name) != DEFAULTS[name], name


def test_the_components_default_as_serve_does() -> None:
    """The components keep their own defaults for use outside serve; serve's declaration must not drift from them."""
    from quotalang.controller.kube.election import DEFAULT_LEASE
    from quotalang.controller.ledger.base import DEFAULT_RESERVATION_TTL
    from quotalang.controller.runner import DEFAULT_ACCRUE_EVERY, DEFAULT_RESYNC
    from quotalang.server import limits
    from quotalang.server.admission import DEFAULT_MAX_BODY
    from quotalang.server.reload import DEFAULT_INTERVAL

    opts = ServeOptions(policy=["p"])
    assert (opts.lease_duration, opts.reservation_ttl, opts.accrue_interval, opts.resync_interval) == (
        DEFAULT_LEASE, DEFAULT_RESERVATION_TTL, DEFAULT_ACCRUE_EVERY, DEFAULT_RESYNC)
    assert (opts.max_body, opts.reload_interval) == (DEFAULT_MAX_BODY, DEFAULT_INTERVAL)
    assert (opts.header_timeout, opts.body_timeout, opts.max_headers, opts.max_header_bytes) == (
        limits.DEFAULT_HEADER_TIMEOUT, limits.DEFAULT_BODY_TIMEOUT, limits.DEFAULT_MAX_HEADERS,
        limits.DEFAULT_MAX_HEADER_BYTES)


def test_help_shows_the_declared_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("(default 127.0.0.1)", "(default 3 MiB, like the apiserver)", "(default 32 KiB)",
                  "(default 300, like native quota)", "(default 15)", "(default quotalang)"):
        assert shown in text


@pytest.mark.parametrize(
    ("argv", "flags"),
    [
        (["--client-name", "kube-apiserver"], ("--client-name", "--client-ca")),
        (["--client-ca", "ca.crt", "--insecure-http"], ("--client-ca", "--insecure-http")),
        (["--cert-secret", "tls"], ("--cert-secret", "--kubeconfig")),
        (["--cert-secret", "tls", "--insecure-http", "--in-cluster"], ("--cert-secret", "--insecure-http")),
        (["--aggregated-port", "9443", "--insecure-http"], ("--aggregated-port", "--insecure-http")),
        (["--aggregated-port", "9443", "--requestheader-allowed-names", "front"],
         ("--requestheader-allowed-names", "--requestheader-client-ca-file")),
        (["--aggregated-port", "8444"], ("--aggregated-port", "8444")),
        (["--port", "9000", "--api-port", "9000"], ("--api-port", "--port")),
        (["--store", "sqlite", "--store", "kubernetes"], ("--store kubernetes", "--kubeconfig")),
    ],
    ids=["name-without-ca", "mtls-over-http", "secret-without-cluster", "secret-and-http", "aggregated-over-http",
         "front-names-without-ca", "aggregated-on-api-port", "api-port-is-port", "kubernetes-store-alone"],
)
def test_a_bad_combination_is_refused_naming_both_options(
    capsys: pytest.CaptureFixture[str], argv: list[str], flags: tuple[str, str]
) -> None:
    assert main(["serve", "--policy", str(EXAMPLES), *argv]) == 2
    err = capsys.readouterr().err
    assert all(flag in err for flag in flags), err
    assert "Traceback" not in err


def test_every_rule_names_two_declared_options() -> None:
    """A rule's message is the user's only pointer: each option it names exists (a renamed flag fails here)."""
    declared = {f.metadata["cli"].flag for f in dataclasses.fields(ServeOptions)}
    for _, message in RULES:
        named = re.findall(r"--[a-z][a-z-]*", message)
        assert len(set(named)) >= 2, message
        for flag in named:
            assert flag in declared or any(d.startswith(flag) for d in declared if flag.endswith("-")), (flag, message)


def test_a_good_combination_passes_and_a_bad_one_built_in_code_is_refused() -> None:
    check(ServeOptions(policy=["p"], kubeconfig="kc", store="kubernetes", cert_secret="tls"))
    with pytest.raises(ServeError, match="--kubeconfig and --in-cluster"):
        check(ServeOptions(policy=["p"], kubeconfig="kc", in_cluster=True))
    assert serveopts.is_loopback("::1") and not serveopts.is_loopback("quotalang.example")


def test_the_readme_synopsis_shows_the_declared_flags_and_defaults() -> None:
    """README's `quotalang serve` synopsis is a third place defaults are written: it must say what serve does."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    synopsis = readme[readme.index("quotalang serve --policy DIR"):readme.index("quotalang manifests --policy DIR")]
    fields = {f.metadata["cli"].flag: f for f in dataclasses.fields(ServeOptions)}
    named = re.findall(r"--[a-z][a-z-]*", synopsis)
    assert len(named) >= 20
    assert set(named) <= set(fields)
    shown = re.findall(r"\[(--[a-z-]+) ([0-9.]+)\]", synopsis)
    assert len(shown) >= 9  # --port 8443 ... --reservation-ttl 30
    for flag, value in shown:
        assert float(value) == fields[flag].default, flag


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--resync-interval", "inf"], "argument --resync-interval: inf is not a positive number of seconds"),
        (["--header-timeout", "nan"], "argument --header-timeout: nan is not a positive number of seconds"),
        (["--reload-interval", "0"], "argument --reload-interval: 0 is not a positive number of seconds"),
        (["--reload-interval", "-1"], "argument --reload-interval: -1 is not a positive number of seconds"),
        (["--lease-duration", "soon"], "argument --lease-duration: soon is not a number"),
        (["--port", "0x10"], "argument --port: 0x10 is not a port number"),
        (["--max-headers", "ten"], "argument --max-headers: ten is not a positive integer"),
        (["--max-body-bytes", "0"], "argument --max-body-bytes: 0 is not a positive integer"),
    ],
)
def test_a_bad_value_is_a_usage_error_naming_its_option(
    capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    assert main(["serve", "--policy", "p", *argv]) == 2
    err = capsys.readouterr().err
    assert said in err
    assert "Traceback" not in err

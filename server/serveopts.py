"""`quotalang serve`'s options, declared once: name, type, default, help and checks.

`ServeOptions` is the declaration. Each field carries its flag, its help and
the parse that checks one value (`option`); `add_arguments` builds serve's
argparse parser from the fields and `from_args` turns the parsed flags back
into `ServeOptions`, so a default is written only here. `RULES` are the checks
of options taken together (`--store kubernetes` needs a cluster, mutual TLS
needs a CA, ...); `check` raises the first that fails as a `ServeError`,
which the CLI reports as a usage error (exit 2) naming the options.

This module imports nothing heavy: the core verbs build the same parser, and
`quotalang lint` must not pay for the server stack. So the defaults below are
written here, not imported from the components that also default them when
built alone (`tests/server/test_serveopts.py` pins that they agree).
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from quotalang.errors import QuotalangError

MIB = 1024 * 1024
Store = Literal["memory", "sqlite", "kubernetes"]
# How a flag fills its field: one value, a switch, repeated (a tuple), or comma-separated (a tuple).
Shape = Literal["value", "switch", "repeated", "commas"]


class ServeError(QuotalangError):
    """The server could not start (exit 2)."""


@dataclass(frozen=True, slots=True)
class Flag:
    """How one `ServeOptions` field is given on the command line."""

    flag: str
    help: str | None = None
    parse: Callable[[str], Any] | None = None
    shape: Shape = "value"
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    group: str | None = None  # the help section (None: serve's own)


def option(default: Any, flag: str, help: str | None = None, **how: Any) -> Any:
    """A field with a default and its flag; `{default}` in `help` shows the default."""
    shown = _shown(default)
    return field(default=default, metadata={"cli": Flag(flag, help.format(default=shown) if help else None, **how)})


def _shown(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1024 and value % 1024 == 0:
        return f"{value // MIB} MiB" if value % MIB == 0 else f"{value // 1024} KiB"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _number(text: str, kind: Callable[[str], Any], what: str) -> Any:
    """`text` as `kind`, or a usage error saying what was wanted (argparse names the flag)."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not {what}") from None
    return value


def positive_int(text: str) -> int:
    value: int = _number(text, int, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _positive_float(text: str) -> float:
    """Seconds: positive and finite (an infinite wait overflows the clocks it is handed to)."""
    value: float = _number(text, float, "a number")
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def _port(text: str) -> int:
    value: int = _number(text, int, "a port number")
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"port {text} is not in 1..65535")
    return value


CLIENTS = "clients"
CLUSTER = "cluster"
CERTS = "certificates"
GROUPS = {
    CLIENTS: "bound what slow or many clients can hold (every limit answers 408, 431 or closes the connection; "
    "none reaches the app)",
    CLUSTER: "watch a cluster: usage and cash come from what runs there",
    CERTS: "keep a CA and serving pair in a Secret, renew them, and publish the CA to the webhook",
}


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """What `quotalang serve` runs with; each field's default, flag, help and parse (`option`) are written here only."""

    policy: list[str] = field(metadata={"cli": Flag("--policy", shape="repeated", metavar="DIR")})
    host: str = option("127.0.0.1", "--host", "address to listen on (default {default})")
    port: int = option(8443, "--port", parse=_port)
    api_port: int = option(8444, "--api-port", "the API port: /metrics, /api/* and the pages (default {default})",
                           parse=_port)
    # None: --host in a cluster, 127.0.0.1 without one.
    api_host: str | None = option(None, "--api-host", "address the API port listens on (default: --host with a "
                                  "cluster, else 127.0.0.1)", metavar="ADDR")
    api_hostnames: tuple[str, ...] = option(
        (), "--api-hostname", "a name the API port is reached by (an Ingress's, the Service's DNS name); repeatable. "
        "Besides IP addresses, localhost and the listening host's name, any other Host is refused (421), so that a "
        "rebound DNS name cannot reach it from a browser", shape="repeated", metavar="NAME")
    api_insecure: bool = option(False, "--api-insecure", "no token check on the API port: anyone who reaches it "
                                "reads the tree and usage (lets a non-loopback --api-host without a cluster; with "
                                "one, turns TokenReview off)", shape="switch")
    # The aggregated API (quotalang.server.aggregated): its port (None: not served) and the front proxy's
    # CA and names (None: read from the cluster's extension-apiserver-authentication ConfigMap).
    aggregated_port: int | None = option(
        None, "--aggregated-port", "serve the aggregated API (visibility.quotalang.dev: kubectl get quotagroups, the "
        "pages through kubectl proxy) on this port, to the apiserver's front proxy only", parse=_port,
        metavar="PORT")
    requestheader_client_ca: str | None = option(
        None, "--requestheader-client-ca-file", "the front proxy's CA (default: read from "
        "kube-system/extension-apiserver-authentication)", metavar="FILE")
    requestheader_allowed_names: tuple[str, ...] = option(
        (), "--requestheader-allowed-names", "comma-separated names the front proxy's certificate must carry (CN or "
        "SAN)", shape="commas", metavar="NAMES")
    tls_cert: str | None = option(None, "--tls-cert", "PEM certificate (reloaded when it changes)", metavar="FILE")
    tls_key: str | None = option(None, "--tls-key", "PEM private key", metavar="FILE")
    insecure_http: bool = option(False, "--insecure-http", "plain HTTP, for local experiments only", shape="switch")
    state_dir: str | None = option(None, "--state-dir", "where a self-signed CA is kept (default "
                                   "$XDG_STATE_HOME/quotalang)", metavar="DIR")
    failure_mode: Literal["allow", "deny"] = option(
        "deny", "--failure-mode", "answer to requests the server cannot decide (default {default})",
        choices=("allow", "deny"))
    log_format: Literal["json", "text"] = option("text", "--log-format", choices=("json", "text"))
    log_level: str = option("info", "--log-level", choices=("debug", "info", "warning", "error"))
    # The apiserver's own request size limit.
    max_body: int = option(3 * MIB, "--max-body-bytes", "largest AdmissionReview accepted (default {default}, like "
                           "the apiserver)", parse=positive_int, metavar="N")
    reload_interval: float = option(2.0, "--reload-interval", "how often the policy and certificate files are "
                                    "checked (default {default})", parse=_positive_float, metavar="SECONDS")
    # Slow and many clients (quotalang.server.limits); max_connections None: below the fd limit.
    header_timeout: float = option(10.0, "--header-timeout", "a request's line and headers must arrive within this "
                                   "(default {default})", parse=_positive_float, metavar="SECONDS", group=CLIENTS)
    # The apiserver's default webhook timeout: past it nobody waits for the answer.
    body_timeout: float = option(10.0, "--body-timeout", "a request's body must arrive within this after its "
                                 "headers (default {default})", parse=_positive_float, metavar="SECONDS",
                                 group=CLIENTS)
    max_headers: int = option(100, "--max-headers", "header fields per request (default {default})",
                              parse=positive_int, metavar="N", group=CLIENTS)
    max_header_bytes: int = option(32 * 1024, "--max-header-bytes", "bytes of request target plus headers (default "
                                   "{default})", parse=positive_int, metavar="N", group=CLIENTS)
    max_connections: int | None = option(
        None, "--max-connections", "open connections; over it the longest-idle one is closed, else the new one "
        "(default 1000, or the file-descriptor limit minus 64)", parse=positive_int, metavar="N", group=CLIENTS)
    # Mutual TLS on the admission port (quotalang.server.clientauth).
    client_ca: str | None = option(
        None, "--client-ca", "mutual TLS: only clients with a certificate from this CA may call anything but "
        "/healthz and /readyz (the apiserver presents one through an AdmissionConfiguration)", metavar="FILE",
        group=CLIENTS)
    client_names: tuple[str, ...] = option(
        (), "--client-name", "with --client-ca: the certificate must also name this (CN or SAN; repeatable)",
        shape="repeated", metavar="NAME", group=CLIENTS)
    kubeconfig: str | None = option(None, "--kubeconfig", "the cluster to watch", metavar="FILE", group=CLUSTER)
    in_cluster: bool = option(False, "--in-cluster", "the cluster this pod runs in (its service account)",
                              shape="switch", group=CLUSTER)
    # Several clusters (quotalang.server.clusters): `NAME=KUBECONFIG` or `NAME=in-cluster` each, and the hub.
    clusters: tuple[str, ...] = option(
        (), "--cluster", "decide for several clusters (repeatable; NAME=in-cluster for the one serve runs in): each "
        "is watched and has its own route, POST /validate/NAME; instead of --kubeconfig and --in-cluster",
        shape="repeated", metavar="NAME=KUBECONFIG", group=CLUSTER)
    ledger_cluster: str | None = option(
        None, "--ledger-cluster", "with --cluster: the cluster holding the kubernetes store's ledger and Lease, the "
        "--cert-secret Secret and the API port's token checks (default: the only cluster, else the in-cluster "
        "one); NAME=KUBECONFIG for one that is not watched", metavar="NAME", group=CLUSTER)
    store: Literal["memory", "sqlite", "kubernetes"] | None = option(  # None: sqlite alone, memory with a cluster
        None, "--store", "sqlite: this process's ledger in a local SQLite file, kept across restarts (the default "
        "with no cluster); memory: in this process only (the default with a cluster); kubernetes: a ledger object "
        "per group on the apiserver, shared by every replica", choices=("memory", "sqlite", "kubernetes"),
        group=CLUSTER)
    state_file: str | None = option(
        None, "--state", "sqlite store: the ledger file (default $XDG_STATE_HOME/quotalang/ledger.sqlite3; an old "
        "cash JSON file there is imported once); memory store with a cluster: a JSON file that keeps accrued cash",
        metavar="PATH", group=CLUSTER)
    # Like the native quota controller.
    resync_interval: float = option(300.0, "--resync-interval", "full relist and usage recomputation (default "
                                    "{default}, like native quota)", parse=_positive_float, metavar="SECONDS",
                                    group=CLUSTER)
    accrue_interval: float = option(30.0, "--accrue-interval", "how often cash is accrued (default {default})",
                                    parse=_positive_float, metavar="SECONDS", group=CLUSTER)
    reservation_ttl: float = option(30.0, "--reservation-ttl", "how long an admitted object that the watch has not "
                                    "shown holds its quota (default {default})", parse=_positive_float,
                                    metavar="SECONDS", group=CLUSTER)
    lease_namespace: str | None = option(None, "--lease-namespace", "kubernetes store: the Lease's namespace "
                                         "(default: the pod's, else default)", metavar="NS", group=CLUSTER)
    lease_duration: float = option(15.0, "--lease-duration", "kubernetes store: how long a dead leader holds the "
                                   "Lease (default {default})", parse=_positive_float, metavar="SECONDS",
                                   group=CLUSTER)
    # Certificates kept in a Secret (quotalang.server.certs); None: files or self-signed.
    cert_secret: str | None = option(None, "--cert-secret", "the Secret (in the pod's namespace) holding the CA and "
                                     "serving pair; created if missing", metavar="NAME", group=CERTS)
    cert_service: str = option("quotalang", "--cert-service", "the Service the apiserver calls: the certificate "
                               "names it (default {default})", metavar="NAME", group=CERTS)
    webhook_configuration: str | None = option(
        None, "--webhook-configuration", "the ValidatingWebhookConfiguration whose caBundle is kept equal to the "
        "Secret's CAs", metavar="NAME", group=CERTS)
    cert_validity: float | None = option(
        None, "--cert-validity", "serving certificate lifetime (default 90 days; the CA lives 4x as long); renewed "
        "with a third left", parse=_positive_float, metavar="SECONDS", group=CERTS)
    # Namespaces that may carry the exemption label (quotalang.server.exemptions); kube-system and
    # the pod's own namespace are added.
    exempt_namespaces: tuple[str, ...] = option(
        (), "--exempt-namespace", "a namespace that may carry the exemption label (repeatable; kube-system and the "
        "pod's own namespace always may); the same list `quotalang manifests` was given", shape="repeated",
        metavar="NS")

    @property
    def cluster(self) -> bool:
        return self.in_cluster or self.kubeconfig is not None or bool(self.clusters)

    @property
    def api_listen(self) -> str:
        """Where the API port listens: --api-host, else --host in a cluster, else this machine only."""
        return self.api_host or (self.host if self.cluster else "127.0.0.1")

    @property
    def ledger_store(self) -> Store:
        return self.store or ("memory" if self.cluster else "sqlite")


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine only (a name may resolve anywhere: no)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


NEED_CLUSTER = "give --kubeconfig or --in-cluster"
# The checks of options together: (refused when, why). Each message names the options involved.
RULES: tuple[tuple[Callable[[ServeOptions], bool], str], ...] = (
    (lambda o: o.insecure_http and bool(o.tls_cert or o.tls_key),
     "--insecure-http serves plain HTTP: it cannot take --tls-cert/--tls-key"),
    (lambda o: bool(o.tls_cert) != bool(o.tls_key), "--tls-cert and --tls-key go together"),
    (lambda o: bool(o.kubeconfig) and o.in_cluster,
     "--kubeconfig and --in-cluster are two ways to name the cluster: give one"),
    (lambda o: o.store == "kubernetes" and not o.cluster,
     f"--store kubernetes keeps the ledger on the apiserver: {NEED_CLUSTER}"),
    (lambda o: bool(o.state_file) and o.ledger_store == "memory" and not o.cluster,
     "--state names the ledger file; the memory store keeps nothing: drop --store memory"),
    (lambda o: bool(o.cert_secret) and bool(o.tls_cert or o.insecure_http),
     "--cert-secret keeps the serving pair in a Secret: no --tls-cert or --insecure-http with it"),
    (lambda o: bool(o.cert_secret) and not o.cluster,
     f"--cert-secret keeps the serving pair on the apiserver: {NEED_CLUSTER}"),
    (lambda o: bool(o.client_names) and not o.client_ca, "--client-name narrows --client-ca: give --client-ca FILE"),
    (lambda o: bool(o.client_ca) and o.insecure_http, "--client-ca is mutual TLS: it cannot take --insecure-http"),
    (lambda o: bool(o.state_file) and o.ledger_store == "kubernetes",
     "--state is for the memory store; --store kubernetes keeps cash in its ledger objects"),
    (lambda o: o.api_port == o.port,
     "--api-port {o.api_port} is the admission port too (--port): give the API a port of its own"),
    (lambda o: not o.cluster and not o.api_insecure and not is_loopback(o.api_listen),
     "--api-host {o.api_listen} is not a loopback address, and with no cluster nothing checks who reads the tree: "
     f"{NEED_CLUSTER}, or --api-insecure to let anyone who reaches it read it"),
    (lambda o: o.aggregated_port is None and bool(o.requestheader_client_ca or o.requestheader_allowed_names),
     "--requestheader-* say whom the aggregated API trusts: give --aggregated-port too"),
    (lambda o: o.aggregated_port is not None and o.insecure_http,
     "--aggregated-port is served over TLS to the apiserver: it cannot take --insecure-http"),
    (lambda o: o.aggregated_port is not None and o.aggregated_port in (o.port, o.api_port),
     "--aggregated-port {o.aggregated_port} is taken by another port (--port, --api-port): give it its own"),
    (lambda o: o.aggregated_port is not None and bool(o.requestheader_allowed_names)
     and not o.requestheader_client_ca,
     "--requestheader-allowed-names narrows --requestheader-client-ca-file: give the file too"),
    (lambda o: o.aggregated_port is not None and not o.requestheader_client_ca and not o.cluster,
     "--aggregated-port needs the front proxy's CA: --requestheader-client-ca-file, or a cluster (--kubeconfig / "
     "--in-cluster) to read it from"),
)


def check(opts: ServeOptions) -> None:
    """Refuse the first combination of options `RULES` forbids, naming the options."""
    for refused, message in RULES:
        if refused(opts):
            raise ServeError(message.format(o=opts))


def _flags() -> list[tuple[str, Flag, Any]]:
    """(field name, flag, default) of every option, in declaration order."""
    out = []
    for f in dataclasses.fields(ServeOptions):
        default = None if f.default is dataclasses.MISSING else f.default
        out.append((f.name, f.metadata["cli"], default))
    return out


def dest(flag: Flag) -> str:
    return flag.flag.lstrip("-").replace("-", "_")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Serve's flags on `parser`, from the declaration; each parses into its flag's own dest."""
    sections: dict[str | None, Any] = {None: parser}
    for name, flag, default in _flags():
        if flag.group not in sections:
            sections[flag.group] = parser.add_argument_group(flag.group, GROUPS[flag.group or ""])
        how: dict[str, Any] = {"help": flag.help}
        if flag.shape == "switch":
            how["action"] = "store_true"
        else:
            how.update(metavar=flag.metavar, choices=flag.choices)
            if flag.parse is not None:
                how["type"] = flag.parse
            if flag.shape == "repeated":
                how["action"] = "append"
            elif flag.shape == "value":
                how["default"] = default
        if name == "policy":
            how["required"] = True
        sections[flag.group].add_argument(flag.flag, **how)


def from_args(args: argparse.Namespace) -> ServeOptions:
    """The parsed flags as `ServeOptions` (repeated and comma-separated ones as tuples)."""
    values: dict[str, Any] = {}
    for name, flag, _ in _flags():
        given = getattr(args, dest(flag))
        if flag.shape == "repeated":
            given = list(given or ()) if name == "policy" else tuple(given or ())
        elif flag.shape == "commas":
            given = tuple(n for n in (given or "").split(",") if n)
        values[name] = given
    return ServeOptions(**values)



"""`quotalang serve`: the policy, the ledger, the controller, the app, TLS, uvicorn; one process.

Three ways to run, by what is configured:

* no cluster (the embedded default): the SQLite ledger (`--state PATH`,
  default under `$XDG_STATE_HOME/quotalang/`) in standalone mode, so quota
  is enforced across requests from the server's own admissions and a
  restart loses nothing (`--store memory`: the same in memory, forgotten on
  exit);
* a cluster (`--kubeconfig` or `--in-cluster`) with the memory store (the
  default there) or `--store sqlite`: the controller watches the cluster and
  reconciles that ledger; the memory store keeps cash in `--state FILE` (a
  JSON file), the SQLite one in its database;
* `--store kubernetes`: the shared ledger on the apiserver; every replica
  admits, the Lease holder runs the controller.

Two ports, two uvicorn servers on one event loop (a second worker would
have a second ledger): the admission port (`--port`, `server/app.py`) and
the API port (`--api-port`, `server/api.py`: metrics, the JSON API, the
pages). In a cluster the API port asks for a bearer token the apiserver
accepts and RBAC allows (`server/apiauth.py`); with no cluster it binds to
127.0.0.1 and asks for nothing, and a non-loopback `--api-host` is refused
unless `--api-insecure` says that anyone who reaches it may read it
(`--api-insecure` in a cluster turns the token check off, for tests and
for a proxy in front that does it). Both ports serve the same certificate
and follow its reloads (each its own SSLContext: only the admission port
asks for client certificates). Policy and certificate watchers run as tasks
beside them and SIGHUP forces a policy reload; the controller runs in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quotalang.controller.kube.api import KubeError
from quotalang.controller.kube.limit_ranges import LimitRangeSource
from quotalang.controller.ledger.base import Ledger
from quotalang.controller.ledger.memory import MemoryLedger
from quotalang.controller.ledger.sqlite import SqliteLedger
from quotalang.controller.runner import Controller
from quotalang.server import logs
from quotalang.server.aggregated import API_SERVICE as AGGREGATED_API_SERVICE
from quotalang.server.aggregated import PREFIX as AGGREGATED_PREFIX
from quotalang.server.aggregated import create_aggregated_app
from quotalang.server.api import create_api_app
from quotalang.server.apiauth import Gate, KubeReviews
from quotalang.server.app import create_app
from quotalang.server.clientauth import ClientAuth, ClientAuthError
from quotalang.server.clusters import Clusters, ClusterSpec, need_hub, plan
from quotalang.server.denials import Denials
from quotalang.server.grants import Grants
from quotalang.server.ledgerfile import open_embedded
from quotalang.server.limits import (
    ConnectionLimits,
    default_max_connections,
    limited_protocol,
    quiet_disconnects,
)
from quotalang.server.metrics import Metrics
from quotalang.server.reload import PolicyHolder, PolicyReloader
from quotalang.server.serveopts import ServeError, ServeOptions, check, is_loopback

if TYPE_CHECKING:
    import uvicorn
    from starlette.routing import BaseRoute

    from quotalang.controller.fleet import ClusterHealth, Fleet
    from quotalang.controller.kube.api import KubeApi
    from quotalang.controller.ledger.base import ControllerLedger, ObjectKey
    from quotalang.controller.ledger.kubernetes.ledger import KubernetesLedger
    from quotalang.controller.spending import Spending
    from quotalang.policy import CompiledGroup
    from quotalang.server.certs import SecretCertificates
    from quotalang.server.stores import KubernetesStore

LOG = logging.getLogger("quotalang.serve")
# Longer than the apiserver's idle-connection timeout (90 s): if the server closed idle
# connections first, a request racing the close would fail at the apiserver.
KEEP_ALIVE_SECONDS = 100


def serve(opts: ServeOptions) -> int:
    """Check the options (`serveopts.check`), build everything, serve until stopped; 0, or a ServeError."""
    check(opts)
    found = _clusters(opts)
    if opts.client_ca:
        try:
            ClientAuth(opts.client_ca, opts.client_names).check_file()
        except ClientAuthError as exc:
            raise ServeError(str(exc)) from None
    api_host = opts.api_listen
    logs.configure(opts.log_format, opts.log_level)
    metrics = Metrics()
    holder = PolicyHolder()
    reloader = PolicyReloader(opts.policy, holder, metrics, opts.reload_interval)
    policy = reloader.load_initial()  # a broken policy: PolicyError, exit 2
    runtime = _Runtime(opts, found, holder, metrics)
    ledger = runtime.build()
    names = found.names if found.several else ()
    denials = Denials()  # the admission port records, the API port shows
    app = create_app(holder, ledger, failure_mode=opts.failure_mode, max_body=opts.max_body, metrics=metrics,
                     waiting_for=runtime.waiting_for, routes=_exemption_routes(opts), clusters=names,
                     health=runtime.health, denials=denials, limit_ranges=runtime.limit_ranges,
                     grants=Grants({name: KubeReviews(api) for name, api in runtime.apis.items()}))
    gate = _gate(opts, found, runtime)
    from quotalang.server.tls import local_hosts

    api_app = create_api_app(holder, ledger, metrics=metrics, max_body=opts.max_body, gate=gate, clusters=names,
                             denials=denials, engine=app.state.engine, spent=runtime.spent_of,
                             hosts=[*local_hosts(api_host), *opts.api_hostnames])

    trust = _front_proxy(opts, found, runtime)
    aggregated = (create_aggregated_app(holder, ledger, app.state.engine, denials=denials, spent=runtime.spent_of)
                  if trust else None)

    keeper = _cert_keeper(opts, found, metrics)
    cert, key, ca = _tls_files(opts, keeper)
    import uvicorn

    # Everything built so far (modules, the parser, the compiled policy) lives as long as the
    # process: take it out of the cyclic collector's sight so full collections stay short.
    gc.collect()
    gc.freeze()

    limits = ConnectionLimits(opts.header_timeout, opts.body_timeout, opts.max_headers, opts.max_header_bytes,
                              opts.max_connections or default_max_connections())
    client_auth = ClientAuth(opts.client_ca, opts.client_names) if opts.client_ca else None

    def port(asgi: Any, protocol: Any, host: str, number: int, **extra: Any) -> uvicorn.Config:
        # No proxy headers: logs name the peer that connected, and no layer per request reads X-Forwarded-*.
        return uvicorn.Config(quiet_disconnects(asgi), http=protocol, host=host, port=number, ssl_certfile=cert,
                              ssl_keyfile=key, log_config=None, access_log=False, lifespan="off",
                              server_header=False, proxy_headers=False, timeout_keep_alive=KEEP_ALIVE_SECONDS,
                              **extra)

    config = port(app, limited_protocol(limits, client_auth), opts.host, opts.port,
                  **(client_auth.uvicorn_options() if client_auth is not None else {}))
    # The API port: the same certificate and client limits, no client certificates (tokens instead).
    api_config = port(api_app, limited_protocol(limits), api_host, opts.api_port)
    scheme = "http" if cert is None else "https"
    logs.log_event(
        LOG, logging.INFO, "starting",
        url=f"{scheme}://{_url_host(opts.host)}:{opts.port}/validate{'/NAME' if names else ''}",
        api=f"{scheme}://{_url_host(api_host)}:{opts.api_port}/",
        api_auth="bearer token (TokenReview, SubjectAccessReview)" if gate is not None else "none",
        policy=policy.checksum, groups=len(policy.groups), kinds=len(policy.kinds),
        ledger=runtime.describe(), failure_mode=opts.failure_mode,
        ca=str(ca) if ca is not None else None,
    )
    if not found.members and not is_loopback(opts.host):
        logs.log_event(
            LOG, logging.WARNING, "standalone behind a network address",
            note="no cluster is watched: usage comes from the reviews alone, and a tenant whose CREATE the "
                 "apiserver refuses keeps it charged until a DELETE of the name. For a cluster, run with "
                 "--kubeconfig or --in-cluster (as quotalang manifests does)",
        )
    servers = [uvicorn.Server(config), uvicorn.Server(api_config)]
    if aggregated is not None and trust is not None and opts.aggregated_port is not None:
        # Only the aggregator's front-proxy certificate gets past the handshake and the per-request check.
        servers.append(uvicorn.Server(port(aggregated, limited_protocol(limits, trust), api_host,
                                           opts.aggregated_port, **trust.uvicorn_options())))
        logs.log_event(LOG, logging.INFO, "aggregated API",
                       url=f"https://{_url_host(api_host)}:{opts.aggregated_port}{AGGREGATED_PREFIX}",
                       front_proxy_names=list(trust.names) or "any")
    runtime.start()
    try:
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:  # uvloop when installed
            runner.run(_run(tuple(servers), reloader, metrics, cert, key, keeper))
    except SystemExit as exc:  # uvicorn exits when it cannot bind; it has logged why
        if exc.code not in (0, None):
            raise ServeError(f"could not serve on {_url_host(opts.host)}:{opts.port} "
                             f"and {_url_host(api_host)}:{opts.api_port}") from None
    finally:
        runtime.stop()
    return 0


class _Runtime:
    """The ledger for the options given, and the controllers (or the store) that keep it.

    One cluster: one Controller. Several (`--cluster`): a Fleet, one Controller
    per member (each its own client, watchers and backoff) folding into the one
    ledger. With the kubernetes store either runs on the Lease holder only.
    """

    def __init__(self, opts: ServeOptions, found: Clusters, holder: PolicyHolder, metrics: Metrics) -> None:
        self.opts = opts
        self.found = found
        self.holder = holder
        self.metrics = metrics
        self.controller: Controller | None = None
        self.fleet: Fleet | None = None
        self.store: KubernetesStore | None = None
        self.apis: dict[str, KubeApi] = {}  # the members' clients by name ("" for the one cluster)
        self.sqlite: SqliteLedger | None = None
        # Each cluster's LimitRanges, installed by whoever watches them; the engine reads them.
        self.limit_ranges = LimitRangeSource()

    def build(self) -> Ledger:
        opts = self.opts
        if not self.found.members:
            if opts.ledger_store == "memory":
                return MemoryLedger(standalone=True)
            self.sqlite = open_embedded(opts.state_file, standalone=True)
            return self.sqlite
        if self.found.several:
            self.metrics.watch_clusters(self.found.names, self.health)
        else:
            from quotalang.controller.metrics import ControllerCollector

            self.metrics.registry.register(ControllerCollector(lambda: self.controller))
        from quotalang.server.stores import live_lookup

        # A /scale parent the watch has not indexed (an owned ReplicaSet, say) is fetched by a GET
        # from the review's own cluster.
        lookup = live_lookup(self.apis, self.holder)
        if opts.ledger_store == "kubernetes":
            from quotalang.server.stores import kubernetes_store

            hub = need_hub(self.found, "--store kubernetes")
            self.store = kubernetes_store(
                self.holder, self.metrics, kubeconfig=hub.kubeconfig, namespace=opts.lease_namespace,
                lease_duration=opts.lease_duration, reservation_ttl=opts.reservation_ttl,
                on_leader=self._lead, on_follower=self._follow, fallback_lookup=lookup,
                limit_source=self.limit_ranges,
            )
            self._connect_members()
            if self.found.several:  # every replica admits for every member: each member's LimitRanges
                self.store.runtime.limit_ranges_from(self.apis)
            return self.store.ledger
        self._connect_members()
        ledger: MemoryLedger | SqliteLedger
        if opts.ledger_store == "sqlite":
            ledger = self.sqlite = open_embedded(opts.state_file, standalone=False,
                                                 reservation_ttl=opts.reservation_ttl, fallback_lookup=lookup)
        else:
            ledger = MemoryLedger(standalone=False, reservation_ttl=opts.reservation_ttl, fallback_lookup=lookup)
        self._keepers(ledger)
        return ledger

    def _connect_members(self) -> None:
        """One client per member; the hub's is the store's when the hub is a member."""
        for spec in self.found.members:
            hub = self.found.hub
            if self.store is not None and hub is not None and spec.name == hub.name and hub.watched:
                self.apis[spec.name] = self.store.api
            else:
                self.apis[spec.name] = _connect(spec)

    def hub_api(self) -> KubeApi | None:
        """The hub's client, when one is already open (the store's, or the hub's as a member)."""
        if self.store is not None:
            return self.store.api
        hub = self.found.hub
        return self.apis.get(hub.name) if hub is not None and hub.watched else None

    def _controller(self, api: KubeApi, ledger: ControllerLedger, cluster: str = "") -> Controller:
        opts = self.opts
        return Controller(api, lambda: self.holder.policy, ledger, resync=opts.resync_interval,
                          accrue_every=opts.accrue_interval,
                          state_file=opts.state_file if opts.ledger_store == "memory" else None, cluster=cluster,
                          limit_source=self.limit_ranges)

    def _keepers(self, ledger: ControllerLedger) -> None:
        """The Controller, or for several clusters the Fleet of one Controller per member."""
        if not self.found.several:
            self.controller = self._controller(self.apis[""], ledger)
            return
        from quotalang.controller.fleet import Fleet

        controllers = {name: self._controller(api, ledger, name) for name, api in self.apis.items()}
        self.fleet = Fleet(controllers, ledger)

    def spending(self) -> Spending | None:
        """What each workload spent this period, where this process accrues cash (None: it does not)."""
        if self.fleet is not None:
            return self.fleet.spending
        return self.controller.reconciler.spending if self.controller is not None else None

    def spent_of(self, group: CompiledGroup) -> dict[ObjectKey, dict[str, int]] | None:
        """Per workload of `group`, what it spent of each cash budget this period (None: not known here)."""
        spending = self.spending()
        return spending.of(group.name, group.cash, time.time()) if spending is not None else None

    def _lead(self, ledger: KubernetesLedger) -> None:
        self._keepers(ledger)
        self._start_keepers()

    def _follow(self) -> None:
        controller, self.controller = self.controller, None
        fleet, self.fleet = self.fleet, None
        if controller is not None:
            controller.stop()
        if fleet is not None:
            fleet.stop()

    def _start_keepers(self) -> None:
        if self.fleet is not None:
            self.fleet.start()
        elif self.controller is not None:
            self.controller.start()

    def health(self) -> dict[str, ClusterHealth]:
        """Each member's health, from the Fleet; empty where none runs (one cluster, a follower)."""
        fleet = self.fleet
        return fleet.clusters() if fleet is not None else {}

    def describe(self) -> str:
        watched = f"clusters {', '.join(self.found.names)}" if self.found.several else "the cluster"
        if self.store is not None:
            hub = self.found.hub
            where = f" in cluster {hub.name}" if hub is not None and hub.name else ""
            return f"kubernetes{where} (shared; the Lease holder reconciles from {watched})"
        where = f"sqlite at {self.sqlite.path}" if self.sqlite is not None else "memory"
        if self.controller is not None or self.fleet is not None:
            return f"{where}, reconciled from {watched}"
        return f"{where} (standalone: usage comes from admissions)"

    def waiting_for(self) -> str | None:
        controller, fleet = self.controller, self.fleet
        if controller is not None and not controller.synced:
            return "waiting for the first full sync of the cluster"
        if fleet is not None and not fleet.synced:
            pending = sorted(name for name, health in fleet.clusters().items() if not health.synced)
            return f"waiting for the first full sync of cluster{'s' if len(pending) > 1 else ''} {', '.join(pending)}"
        return None

    def start(self) -> None:
        if self.store is not None:
            self.store.start()
        else:
            self._start_keepers()

    def stop(self) -> None:
        self._follow()
        if self.store is not None:
            self.store.stop()
        if self.sqlite is not None:
            self.sqlite.close()




def _front_proxy(opts: ServeOptions, found: Clusters, runtime: _Runtime) -> ClientAuth | None:
    """Whom the aggregated API port trusts (`aggregated_trust`); None when it is not served."""
    if opts.aggregated_port is None:
        return None
    from quotalang.server import aggregated_trust

    try:
        if opts.requestheader_client_ca:
            return aggregated_trust.from_files(opts.requestheader_client_ca, opts.requestheader_allowed_names)
        api = runtime.hub_api() or _connect(need_hub(found, "the aggregated API's front-proxy CA"))
        return aggregated_trust.from_cluster(api, Path(tempfile.mkdtemp(prefix="quotalang-")))
    except (ClientAuthError, KubeError) as exc:
        raise ServeError(f"the aggregated API cannot start: {exc}") from None






def _clusters(opts: ServeOptions) -> Clusters:
    """The clusters and the hub, checked before anything connects; what needs a hub says so here."""
    found = plan(opts.clusters, opts.ledger_cluster, kubeconfig=opts.kubeconfig, in_cluster=opts.in_cluster)
    if opts.ledger_store == "kubernetes" and found.members:
        need_hub(found, "--store kubernetes keeps its QuotaLedgers and Lease in one cluster; that cluster")
    if opts.cert_secret and found.members:
        need_hub(found, "--cert-secret keeps the serving pair in a Secret; that Secret")
    if found.members and not opts.api_insecure:
        need_hub(found, "the API port asks one apiserver about bearer tokens (or give --api-insecure); it")
    return found


def _connect(spec: ClusterSpec) -> KubeApi:
    """A client for one cluster; a kubeconfig that cannot be used is a usage error naming the cluster."""
    from quotalang.controller.kube.api import KubeApi

    try:
        return KubeApi.from_config(spec.kubeconfig)
    except Exception as exc:  # the kubernetes package raises several kinds for a bad kubeconfig
        where = f" for cluster {spec.name}" if spec.name else ""
        raise ServeError(f"cannot configure the kubernetes client{where}: {exc}") from None


def _gate(opts: ServeOptions, found: Clusters, runtime: _Runtime) -> Gate | None:
    """The API port's token check: in a cluster unless --api-insecure; through the hub's client."""
    if not opts.cluster:
        return None
    if opts.api_insecure:
        LOG.warning("--api-insecure: the API port serves the tree, usage and metrics to anyone who reaches it")
        return None
    return Gate(KubeReviews(runtime.hub_api() or _connect(need_hub(found, "the API port's token check"))))


def _exemption_routes(opts: ServeOptions) -> list[BaseRoute]:
    """The namespace webhook's route, judging the exemption label by the install-time list."""
    from quotalang.errors import InputError
    from quotalang.server import exemptions
    from quotalang.server.stores import lease_namespace

    try:
        exempt = exemptions.exempt_list(lease_namespace(), opts.exempt_namespaces)
    except InputError as exc:
        raise ServeError(str(exc)) from None
    return exemptions.routes(exempt, opts.max_body)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _cert_keeper(opts: ServeOptions, found: Clusters, metrics: Metrics) -> SecretCertificates | None:
    """With --cert-secret: the Secret's pair (in the hub), created or renewed now, before the server listens."""
    if not opts.cert_secret:
        return None
    from quotalang.server.certs import (
        DEFAULT_VALIDITY,
        CertificateError,
        CertSettings,
        SecretCertificates,
        default_folder,
    )
    from quotalang.server.stores import lease_namespace

    api = _connect(need_hub(found, "--cert-secret"))
    settings = CertSettings(lease_namespace(), opts.cert_secret, opts.cert_service, opts.webhook_configuration,
                            opts.cert_validity or DEFAULT_VALIDITY,
                            api_service=AGGREGATED_API_SERVICE if opts.aggregated_port is not None else None)
    keeper = SecretCertificates(api, settings, default_folder(), metrics)
    try:
        keeper.start()
    except CertificateError as exc:
        raise ServeError(str(exc)) from None
    return keeper


def _tls_files(opts: ServeOptions, keeper: SecretCertificates | None) -> tuple[str | None, str | None, Path | None]:
    if keeper is not None:
        return str(keeper.cert_file), str(keeper.key_file), None
    if opts.insecure_http:
        LOG.warning("serving plain HTTP (--insecure-http): the apiserver will not call this; local use only")
        return None, None, None
    if opts.tls_cert and opts.tls_key:
        for path in (opts.tls_cert, opts.tls_key):
            if not Path(path).is_file():
                raise ServeError(f"no such file: {path}")
        return opts.tls_cert, opts.tls_key, None
    from quotalang.server.tls import default_state_dir, local_hosts, self_signed

    state = Path(opts.state_dir) if opts.state_dir else default_state_dir()
    made = self_signed(state, local_hosts(opts.host))
    logs.log_event(
        LOG, logging.INFO,
        f"self-signed certificate {'created' if made.created else 'reused'}; trust the CA at {made.ca}",
        ca=str(made.ca), cert=str(made.cert), example=f"curl --cacert {made.ca} https://localhost:{opts.port}/readyz",
    )
    return str(made.cert), str(made.key), made.ca


def _stopped(signum: int, frame: object) -> None:
    LOG.info("stopped by SIGTERM")


async def _run(
    servers: tuple[uvicorn.Server, ...],
    reloader: PolicyReloader,
    metrics: Metrics,
    cert: str | None,
    key: str | None,
    keeper: SecretCertificates | None = None,
) -> None:
    for server in servers:
        server.config.load()  # builds the SSLContexts now, so the certificate watchers can hold on to them
    tasks = [asyncio.create_task(reloader.run(), name="policy-reload")]
    contexts = [server.config.ssl for server in servers if server.config.ssl is not None]
    if contexts and cert is not None and key is not None:
        from quotalang.server.tls import CertReloader

        watcher = CertReloader(contexts[0], Path(cert), Path(key), metrics, reloader.interval, also=contexts[1:])
        tasks.append(asyncio.create_task(watcher.run(), name="tls-reload"))
        if keeper is not None:  # a renewed pair is loaded at once, not at the watcher's next look
            tasks.append(asyncio.create_task(keeper.run(watcher.check), name="tls-secret"))
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, AttributeError):  # no SIGHUP on Windows
        loop.add_signal_handler(signal.SIGHUP, reloader.request_reload)
    # uvicorn shuts down gracefully on SIGTERM and then re-raises it to the handler it found
    # installed; a handler that only notes it makes a graceful stop exit 0 instead of -15.
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        await _serve_together(servers)
    finally:
        signal.signal(signal.SIGTERM, previous)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _serve_together(servers: tuple[uvicorn.Server, ...]) -> None:
    """Serve until one server stops (a signal, or a failure), then stop the others gracefully."""
    tasks = [asyncio.create_task(server.serve(), name=f"serve-{server.config.port}") for server in servers]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks)

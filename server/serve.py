"""`quotalang serve`: the policy, the memory ledger, the app, TLS, uvicorn; one process.

With no cluster configured this is the whole system: the embedded memory
ledger in standalone mode, so quota is enforced across requests from the
server's own admissions. uvicorn runs one worker on one event loop (a second
worker would have a second ledger). Policy and certificate watchers run as
tasks beside it and SIGHUP forces a policy reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from controller.ledger import MemoryLedger
from quotalang.errors import QuotalangError
from server import logs
from server.admission import DEFAULT_MAX_BODY
from server.app import create_app
from server.engine import FailureMode
from server.metrics import Metrics
from server.reload import DEFAULT_INTERVAL, PolicyHolder, PolicyReloader

if TYPE_CHECKING:
    import uvicorn

LOG = logging.getLogger("quotalang.serve")
# Longer than the apiserver's idle-connection timeout (90 s): if the server closed idle
# connections first, a request racing the close would fail at the apiserver.
KEEP_ALIVE_SECONDS = 100


@dataclass(frozen=True, slots=True)
class ServeOptions:
    policy: list[str]
    host: str = "127.0.0.1"
    port: int = 8443
    tls_cert: str | None = None
    tls_key: str | None = None
    insecure_http: bool = False
    state_dir: str | None = None
    failure_mode: FailureMode = "deny"
    log_format: logs.LogFormat = "text"
    log_level: str = "info"
    max_body: int = DEFAULT_MAX_BODY
    reload_interval: float = DEFAULT_INTERVAL


class ServeError(QuotalangError):
    """The server could not start (exit 2)."""


def serve(opts: ServeOptions) -> int:
    if opts.insecure_http and (opts.tls_cert or opts.tls_key):
        raise ServeError("--insecure-http serves plain HTTP: it cannot take --tls-cert/--tls-key")
    if bool(opts.tls_cert) != bool(opts.tls_key):
        raise ServeError("--tls-cert and --tls-key go together")
    logs.configure(opts.log_format, opts.log_level)
    metrics = Metrics()
    holder = PolicyHolder()
    reloader = PolicyReloader(opts.policy, holder, metrics, opts.reload_interval)
    policy = reloader.load_initial()  # a broken policy: PolicyError, exit 2
    ledger = MemoryLedger(standalone=True)
    app = create_app(holder, ledger, failure_mode=opts.failure_mode, max_body=opts.max_body, metrics=metrics)

    cert, key, ca = _tls_files(opts)
    import uvicorn

    # Everything built so far (modules, the parser, the compiled policy) lives as long as the
    # process: take it out of the cyclic collector's sight so full collections stay short.
    gc.collect()
    gc.freeze()

    config = uvicorn.Config(
        app,
        host=opts.host,
        port=opts.port,
        ssl_certfile=cert,
        ssl_keyfile=key,
        log_config=None,
        access_log=False,
        lifespan="off",
        server_header=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
    scheme = "http" if cert is None else "https"
    logs.log_event(
        LOG, logging.INFO, "starting",
        url=f"{scheme}://{_url_host(opts.host)}:{opts.port}/validate",
        policy=policy.checksum, groups=len(policy.groups), kinds=len(policy.kinds),
        ledger="memory (standalone: usage comes from admissions)", failure_mode=opts.failure_mode,
        ca=str(ca) if ca is not None else None,
    )
    server = uvicorn.Server(config)
    try:
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:  # uvloop when installed
            runner.run(_run(server, config, reloader, metrics, cert, key))
    except SystemExit as exc:  # uvicorn exits when it cannot bind; it has logged why
        if exc.code not in (0, None):
            raise ServeError(f"could not serve on {opts.host}:{opts.port}") from None
    return 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _tls_files(opts: ServeOptions) -> tuple[str | None, str | None, Path | None]:
    if opts.insecure_http:
        LOG.warning("serving plain HTTP (--insecure-http): the apiserver will not call this; local use only")
        return None, None, None
    if opts.tls_cert and opts.tls_key:
        for path in (opts.tls_cert, opts.tls_key):
            if not Path(path).is_file():
                raise ServeError(f"no such file: {path}")
        return opts.tls_cert, opts.tls_key, None
    from server.tls import default_state_dir, local_hosts, self_signed

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
    server: uvicorn.Server,
    config: uvicorn.Config,
    reloader: PolicyReloader,
    metrics: Metrics,
    cert: str | None,
    key: str | None,
) -> None:
    config.load()  # builds the SSLContext now, so the certificate watcher can hold on to it
    tasks = [asyncio.create_task(reloader.run(), name="policy-reload")]
    if config.ssl is not None and cert is not None and key is not None:
        from server.tls import CertReloader

        watcher = CertReloader(config.ssl, Path(cert), Path(key), metrics, reloader.interval)
        tasks.append(asyncio.create_task(watcher.run(), name="tls-reload"))
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, AttributeError):  # no SIGHUP on Windows
        loop.add_signal_handler(signal.SIGHUP, reloader.request_reload)
    # uvicorn shuts down gracefully on SIGTERM and then re-raises it to the handler it found
    # installed; a handler that only notes it makes a graceful stop exit 0 instead of -15.
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        await server.serve()
    finally:
        signal.signal(signal.SIGTERM, previous)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

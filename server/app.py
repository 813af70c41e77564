"""The admission port's app: admission and health, nothing that reads the tree.

| route                   | what                                                        |
|-------------------------|-------------------------------------------------------------|
| POST /validate          | AdmissionReview v1 in, AdmissionReview v1 out (one cluster) |
| POST /validate/NAME     | the same for cluster NAME (`serve --cluster NAME=...`)      |
| POST /validate-...      | more webhooks' routes (`exemptions`: the namespace webhook) |
| GET  /healthz           | the process answers                                         |
| GET  /readyz            | a policy is loaded and the first sync done (503 before)     |

With several clusters there is a route per registered cluster and no plain
`/validate`: the route is what says which cluster a review comes from (each
member's webhook configuration names its own), so a review on an unknown or
missing name is a 404, never decided as some other cluster's. `/readyz`
then lists each cluster (reachable, synced, last error, since when); a
member that cannot be reached does not make the server unready, since the
others keep being decided and its last usage stays charged.

Metrics, the JSON API and the pages are the API port's (`quotalang.server.api`):
whoever can reach the webhook (the apiserver; anyone, where no NetworkPolicy
says otherwise) must not read the tree, usage or near group names from it.

`/validate` is the hot path: orjson in and out, raw ASGI (`AdmissionApp`), no
per-request objects beyond the decision, and answers for bad bodies (400/413
with a `Status` naming the problem) that never reach the engine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from time import perf_counter
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from quotalang.controller import Ledger
from quotalang.controller.kube.deadline import DEFAULT_TIMEOUT, budget, parse_timeout
from quotalang.controller.kube.limit_ranges import LimitRangeSource
from quotalang.server.admission import DEFAULT_MAX_BODY, AdmissionRequest, BadReview, parse_review
from quotalang.server.denials import Denials
from quotalang.server.engine import Engine, FailureMode, Outcome
from quotalang.server.grants import Grants
from quotalang.server.http import (
    error_response,
    internal_error,
    internal_error_handler,
    json_response,
    receive_body,
    send_json,
)
from quotalang.server.logs import log_decision, log_event
from quotalang.server.metrics import ClusterReport, Metrics
from quotalang.server.reload import PolicyHolder
from quotalang.server.responses import encode, status_body

LOG = logging.getLogger("quotalang.server")
# Past this many bytes a review is parsed and decided in one thread of its own, one at a time: a
# 1.8 MB review takes ~80 ms of Python, which on the event loop held every other review waiting
# (48 senders of large reviews put a small review's p50 at 2.5 s). The loop keeps the GIL's turns.
LARGE_BODY = 256 * 1024
_LARGE = ThreadPoolExecutor(max_workers=1, thread_name_prefix="quotalang-large-review")




def create_app(
    holder: PolicyHolder,
    ledger: Ledger,
    *,
    failure_mode: FailureMode = "deny",
    max_body: int = DEFAULT_MAX_BODY,
    metrics: Metrics | None = None,
    waiting_for: Callable[[], str | None] | None = None,
    routes: Sequence[BaseRoute] = (),
    clusters: Sequence[str] = (),
    health: Callable[[], Mapping[str, ClusterReport]] | None = None,
    denials: Denials | None = None,
    limit_ranges: LimitRangeSource | None = None,
    grants: Grants | None = None,
) -> Starlette:
    """The admission app over a policy holder and a ledger (one of each per process).

    `waiting_for` names what readiness still waits for (the controller's first
    full sync), or None once there is nothing to wait for. `clusters`: the
    registered cluster names (a route each), () for the one `/validate`;
    `health` reports each cluster for `/readyz`. `denials`: where the last
    denials per group are kept (the API app shows them). `limit_ranges`: each
    cluster's LimitRange index, installed by whoever watches it (`Engine`).
    `grants`: each cluster's `use` answers (`authorize users`).
    """
    metrics = metrics or Metrics()
    metrics.watch_ledger(ledger, lambda: holder.policy)
    recent = denials if denials is not None else Denials()
    engine = Engine(holder, ledger, failure_mode, limit_ranges, grants)
    # The engine first tries each review on the event loop (the memory and SQLite stores decide there,
    # and so does a kubernetes store within its lease); a review whose store would wait (a call, another
    # batch's turn) is decided in a worker thread, within the apiserver's `?timeout=`.

    def decide(review: AdmissionRequest, timeout: float | None, cluster: str) -> Outcome:
        deadline = time.monotonic() + budget(timeout if timeout is not None else DEFAULT_TIMEOUT)
        outcome = engine.review(review, cluster, deadline=deadline)
        assert outcome is not None  # None only without waiting
        return outcome

    def parse_and_decide(body: bytes, timeout: float | None, cluster: str) -> Outcome:
        return decide(parse_review(body, max_body), timeout, cluster)

    def bad_request(exc: BadReview, scope: Scope) -> bytes:
        metrics.bad_requests.labels(exc.reason).inc()
        client = scope.get("client")
        log_event(LOG, logging.WARNING, "bad admission request", status=exc.status, reason=exc.reason,
                  error=exc.message[:300], client=client[0] if client else None)
        return status_body(exc.status, exc.message)

    async def validate(scope: Scope, receive: Receive, send: Send, cluster: str) -> None:
        start = perf_counter()
        try:
            body = await receive_body(scope, receive, max_body)
            if body is None:
                return  # the client went away (a deadline closed it): nobody to answer
            outcome: Outcome | None = None
            if len(body) > LARGE_BODY:  # parsed and decided in the large-review thread, in turn
                timeout = parse_timeout(_query_value(scope["query_string"], "timeout"))
                outcome = await asyncio.wrap_future(_LARGE.submit(parse_and_decide, body, timeout, cluster))
            else:
                review = parse_review(body, max_body)
                outcome = engine.review(review, cluster, wait=False)
                if outcome is None:
                    timeout = parse_timeout(_query_value(scope["query_string"], "timeout"))
                    outcome = await run_in_threadpool(decide, review, timeout, cluster)
        except BadReview as exc:
            await send_json(send, exc.status, bad_request(exc, scope))
            return
        elapsed = perf_counter() - start
        metrics.admission(outcome.kind, outcome.operation, outcome.verdict, outcome.group, elapsed)
        if outcome.reason == "outside-quota":
            metrics.outside_quota.inc()
        if outcome.reason in ("outside-quota", "unbound-namespace"):
            metrics.outside.add(outcome.namespace, outcome.cluster)
        recent.add(outcome)
        log_decision(outcome, elapsed)
        await send_json(send, 200, encode(outcome.response))

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok"})

    def cluster_detail() -> dict[str, Any]:
        if not clusters:
            return {}
        found = health() if health is not None else {}
        detail: dict[str, Any] = {}
        for name in clusters:
            report = found.get(name)
            detail[name] = None if report is None else {
                "reachable": report.reachable, "synced": report.synced, "last_error": report.last_error,
                "since": report.since,
            }
        return {"clusters": detail}

    async def readyz(request: Request) -> Response:
        policy = holder.policy
        if policy is None:
            return json_response({"ready": False, "reason": "no policy loaded", "error": holder.last_error}, 503)
        pending = waiting_for() if waiting_for is not None else None
        if pending is not None:
            return json_response({"ready": False, "reason": pending, "policy": policy.checksum, **cluster_detail()},
                                 503)
        return json_response(
            {
                "ready": True,
                "policy": policy.checksum,
                "groups": len(policy.groups),
                "kinds": len(policy.kinds),
                "last_reload_error": holder.last_error,
                **cluster_detail(),
            }
        )

    async def unknown_cluster(request: Request) -> Response:
        name = request.path_params.get("name")
        if name is None:
            return error_response(404, "this server decides for several clusters: each posts to /validate/NAME, "
                                  "its own name as given to serve --cluster")
        # The names are not listed: whoever reaches the admission port need not learn them.
        return error_response(404, f"no cluster {str(name)[:63]!r} is registered here (serve --cluster NAME=...)")

    validate_routes: list[BaseRoute]
    if clusters:
        validate_routes = [Route(f"/validate/{name}", _Validate(validate, name), methods=["POST"])
                           for name in clusters]
        validate_routes += [Route("/validate", unknown_cluster, methods=["POST"]),
                            Route("/validate/{name}", unknown_cluster, methods=["POST"])]
    else:
        validate_routes = [Route("/validate", _Validate(validate, ""), methods=["POST"])]
    app = AdmissionApp(
        routes=[
            *validate_routes,
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            *routes,  # more webhooks' routes (serve adds server/exemptions.py's)
        ],
        exception_handlers={Exception: internal_error_handler(LOG)},
    )
    app.state.holder = holder
    app.state.ledger = ledger
    app.state.metrics = metrics
    app.state.engine = engine
    return app



class _Validate:
    """One cluster's `/validate` endpoint, a raw ASGI app: Starlette's router hands it the scope as is (and
    answers 405 for other methods), and `AdmissionApp` calls it directly."""

    __slots__ = ("cluster", "handle")

    def __init__(self, handle: Callable[[Scope, Receive, Send, str], Awaitable[None]], cluster: str) -> None:
        self.handle, self.cluster = handle, cluster

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handle(scope, receive, send, self.cluster)


class AdmissionApp(Starlette):
    """Starlette, with a POST to a `/validate` route taken straight to its endpoint.

    The hot path skips the middleware stack, the router's matching and the
    Request and Response objects, about a quarter of the app's own time per
    review (measured in process: about 145 µs a review through the stack,
    107 µs here). The endpoint reads and answers the raw ASGI messages, and
    answers a bug as the stack would: a 500 `Status`, the detail logged.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.endpoints: dict[str, _Validate] = {
            route.path: route.endpoint for route in self.routes
            if isinstance(route, Route) and isinstance(route.endpoint, _Validate)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.endpoints.get(scope["path"]) if scope["type"] == "http" else None
        if endpoint is None or scope["method"] != "POST":
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        try:
            await endpoint(scope, receive, send)
        except Exception as exc:  # answered as ServerErrorMiddleware would; the error is not shown
            await send_json(send, 500, internal_error(LOG, scope["path"], exc))


def _query_value(query: bytes, name: str) -> str | None:
    """One parameter of a raw query string (the apiserver's `?timeout=10s`), percent-decoded."""
    return next((value for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
                 if key == name), None)

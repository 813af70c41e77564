"""The admission port's app: admission and health, nothing that reads the tree.

| route                   | what                                                        |
|-------------------------|-------------------------------------------------------------|
| POST /validate          | AdmissionReview v1 in, AdmissionReview v1 out               |
| POST /validate/...      | more webhooks' routes (`exemptions`: the namespace webhook) |
| GET  /healthz           | the process answers                                         |
| GET  /readyz            | a policy is loaded and the first sync done (503 before)     |

Metrics, the JSON API and the pages are the API port's (`quotalang.server.api`):
whoever can reach the webhook (the apiserver; anyone, where no NetworkPolicy
says otherwise) must not read the tree, usage or near group names from it.

`/validate` is the hot path: orjson in and out, no per-request objects beyond
the decision, and answers for bad bodies (400/413 with a `Status` naming the
problem) that never reach the engine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from time import perf_counter

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from quotalang.controller import Ledger
from quotalang.controller.kube.deadline import parse_timeout, request_deadline
from quotalang.server.admission import DEFAULT_MAX_BODY, AdmissionRequest, BadReview, parse_review
from quotalang.server.engine import Engine, FailureMode, Outcome
from quotalang.server.http import JSON, error_response, internal_error_handler, json_response, read_body
from quotalang.server.logs import log_decision, log_event
from quotalang.server.metrics import Metrics
from quotalang.server.reload import PolicyHolder
from quotalang.server.responses import encode

LOG = logging.getLogger("quotalang.server")




def create_app(
    holder: PolicyHolder,
    ledger: Ledger,
    *,
    failure_mode: FailureMode = "deny",
    max_body: int = DEFAULT_MAX_BODY,
    metrics: Metrics | None = None,
    waiting_for: Callable[[], str | None] | None = None,
    routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The admission app over a policy holder and a ledger (one of each per process).

    `waiting_for` names what readiness still waits for (the controller's first
    full sync), or None once there is nothing to wait for.
    """
    metrics = metrics or Metrics()
    metrics.watch_ledger(ledger, lambda: holder.policy)
    engine = Engine(holder, ledger, failure_mode)
    # A store that makes network calls (kubernetes) decides in a worker thread, within the
    # apiserver's `?timeout=`; the memory store decides on the event loop, which is faster.
    blocking = bool(getattr(ledger, "blocking", False))

    def decide(review: AdmissionRequest, timeout: float | None) -> Outcome:
        with request_deadline(timeout):
            return engine.review(review)

    def bad_request(exc: BadReview, request: Request) -> Response:
        metrics.bad_requests.labels(exc.reason).inc()
        client = request.client.host if request.client else None
        log_event(LOG, logging.WARNING, "bad admission request", status=exc.status, reason=exc.reason,
                  error=exc.message[:300], client=client)
        return error_response(exc.status, exc.message)

    async def validate(request: Request) -> Response:
        start = perf_counter()
        try:
            review = parse_review(await read_body(request, max_body), max_body)
        except BadReview as exc:
            return bad_request(exc, request)
        if blocking:
            outcome = await run_in_threadpool(decide, review, parse_timeout(request.query_params.get("timeout")))
        else:
            outcome = engine.review(review)
        elapsed = perf_counter() - start
        metrics.admission(outcome.kind, outcome.operation, outcome.verdict, outcome.group, elapsed)
        log_decision(outcome, elapsed)
        return Response(encode(outcome.response), media_type=JSON)

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(request: Request) -> Response:
        policy = holder.policy
        if policy is None:
            return json_response({"ready": False, "reason": "no policy loaded", "error": holder.last_error}, 503)
        pending = waiting_for() if waiting_for is not None else None
        if pending is not None:
            return json_response({"ready": False, "reason": pending, "policy": policy.checksum}, 503)
        return json_response(
            {
                "ready": True,
                "policy": policy.checksum,
                "groups": len(policy.groups),
                "kinds": len(policy.kinds),
                "last_reload_error": holder.last_error,
            }
        )


    app = Starlette(
        routes=[
            Route("/validate", validate, methods=["POST"]),
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

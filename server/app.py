"""The HTTP routes: admission, health, metrics and a small JSON API.

| route                   | what                                                        |
|-------------------------|-------------------------------------------------------------|
| POST /validate          | AdmissionReview v1 in, AdmissionReview v1 out               |
| GET  /healthz           | the process answers                                         |
| GET  /readyz            | a policy is loaded and the first sync done (503 before)     |
| GET  /metrics           | Prometheus text                                             |
| GET  /api/groups        | every group: name, path, parent, mode, children             |
| GET  /api/groups/{name} | one group: hard, carved, used, reserved, free per key; cash |
| POST /api/explain       | a what-if decision for a posted workload (reserves nothing) |

`/validate` is the hot path: orjson in and out, no per-request objects beyond
the decision, and answers for bad bodies (400/413 with a `Status` naming the
problem) that never reach the engine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from time import perf_counter
from typing import Any

import orjson
import yaml
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from quotalang.controller import Ledger
from quotalang.controller.kube.deadline import parse_timeout, request_deadline
from quotalang.decision import qty
from quotalang.errors import UserInputError
from quotalang.evaluator import evaluate
from quotalang.policy import CompiledGroup, cash_rows, limit_rows
from quotalang.server.admission import DEFAULT_MAX_BODY, AdmissionRequest, BadReview, parse_review, too_large
from quotalang.server.engine import Engine, FailureMode, Outcome, hpa_target
from quotalang.server.logs import log_decision, log_event
from quotalang.server.metrics import Metrics
from quotalang.server.pages import routes as page_routes
from quotalang.server.reload import PolicyHolder
from quotalang.server.responses import encode, status_body
from quotalang.units import format_hours

JSON = "application/json"
LOG = logging.getLogger("quotalang.server")


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON)


def _error(status: int, message: str) -> Response:
    return Response(status_body(status, message), status_code=status, media_type=JSON)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) as soon as it is known to be over `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BadReview(f"Content-Length {declared!r} is not a number", reason="invalid") from None
        if size > limit:
            raise too_large(size, limit)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large(received, limit)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


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
    """The webhook app over a policy holder and a ledger (one of each per process).

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
        return _error(exc.status, exc.message)

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
        return _json({"status": "ok"})

    async def readyz(request: Request) -> Response:
        policy = holder.policy
        if policy is None:
            return _json({"ready": False, "reason": "no policy loaded", "error": holder.last_error}, 503)
        pending = waiting_for() if waiting_for is not None else None
        if pending is not None:
            return _json({"ready": False, "reason": pending, "policy": policy.checksum}, 503)
        return _json(
            {
                "ready": True,
                "policy": policy.checksum,
                "groups": len(policy.groups),
                "kinds": len(policy.kinds),
                "last_reload_error": holder.last_error,
            }
        )

    async def prometheus(request: Request) -> Response:
        # Rendering reads every group's numbers: off the event loop, so admissions keep flowing.
        return Response(await run_in_threadpool(metrics.render), media_type=CONTENT_TYPE_LATEST)

    async def groups(request: Request) -> Response:
        policy = holder.policy
        if policy is None:
            return _error(503, "no policy loaded")
        return _json([_summary(g) for g in policy.groups.values()])

    async def group(request: Request) -> Response:
        policy = holder.policy
        if policy is None:
            return _error(503, "no policy loaded")
        name = request.path_params["name"]
        found = policy.groups.get(name)
        if found is None:
            near = policy.near_groups(name)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            return _error(404, f"no group {name!r} in the policy{hint}")
        return _json(_detail(found, ledger))

    async def explain(request: Request) -> Response:
        policy = holder.policy
        if policy is None:
            return _error(503, "no policy loaded")
        try:
            body = await read_body(request, max_body)
            obj, operation, old, parent = _explain_input(body, request.headers.get("content-type", ""))
        except BadReview as exc:
            return bad_request(exc, request)
        target: Mapping[str, Any] | None = parent
        if target is None and obj.get("kind") == "HorizontalPodAutoscaler":
            target = _hpa_target(obj, ledger)
        try:
            decision = evaluate(policy, obj, operation, old=old, usage=ledger, parent=target)
        except UserInputError as exc:  # a malformed quantity too: a 400, never a 500
            return _error(400, str(exc))
        return _json({"object": _describe(obj), **decision.as_json()})

    async def internal_error(request: Request, exc: Exception) -> Response:
        error = f"{type(exc).__name__}: {exc}"
        log_event(LOG, logging.ERROR, "internal error", path=request.url.path, error=error)
        return _error(500, f"internal error: {type(exc).__name__}")

    app = Starlette(
        routes=[
            Route("/validate", validate, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", prometheus, methods=["GET"]),
            Route("/api/groups", groups, methods=["GET"]),
            Route("/api/groups/{name}", group, methods=["GET"]),
            Route("/api/explain", explain, methods=["POST"]),
            # The pages (/, /groups/..., /what-if, /propose, /static): self-contained, to move to the API port.
            *page_routes(holder, ledger),
            *routes,  # more webhooks' routes (serve adds server/exemptions.py's)
        ],
        exception_handlers={Exception: internal_error},
    )
    app.state.holder = holder
    app.state.ledger = ledger
    app.state.metrics = metrics
    app.state.engine = engine
    return app


def _summary(group: CompiledGroup) -> dict[str, Any]:
    return {
        "name": group.name,
        "path": group.path,
        "parent": group.parent,
        "mode": group.mode,
        "children": list(group.children),
    }


def _detail(group: CompiledGroup, ledger: Ledger) -> dict[str, Any]:
    """`used` is observed + reserved (what admission checks); `free` = hard − carved − used."""
    numbers = ledger.group_usage(group.name)
    limits = [
        {
            "key": r.key,
            "hard": qty(r.key, r.hard),
            "carved": qty(r.key, r.carved),
            "used": qty(r.key, r.used),
            "reserved": qty(r.key, numbers.reserved.get(r.key, 0)),
            "free": qty(r.key, r.free),
        }
        for r in limit_rows(group, numbers.used)
    ]
    cash = [
        {
            "key": c.key,
            "period": c.period,
            "budget": format_hours(c.budget),
            "carved": format_hours(c.carved),
            "used": format_hours(c.used),
            "free": format_hours(c.free),
        }
        for c in cash_rows(group, numbers.cash)
    ]
    return {
        **_summary(group),
        "limits": limits,
        "cash": cash,
        "objects": numbers.objects,
        "reservations": numbers.reservations,
    }


def _explain_input(
    body: bytes, content_type: str
) -> tuple[dict[str, Any], str, dict[str, Any] | None, dict[str, Any] | None]:
    """A bare workload, or `{object, oldObject?, operation?, parent?}`; JSON, or YAML when so declared."""
    if not body.strip():
        raise BadReview("empty body: post a workload (JSON, or YAML with Content-Type application/yaml)",
                        reason="empty")
    data: Any
    if "yaml" in content_type:
        try:
            data = yaml.safe_load(body)
        except yaml.YAMLError as exc:
            raise BadReview(f"body is not YAML: {exc}", reason="not-yaml") from None
    else:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadReview(f"body is not JSON: {exc} (send YAML with Content-Type application/yaml)",
                            reason="not-json") from None
    if not isinstance(data, dict):
        raise BadReview(f"body is a {type(data).__name__}, not a workload object", reason="invalid")
    if "object" in data and "kind" not in data:
        obj, old, parent = data.get("object"), data.get("oldObject"), data.get("parent")
        operation = data.get("operation") or ("UPDATE" if old is not None else "CREATE")
    else:
        obj, old, parent, operation = data, None, None, "CREATE"
    if not isinstance(obj, dict) or not obj.get("kind"):
        raise BadReview("no workload: post an object with apiVersion and kind, or {\"object\": ...}",
                        reason="invalid")
    for what, value in (("oldObject", old), ("parent", parent)):
        if value is not None and not isinstance(value, dict):
            raise BadReview(f"{what} is not an object", reason="invalid")
    if operation not in ("CREATE", "UPDATE"):
        raise BadReview(f"operation {operation!r} is not CREATE or UPDATE", reason="operation")
    return obj, operation, old, parent


def _hpa_target(hpa: Mapping[str, Any], ledger: Ledger) -> Mapping[str, Any] | None:
    meta = hpa.get("metadata")
    namespace = str(meta.get("namespace") or "") if isinstance(meta, Mapping) else ""
    identity = hpa_target(hpa, namespace)
    return ledger.lookup(identity) if identity is not None else None


def _describe(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    name = meta.get("name", "<unnamed>") if isinstance(meta, Mapping) else "<unnamed>"
    return f"{obj.get('kind', '?')} {name} ({obj.get('apiVersion', '?')})"


"""The API port's app: metrics, the JSON API of groups and usage, and the pages.

| route                   | what                                                        |
|-------------------------|-------------------------------------------------------------|
| GET  /metrics           | Prometheus text                                             |
| GET  /api/groups        | every group: name, path, parent, mode, children; per key    |
|                         | hard, used (its own) and subtree (its own + descendants')   |
|                         | and, on keys some group lends or borrows, `lending`         |
| GET  /api/groups/{name} | one group: hard, carved, used, subtree, reserved, free per  |
|                         | key; cash; its last denials (`server/denials.py`); its      |
|                         | workloads (usage, and GPU-hours spent where accrued here);  |
|                         | `lending` on lending keys, as in the list                   |
| GET  /api/namespaces/{ns} | the groups namespace ns may charge (?cluster=), its default |
| GET  /api/namespaces    | the namespaces no group binds that reviews came from (since |
|                         | start, `server/outside.py`), and the policy's `unbound`     |
| POST /api/explain       | a what-if decision for a posted workload (reserves nothing) |
| /, /groups/..., ...     | the pages (`quotalang.server.pages`)                        |

With several clusters (`serve --cluster`) each limit of `/api/groups/{name}`
also has `observed` (in total) and `clusters` (observed per registered
cluster, 0 where it has none), so that a cluster's share is visible, and
kept while that cluster cannot be reached.

`lending` (issue 29) is `quotalang.lent.row_json`, what `quotalang tree`
prints: lend, borrow, guarantee, own, borrowed (and `borrowed_from`, each
ancestor's pool and amount), lent_out, over; on keys nobody lends or
borrows it is absent, so a policy without lending answers as before.

A port of its own (`--api-port`, default 8444), apart from the admission
port: whoever reaches the webhook must not read the tree, usage and near
group names. In a cluster the app is wrapped in `apiauth.BearerAuth` (a
token the apiserver accepts and RBAC allows); with no cluster it binds to
127.0.0.1. It shares only the holder, the ledger and the metrics with the
admission app.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from quotalang.charging import chargeable, is_label
from quotalang.controller import Ledger
from quotalang.decision import qty
from quotalang.errors import UserInputError
from quotalang.lent import lending_json
from quotalang.policy import CompiledGroup, CompiledPolicy, cash_rows, limit_rows, usage_below
from quotalang.server.admission import DEFAULT_MAX_BODY, BadReview, check_object
from quotalang.server.apiauth import BearerAuth, Gate
from quotalang.server.bodies import Busy, ParsePool, describe, is_yaml
from quotalang.server.denials import Denials
from quotalang.server.engine import Engine
from quotalang.server.http import HostCheck, error_response, internal_error_handler, json_response, read_body
from quotalang.server.metrics import Metrics
from quotalang.server.pages import routes as page_routes
from quotalang.server.pages.views import SpentOf, own_usage
from quotalang.server.reload import PolicyHolder
from quotalang.units import format_hours

LOG = logging.getLogger("quotalang.server.api")




def create_api_app(
    holder: PolicyHolder,
    ledger: Ledger,
    *,
    metrics: Metrics | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    gate: Gate | None = None,
    clusters: Sequence[str] = (),
    denials: Denials | None = None,
    engine: Engine | None = None,
    hosts: Sequence[str] = (),
    spent: SpentOf | None = None,
) -> Starlette:
    """The API app over the admission app's holder, ledger and metrics.

    `metrics`: the admission app's (it counts decisions); a new one watching
    the ledger when None. `gate`: who may ask (a cluster); None lets every
    request through, for a loopback bind with no cluster. `clusters`: the
    registered clusters, shown per group (() for one cluster). `denials`: the
    admission app's record of the last denials per group (none when None). `engine`: the
    admission app's, so that what-if decides exactly as `/validate` does (with
    the LimitRange defaults it knows); a new one over `ledger` when None.
    `hosts`: the names this port is reached by besides IP literals and
    localhost (its bind name, an Ingress's): any other `Host` is a 421, so
    that a page of a rebound name (DNS rebinding) can neither read the tree
    nor post to explain.
    """
    recent = denials if denials is not None else Denials()
    names = tuple(clusters)
    engine = engine if engine is not None else Engine(holder, ledger)
    parser = ParsePool()  # explain's and the what-if page's: one line to the one parsing process
    form_token = secrets.token_urlsafe(24)  # the pages' forms carry it; another site's cannot
    if metrics is None:
        metrics = Metrics()
        metrics.watch_ledger(ledger, lambda: holder.policy)
    shown = metrics

    async def prometheus(request: Request) -> Response:
        # Rendering reads every group's numbers: off the event loop, so admissions keep flowing.
        return Response(await run_in_threadpool(shown.render), media_type=CONTENT_TYPE_LATEST)

    async def groups(request: Request) -> Response:
        policy = holder.policy
        if policy is None:
            return error_response(503, "no policy loaded")
        return json_response(_listing(policy, ledger))

    async def group(request: Request) -> Response:
        policy = holder.policy
        if policy is None:
            return error_response(503, "no policy loaded")
        name = request.path_params["name"]
        found = policy.groups.get(name)
        if found is None:
            # Near names are shown only to someone allowed to read the whole tree (the gate ran first).
            near = policy.near_groups(name)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            return error_response(404, f"no group {name!r} in the policy{hint}")
        detail = group_detail(found, ledger, names, usage_below(policy, own_usage(ledger), name)[name],
                              lending_json(policy, own_usage(ledger)).get(name))
        return json_response({**detail, "denials": recent.of(name), "workloads": workloads(found, ledger, spent)})

    async def namespace(request: Request) -> Response:
        policy = holder.policy
        if policy is None:
            return error_response(503, "no policy loaded")
        name, cluster = request.path_params["name"], request.query_params.get("cluster", "")
        if not is_label(name) or (cluster and not is_label(cluster)):
            return error_response(400, "a namespace (and ?cluster=) is a DNS label: lowercase letters, digits, '-', "
                                       "at most 63 characters")
        return json_response(chargeable(policy, name, cluster).as_json())

    async def outside(request: Request) -> Response:
        policy = holder.policy
        if policy is None:
            return error_response(503, "no policy loaded")
        return json_response(shown.outside.listing(policy))

    async def explain(request: Request) -> Response:
        policy = holder.policy
        if policy is None:
            return error_response(503, "no policy loaded")
        try:
            as_yaml = is_yaml(request.headers.get("content-type"))
            async with parser.place():  # before the body is read: a flood waits unread
                body = await read_body(request, max_body)
                if not body.strip():
                    raise BadReview("empty body: post a workload (JSON, or YAML with Content-Type application/yaml)",
                                    reason="empty")
                obj, operation, old, parent = _explain_input(await parser.load(body, as_yaml))
                decision = await parser.decide(
                    lambda: engine.explain(policy, obj, operation, old=old, parent=parent))
        except BadReview as exc:
            shown.bad_requests.labels(exc.reason).inc()
            return error_response(exc.status, exc.message)
        except Busy:
            busy = error_response(503, "explain is busy with other workloads: retry in a few seconds")
            busy.headers.update({"Retry-After": "5", "Connection": "close"})  # the unread body goes with it
            return busy
        except UserInputError as exc:  # a malformed quantity too: a 400, never a 500
            return error_response(400, str(exc))
        return json_response({"object": describe(obj), **decision.as_json()})

    app = Starlette(
        routes=[
            Route("/metrics", prometheus, methods=["GET"]),
            Route("/api/groups", groups, methods=["GET"]),
            Route("/api/groups/{name}", group, methods=["GET"]),
            Route("/api/namespaces", outside, methods=["GET"]),
            Route("/api/namespaces/{name}", namespace, methods=["GET"]),
            Route("/api/explain", explain, methods=["POST"]),
            # /, /groups/..., /what-if, /propose, /static
            *page_routes(holder, ledger, engine, denials=recent, parser=parser, form_token=form_token,
                         spent=spent, outside=shown.outside),
        ],
        exception_handlers={Exception: internal_error_handler(LOG)},
    )
    app.state.holder = holder
    app.state.ledger = ledger
    app.state.metrics = shown
    app.state.form_token = form_token
    if gate is not None:
        app.add_middleware(BearerAuth, gate=gate)
    app.add_middleware(HostCheck, names=hosts)  # the outermost: before the gate reads a token
    return app


def _summary(group: CompiledGroup) -> dict[str, Any]:
    return {
        "name": group.name,
        "path": group.path,
        "parent": group.parent,
        "mode": group.mode,
        "children": list(group.children),
    }


def _listing(policy: CompiledPolicy, ledger: Ledger) -> list[dict[str, Any]]:
    """Every group with, per key, its hard limit, its own usage and its subtree's (read once per group)."""
    used = {name: ledger.group_usage(name).used for name in policy.groups}
    below = usage_below(policy, used.__getitem__)
    lending = lending_json(policy, used.__getitem__)
    return [
        {**_summary(g), "limits": [
            _lent({"key": r.key, "hard": qty(r.key, r.hard), "used": qty(r.key, r.used),
                   "subtree": qty(r.key, r.subtree)}, lending.get(g.name))
            for r in limit_rows(g, used[g.name], below[g.name])]}
        for g in policy.groups.values()
    ]


def _lent(row: dict[str, Any], lending: Mapping[str, Any] | None) -> dict[str, Any]:
    """`row` with its key's borrowing figures, when some group lends or borrows the key."""
    if lending and row["key"] in lending:
        row["lending"] = lending[row["key"]]
    return row


def group_detail(
    group: CompiledGroup, ledger: Ledger, clusters: tuple[str, ...] = (), below: Mapping[str, int] | None = None,
    lending: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`used` is observed + reserved (what admission checks); `free` = hard − carved − used;
    `subtree` adds what the descendants use (`below`); `lending` (`lending_json`'s, for this group) adds
    each lending key's borrowing figures.

    With several clusters each limit adds `observed` and its share per cluster.
    """
    numbers = ledger.group_usage(group.name)
    by_cluster = numbers.observed_by_cluster
    limits: list[dict[str, Any]] = []
    for r in limit_rows(group, numbers.used, below):
        row: dict[str, Any] = {
            "key": r.key,
            "hard": qty(r.key, r.hard),
            "carved": qty(r.key, r.carved),
            "used": qty(r.key, r.used),
            "subtree": qty(r.key, r.subtree),
            "reserved": qty(r.key, numbers.reserved.get(r.key, 0)),
            "free": qty(r.key, r.free),
        }
        if clusters:
            row["observed"] = qty(r.key, numbers.observed.get(r.key, 0))
            row["clusters"] = {c: qty(r.key, by_cluster.get(c, {}).get(r.key, 0)) for c in clusters}
        limits.append(_lent(row, lending))
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


def workloads(group: CompiledGroup, ledger: Ledger, spent: SpentOf | None) -> list[dict[str, Any]] | None:
    """The workloads charged to `group` (None: this replica cannot list them), with what each spent this period
    where this process accrues cash."""
    lister = getattr(ledger, "objects_of", None)
    listed = lister(group.name) if lister is not None else None
    if listed is None:
        return None
    paid = spent(group) if spent is not None else None
    out: list[dict[str, Any]] = []
    for identity, usage in sorted(listed, key=lambda row: tuple(row[0])):
        row: dict[str, Any] = {
            "apiGroup": identity.api_group, "kind": identity.kind, "namespace": identity.namespace,
            "name": identity.name, "usage": {k: qty(k, v) for k, v in sorted(usage.items()) if v}}
        if identity.cluster:
            row["cluster"] = identity.cluster
        if paid is not None:
            row["spent"] = {k: format_hours(v) for k, v in sorted(paid.get(identity, {}).items())}
        out.append(row)
    return out


def _explain_input(
    data: Any,
) -> tuple[dict[str, Any], str, dict[str, Any] | None, dict[str, Any] | None]:
    """A bare workload, or `{object, oldObject?, operation?, parent?}` (parsed by `bodies`)."""
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
    for what, value in (("object", obj), ("oldObject", old), ("parent", parent)):
        check_object(value, what)  # a 400 naming the field, as a review's would be
    if operation not in ("CREATE", "UPDATE"):
        shown = repr(operation)[:40] if isinstance(operation, str) else f"a {type(operation).__name__}"
        raise BadReview(f"operation {shown} is not CREATE or UPDATE", reason="operation")
    return obj, operation, old, parent

"""The quota tree as a Kubernetes API: `kubectl get quotagroups` through the apiserver (an aggregated API).

Kubernetes' convention for read models that are not stored objects
(metrics-server's `metrics.k8s.io`, Kueue's `visibility.kueue.x-k8s.io`): an
`APIService` asks kube-apiserver to proxy one group/version to us, so every
team reaches it with the kubeconfig it already has (certificates, tokens,
OIDC, exec plugins: the apiserver authenticates), and RBAC on the resource
decides who may read, before the request is proxied.

Group/version `visibility.quotalang.dev/v1alpha1`, not `quotalang.dev`: an
APIService takes a whole group/version, and `quotalang.dev/v1alpha1` is the
QuotaLedger CRD's, which it would hide. Served, all cluster-scoped:

| path under /apis/visibility.quotalang.dev/v1alpha1 | what                                        |
|----------------------------------------------------|---------------------------------------------|
| (the prefix itself)                                | discovery: an APIResourceList               |
| /quotagroups                                       | every group, a QuotaGroupList or a Table    |
| /quotagroups/{name}                                | one QuotaGroup (spec: the policy; status:   |
|                                                    | limits, cash, counts, last denials)         |
| /namespaces/{ns}/chargeablegroups                  | the groups namespace ns may charge (a List  |
|                                                    | or a Table: name, path, default)            |
| /pages/quota/...                                   | the pages, for `kubectl proxy`              |

A Table (what `kubectl get` asks for with `Accept: ...;as=Table;g=meta.k8s.io`)
has, for the main keys (the roots' first three generic keys), HARD, USED and
FREE: USED is what the whole subtree holds (a leaf's own), FREE what the
group's own workloads may still start (hard − carved − own used), so the root
reads what its teams hold.

Verbs `get` and `list` only (a watch is 405): numbers change on every
admission, and a poll is what `kubectl get` does.

Who may connect is `aggregated_trust`'s business: this port answers only
connections that present the aggregator's front-proxy client certificate;
the apiserver authorised the user before proxying. The `X-Remote-*` headers
are believed only on such a connection, and are not needed to answer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from quotalang.charging import chargeable, is_label
from quotalang.controller import Ledger
from quotalang.decision import qty
from quotalang.lent import lending_json
from quotalang.policy import CompiledGroup, CompiledPolicy, limit_rows, usage_below
from quotalang.resources import split_key
from quotalang.server.api import group_detail
from quotalang.server.denials import Denials
from quotalang.server.engine import Engine
from quotalang.server.http import internal_error_handler
from quotalang.server.pages import routes as page_routes
from quotalang.server.pages.views import SpentOf, own_usage
from quotalang.server.reload import PolicyHolder

LOG = logging.getLogger("quotalang.server.aggregated")
GROUP = "visibility.quotalang.dev"
VERSION = "v1alpha1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
PREFIX = f"/apis/{GROUP_VERSION}"
API_SERVICE = f"{VERSION}.{GROUP}"  # the APIService's name
RESOURCE = "quotagroups"
KIND = "QuotaGroup"
# The pages live under pages/quota/: for RBAC, resource `pages`, name `quota`, and as subresource the first
# segment of the page's own path (`/groups/nlp` → `pages/groups`). RBAC has no `pages/*` wildcard, so the
# viewer role lists `PAGE_SECTIONS`; a page route outside them would be forbidden (a test keeps them in step).
PAGES = "pages"
PAGES_NAME = "quota"
PAGES_PREFIX = f"{PREFIX}/{PAGES}/{PAGES_NAME}"
PAGE_SECTIONS = ("groups", "namespaces", "pages", "static", "what-if", "propose")
# Namespaced: the groups a namespace may charge (`kubectl get chargeablegroups -n NS`), so a RoleBinding of the
# viewer role in a team's own namespace shows it exactly that (and not the cluster-scoped tree).
CHARGEABLE = "chargeablegroups"
CHARGEABLE_KIND = "ChargeableGroup"
MAIN_KEYS = 3
JSON = "application/json"


def discovery() -> dict[str, Any]:
    """What the aggregator and kubectl read to learn the resources (`kubectl api-resources`)."""
    return {
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION,
        "resources": [{"name": RESOURCE, "singularName": "quotagroup", "namespaced": False, "kind": KIND,
                       "verbs": ["get", "list"], "shortNames": ["qg"], "categories": ["quotalang"]},
                      {"name": CHARGEABLE, "singularName": "chargeablegroup", "namespaced": True,
                       "kind": CHARGEABLE_KIND, "verbs": ["list"], "categories": ["quotalang"]}],
    }


def _status(code: int, reason: str, message: str, name: str | None = None) -> Response:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": message, "reason": reason, "code": code}
    if name is not None:
        body["details"] = {"name": name, "group": GROUP, "kind": RESOURCE}
    return Response(orjson.dumps(body), status_code=code, media_type=JSON)


def quota_group(policy: CompiledPolicy, group: CompiledGroup, ledger: Ledger, denials: Denials,
                below: Mapping[str, int], lending: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One group as a Kubernetes object: the policy's view in spec, the ledger's in status
    (`lending`: its borrowing figures per lending key, as `/api/groups/{name}` has them)."""
    detail = group_detail(group, ledger, (), below, lending)
    return {
        "apiVersion": GROUP_VERSION, "kind": KIND, "metadata": _metadata(policy, group),
        "spec": {"parent": group.parent, "path": group.path, "mode": group.mode, "children": list(group.children)},
        "status": {"limits": detail["limits"], "cash": detail["cash"], "objects": detail["objects"],
                   "reservations": detail["reservations"], "denials": denials.of(group.name)},
    }


def _metadata(policy: CompiledPolicy, group: CompiledGroup) -> dict[str, Any]:
    return {"name": group.name, "annotations": {"quotalang.dev/policy": policy.checksum,
                                                "quotalang.dev/source": group.source}}


def main_keys(policy: CompiledPolicy) -> list[str]:
    """The Table's key columns: the roots' generic keys in declaration order, at most `MAIN_KEYS`."""
    keys: list[str] = []
    for group in policy.groups.values():
        if group.parent is not None:
            continue
        for key in group.hard:
            if key not in keys and split_key(key, policy.settings.gpu_resources).model is None:
                keys.append(key)
    return keys[:MAIN_KEYS]


def _label(key: str, keys: list[str]) -> str:
    """A column's short name: `requests.nvidia.com/gpu` → GPU, unless two keys would share it."""
    short = key.rsplit("/", 1)[-1].rsplit(".", 1)[-1].upper()
    same = [k for k in keys if k.rsplit("/", 1)[-1].rsplit(".", 1)[-1].upper() == short]
    return short if len(same) == 1 else key.upper()


def table_version(accept: str) -> str | None:
    """`v1` or `v1beta1` when the client asks for a meta.k8s.io Table (in its order of preference), else None."""
    for part in accept.split(",")[:16]:
        params = dict(p.strip().partition("=")[::2] for p in part.split(";")[1:8])
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
            return params["v"]
    return None


def table(policy: CompiledPolicy, groups: list[CompiledGroup], ledger: Ledger, below: Mapping[str, Mapping[str, int]],
          version: str, include: str, objects: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Server-side printing: what `kubectl get` shows, one row per group."""
    keys = main_keys(policy)
    columns: list[dict[str, Any]] = [
        {"name": "Name", "type": "string", "format": "name", "description": "The group's name.", "priority": 0},
        {"name": "Parent", "type": "string", "format": "", "description": "Its parent group.", "priority": 0},
        {"name": "Mode", "type": "string", "format": "", "description": "enforce, warn or audit.", "priority": 0},
    ]
    for key in keys:
        label = _label(key, keys)
        columns += [
            {"name": f"{label} Hard", "type": "string", "format": "", "priority": 0,
             "description": f"The hard limit of {key}."},
            {"name": f"{label} Used", "type": "string", "format": "", "priority": 0,
             "description": f"What the group and every group under it use of {key} (observed + reserved)."},
            {"name": f"{label} Free", "type": "string", "format": "", "priority": 0,
             "description": f"What the group's own workloads may still start: hard − carved − its own use of {key}."},
        ]
    columns.append({"name": "Path", "type": "string", "format": "", "priority": 1,
                    "description": "Its path from the root."})
    rows = []
    for index, group in enumerate(groups):
        by_key = {r.key: r for r in limit_rows(group, ledger.group_usage(group.name).used, below[group.name])}
        cells: list[Any] = [group.name, group.parent or "", group.mode]
        for key in keys:
            r = by_key.get(key)
            cells += ["-", "-", "-"] if r is None else [qty(key, r.hard), qty(key, r.subtree), qty(key, r.free)]
        cells.append(group.path)
        row: dict[str, Any] = {"cells": cells}
        if include == "Object" and objects is not None:
            row["object"] = objects[index]
        elif include != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{version}",
                             "metadata": _metadata(policy, group)}
        rows.append(row)
    return {"kind": "Table", "apiVersion": f"meta.k8s.io/{version}", "metadata": {"resourceVersion": ""},
            "columnDefinitions": columns, "rows": rows}


def create_aggregated_app(holder: PolicyHolder, ledger: Ledger, engine: Engine, *,
                          denials: Denials | None = None, spent: SpentOf | None = None) -> Starlette:
    """The aggregated API over the admission app's holder, ledger, engine and denials (`spent`: the pages')."""
    recent = denials if denials is not None else Denials()

    def policy_or_none() -> CompiledPolicy | None:
        return holder.policy

    async def resources(request: Request) -> Response:
        return Response(orjson.dumps(discovery()), media_type=JSON)

    async def answer(request: Request, chosen: list[CompiledGroup], single: bool) -> Response:
        policy = holder.policy
        assert policy is not None
        below = usage_below(policy, own_usage(ledger))
        version = table_version(request.headers.get("accept", ""))

        def objects() -> list[dict[str, Any]]:
            lending = lending_json(policy, own_usage(ledger))  # once for the whole tree: it reads every group
            return [quota_group(policy, g, ledger, recent, below[g.name], lending.get(g.name)) for g in chosen]

        if version is not None:  # whole objects only when asked for: kubectl get prints the cells
            include = request.query_params.get("includeObject", "Metadata")
            rows = table(policy, chosen, ledger, below, version, include, objects() if include == "Object" else None)
            return Response(orjson.dumps(rows), media_type=JSON)
        if single:
            return Response(orjson.dumps(objects()[0]), media_type=JSON)
        return Response(orjson.dumps({"apiVersion": GROUP_VERSION, "kind": f"{KIND}List",
                                      "metadata": {"resourceVersion": ""}, "items": objects()}), media_type=JSON)

    async def listing(request: Request) -> Response:
        policy = policy_or_none()
        if policy is None:
            return _status(503, "ServiceUnavailable", "no policy loaded yet")
        if request.query_params.get("watch") in ("1", "true"):
            return _status(405, "MethodNotAllowed", f"{RESOURCE} cannot be watched: list them again")
        return await answer(request, list(policy.groups.values()), single=False)

    async def one(request: Request) -> Response:
        policy = policy_or_none()
        if policy is None:
            return _status(503, "ServiceUnavailable", "no policy loaded yet")
        name = request.path_params["name"]
        found = policy.groups.get(name)
        if found is None:
            shown = name[:253]
            return _status(404, "NotFound", f'{RESOURCE}.{GROUP} "{shown}" not found', shown)
        return await answer(request, [found], single=True)

    async def charged_from(request: Request) -> Response:
        policy = policy_or_none()
        if policy is None:
            return _status(503, "ServiceUnavailable", "no policy loaded yet")
        namespace = request.path_params["namespace"]
        if not is_label(namespace):
            return _status(400, "BadRequest", "a namespace name is a DNS label")
        answer = chargeable(policy, namespace)
        items = [{"apiVersion": GROUP_VERSION, "kind": CHARGEABLE_KIND,
                  "metadata": {"name": g, "namespace": namespace},
                  "spec": {"path": policy.groups[g].path, "default": g == answer.default}} for g in answer.groups]
        version = table_version(request.headers.get("accept", ""))
        if version is None:
            return Response(orjson.dumps({"apiVersion": GROUP_VERSION, "kind": f"{CHARGEABLE_KIND}List",
                                          "metadata": {"resourceVersion": ""}, "items": items}), media_type=JSON)
        columns = [{"name": n, "type": "string", "format": f, "description": d, "priority": 0} for n, f, d in (
            ("Name", "name", "A group workloads in this namespace may charge."),
            ("Path", "", "Its path from the root."),
            ("Default", "", "Whether a workload naming no group charges it."))]
        rows = [{"cells": [g, policy.groups[g].path, "yes" if g == answer.default else ""],
                 "object": {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{version}",
                            "metadata": {"name": g, "namespace": namespace}}} for g in answer.groups]
        return Response(orjson.dumps({"kind": "Table", "apiVersion": f"meta.k8s.io/{version}",
                                      "metadata": {"resourceVersion": ""}, "columnDefinitions": columns,
                                      "rows": rows}), media_type=JSON)

    async def refused(request: Request) -> Response:
        return _status(405, "MethodNotAllowed", f"{RESOURCE} are read-only: the policy in Git says what they are")

    return Starlette(
        routes=[
            Route(PREFIX, resources, methods=["GET"]),
            Route(PREFIX + "/", resources, methods=["GET"]),
            Route(f"{PREFIX}/{RESOURCE}", listing, methods=["GET"]),
            Route(f"{PREFIX}/{RESOURCE}", refused, methods=["POST", "PUT", "PATCH", "DELETE"]),
            Route(f"{PREFIX}/{RESOURCE}/{{name}}", one, methods=["GET"]),
            Route(f"{PREFIX}/{RESOURCE}/{{name}}", refused, methods=["POST", "PUT", "PATCH", "DELETE"]),
            Route(f"{PREFIX}/namespaces/{{namespace}}/{CHARGEABLE}", charged_from, methods=["GET"]),
            Mount(PAGES_PREFIX, routes=page_routes(holder, ledger, engine, denials=recent, spent=spent)),
        ],
        exception_handlers={Exception: internal_error_handler(LOG)},
    )


__all__ = [
    "API_SERVICE",
    "CHARGEABLE",
    "GROUP",
    "GROUP_VERSION",
    "PAGES",
    "PAGES_NAME",
    "PAGES_PREFIX",
    "PAGE_SECTIONS",
    "PREFIX",
    "RESOURCE",
    "create_aggregated_app",
    "discovery",
    "main_keys",
    "table_version",
]

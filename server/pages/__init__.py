"""The pages: the quota tree, a group, what-if and propose-a-change, server-rendered.

| route                     | what                                                           |
|---------------------------|----------------------------------------------------------------|
| GET  /                    | the tree: every group, its fullest keys as bars, cash; `?q=` filters |
| GET  /groups/{name}       | one group: every key (models under their generic key), cash, workloads, denials |

A parent's rows also say what its subtree uses (its own usage plus its
descendants'), on the tree and on its page.
| GET  /namespaces?ns=NS    | the groups namespace NS may charge, and its default group      |
| GET  /what-if             | paste a workload, get the webhook's decision (reserves nothing) |
| POST /what-if             |                                                                |
| GET  /propose             | edit a group's limits or cash, or add a child                  |
| POST /propose             | what lint and diff say about it against the live usage         |
| POST /propose/diff        | the change as a unified diff of the `.quota` file (a download) |
| GET  /pages/tree.json     | the numbers the tree page polls                                |
| GET  /pages/groups/{name}.json | the numbers a group page polls                            |
| GET  /static/...          | the one stylesheet and the one script                          |

`routes(holder, ledger)` returns them as a list with no reference to the app
they are mounted in, so that moving the pages from the admission port to the
API port (issue 15) is one line: the same `routes(...)` added to the other
app's route list. Pages read the policy from the holder once per request and
the ledger through its public contract only, like the JSON API.

Pages never answer 500 for what a person typed: hostile or broken input
(a huge body, YAML that is not a workload, nesting past the admission bound,
aliases, an unknown group, a value that is not a quantity) is a 400, 404 or
413 page that says what to fix, with the input kept in the form. Everything
is escaped (Jinja2 autoescape, on for every template), and the Content
Security Policy allows only this origin's script and stylesheet.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import jinja2
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from quotalang.charging import chargeable, is_label
from quotalang.controller import Ledger
from quotalang.errors import UserInputError
from quotalang.policy import CompiledGroup, CompiledPolicy
from quotalang.server.admission import BadReview, check_object
from quotalang.server.bodies import Busy, ParsePool, describe
from quotalang.server.denials import Denials
from quotalang.server.engine import Engine
from quotalang.server.outside import Outside
from quotalang.server.pages import propose, views
from quotalang.server.reload import PolicyHolder

HERE = Path(__file__).resolve().parent.parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
MAX_FORM = 256 * 1024  # bytes: a pasted workload or a proposal form is far smaller
MAX_FIELDS = 400  # a group declares a few dozen keys; the form has two fields per key at most
POLL_SECONDS = 3
# Only this origin's script and stylesheet; inline style *attributes* (bar widths) only.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
    "img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
Handler = Callable[[Request], Awaitable[Response]]


class PageError(UserInputError):
    """A request a page cannot answer as asked; `status` is what the page returns."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every template is HTML: escape everything, always
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["q"] = lambda s: quote(str(s), safe="")
    return env


async def load_object(parser: ParsePool, text: str, what: str) -> dict[str, Any]:
    """A pasted workload (YAML or JSON), parsed apart from the event loop (`bodies`), or `PageError`."""
    if not text.strip():
        raise PageError(f"{what}: paste a workload (YAML or JSON) with apiVersion, kind and metadata")
    try:
        data = await parser.load(text.encode(), as_yaml=True)  # JSON is YAML too
    except BadReview as exc:
        raise PageError(f"{what} {exc.message.removeprefix('the body ')}", exc.status) from None
    if not isinstance(data, dict):
        raise PageError(f"{what} is {type(data).__name__ if data is not None else 'empty'}, not a workload object")
    if not data.get("kind") or not isinstance(data.get("kind"), str):
        raise PageError(f"{what} has no kind: paste an object with apiVersion and kind")
    try:
        check_object(data, "object")
    except BadReview as exc:
        raise PageError(f"{what}: {exc.message.removeprefix('request.')}") from None
    return data


async def read_form(request: Request, token: str) -> dict[str, str]:
    """An url-encoded form body, bounded in size and field count (413 / 400 past them), from this site.

    A form of another site is refused (403): the form must carry `token` (the
    pages put it in a hidden field), which a page of another origin cannot
    read. (`Origin` is not compared with `Host`: through `kubectl proxy` the
    two differ for the page's own forms.)
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_FORM:
        raise PageError(f"the form is {int(declared)} bytes, over the limit of {MAX_FORM} bytes", 413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FORM:
            raise PageError(f"the form is over the limit of {MAX_FORM} bytes", 413)
        chunks.append(chunk)
    body = b"".join(chunks)
    kind = request.headers.get("content-type", "")
    if body and "application/x-www-form-urlencoded" not in kind:
        raise PageError("post the page's form (application/x-www-form-urlencoded)", 415)
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError:
        raise PageError("the form is not UTF-8") from None
    except ValueError:
        raise PageError(f"the form has more than {MAX_FIELDS} fields") from None
    form = dict(pairs)
    if not hmac.compare_digest(form.pop("csrf", "").encode(), token.encode()):
        raise PageError("this form is out of date or from another site: reload the page and post it again", 403)
    return form


def routes(
    holder: PolicyHolder,
    ledger: Ledger,
    engine: Engine | None = None,
    *,
    poll_seconds: float = POLL_SECONDS,
    denials: Denials | None = None,
    parser: ParsePool | None = None,
    form_token: str | None = None,
    spent: views.SpentOf | None = None,
    outside: Outside | None = None,
) -> list[BaseRoute]:
    """The pages' routes over a policy holder and a ledger: mount them in any Starlette app.

    What-if decides through `engine` (the admission app's, by default a new one
    over `ledger`). `denials`: the admission app's last denials per group, shown
    on each group's page. `parser`: where pasted workloads are parsed and decided
    (the API app's, shared with `/api/explain`; a new one when None). `form_token`:
    what every form posted must carry (the forms hold it; a new one when None).
    `spent`: what each workload spent of its group's cash this period,
    where this process accrues cash (a column of the group page's workloads).
    `outside`: the namespaces no group binds that the admission app's reviews came from (the Namespaces
    page lists them, as `GET /api/namespaces` does); none listed when None.
    """
    engine = engine if engine is not None else Engine(holder, ledger)
    parser = parser if parser is not None else ParsePool()
    form_token = form_token or secrets.token_urlsafe(24)  # this server's: only its own pages carry it
    templates = Jinja2Templates(env=_environment())
    recent = denials if denials is not None else Denials()

    def now() -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        # Links are relative to the page (`base`): the same HTML on the API port and through `kubectl proxy`.
        context = {"poll_seconds": poll_seconds, "nav": name, "base": base(request), "csrf": form_token, **context}
        return templates.TemplateResponse(request, name, context, status_code=status, headers=HEADERS)

    def policy_or_error() -> CompiledPolicy:
        policy = holder.policy
        if policy is None:
            raise PageError("no policy loaded yet", 503)
        return policy

    def group_or_error(policy: CompiledPolicy, name: str) -> CompiledGroup:
        found = policy.groups.get(name)
        if found is None:
            near = policy.near_groups(name)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise PageError(f"no group {name!r} in the policy{hint}", 404)
        return found

    def guarded(handler: Handler) -> Handler:
        """Any `UserInputError` becomes an error page with its status: never a traceback, never a 500."""

        async def page(request: Request) -> Response:
            try:
                return await handler(request)
            except PageError as exc:
                return render(request, "error.html", {"message": exc.message}, exc.status)
            except UserInputError as exc:
                return render(request, "error.html", {"message": str(exc)}, 400)

        return page

    async def namespaces(request: Request) -> Response:
        policy = policy_or_error()
        name = request.query_params.get("ns", "").strip()
        cluster = request.query_params.get("cluster", "").strip()
        answer = None
        if name:
            if not is_label(name) or (cluster and not is_label(cluster)):
                raise PageError(f"{name[:63]!r} is not a namespace name: lowercase letters, digits and '-', "
                                "at most 63 characters")
            answer = chargeable(policy, name, cluster)
        seen = outside.listing(policy)["outside"] if outside is not None else []
        return render(request, "namespaces.html", {"policy": policy, "query": name[:63], "answer": answer,
                                                   "outside": seen})

    async def tree(request: Request) -> Response:
        policy = policy_or_error()
        query = request.query_params.get("q", "").strip()[:100]
        at = now()
        shown = _matching(policy, query)
        numbers = views.tree_numbers(policy, ledger, at, shown)
        rows = [(group, depth, numbers[group.name]) for group, depth in views.walk(policy) if group.name in numbers]
        return render(request, "tree.html", {
            "policy": policy, "rows": rows, "query": query,
            "count": len(policy.groups), "poll_url": base(request) + "/pages/tree.json",
        })

    async def group_page(request: Request) -> Response:
        policy = policy_or_error()
        group = group_or_error(policy, request.path_params["name"])
        n = views.numbers(policy, group, ledger, now())
        return render(request, "group.html", {
            "policy": policy, "group": group, "n": n,
            "rows": views.nested(n.limits, policy.settings.gpu_resources),
            "ancestors": _ancestors(policy, group), "source": views.source_line(group),
            "workloads": views.objects_of(ledger, group, spent),
            "denials": recent.of(group.name),
            "poll_url": f"{base(request)}/pages/groups/{quote(group.name, safe='')}.json",
        })

    async def tree_json(request: Request) -> Response:
        policy = policy_or_error()
        return _json(views.tree_state(policy, ledger, now()))

    async def group_json(request: Request) -> Response:
        policy = policy_or_error()
        group = group_or_error(policy, request.path_params["name"])
        state = views.group_state(policy, group, ledger, now())
        return _json({"policy": state.pop("policy"), "groups": {group.name: state}})

    async def json_errors(handler: Handler, request: Request) -> Response:
        try:
            return await handler(request)
        except PageError as exc:
            return _json({"error": exc.message}, exc.status)

    async def what_if(request: Request) -> Response:
        policy = policy_or_error()
        context: dict[str, Any] = {"workload": "", "old": "", "operation": "CREATE", "decision": None,
                                   "error": None, "described": None}
        if request.method == "GET":
            return render(request, "whatif.html", context)
        try:
            async with parser.place():  # the line explain waits in, taken before the form is read
                form = await read_form(request, form_token)
                context.update(workload=form.get("workload", ""), old=form.get("old", ""),
                               operation=form.get("operation", "CREATE"))
                obj = await load_object(parser, context["workload"], "the workload")
                operation = context["operation"]
                if operation not in ("CREATE", "UPDATE"):
                    raise PageError(f"operation {operation[:20]!r} is not CREATE or UPDATE")
                old = await load_object(parser, context["old"], "the stored object") if operation == "UPDATE" else None
                decision = await parser.decide(lambda: engine.explain(policy, obj, operation, old=old))
        except Busy:
            context["error"] = "what-if is busy with other workloads: try again in a few seconds"
            return render(request, "whatif.html", context, 503)
        except PageError as exc:
            context["error"] = exc.message
            return render(request, "whatif.html", context, exc.status)
        except UserInputError as exc:  # a malformed quantity, a bad replica count: the webhook denies these
            context["error"] = str(exc)
            return render(request, "whatif.html", context, 400)
        context["decision"] = decision
        context["described"] = describe(obj)
        return render(request, "whatif.html", context)

    async def propose_page(request: Request) -> Response:
        policy = policy_or_error()
        context: dict[str, Any] = {"policy": policy, "group": None, "values": None, "form": {},
                                   "review": None, "error": None}
        if request.method == "GET":
            name = request.query_params.get("group", "").strip()
            if name:
                context["group"] = group_or_error(policy, name)
                context["values"] = propose.form_values(policy, name)
            return render(request, "propose.html", context)
        form = await read_form(request, form_token)
        name = form.get("group", "").strip()
        context["form"] = form
        status = 200
        try:
            context["group"] = group_or_error(policy, name)
            context["values"] = propose.form_values(policy, name)
            context["review"] = propose.review(policy, ledger, propose.parse_form(form))
        except PageError as exc:
            context["error"], status = exc.message, exc.status
        except UserInputError as exc:
            context["error"], status = str(exc), 400
        return render(request, "propose.html", context, status)

    async def propose_diff(request: Request) -> Response:
        policy = policy_or_error()
        form = await read_form(request, form_token)
        proposal = propose.parse_form(form)
        group_or_error(policy, proposal.group)
        result = propose.review(policy, ledger, proposal)
        if not result.patch:
            raise PageError("nothing changed: edit a value or add a child first")
        filename = f"quotalang-{proposal.group}.diff"
        return Response(result.patch, media_type="text/x-diff; charset=utf-8", headers={
            **HEADERS, "Content-Disposition": f'attachment; filename="{filename}"'})

    def json_route(handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            return await json_errors(handler, request)
        return wrapped

    return [
        Route("/", guarded(tree), methods=["GET"], name="pages-tree"),
        Route("/groups/{name}", guarded(group_page), methods=["GET"], name="pages-group"),
        Route("/namespaces", guarded(namespaces), methods=["GET"], name="pages-namespaces"),
        Route("/what-if", guarded(what_if), methods=["GET", "POST"], name="pages-what-if"),
        Route("/propose", guarded(propose_page), methods=["GET", "POST"], name="pages-propose"),
        Route("/propose/diff", guarded(propose_diff), methods=["POST"], name="pages-propose-diff"),
        Route("/pages/tree.json", json_route(tree_json), methods=["GET"]),
        Route("/pages/groups/{name}.json", json_route(group_json), methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


def base(request: Request) -> str:
    """The pages' root relative to this page: `.` for `/` and `/what-if`, `..` for `/groups/nlp`.

    Links are relative so that the pages work wherever they are mounted (the
    API port's root, the aggregated API's prefix). Through the apiserver they
    must be: its proxy rewrites every absolute path in HTML to the backend's
    own `https://host:port`, which the browser cannot reach.
    """
    path = str(request.scope.get("path", "/"))
    root = str(request.scope.get("root_path", ""))
    inside = path[len(root):] if root and path.startswith(root) else path
    depth = max(inside.count("/") - 1, 0)
    return "/".join([".."] * depth) or "."


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json",
                    headers={"Cache-Control": "no-store"})


def _matching(policy: CompiledPolicy, query: str) -> set[str] | None:
    """Groups whose name contains `query`, and their ancestors (so the tree still reads as a tree)."""
    if not query:
        return None
    needle = query.lower()
    shown: set[str] = set()
    for name, group in policy.groups.items():
        if needle in name.lower():
            node: CompiledGroup | None = group
            while node is not None and node.name not in shown:
                shown.add(node.name)
                node = policy.groups.get(node.parent) if node.parent else None
    return shown


def _ancestors(policy: CompiledPolicy, group: CompiledGroup) -> list[CompiledGroup]:
    out: list[CompiledGroup] = []
    node = group
    while node.parent is not None and node.parent in policy.groups and len(out) < len(policy.groups):
        node = policy.groups[node.parent]
        out.append(node)
    return out[::-1]


__all__ = ["PageError", "load_object", "read_form", "routes"]

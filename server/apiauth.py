"""Who may read the API port: a bearer token the apiserver accepts and RBAC allows.

The convention of controller-runtime's secure metrics and kube-rbac-proxy:
every request carries `Authorization: Bearer <token>`; a TokenReview
(authentication.k8s.io/v1) says whose it is, a SubjectAccessReview
(authorization.k8s.io/v1) whether that user may do what the request does.
What a request does, for RBAC:

| request                                   | SubjectAccessReview                                        |
|-------------------------------------------|------------------------------------------------------------|
| GET /metrics                              | non-resource URL `/metrics`, verb `get`                    |
| GET/HEAD anything else (JSON API, pages)  | resource `groups` in API group `quotalang.dev`, verb `get` |
| POST (/api/explain, /what-if, /propose…)  | `groups/explain` in `quotalang.dev`, verb `create`          |

One resource for the whole tree, never per group: a grant reads every group
or none (usage of one group says much about its siblings, and a 404 names
near groups). The POST routes compute a decision or a diff and reserve
nothing, but they cost CPU, so they are a verb of their own that the viewer
ClusterRole grants and a narrower role may leave out.

Every request is checked before routing, so without the grant an unknown
path or group is a 403 like any other: nothing about the tree leaks. Answers
are cached for `ttl` seconds (bounded: `size` tokens and `size` decisions),
so a scrape every 15 s costs two apiserver calls only when the cache has
expired. Forged or oversized tokens are a 401 without an apiserver call when
their shape is wrong; an apiserver that cannot be reached is a 503 and is not
cached.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from cachetools import TTLCache
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from quotalang.server.logs import log_event
from quotalang.server.responses import status_body

if TYPE_CHECKING:
    from quotalang.controller.kube.api import KubeApi

LOG = logging.getLogger("quotalang.server.api")
API_GROUP = "quotalang.dev"
RESOURCE = "groups"
EXPLAIN = "explain"  # the subresource the POST routes are authorised as
DEFAULT_TTL = 15.0  # seconds: a scrape interval, so a scrape usually costs no apiserver call
DEFAULT_SIZE = 4096
MAX_TOKEN = 8192  # bytes: a service-account JWT is ~1 KiB, an OIDC one a few; more is not a token
# RFC 6750's b64token: what a bearer token may be made of. Anything else is refused unasked.
TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
REVIEW_TIMEOUT = 5.0


class Unavailable(Exception):
    """The apiserver could not be asked (unreachable, or an error answer): 503, not cached."""


@dataclass(frozen=True, slots=True)
class User:
    """A TokenReview's `status.user`, as a SubjectAccessReview wants it back."""

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class Action:
    """What a request does, in RBAC's terms: a non-resource path, or a verb on our resource (one group of it
    when `name` is set: `use` for charging it, server/grants.py)."""

    verb: str
    path: str | None = None  # non-resource URL (/metrics)
    subresource: str = ""
    name: str = ""  # resourceName: one quota group
    namespace: str = ""  # where it is done (a RoleBinding there grants it); "" cluster-wide

    def describe(self) -> str:
        if self.path is not None:
            return f"{self.verb} {self.path}"
        resource = f"{RESOURCE}/{self.subresource}" if self.subresource else RESOURCE
        named = f' "{self.name}"' if self.name else ""
        return f"{self.verb} {resource}.{API_GROUP}{named}"


METRICS = Action("get", path="/metrics")
READ = Action("get")
EXPLAIN_ACTION = Action("create", subresource=EXPLAIN)


def action_for(method: str, path: str) -> Action:
    """The RBAC action a request needs (the table in this module's docstring)."""
    if path == "/metrics":
        return METRICS
    if method in ("GET", "HEAD"):
        return READ
    return EXPLAIN_ACTION


class Reviews(Protocol):
    """The two questions put to the apiserver; a fake one stands in for it in unit tests."""

    def authenticate(self, token: str) -> User | None:
        """Whose token this is, or None when the apiserver rejects it. Raises `Unavailable`."""

    def authorize(self, user: User, action: Action, timeout: float = REVIEW_TIMEOUT) -> bool:
        """Whether `user` may do `action`, answered within `timeout` seconds. Raises `Unavailable`."""


class KubeReviews:
    """TokenReview and SubjectAccessReview through the controller's API client."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api

    def _post(self, path: str, body: Mapping[str, Any], timeout: float = REVIEW_TIMEOUT) -> dict[str, Any]:
        from quotalang.controller.kube.api import KubeError

        try:
            return self.api.request("POST", path, body=body, timeout=timeout)
        except KubeError as exc:
            raise Unavailable(str(exc)) from None

    def authenticate(self, token: str) -> User | None:
        answer = self._post("/apis/authentication.k8s.io/v1/tokenreviews", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token},
        })
        status = answer.get("status")
        if not isinstance(status, dict) or status.get("authenticated") is not True:
            return None
        user = status.get("user")
        if not isinstance(user, dict) or not isinstance(user.get("username"), str) or not user["username"]:
            return None
        groups = user.get("groups")
        extra = user.get("extra")
        return User(
            name=user["username"],
            uid=str(user.get("uid") or ""),
            groups=tuple(str(g) for g in groups) if isinstance(groups, list) else (),
            extra=tuple(sorted((str(k), tuple(str(v) for v in vs)) for k, vs in extra.items()
                               if isinstance(vs, list))) if isinstance(extra, dict) else (),
        )

    def authorize(self, user: User, action: Action, timeout: float = REVIEW_TIMEOUT) -> bool:
        spec: dict[str, Any] = {"user": user.name, "groups": list(user.groups)}
        if user.uid:
            spec["uid"] = user.uid
        if user.extra:
            spec["extra"] = {key: list(values) for key, values in user.extra}
        if action.path is not None:
            spec["nonResourceAttributes"] = {"path": action.path, "verb": action.verb}
        else:
            spec["resourceAttributes"] = {"group": API_GROUP, "resource": RESOURCE,
                                          "subresource": action.subresource, "verb": action.verb}
            if action.name:
                spec["resourceAttributes"]["name"] = action.name
            if action.namespace:
                spec["resourceAttributes"]["namespace"] = action.namespace
        answer = self._post("/apis/authorization.k8s.io/v1/subjectaccessreviews", {
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec,
        }, timeout)
        status = answer.get("status")
        return isinstance(status, dict) and status.get("allowed") is True


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to one request: 0 to let it through, else the status and why."""

    status: int
    message: str = ""
    user: str | None = None


ALLOW = 0


class Gate:
    """`Reviews` with a short, bounded memory of both answers; safe to share between threads.

    Tokens are kept only as SHA-256 digests. A rejected token is remembered
    too, so that a client repeating one does not cost an apiserver call each
    time.
    """

    def __init__(self, reviews: Reviews, *, ttl: float = DEFAULT_TTL, size: int = DEFAULT_SIZE) -> None:
        self.reviews = reviews
        self._users: TTLCache[bytes, User | None] = TTLCache(maxsize=size, ttl=ttl)
        self._grants: TTLCache[tuple[User, Action], bool] = TTLCache(maxsize=size, ttl=ttl)
        self._lock = threading.Lock()

    def cached(self, token: str, action: Action) -> Verdict | None:
        """The verdict if both answers are remembered (no apiserver call), else None."""
        digest = hashlib.sha256(token.encode()).digest()
        with self._lock:
            if digest not in self._users:
                return None
            user = self._users[digest]
            if user is None:
                return _rejected()
            allowed = self._grants.get((user, action))
        return None if allowed is None else _verdict(user, action, allowed)

    def check(self, token: str, action: Action) -> Verdict:
        """The verdict, asking the apiserver what is not remembered (blocking: run it off the loop)."""
        digest = hashlib.sha256(token.encode()).digest()
        with self._lock:
            known = digest in self._users
            user = self._users.get(digest)
        if not known:
            user = self.reviews.authenticate(token)
            with self._lock:
                self._users[digest] = user
        if user is None:
            return _rejected()
        with self._lock:
            allowed = self._grants.get((user, action))
        if allowed is None:
            allowed = self.reviews.authorize(user, action)
            with self._lock:
                self._grants[(user, action)] = allowed
        return _verdict(user, action, allowed)


def _rejected() -> Verdict:
    return Verdict(401, "the bearer token was not accepted by the apiserver (TokenReview)")


def _verdict(user: User, action: Action, allowed: bool) -> Verdict:
    if allowed:
        return Verdict(ALLOW, user=user.name)
    return Verdict(403, f"{user.name} may not {action.describe()} (SubjectAccessReview); "
                        "bind it to the quotalang-viewer ClusterRole", user=user.name)


def bearer_token(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, Verdict | None]:
    """The token from `Authorization: Bearer …`, or the 401/400 that a missing or malformed one gets."""
    values = [value for name, value in headers if name.lower() == b"authorization"]
    if not values:
        return None, Verdict(401, "this port needs Authorization: Bearer <token> (a token the apiserver accepts)")
    if len(values) > 1:
        return None, Verdict(400, "more than one Authorization header")
    scheme, _, token = values[0].partition(b" ")
    if scheme.lower() != b"bearer":
        return None, Verdict(401, "the Authorization header is not a bearer token")
    token = token.strip(b" ")
    if not token:
        return None, Verdict(401, "the bearer token is empty")
    if len(token) > MAX_TOKEN:
        return None, Verdict(401, f"the bearer token is {len(token)} bytes, more than any token ({MAX_TOKEN})")
    try:
        text = token.decode("ascii")
    except UnicodeDecodeError:
        return None, Verdict(401, "the bearer token is not ASCII")
    if not TOKEN.fullmatch(text):
        return None, Verdict(401, "the bearer token has characters no token has")
    return text, None


class BearerAuth:
    """ASGI middleware: every HTTP request passes the `Gate` before the app sees it.

    A remembered verdict is answered on the event loop; a new token or action
    asks the apiserver from a worker thread, so admissions on the other port
    keep flowing.
    """

    def __init__(self, app: ASGIApp, gate: Gate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token, refused = bearer_token(scope["headers"])
        if token is not None:
            action = action_for(scope["method"], scope["path"])
            verdict = self.gate.cached(token, action)
            if verdict is None:
                try:
                    verdict = await run_in_threadpool(self.gate.check, token, action)
                except Unavailable as exc:
                    log_event(LOG, logging.WARNING, "cannot review a token", error=str(exc)[:300])
                    verdict = Verdict(503, "cannot ask the apiserver about the token; try again")
            if verdict.status != ALLOW:
                refused = verdict
        if refused is None:
            await self.app(scope, receive, send)
            return
        if refused.status == 403:
            log_event(LOG, logging.INFO, "forbidden", user=refused.user, path=scope["path"][:200])
        await _refuse(send, refused)


async def _refuse(send: Send, verdict: Verdict) -> None:
    headers = [(b"content-type", b"application/json")]
    if verdict.status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="quotalang"'))
    body = status_body(verdict.status, verdict.message)
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": verdict.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


__all__ = ["BearerAuth", "Gate", "KubeReviews", "Reviews", "Unavailable", "User", "action_for", "bearer_token"]

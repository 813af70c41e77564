"""AdmissionReview `admission.k8s.io/v1`: the types, and turning bytes into a request.

Every way a body can be wrong becomes a `BadReview` carrying the HTTP status
and a message that names the bad value, so the transport answers 400 or 413
and never a 500. Every request field the apiserver defines is type-checked
here, before the engine or the ledger sees the request: a wrong type anywhere
is the sender's mistake (an apiserver never sends one), and answering it here
means no later stage can fail on it halfway through, after writing something.
The object and oldObject are only checked where the engine reads them
(`metadata`); their content is the evaluator's business, which denies what
it cannot read.

Nesting is bounded (`MAX_DEPTH`) before anything else looks at the body: the
ledger stores object bodies as JSON, and orjson refuses to write more than
254 levels, so a deeper object used to fail *after* its index entry was
written and poison that name (the next CREATE of it was charged 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NotRequired, Required, TypedDict

import orjson

from quotalang.errors import ReviewError

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"
DEFAULT_MAX_BODY = 3 * 1024 * 1024  # the apiserver's own request size limit
OPERATIONS = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})
# Levels of nesting a review may have, counting the review itself (its object starts at
# level 3). Real workloads nest a dozen levels, custom resources a few dozen; the ledger
# cannot store more than 254 (orjson's limit) and copies bodies recursively.
MAX_DEPTH = 128

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]


class GroupVersionKind(TypedDict):
    group: str
    version: str
    kind: str


class GroupVersionResource(TypedDict):
    group: str
    version: str
    resource: str


class UserInfo(TypedDict, total=False):
    username: str
    uid: str
    groups: list[str]
    extra: dict[str, list[str]]


class AdmissionRequest(TypedDict, total=False):
    uid: Required[str]
    kind: Required[GroupVersionKind]
    resource: GroupVersionResource
    subResource: str
    requestKind: GroupVersionKind
    requestResource: GroupVersionResource
    requestSubResource: str
    name: str
    namespace: str
    operation: Required[Operation]
    userInfo: UserInfo
    object: dict[str, Any] | None
    oldObject: dict[str, Any] | None
    dryRun: bool
    options: dict[str, Any] | None


class Status(TypedDict, total=False):
    code: int
    reason: str
    message: str


class AdmissionResponse(TypedDict):
    uid: str
    allowed: bool
    status: NotRequired[Status]
    warnings: NotRequired[list[str]]
    auditAnnotations: NotRequired[dict[str, str]]


class AdmissionReview(TypedDict, total=False):
    apiVersion: Required[str]
    kind: Required[str]
    request: AdmissionRequest
    response: AdmissionResponse


# The `reason` of a BadReview is a metric label: this is the whole set of values.
BadReason = Literal[
    "too-large", "empty", "not-json", "not-yaml", "not-review", "api-version", "no-request", "no-uid",
    "operation", "no-kind", "no-object", "too-deep", "invalid",
]


class BadReview(ReviewError):
    """A body that is not a usable AdmissionReview; `status` is 400 or 413."""

    def __init__(self, message: str, status: int = 400, reason: BadReason = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason: BadReason = reason  # a short label for metrics


def too_large(size: int, limit: int) -> BadReview:
    return BadReview(
        f"request body is {size} bytes, over the limit of {limit} bytes", status=413, reason="too-large"
    )


def _describe(value: Any) -> str:
    """A short description of a bad value for a message.

    Containers are described by their type, never by `repr`: the repr of a
    value nested a thousand levels deep raises RecursionError (that was a 500),
    and a large one would make the message as large as the body.
    """
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether `value` nests more than `limit` levels (a scalar is level 0). Iterative: no recursion."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        depth += 1
        if depth > limit:
            return True
        stack.extend((child, depth) for child in children if isinstance(child, dict | list))
    return False


def check_depth(body: bytes, parsed: Any, limit: int = MAX_DEPTH) -> None:
    """Refuse a body nested deeper than `limit`.

    A body with no more `{` and `[` bytes than the limit cannot nest deeper,
    which two C-speed counts show for nearly every real review; only the rest
    are walked.
    """
    if body.count(b"{") + body.count(b"[") <= limit:
        return
    if _depth_exceeds(parsed, limit):
        raise BadReview(
            f"the review nests more than {limit} levels deep; no workload needs that many", reason="too-deep"
        )


def parse_review(body: bytes, limit: int = DEFAULT_MAX_BODY) -> AdmissionRequest:
    """The request inside an AdmissionReview v1 body, or `BadReview` saying what is wrong."""
    if len(body) > limit:
        raise too_large(len(body), limit)
    if not body.strip():
        raise BadReview("empty body: expected an AdmissionReview (admission.k8s.io/v1)", reason="empty")
    try:
        review = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadReview(f"body is not JSON: {exc}", reason="not-json") from None
    if not isinstance(review, dict):
        raise BadReview(
            f"body is a JSON {type(review).__name__}, not an AdmissionReview object", reason="not-review"
        )
    check_depth(body, review)
    kind = review.get("kind")
    if kind != KIND:
        raise BadReview(f"expected kind {KIND}, got {_describe(kind)}", reason="not-review")
    api_version = review.get("apiVersion")
    if api_version != API_VERSION:
        raise BadReview(
            f"apiVersion {_describe(api_version)} is not served: only {API_VERSION}; "
            "set admissionReviewVersions: [v1] in the webhook configuration",
            reason="api-version",
        )
    request = review.get("request")
    if not isinstance(request, dict):
        raise BadReview("the AdmissionReview has no request object", reason="no-request")
    return validate_request(request)


def _strings(request: Mapping[str, Any], field: str, keys: tuple[str, ...], reason: BadReason) -> None:
    """`request[field]`, when present, is an object whose `keys` (when present) are strings."""
    value = request.get(field)
    if value is None:
        return
    if not isinstance(value, dict):
        raise BadReview(f"request.{field} is {_describe(value)}, not an object", reason=reason)
    for key in keys:
        item = value.get(key)
        if item is not None and not isinstance(item, str):
            raise BadReview(f"request.{field}.{key} is {_describe(item)}, not a string", reason=reason)


def _user_info(value: Any) -> None:
    """`userInfo` (read by the grant check, server/grants.py): its types are checked like the rest."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise BadReview(f"request.userInfo is {_describe(value)}, not an object")
    for key in ("username", "uid"):
        item = value.get(key)
        if item is not None and not isinstance(item, str):
            raise BadReview(f"request.userInfo.{key} is {_describe(item)}, not a string")
    groups = value.get("groups")
    if groups is not None and not (isinstance(groups, list) and all(isinstance(g, str) for g in groups)):
        raise BadReview("request.userInfo.groups is not a list of strings")
    extra = value.get("extra")
    if extra is not None and not (
        isinstance(extra, dict)
        and all(isinstance(v, list) and all(isinstance(s, str) for s in v) for v in extra.values())
    ):
        raise BadReview("request.userInfo.extra is not an object of string lists")


def _object(request: Mapping[str, Any], field: str, typed: bool) -> None:
    """An object or oldObject, when present, is an object whose metadata the engine can read.

    When `typed` (CREATE and UPDATE), it is also of the type `request.kind`
    names, as the apiserver always sends it: kind rules are found by the
    object's own apiVersion and kind, so an object that claims another type
    (or none) than the request would be charged by another rule, or by none.
    """
    obj = request.get(field)
    if obj is None:
        return
    if not isinstance(obj, dict):
        raise BadReview(f"request.{field} is {_describe(obj)}, not an object", reason="no-object")
    for key in ("apiVersion", "kind"):
        item = obj.get(key)
        if item is not None and not isinstance(item, str):
            raise BadReview(f"request.{field}.{key} is {_describe(item)}, not a string")
    if typed:
        gvk = request["kind"]
        group, _, version = str(obj.get("apiVersion") or "").rpartition("/")
        if obj.get("kind") != gvk["kind"] or group != gvk.get("group", "") or (
            "version" in gvk and version != gvk["version"]
        ):
            wanted = "/".join(p for p in (gvk.get("group"), gvk.get("version")) if p) + f" {gvk['kind']}"
            got = f"apiVersion {_describe(obj.get('apiVersion'))} and kind {_describe(obj.get('kind'))}"
            raise BadReview(f"request.{field} has {got}, but request.kind says {wanted}")
    meta = obj.get("metadata")
    if meta is None:
        return
    if not isinstance(meta, dict):
        raise BadReview(f"request.{field}.metadata is {_describe(meta)}, not an object")
    # What the engine and the ledger read (names, the admitted version, the labels that pick
    # the group and models); the rest of metadata is nobody's business here.
    for key in ("name", "namespace", "resourceVersion"):
        item = meta.get(key)
        if item is not None and type(item) is not str:
            raise BadReview(f"request.{field}.metadata.{key} is {_describe(item)}, not a string")
    labels = meta.get("labels")
    if labels is not None and not (type(labels) is dict and all(type(v) is str for v in labels.values())):
        raise BadReview(f"request.{field}.metadata.labels is not an object of strings")


def check_object(obj: Any, field: str) -> None:
    """What a review's object must be (`request.<field>`), for one posted on its own (explain, what-if):
    the engine reads its apiVersion, kind and metadata as strings, and a list there was a TypeError."""
    _object({field: obj}, field, typed=False)


def validate_request(request: dict[str, Any]) -> AdmissionRequest:
    """Check the type of every request field; return the request typed.

    `dryRun` is honoured only as the boolean `true`, and any other value than a
    boolean or null is a 400: the apiserver always sends a boolean, and
    guessing what `"false"` or `1` means would either skip a reservation that
    should be made or make one that should not. Refusing answers the sender
    and changes nothing.
    """
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReview(f"request.uid is missing or not a string (got {_describe(uid)})", reason="no-uid")
    operation = request.get("operation")
    if not isinstance(operation, str) or operation not in OPERATIONS:  # a dict is not hashable
        raise BadReview(
            f"request.operation {_describe(operation)} is not one of CREATE, UPDATE, DELETE, CONNECT",
            reason="operation",
        )
    gvk = request.get("kind")
    if not isinstance(gvk, dict) or not isinstance(gvk.get("kind"), str) or not gvk["kind"]:
        raise BadReview("request.kind is missing or has no kind string", reason="no-kind")
    _strings(request, "kind", ("group", "version"), "no-kind")
    _strings(request, "requestKind", ("group", "version", "kind"), "invalid")
    for field in ("resource", "requestResource"):
        _strings(request, field, ("group", "version", "resource"), "invalid")
    for field in ("name", "namespace", "subResource", "requestSubResource"):
        value = request.get(field)
        if value is not None and not isinstance(value, str):
            raise BadReview(f"request.{field} is {_describe(value)}, not a string", reason="invalid")
    dry_run = request.get("dryRun")
    if dry_run is not None and not isinstance(dry_run, bool):
        raise BadReview(f"request.dryRun is {_describe(dry_run)}, not a boolean", reason="invalid")
    _user_info(request.get("userInfo"))
    options = request.get("options")
    if options is not None and not isinstance(options, dict):
        raise BadReview(f"request.options is {_describe(options)}, not an object", reason="invalid")
    if operation in ("CREATE", "UPDATE") and not isinstance(request.get("object"), dict):
        raise BadReview(f"request.object is missing: a {operation} carries the object", reason="no-object")
    typed = operation in ("CREATE", "UPDATE")
    _object(request, "object", typed)
    _object(request, "oldObject", typed)
    return request  # type: ignore[return-value]

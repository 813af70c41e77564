"""AdmissionReview `admission.k8s.io/v1`: the types, and turning bytes into a request.

Every way a body can be wrong becomes a `BadReview` carrying the HTTP status
and a message that names the bad value, so the transport answers 400 or 413
and never a 500. Only what the engine relies on is validated; the rest of the
review passes through untouched.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, Required, TypedDict

import orjson

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"
DEFAULT_MAX_BODY = 3 * 1024 * 1024  # the apiserver's own request size limit
OPERATIONS = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})

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


class BadReview(Exception):
    """A body that is not a usable AdmissionReview; `status` is 400 or 413."""

    def __init__(self, message: str, status: int = 400, reason: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason  # a short label for metrics


def too_large(size: int, limit: int) -> BadReview:
    return BadReview(
        f"request body is {size} bytes, over the limit of {limit} bytes", status=413, reason="too-large"
    )


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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


def validate_request(request: dict[str, Any]) -> AdmissionRequest:
    """Check the fields the engine reads; return the request typed."""
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReview(f"request.uid is missing or not a string (got {_describe(uid)})", reason="no-uid")
    operation = request.get("operation")
    if operation not in OPERATIONS:
        raise BadReview(
            f"request.operation {_describe(operation)} is not one of CREATE, UPDATE, DELETE, CONNECT",
            reason="operation",
        )
    gvk = request.get("kind")
    if not isinstance(gvk, dict) or not isinstance(gvk.get("kind"), str):
        raise BadReview("request.kind is missing or has no kind string", reason="no-kind")
    if operation in ("CREATE", "UPDATE") and not isinstance(request.get("object"), dict):
        raise BadReview(f"request.object is missing: a {operation} carries the object", reason="no-object")
    old = request.get("oldObject")
    if old is not None and not isinstance(old, dict):
        raise BadReview(f"request.oldObject is a {type(old).__name__}, not an object", reason="no-object")
    for field in ("resource", "requestResource"):
        value = request.get(field)
        if value is not None and not isinstance(value, dict):
            raise BadReview(f"request.{field} is not an object", reason="invalid")
    for field in ("name", "namespace", "subResource"):
        value = request.get(field)
        if value is not None and not isinstance(value, str):
            raise BadReview(f"request.{field} is {_describe(value)}, not a string", reason="invalid")
    return request  # type: ignore[return-value]

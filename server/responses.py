"""Build AdmissionResponses: allowed, denied, with warnings and audit annotations.

The common answer (allowed, nothing to say) is a two-key dict; everything
else is added only when there is something to add.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from quotalang.decision import Decision, clip
from quotalang.server.admission import API_VERSION, KIND, AdmissionResponse

WARNING_LIMIT = 119  # "under 120 characters": kubectl shows them whole


def allow(
    uid: str, warnings: Iterable[str] = (), audit: Mapping[str, str] | None = None
) -> AdmissionResponse:
    response: AdmissionResponse = {"uid": uid, "allowed": True}
    _extras(response, warnings, audit)
    return response


def deny(
    uid: str,
    message: str,
    *,
    code: int = 403,
    reason: str = "Forbidden",
    warnings: Iterable[str] = (),
) -> AdmissionResponse:
    """A denial; the apiserver shows `message` after `admission webhook "..." denied the request: `."""
    response: AdmissionResponse = {
        "uid": uid,
        "allowed": False,
        "status": {"code": code, "reason": reason, "message": message},
    }
    _extras(response, warnings, None)
    return response


def _extras(response: AdmissionResponse, warnings: Iterable[str], audit: Mapping[str, str] | None) -> None:
    shown = [clip(w, WARNING_LIMIT) for w in warnings]
    if shown:
        response["warnings"] = shown
    if audit:
        response["auditAnnotations"] = audit_annotations(audit)


def audit_annotations(annotations: Mapping[str, str]) -> dict[str, str]:
    """Keys without a prefix: the apiserver prefixes them with the webhook's name.

    `quotalang.dev/would-deny` would become `<webhook>/quotalang.dev/would-deny`,
    which is not a qualified name, and the apiserver would drop it; so only the
    part after the last `/` is sent.
    """
    return {key.rpartition("/")[2]: value for key, value in annotations.items()}


def for_decision(uid: str, decision: Decision) -> AdmissionResponse:
    if decision.allowed:
        if not decision.warnings and decision.mode != "audit":
            return {"uid": uid, "allowed": True}
        return allow(uid, decision.warnings, decision.audit_annotations)
    return deny(uid, decision.message or f"denied: {decision.reason}", warnings=decision.warnings)


def review(response: AdmissionResponse) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": KIND, "response": response}


def encode(response: AdmissionResponse) -> bytes:
    """The AdmissionReview JSON the apiserver expects back."""
    return orjson.dumps({"apiVersion": API_VERSION, "kind": KIND, "response": response})


def status_body(code: int, message: str) -> bytes:
    """A `metav1.Status` for answers that are not AdmissionReviews (4xx)."""
    reason = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 413: "RequestEntityTooLarge",
              503: "ServiceUnavailable"}.get(code, "InternalError")
    return orjson.dumps(
        {"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason,
         "message": message}
    )

"""Exempt namespaces: a list fixed at install time, never an opt-out anyone may take.

Why this module exists: the quota webhook must skip kube-system and its own
namespace (with `failurePolicy: Fail`, a webhook that is down would otherwise
block the very pods that bring it back). The webhook configuration can only
skip namespaces by *label*, and a label is something anyone with `patch
namespaces` may set — an opt-out from quota. Two ways out:

* Kubernetes >= 1.21 sets `kubernetes.io/metadata.name` on every namespace
  and refuses changes to it, so the `namespaceSelector` names the exempt
  namespaces through it (server/manifests/) and nothing here is needed.
* Kubernetes 1.20 has no such label. The quota webhook then skips namespaces
  labelled `quotalang.dev/exempt`, the manifests put that label on the listed
  namespaces, and a second webhook sends quotalang every namespace CREATE or
  UPDATE where the old or the new object carries the label (an
  `objectSelector`, so unlabelled namespaces never wait on quotalang).
  `review` refuses the label on any namespace that is not in the list. So
  exempt namespaces are exactly the labelled ones, and only listed namespaces
  may be labelled.

The list is the one `serve --exempt-namespace` was started with (kube-system
and the pod's own namespace are always in it): the same list the manifests
wrote into the selector and labels, since they pass it to `serve`.
Removing the label is always allowed: it only puts a namespace back under
quota.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from quotalang.errors import InputError
from quotalang.server.admission import DEFAULT_MAX_BODY
from quotalang.server.logs import log_event

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from quotalang.server.admission import AdmissionRequest

LOG = logging.getLogger("quotalang.exemptions")
LABEL = "quotalang.dev/exempt"
PATH = "/validate-namespaces"
ALWAYS = ("kube-system",)  # plus the webhook's own namespace
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def namespace_name(text: str, what: str = "exempt namespace") -> str:
    """A namespace name as Kubernetes accepts it (a DNS-1123 label), or InputError naming `what` was wrong."""
    if not isinstance(text, str) or len(text) > 63 or not _DNS_LABEL.fullmatch(text):
        raise InputError(
            f"{what} {text!r} is not a namespace name (lowercase letters, digits and '-', "
            "at most 63 characters, starting and ending with a letter or digit)"
        )
    return text


def exempt_list(own: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """kube-system, the webhook's own namespace and `extra`, checked, each once, sorted.

    kube-system and the own namespace cannot be left out: with failurePolicy
    Fail, a webhook that is down would block the pods that restart it (its own)
    and the cluster's own (kube-system).
    """
    names = {namespace_name(n) for n in (*ALWAYS, own, *extra)}
    return tuple(sorted(names))


def _labels(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    meta = (obj or {}).get("metadata")
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    return labels if isinstance(labels, Mapping) else {}


def review(request: AdmissionRequest, exempt: Iterable[str]) -> tuple[bool, str | None]:
    """(allowed, message): may this namespace CREATE/UPDATE carry the exemption label?"""
    gvk = request["kind"]
    if gvk.get("group") or gvk.get("kind") != "Namespace":
        # Only namespaces are sent here; anything else is a misconfigured webhook: say so, and
        # do not block the write (this route decides about the label, nothing else).
        return True, f"{PATH} only judges Namespaces, not {gvk.get('kind')!r}: check the webhook's rules"
    if request["operation"] not in ("CREATE", "UPDATE"):
        return True, None
    obj = request.get("object")
    name = request.get("name") or str(((obj or {}).get("metadata") or {}).get("name") or "")
    if LABEL not in _labels(obj):
        return True, None  # removing or never having the label only keeps quota on
    if name in set(exempt):
        return True, None
    listed = ", ".join(sorted(set(exempt)))
    return False, (
        f"namespace {name} may not carry the label {LABEL}: only the namespaces exempted at install time "
        f"({listed}) are exempt from quota; ask the platform team to reinstall with "
        f"--exempt-namespace {name} if it must be"
    )


def routes(exempt: Iterable[str], max_body: int = DEFAULT_MAX_BODY) -> list[BaseRoute]:
    """`POST /validate-namespaces`: the namespace webhook's route, for the app's route list.

    Starlette and the app are imported here, not above: `quotalang manifests` (and
    the parser of every verb) imports this module for its names alone.
    """
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from quotalang.server.admission import BadReview, parse_review
    from quotalang.server.http import read_body
    from quotalang.server.responses import allow, deny, encode, status_body

    names = tuple(sorted(set(exempt)))

    async def validate_namespaces(request: Request) -> Response:
        try:
            parsed = parse_review(await read_body(request, max_body), max_body)
        except BadReview as exc:
            return Response(status_body(exc.status, exc.message), status_code=exc.status,
                            media_type="application/json")
        allowed, message = review(parsed, names)
        if allowed:
            if message:
                log_event(LOG, logging.WARNING, message)
            return Response(encode(allow(parsed["uid"])), media_type="application/json")
        user = (parsed.get("userInfo") or {}).get("username")
        log_event(LOG, logging.WARNING, "exemption label refused", namespace=parsed.get("name"), user=user)
        assert message is not None
        return Response(encode(deny(parsed["uid"], message)), media_type="application/json")

    return [Route(PATH, validate_namespaces, methods=["POST"])]


__all__ = ["ALWAYS", "LABEL", "PATH", "exempt_list", "namespace_name", "review", "routes"]

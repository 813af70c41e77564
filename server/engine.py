"""The admission engine: one AdmissionRequest → one AdmissionResponse, through the ledger.

What is evaluated:

* CREATE and UPDATE of any kind (kinds without a rule are allowed by the
  evaluator, uncharged);
* the `/scale` subresource (kind `Scale`): its parent is found in the
  ledger's object index by identity; a parent that cannot be found is denied,
  so that scaling cannot evade quota;
* HorizontalPodAutoscalers: their target is found the same way and
  `maxReplicas` is checked, never charged.

What passes untouched: DELETE, CONNECT and every other subresource
(`/status`, ...). In standalone mode (no controller watching the cluster) a
DELETE review, when the webhook configuration sends one, releases the
object's usage; nothing else would.

With several clusters (`serve --cluster`), a review arrives on its
cluster's route and is decided with that cluster in every identity the
engine builds (the object's, a Scale's parent, an HPA's target): the same
namespace/name in two clusters are two workloads. The route is the only
thing that says where a review came from.

A dry run (`dryRun: true`, the boolean; `admission` refuses any other type)
is evaluated and answered but reserves nothing.

An object that cannot be read (a replica count that is not a number, a
malformed or negative quantity, ...) is denied with the reason, whatever the
failure mode: the failure mode is for our own failures (a bug, a ledger that
cannot be reached), never for a bad object, or `--failure-mode allow` would
admit exactly the objects that cannot be charged. Every other error is
answered per the failure mode (`deny`, the default, or `allow`) with the error
in the message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from quotalang.controller import Ledger, ObjectKey
from quotalang.controller.kube.naming import api_group, kind_of_resource
from quotalang.controller.ledger.base import WouldBlock
from quotalang.decision import Decision, clip
from quotalang.errors import UserInputError
from quotalang.policy import CompiledPolicy
from quotalang.server import responses
from quotalang.server.admission import AdmissionRequest, AdmissionResponse
from quotalang.server.reload import PolicyHolder

FailureMode = Literal["allow", "deny"]
Verdict = Literal["allow", "deny", "warn", "audit", "skip", "error"]


@dataclass(slots=True)
class Outcome:
    """The response plus what logs and metrics need to know about it."""

    response: AdmissionResponse
    uid: str
    kind: str
    operation: str
    namespace: str
    name: str
    group: str  # "" when the request charges no group
    verdict: Verdict
    reason: str
    error: str | None = None
    cluster: str = ""  # the review's cluster (its route); "" with one cluster


def hpa_target(hpa: Mapping[str, Any], namespace: str, cluster: str = "") -> ObjectKey | None:
    """The identity of the workload an HPA scales (`spec.scaleTargetRef`, in the HPA's namespace and cluster)."""
    spec = hpa.get("spec")
    ref = spec.get("scaleTargetRef") if isinstance(spec, Mapping) else None
    if not isinstance(ref, Mapping):
        return None
    return ObjectKey(
        api_group(str(ref.get("apiVersion") or "")),
        str(ref.get("kind") or ""),
        namespace,
        str(ref.get("name") or ""),
        cluster,
    )


def _metadata(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    return meta if isinstance(meta, Mapping) else {}


class Engine:
    """Decides requests against the current policy; holds no per-request state."""

    def __init__(self, policies: PolicyHolder, ledger: Ledger, failure_mode: FailureMode = "deny") -> None:
        self.policies = policies
        self.ledger = ledger
        self.failure_mode: FailureMode = failure_mode

    def review(self, request: AdmissionRequest, cluster: str = "") -> Outcome:
        """Decide one review; `cluster` is the route's (the cluster the object lives in)."""
        uid = request["uid"]
        gvk = request["kind"]
        obj = request.get("object")
        meta = _metadata(obj) or _metadata(request.get("oldObject"))
        outcome = Outcome(
            response={"uid": uid, "allowed": True},
            uid=uid,
            kind=gvk["kind"],
            operation=request["operation"],
            namespace=request.get("namespace") or str(meta.get("namespace") or ""),
            name=request.get("name") or str(meta.get("name") or ""),
            group="",
            verdict="skip",
            reason="not-intercepted",
            cluster=cluster,
        )
        policy = self.policies.policy
        if policy is None:
            return self._failed(outcome, "no policy is loaded yet")
        try:
            decision = self._decide(policy, request, outcome)
        except UserInputError as exc:  # the object is invalid: denied in every failure mode
            where = f"{outcome.namespace}/{outcome.name}".lstrip("/")
            message = f"cannot read {outcome.kind} {where}: {exc}"
            outcome.response = responses.deny(uid, message)
            outcome.verdict, outcome.reason, outcome.error = "deny", "invalid-object", message
            return outcome
        except WouldBlock:  # tried on the event loop: the caller decides it again in a worker thread
            raise
        except Exception as exc:  # a bug or a broken ledger: answered per the failure mode
            return self._failed(outcome, f"{type(exc).__name__}: {exc}")
        if decision is None:
            return outcome
        outcome.group = decision.group or ""
        outcome.reason = decision.reason
        outcome.response = responses.for_decision(uid, decision)
        if not decision.allowed:
            outcome.verdict = "deny"
        elif decision.violations:
            outcome.verdict = "audit" if decision.mode == "audit" else "warn"
        else:
            outcome.verdict = "allow"
        return outcome

    def _decide(self, policy: CompiledPolicy, request: AdmissionRequest, outcome: Outcome) -> Decision | None:
        operation = request["operation"]
        gvk = request["kind"]
        sub = request.get("subResource") or ""
        dry_run = request.get("dryRun") is True  # only the boolean; admission refuses other types
        if operation not in ("CREATE", "UPDATE"):
            if operation == "DELETE" and not sub and not dry_run and self.ledger.standalone:
                gone = ObjectKey(gvk.get("group", ""), gvk["kind"], outcome.namespace, outcome.name, outcome.cluster)
                self.ledger.forget(gone)
            return None
        obj = request.get("object") or {}
        old = request.get("oldObject")
        if sub == "scale" or gvk["kind"] == "Scale":
            return self._scale(policy, request, obj, old, dry_run, outcome)
        if sub:
            return None
        if gvk["kind"] == "HorizontalPodAutoscaler" and gvk.get("group") == "autoscaling":
            return self.ledger.admit(policy, obj, operation, old=old, parent=self._hpa_target(obj, outcome),
                                     dry_run=dry_run)
        identity = ObjectKey(gvk.get("group", ""), gvk["kind"], outcome.namespace, outcome.name, outcome.cluster)
        return self.ledger.admit(policy, obj, operation, old=old, dry_run=dry_run, identity=identity)

    def _scale(
        self,
        policy: CompiledPolicy,
        request: AdmissionRequest,
        scale: Mapping[str, Any],
        old: Mapping[str, Any] | None,
        dry_run: bool,
        outcome: Outcome,
    ) -> Decision | None:
        resource = request.get("resource") or {"group": "", "version": "", "resource": ""}
        group, plural = resource.get("group", ""), resource.get("resource", "")
        kind = kind_of_resource(policy, group, plural)
        if kind is None:  # the policy does not charge that kind: nothing to check
            outcome.reason = "no-rule"
            return None
        identity = ObjectKey(group, kind, outcome.namespace, outcome.name, outcome.cluster)
        parent = self.ledger.lookup(identity)
        return self.ledger.admit(
            policy, scale, "UPDATE", old=old, parent=parent, dry_run=dry_run, identity=identity
        )

    def _hpa_target(self, hpa: Mapping[str, Any], outcome: Outcome) -> Mapping[str, Any] | None:
        identity = hpa_target(hpa, outcome.namespace, outcome.cluster)
        return self.ledger.lookup(identity) if identity is not None else None

    def _failed(self, outcome: Outcome, error: str) -> Outcome:
        outcome.verdict, outcome.reason, outcome.error = "error", "error", error
        if self.failure_mode == "allow":
            outcome.response = responses.allow(
                outcome.uid, [clip(f"quotalang could not decide; allowed (failure mode allow): {error}")]
            )
        else:
            outcome.response = responses.deny(
                outcome.uid,
                f"quotalang could not decide this request and denies it (failure mode deny): {error}",
                code=500,
                reason="InternalError",
            )
        return outcome

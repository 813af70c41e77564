"""Which owner pays for an object: the kind rules' `creates` clauses applied to ownerReferences.

An ownerReference is written by whoever creates the object, so it proves
nothing by itself (issue 25 #1: a 100m Pod named as the controller of a
64-GPU Deployment made the Deployment free). An object is its owner's to
charge only when its controller reference (`controller: true`; Kubernetes
allows one) names a kind whose rule says it creates this object's kind.
`claimed_owner` applies that rule to the object alone; `verified_owner` also
walks the claim up through what a caller's `find` knows (the ledger), so the
evaluator, the engine and the reconciler decide ownership one way.

Kinds are matched by API group and kind, not version: a ReplicaSet is the
same resource as `apps/v1` or any later version. The owner's own rule is found
by its exact apiVersion, as every other lookup of a rule is: a reference in a
version the policy has no rule for is no claim, and the object is charged as
itself (never an under-charge).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from quotalang.kinds import group_kind
from quotalang.policy import CompiledPolicy

# Deployment → ReplicaSet → Pod is two hops; LWS → StatefulSet → leader Pod → worker StatefulSet three.
MAX_DEPTH = 4


@dataclass(frozen=True, slots=True)
class OwnerRef:
    """A controller reference that a kind rule's `creates` backs.

    `through` is empty when the owner's own rule creates the object. Otherwise
    the owner is a go-between (an LWS leader Pod controls its group's worker
    StatefulSet), and the claim holds only if the owner is itself, hop by hop,
    created by an object of one of these (API group, kind)s.
    """

    api_version: str
    kind: str
    name: str
    uid: str
    through: frozenset[tuple[str, str]] = frozenset()

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


def _controller_ref(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    meta = obj.get("metadata")  # `type(...) is dict` first: the hot path sees plain dicts
    refs = meta.get("ownerReferences") if type(meta) is dict or isinstance(meta, Mapping) else None
    if type(refs) is not list and not isinstance(refs, list):
        return None
    for ref in refs:
        if (type(ref) is dict or isinstance(ref, Mapping)) and ref.get("controller") is True:
            return ref
    return None


def claimed_owner(policy: CompiledPolicy, obj: Mapping[str, Any]) -> OwnerRef | None:
    """The controller owner whose kind rule creates `obj`'s kind; None: `obj` is charged as itself.

    Only the first controller reference counts (the API server refuses a
    second). Its apiVersion, kind, name and uid must all be non-empty strings:
    a reference the ledger could not check is no claim.
    """
    ref = _controller_ref(obj)
    if ref is None:
        return None
    fields = tuple(ref.get(k) for k in ("apiVersion", "kind", "name", "uid"))
    if not all(isinstance(v, str) and v for v in fields):
        return None
    api_version, kind, name, uid = cast(tuple[str, str, str, str], fields)
    mine_api, mine_kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(mine_api, str) or not isinstance(mine_kind, str):
        return None
    created = group_kind(mine_api, mine_kind)
    rule = policy.kinds.get((api_version, kind))
    if rule is not None and created in rule.creates:
        return OwnerRef(api_version, kind, name, uid)
    owner = group_kind(api_version, kind)
    through = frozenset(
        group_kind(other.api_version, other.kind)
        for other in policy.kinds.values()
        if (created, owner) in other.creates_via
    )
    return OwnerRef(api_version, kind, name, uid, through) if through else None


# The owner's stored body (admitted or observed, in the object's namespace), or None when unknown.
Find = Callable[[OwnerRef], Mapping[str, Any] | None]


def _uid(obj: Mapping[str, Any]) -> object:
    meta = obj.get("metadata")
    return meta.get("uid") if isinstance(meta, Mapping) else None


def verified_owner(policy: CompiledPolicy, obj: Mapping[str, Any], find: Find) -> OwnerRef | None:
    """`claimed_owner`, if `find` knows the owner with the same uid (and, through a go-between,
    the chain above it up to a kind in `through`); else None: charge `obj` as itself."""
    claim = claimed_owner(policy, obj)
    return _verified(policy, claim, find) if claim is not None else None


def _verified(policy: CompiledPolicy, claim: OwnerRef, find: Find) -> OwnerRef | None:
    body = find(claim)
    if body is None or _uid(body) != claim.uid:
        return None
    if not claim.through:
        return claim
    current = body
    for _ in range(MAX_DEPTH):
        above = claimed_owner(policy, current)
        if above is None or above.through:
            return None
        found = find(above)
        if found is None or _uid(found) != above.uid:
            return None
        if group_kind(above.api_version, above.kind) in claim.through:
            return claim
        current = found
    return None


__all__ = ["MAX_DEPTH", "Find", "OwnerRef", "claimed_owner", "verified_owner"]


@dataclass(slots=True)
class Owners:
    """One object's ownership, claimed and verified once: a `Find` that also carries its answer.

    The engine looks a claimed owner up before the store decides (never under
    its lock) and so already has the claim and its verification; the decision
    and the engine's `authorize users` check read them here instead of
    walking the references again. They are the answer for `obj` under
    `policy` only (`of`); for anything else it is a plain `Find`.
    """

    policy: CompiledPolicy
    obj: Mapping[str, Any]
    find: Find
    claim: OwnerRef | None = None
    verified: OwnerRef | None = None

    @classmethod
    def of_claim(cls, policy: CompiledPolicy, obj: Mapping[str, Any], find: Find) -> Owners:
        """`obj`'s claim (`claimed_owner`) and its verification through `find` (`verified_owner`)."""
        claim = claimed_owner(policy, obj)
        return cls(policy, obj, find, claim, _verified(policy, claim, find) if claim is not None else None)

    def __call__(self, ref: OwnerRef) -> Mapping[str, Any] | None:
        return self.find(ref)

    def answers(self, policy: CompiledPolicy, obj: Mapping[str, Any]) -> bool:
        """Whether `claim` and `verified` are `obj`'s under `policy` (the same objects, not equal ones)."""
        return policy is self.policy and obj is self.obj

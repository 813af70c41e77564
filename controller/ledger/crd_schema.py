"""The QuotaLedger CustomResourceDefinition: the schema the apiserver checks every ledger object against.

`crd` (the object's format and names) writes and reads the objects; this is
what `quotalang manifests` installs and the kubernetes store's runtime
creates when it is missing. Invariant: every field `crd.to_object` writes is
named here (nanos as decimal strings matching `INTEGER`), and `status`
keeps unknown fields, so a rolling upgrade's newer fields survive an older
replica's schema.
"""

from __future__ import annotations

from typing import Any

from quotalang.controller.ledger.crd import CRD_NAME, GROUP, KIND, PLURAL, VERSION

INTEGER = "^-?[0-9]+$"  # a nano-unit quantity, exact, as a decimal string


def _nanos_map(description: str) -> dict[str, Any]:
    return {"type": "object", "description": description,
            "additionalProperties": {"type": "string", "pattern": INTEGER}}


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition (apiextensions.k8s.io/v1; served by Kubernetes ≥ 1.16)."""
    reservation = {
        "type": "object",
        "required": ["usage"],
        "x-kubernetes-preserve-unknown-fields": True,  # entries of older versions carry more fields
        "properties": {
            "usage": _nanos_map("Σ of the replica's unconfirmed admissions (positive deltas), per key, in nanos."),
            "count": {"type": "integer", "description": "How many admissions the sum holds."},
            "answered": {"type": "integer", "description": "The ledger's asks when this entry was last written."},
            "expires": {"type": "string", "description": "The latest of their deadlines (RFC 3339)."},
        },
    }
    status = {
        "type": "object",
        # Fields a newer quotalang adds survive an older replica's schema during a rolling upgrade.
        "x-kubernetes-preserve-unknown-fields": True,
        # One managedFields entry per writer, whatever the keys: status is always written whole.
        "x-kubernetes-map-type": "atomic",
        "properties": {
            "observed": _nanos_map("Usage of the workloads the controller has seen, per key, in nanos."),
            "objects": {"type": "integer", "description": "Observed objects charging this group."},
            "observedByCluster": {"type": "object", "additionalProperties": _nanos_map("One cluster's share."),
                                  "description": "observed per cluster (\"\": the one cluster); they sum to it."},
            "objectsByCluster": {"type": "object", "additionalProperties": {"type": "integer"},
                                 "description": "objects per cluster; they sum to it."},
            "reservations": {"type": "object", "additionalProperties": reservation,
                             "description": "Admitted, not yet observed: webhook replica → the sum it holds."},
            "folded": {"type": "array", "items": {"type": "string"},
                       "description": "identity@resourceVersion observed by the leader's last fold write."},
            "cash": _nanos_map("Cash spent this period per key, in nano-unit-seconds."),
            "periodStart": {"type": "string", "description": "Start of the current cash period (RFC 3339)."},
            "lastAccrual": {"type": "string", "description": "Cash is accrued up to this time (RFC 3339)."},
            "leaderEpoch": {"type": "integer", "description": "Fencing token of the last leader that wrote."},
            "asks": {"type": "integer", "description": "Times a replica asked the others to write their entries."},
            "lastWrite": {"type": "string", "description": "Token of the last controller write (lost answers)."},
            "drawn": {"type": "object", "additionalProperties": _nanos_map("One child's draw."),
                      "description": "What each lending or borrowing child draws on this pool (the leader's)."},
            "drawnAt": {"type": "object", "additionalProperties": {"type": "string"},
                        "description": "The child's resourceVersion each drawn entry was computed from."},
            "drawnTerms": {"type": "string",
                           "description": "Digest of the children's lend/borrow terms drawn was counted under."},
        },
    }
    schema = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "required": ["group"],
                     "properties": {"group": {"type": "string", "description": "The quota group's name."}}},
            "status": status,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "scope": "Cluster",
            "names": {"plural": PLURAL, "singular": "quotaledger", "kind": KIND, "listKind": f"{KIND}List",
                      "shortNames": ["qledger"]},
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": schema},
                "additionalPrinterColumns": [
                    {"name": "Group", "type": "string", "jsonPath": ".spec.group"},
                    {"name": "Objects", "type": "integer", "jsonPath": ".status.objects"},
                    {"name": "Last accrual", "type": "string", "jsonPath": ".status.lastAccrual"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
            }],
        },
    }


__all__ = ["INTEGER", "crd"]

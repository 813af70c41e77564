"""The reconciled usage ledger behind admission, and the controller that keeps it.

* `ledger`: the `Ledger` interface admission reserves through, and
  `MemoryLedger` (one process; standalone with no cluster).
* `kubestore`, `ledger_crd`, `group_commit`, `election`, `kubestore_runtime`:
  the shared ledger on the apiserver (`--store kubernetes`) and its Lease.
* `watch` → `reconcile` → `runner`: list + watch of every policy kind and
  pods, observed usage and reservations, the periodic resync; `cash` and
  `cash_file`: accrual and its state file; `metrics`: what it exports.
"""

from quotalang.controller.ledger.memory import GroupUsage, Ledger, MemoryLedger, ObjectKey

__all__ = ["GroupUsage", "Ledger", "MemoryLedger", "ObjectKey"]

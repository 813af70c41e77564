"""The reconciled usage ledger behind admission, and the controller that keeps it.

Three layers, each importing only the ones below it:

* `kube/`: Kubernetes plumbing with no quota in it — the API client, list +
  watch, the Lease election, naming and collection paths, timestamps, the
  request deadline.
* `ledger/`: the store contract (`ledger.base`) and the stores that keep it:
  `MemoryLedger` (one process) and `KubernetesLedger` (shared by every
  replica through `QuotaLedger` objects), with its CRD, group commit and
  runtime.
* the control loop, here: `reconcile` (what the watches see → observed usage
  and pod runs), `runner` (one watcher per policy kind and pods, the
  periodic resync, cash accrual), `cash` (accrual arithmetic), `cash_file`
  (cash state on disk for the memory store), `metrics` (what it exports).

This package is the facade the server uses: the names below are the contract
admission depends on.
"""

from quotalang.controller.ledger.base import GroupUsage, Ledger, ObjectKey
from quotalang.controller.ledger.memory import MemoryLedger

__all__ = ["GroupUsage", "Ledger", "MemoryLedger", "ObjectKey"]

"""The usage ledger: the contract every store keeps, and the stores.

* `base`: the `Ledger` and `ControllerLedger` protocols, their value types
  (`ObjectKey`, `Observation`, `GroupUsage`, `CashState`), the errors a store
  raises, and the arithmetic every store shares (usage sums, resourceVersion
  order, a Scale read as its parent, cash accrual). Start a new store here.
* `memory`: `MemoryLedger`, one process (standalone, or fed by the controller).
* `kubernetes`: `KubernetesLedger`, one `QuotaLedger` object per group on the
  apiserver, shared by every replica by compare-and-swap, one module per
  mechanism (`kubernetes.core` says how they stack) and one `Tuning`; `crd`
  is that object's schema and format, `group_commit` batches one replica's
  concurrent admissions into one write, `kubernetes.runtime` keeps the
  store's cache, upkeep and Lease running.

The stores build on `quotalang.controller.kube` (plumbing) and never on the
control loop above them.
"""

"""The usage ledger: the contract every store keeps, and the stores.

* `base`: the `Ledger` and `ControllerLedger` protocols, the `Ask`, their
  value types (`ObjectKey`, `Observation`, `GroupUsage`, `CashState`) and
  the errors a store raises. Start a new store here. What every store
  shares beyond it, a module a job: `arithmetic` (usage sums, a resync's
  totals), `versions` (resourceVersion order), `bodies` (the object index,
  a Scale read as its parent), `accrual` (cash applied to a record).
* `memory`: `MemoryLedger`, one process (standalone, or fed by the
  controller through `reconciling`); `inprocess` holds what it shares with
  its journal (`sqlite`, its tables in `sqlite_schema`), `borrowers` its
  record of who borrows.
* `kubernetes`: `KubernetesLedger`, one `QuotaLedger` object per group on the
  apiserver, shared by every replica by compare-and-swap, one module per
  mechanism (`kubernetes.core` says how they stack) and one `Tuning`;
  `crd` is that object's names and format (`crd_schema` its CRD),
  `group_commit` batches one replica's concurrent admissions into one
  write, `kubernetes.runtime` keeps the store's cache, upkeep and Lease
  running.

The stores build on `quotalang.controller.kube` (plumbing) and never on the
control loop above them.
"""

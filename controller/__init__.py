"""The reconciled usage ledger behind admission.

Today: the `Ledger` interface admission reserves through, and `MemoryLedger`,
the embedded store `quotalang serve` runs on with no cluster at all. The
controller (list/watch, resync, cash accrual) and the kubernetes store build
on the same interface.
"""

from controller.ledger import GroupUsage, Ledger, MemoryLedger, ObjectKey

__all__ = ["GroupUsage", "Ledger", "MemoryLedger", "ObjectKey"]

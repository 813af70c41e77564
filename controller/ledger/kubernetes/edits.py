"""The changes the leader applies to a group's ledger object: each a function of the object's state.

Invariant: a change says whether it changed anything (a write that changes
nothing is not made), and one made of several applies every one of them, so
a fold that also confirms admissions never skips a part; they are pure: they
read only the state they are given, so a retried write applies them again
to the version it re-read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from quotalang.controller.ledger.crd import LedgerState


def adder(diff: Mapping[str, int], new_object: bool, cluster: str) -> Callable[[LedgerState], bool]:
    """A fold's change: what the watch saw an object add, counting a new object once."""

    def add(state: LedgerState) -> bool:
        state.add_observed(diff, +1, cluster, count=new_object)
        return bool(diff) or new_object

    return add


def releaser(usage: Mapping[str, int], cluster: str) -> Callable[[LedgerState], bool]:
    """A fold's change: an object's usage given back (it went, or moved to another group)."""

    def release(state: LedgerState) -> bool:
        state.add_observed(usage, -1, cluster)
        return True

    return release


def all_of(changes: list[Callable[[LedgerState], bool]]) -> Callable[[LedgerState], bool]:
    """One change made of several, every one applied (no short-circuit)."""

    def apply(state: LedgerState) -> bool:
        changed = False
        for change in changes:
            changed = change(state) or changed
        return changed

    return apply


def replacer(cluster: str, observed: Mapping[str, int], count: int) -> Callable[[LedgerState], bool]:
    """A resync's change: the cluster's share of the group becomes the merged index's (see `resync`)."""

    def replace(state: LedgerState) -> bool:
        return state.set_cluster(cluster, observed, count)

    return replace


def confirming(state: LedgerState) -> bool:
    """A fold write that confirms admissions is written even when the totals do not change."""
    return True


__all__ = ["adder", "all_of", "confirming", "releaser", "replacer"]

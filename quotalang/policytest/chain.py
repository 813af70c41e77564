"""The usage a test file's cases carry from one to the next.

It books an admitted decision the way the webhook's ledger does: the
decision's `charges` (a CREATE its full usage, an UPDATE its delta, a label
move a release in the old group and the full usage in the new). Denied and
dry-run requests and HPAs book nothing (`Decision.reserves`); cash is what the
file's snapshot says (no time passes between cases). It also keeps the last
admitted version of every object (`Decision.stored`), so an UPDATE or a scale
without `old:` sees what is stored, as the apiserver's `oldObject` would be.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quotalang.decision import Decision
from quotalang.evaluator import Snapshot

Identity = tuple[str, str, str]  # kind, namespace, name
_EMPTY: Mapping[str, int] = {}


def identity(obj: Mapping[str, Any]) -> Identity:
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    return (str(obj.get("kind", "")), str(meta.get("namespace") or ""), str(meta.get("name") or ""))


class Chain:
    """A `UsageSource` that books admitted decisions."""

    def __init__(self, snapshot: Snapshot, groups: Mapping[str, Any]) -> None:
        self._used: dict[str, dict[str, int]] = {g: dict(snapshot.used(g)) for g in groups}
        self._cash: dict[str, Mapping[str, int]] = {g: snapshot.cash_used(g) for g in groups}
        self._stored: dict[Identity, dict[str, Any]] = {}

    def used(self, group: str) -> Mapping[str, int]:
        return self._used.get(group, _EMPTY)

    def cash_used(self, group: str) -> Mapping[str, int]:
        return self._cash.get(group, _EMPTY)

    def stored(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        return self._stored.get(identity(obj))

    def book(self, decision: Decision) -> None:
        """Carry a decision into the chain: as a store would, only when it `reserves`.

        Denied requests, dry runs and HPAs book nothing; the body kept is the
        decision's `stored` (for a Scale, the parent with the new replicas).
        """
        stored = decision.stored
        if not decision.reserves or stored is None:
            return
        for group, delta in decision.charges.items():
            keys = self._used.setdefault(group, {})
            for key, value in delta.items():
                # Never below zero: an UPDATE's old object is assumed to be part of the
                # starting usage; if it was not, the release has nothing to take back.
                keys[key] = max(keys.get(key, 0) + value, 0)
        self._stored[identity(stored)] = dict(stored)

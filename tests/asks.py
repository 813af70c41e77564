"""Deciding through a store the way the engine does, for tests that drive a store without a review."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from quotalang.controller.ledger.base import Ledger, ObjectKey
from quotalang.decision import Decision
from quotalang.limitranges import LimitRanges
from quotalang.policy import CompiledPolicy
from quotalang.server.engine import ask_for


def admit(
    ledger: Ledger,
    policy: CompiledPolicy,
    obj: Mapping[str, Any],
    operation: str = "CREATE",
    old: Mapping[str, Any] | None = None,
    parent: Mapping[str, Any] | None = None,
    dry_run: bool = False,
    identity: ObjectKey | None = None,
    *,
    limit_ranges: LimitRanges | None = None,
    deadline: float = math.inf,
) -> Decision:
    """`ledger.reserve` of the ask the engine would build for this request."""
    return ledger.reserve(ask_for(policy, obj, operation, old=old, parent=parent, dry_run=dry_run,
                                  identity=identity, limit_ranges=limit_ranges, deadline=deadline))

"""The leader's `drawn`: what each lending or borrowing child draws, written on its parent's pool object.

Invariant: a pool's `drawn` entries and its `drawnTerms` (the digest of its
children's terms, `drawing.pool_digests`) are written together: an entry is
only ever computed under the terms the object's digest names, so a replica
whose policy gives the same digest reads them as computed under its own
terms, and any other replica refuses what reads them (`Registering._behind`).
After a policy change (or an upgrade from before digests, or a new leader
after one that had not caught up) the leader counts every child of each pool
whose digest differs again in one write (`republish_draws`); until then
its per-child publications leave that pool alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from quotalang.controller.ledger.base import LedgerUnavailable
from quotalang.controller.ledger.crd import LedgerState
from quotalang.controller.ledger.kubernetes.admission import Admitting
from quotalang.controller.ledger.kubernetes.core import LOG
from quotalang.controller.ledger.kubernetes.drawing import drawn
from quotalang.policy import CompiledPolicy


def _lower(value: Mapping[str, int], current: Mapping[str, int] | None) -> bool:
    """Whether `value` is below `current` for some key and above it for none."""
    current = current or {}
    keys = set(value) | set(current)
    return value != current and all(value.get(k, 0) <= current.get(k, 0) for k in keys)


def _later(version: str, than: str) -> bool:
    """Whether resourceVersion `version` is after `than` (etcd's are integers; others: never later)."""
    try:
        return int(version) > int(than)
    except ValueError:
        return False


def _depth(policy: CompiledPolicy, group: str) -> int:
    depth, parent = 0, policy.groups[group].parent
    while parent is not None:
        depth, parent = depth + 1, policy.groups[parent].parent
    return depth


class Publishing(Admitting):
    """The leader's `drawn`: what each lending or borrowing child draws, written on its parent's pool object."""

    def mutate(
        self, group: str, change: Callable[[LedgerState], bool], *, folded: list[str] | None = None,
        token: str | None = None,
    ) -> LedgerState | None:
        raise NotImplementedError  # `Folding.mutate`: the leader's fenced write

    def republish_draws(self) -> int:
        """The leader's upkeep (`StoreRuntime.maintain`, every round): each pool whose object counts its
        children's draws under other terms than the policy now is counted again, deepest first (a pool's
        own draw on its parent is then published from its new count). From the cache, no call, when every
        pool is caught up. Returns how many pools it wrote."""
        policy = self._policy_now()
        if policy is None:
            return 0
        digests = self._digests(policy)
        stale = {group for group, state in list(self._cache.items()) if group in policy.groups
                 and group not in digests and (state.drawn or state.drawn_terms is not None)}
        children: dict[str, list[str]] = {}
        for name in policy.groups:
            parent = policy.groups[name].parent
            if parent is not None and policy.lending.moves(name):
                children.setdefault(parent, []).append(name)
        written = 0
        for pool in sorted(digests.keys() | stale, key=lambda g: -_depth(policy, g)):
            state = self._cache.get(pool)
            if state is not None and state.drawn_terms == digests.get(pool) and (pool in digests or not state.drawn):
                continue
            written += self._publish_pool(policy, pool, children.get(pool, []), digests.get(pool))
        return written

    def _publish_pool(self, policy: CompiledPolicy, pool: str, children: list[str], digest: str | None) -> bool:
        """`pool`'s `drawn` computed again for every lending or borrowing child from a fresh read of it (what
        the leader's cache has not seen yet would be missing) under `policy`, written with `digest` in one
        write; entries of children that draw nothing under it go. Not written if an entry there was computed
        from a later version than the one read (the next round)."""
        until = self._monotonic() + self.tuning.controller_timeout
        now = self._clock()
        values: dict[str, tuple[dict[str, int], str]] = {}
        try:
            for child in children:
                state = self.read(child, until)  # fresh: a lagging cache would count too little
                if state.resource_version is not None:
                    values[child] = (drawn(self._terms_in(policy, child), state.used(now)), state.resource_version)

            def change(update: LedgerState) -> bool:
                if any(_later(update.drawn_at.get(child, "0"), at) for child, (_, at) in values.items()):
                    return False
                update.drawn = {child: dict(value) for child, (value, _) in values.items() if value}
                update.drawn_at = {child: at for child, (_, at) in values.items()}
                update.drawn_terms = digest
                return True

            return self.mutate(pool, change) is not None
        except LedgerUnavailable:
            LOG.warning("could not count the draws on group %s again under the new policy", pool)
            return False

    def publish_draws(self) -> int:
        """The leader's upkeep (`StoreRuntime.maintain`): lower each pool's `drawn[g]` that counts more than
        g's cached version draws (computed while the replicas' entries still held what the same fold
        observed); never raise it here, where a registration still live would count twice (what grows is
        published by the write that grew it), unless publishing it failed after that write (retried whole).
        Returns how many groups it published."""
        published = 0
        for group in list(self._cache):
            state = self._cache.get(group)  # now: a publication before may have written this one
            if state is None:
                continue
            retry = group in self._unpublished
            self._unpublished.discard(group)
            published += self._publish_draw(state, lower_only=not retry)
        return published

    def _publish_draw(self, state: LedgerState, lower_only: bool = False) -> bool:
        """After the leader wrote a lending or borrowing group: its parent's `drawn[group]` becomes the
        uncapped draw of what that version counts (`drawing.drawn`), written only forward and only when it
        changed (so the pool's own draw travels up the same way, one level per write), and only on a pool
        whose digest is this policy's (else `republish_draws` counts it whole). Until it lands the
        replicas' registrations cover the admissions (they expire only after their deadline + TTL, by which
        the leader has folded what was created); they count on top of it until then: over, never under."""
        terms = self._terms(state.group)
        policy = self._policy_now()
        version = state.resource_version
        if terms is None or policy is None or version is None:
            return False
        parent = policy.groups[state.group].parent
        if parent is None:
            return False
        value = drawn(terms, state.used(self._clock()))
        child = state.group
        if lower_only and ((pool := self._cache.get(parent)) is None or not _lower(value, pool.drawn.get(child))):
            return False  # from the cache, no call: the common case is that nothing changed

        def change(update: LedgerState) -> bool:
            at = update.drawn_at.get(child)
            if update.drawn.get(child, {}) == value or (at is not None and _later(at, version)):
                return False
            if lower_only and not _lower(value, update.drawn.get(child)):
                return False
            if self._behind(policy, update) is not None:
                return False  # counted under other terms: `republish_draws` writes the pool whole
            if value:
                update.drawn[child] = dict(value)
            else:
                update.drawn.pop(child, None)
            update.drawn_at[child] = version
            return True

        try:
            return self.mutate(parent, change) is not None
        except LedgerUnavailable:  # the upkeep (or the next write of the group) publishes again
            LOG.warning("could not write the draw of group %s on %s", child, parent)
            self._unpublished.add(child)
            return False


__all__ = ["Publishing"]

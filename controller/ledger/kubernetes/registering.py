"""Registering a draw: what a request takes of its ancestors' pools, written to them before it is counted.

The apiserver has no multi-object transactions, so a request that takes a
group beyond its slack (`drawing`) first registers the growth of the group's
uncapped draw with its parent, by a compare-and-swap on the parent's object
that checks the parent's balance on that very version; if that grows the
parent's own draw, the growth is registered with the grandparent the same
way, nearest first. Only then is the request counted in its group's object.

Invariant: each replica's registrations at a pool are written as their
*sum* (`reservations[<replica>~draw]`, expiring after the last of them), so
a retry after a lost answer writes the same number; a registration is never
dropped before it expires unless its request was not admitted; what it
registers is never less than what the admitted usage draws (over, never
under: a failed request's registration is lowered at once or expires).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field

from quotalang.controller.ledger.arithmetic import add_usage
from quotalang.controller.ledger.base import EMPTY, Ask, LedgerUnavailable
from quotalang.controller.ledger.crd import Held, LedgerState
from quotalang.controller.ledger.kubernetes.core import DRAW_SUFFIX
from quotalang.controller.ledger.kubernetes.drawing import Terms, drawn, growth, pool_digests, shortfalls, terms_of
from quotalang.controller.ledger.kubernetes.io import Io
from quotalang.decision import Decision, qty
from quotalang.policy import CompiledPolicy

INHERITED_DRAW = "inherited"  # an earlier incarnation's registrations at a pool, held until they expire
_registrations = itertools.count(1)


class Refused(Exception):
    """A pool had no room for a draw: which one, and the text that says so."""

    def __init__(self, pool: str, text: str) -> None:
        super().__init__(text)
        self.pool = pool
        self.text = text


@dataclass(slots=True)
class Draws:
    """What one batch must register before its write: per identity slot the draw its admission grows, the
    slots decided in warn or audit mode (registered whatever the pools say) and the slots refused at a pool."""

    need: dict[str, dict[str, int]] = field(default_factory=dict)
    force: set[str] = field(default_factory=set)
    refused: dict[str, str] = field(default_factory=dict)
    over: dict[str, list[str]] = field(default_factory=dict)  # forced slots: where a pool had no room


def _short_at(policy: CompiledPolicy, pool: str, lacking: Mapping[str, int]) -> str:
    """`1 of requests.cpu short at root/pool, …`: the first key a pool lacks room for, and why."""
    key, short = next(iter(lacking.items()))
    return f"{qty(key, short)} of {key} short at {policy.groups[pool].path}, whose room is registered to other " \
           "groups' borrowing"


CATCHING_UP = "once it has, this passes: retry)"


def behind_text(policy: CompiledPolicy, pool: str) -> str:
    """Why a decision that reads a pool's count of its children's draws waits for the leader (fail closed)."""
    return (f"the ledger of group {policy.groups[pool].path} counts its children's draws under other lend/borrow "
            f"terms than this replica's policy (the leader has not counted them again under the new policy yet; "
            f"{CATCHING_UP}")


def behind_note(path: str) -> str:
    """`behind_text` as a warning's part, short: warn and audit mode admit and count all the same."""
    return f"{path} counts draws under other terms until the leader catches up"


def behind_warned(decision: Decision) -> Decision:
    """A warn or audit mode admission of a pool whose object counts its children's draws under other terms."""
    return dataclasses.replace(decision, warnings=[*decision.warnings, f"group {behind_note(decision.path or '')}"])


def _denied(decision: Decision, text: str) -> Decision:
    return dataclasses.replace(decision, allowed=False, reason="over-quota", charges={}, touches=(), borrowed=(),
                               reclaim=None, reclaims=(), warnings=[], error=text)


def behind_decision(decision: Decision, why: str) -> Decision:
    """`decision` (of a pool, counting its children's draws) denied: its object counts them under other terms."""
    return _denied(decision, f"group {decision.path} cannot be decided yet: {why}")


def with_overdraws(decision: Decision, over: list[str]) -> Decision:
    """A warn or audit mode admission whose draw a pool had no room for: admitted and counted, as a request
    over quota is in those modes, saying where."""
    if not over:
        return decision
    return dataclasses.replace(decision, warnings=[
        *decision.warnings, *(f"group {decision.path} borrows beyond what is free: {why}" for why in over)])


def refused_decision(decision: Decision, why: str) -> Decision:
    """`decision` denied because a pool it draws on has no room, or counts under other terms (enforce mode
    only: warn and audit register)."""
    text = f"group {decision.path} would go beyond its guarantee: {why}"
    if not why.endswith(CATCHING_UP):
        text += " (reclaiming borrowed room is not supported by the kubernetes ledger store)"
    return _denied(decision, text)


class Registering(Io):
    """Registering a draw: what a request takes of its ancestors' pools, written to them before it is counted."""

    def _policy_now(self) -> CompiledPolicy | None:
        return self.policy() if self.policy is not None else None

    def _terms(self, group: str) -> Terms | None:
        """The group's terms when its use may change its parent's balance (it lends or borrows); else None."""
        policy = self._policy_now()
        if policy is None or not policy.lending or group not in policy.groups or not policy.lending.moves(group):
            return None
        return self._terms_in(policy, group)

    def _terms_in(self, policy: CompiledPolicy, group: str) -> Terms:
        cached_policy, table = self._terms_cache
        if cached_policy is not policy:
            table = {}
            self._terms_cache = (policy, table)
        terms = table.get(group)
        if terms is None:
            terms = table[group] = terms_of(policy.groups, policy.lending, group)
        return terms

    def _digests(self, policy: CompiledPolicy) -> dict[str, str]:
        """Each pool's digest of its children's terms under `policy` (`drawing.pool_digests`), once per policy."""
        cached_policy, digests = self._digests_cache
        if cached_policy is not policy:
            digests = pool_digests(policy.groups, policy.lending, lambda name: self._terms_in(policy, name))
            self._digests_cache = (policy, digests)
        return digests

    def _behind(self, policy: CompiledPolicy, state: LedgerState) -> str | None:
        """Why `state` may not be read for its children's draws under `policy` (the leader counted them under
        other terms, or, from before digests, under unknown ones), else None: a group with no lending or
        borrowing child is never behind."""
        expected = self._digests(policy).get(state.group)
        if expected is None or state.drawn_terms == expected:
            return None
        return behind_text(policy, state.group)

    def _new_state(self, group: str, until: float) -> LedgerState:
        """A pool's object as created counts no draws: right under this policy's terms (and stamped with their
        digest) only if none of its lending or borrowing children's objects draws anything under them now;
        otherwise unstamped, refused until the leader counts it (`republish_draws`)."""
        policy = self._policy_now()
        digest = self._digests(policy).get(group) if policy is not None else None
        if digest is None or policy is None:
            return LedgerState(group)
        now = self._clock()
        for child in policy.groups:
            if policy.groups[child].parent == group and policy.lending.moves(child):
                state = self.read(child, until)  # fresh, once in the pool's life
                if drawn(self._terms_in(policy, child), state.used(now)):
                    return LedgerState(group)
        return LedgerState(group, drawn_terms=digest)

    def _behind_now(self, state: LedgerState) -> str | None:
        """`_behind` under the policy now (none: nothing is registered, so nothing is behind)."""
        policy = self._policy_now()
        return self._behind(policy, state) if policy is not None and policy.lending else None

    def _draw_token(self) -> str:
        return f"{self.replica}/{next(_registrations)}"

    def _registered(self, group: str, token: str) -> Mapping[str, int]:
        """What `token` holds registered at `group`'s parent (what a retried request already registered)."""
        policy = self._policy_now()
        parent = policy.groups[group].parent if policy is not None and group in policy.groups else None
        with self._index_lock:
            held = self._drawing.get(parent or "", {}).get(token)
        return held[0] if held is not None else EMPTY

    def _register(
        self, group: str, token: str, amount: Mapping[str, int], until: float, over: list[str] | None
    ) -> None:
        """Register `amount` drawn by `group` under `token` with its parent, and what that grows of the parent's
        own draw with the grandparent, nearest first. `Refused` (everything this call registered lowered
        again) if a pool lacks room, unless `over` is a list (warn and audit mode: counted all the same, and
        what the pool lacked said there)."""
        policy = self._policy_now()
        assert policy is not None  # only a group with terms draws
        child, passed = group, dict(amount)
        done: list[tuple[str, dict[str, int]]] = []
        try:
            while passed and (pool := policy.groups[child].parent) is not None:
                grown = self._register_at(policy, pool, token, passed, until, over)
                done.append((pool, passed))
                child, passed = pool, grown
        except Refused:
            for pool, usage in done:
                self._lower(pool, token, usage, until)
            raise

    def _register_at(
        self, policy: CompiledPolicy, pool: str, token: str, amount: Mapping[str, int], until: float,
        over: list[str] | None,
    ) -> dict[str, int]:
        """One compare-and-swap on `pool`: this replica's sum there raised by `amount` if the pool's balance,
        read from that version, stays at or above its floor. Returns what it grows of the pool's own draw.

        Under the pool's writer turn: this replica's sum there is read, raised and written by one writer at
        a time, so two of its batches never write sums that each lack the other's registration."""
        with self._writer(pool):
            return self._register_in_turn(policy, pool, token, amount, until, over)

    def _register_in_turn(
        self, policy: CompiledPolicy, pool: str, token: str, amount: Mapping[str, int], until: float,
        over: list[str] | None,
    ) -> dict[str, int]:
        terms = self._terms_in(policy, pool)
        moves = policy.lending.moves(pool)
        name = self.replica + DRAW_SUFFIX
        state = self.read(pool, until)
        while True:
            now = self._clock()
            update = state.copy()
            with self._index_lock:
                book = self._book(pool, update, now)
                before = book.get(token, (EMPTY, 0.0))[0]
                after = dict(before)
                add_usage(after, amount)
                expires = now + self._ttl + max(0.0, until - self._monotonic())
                mine = {t: held for t, held in book.items() if held[1] > now}
                mine[token] = (after, max(expires, book.get(token, (EMPTY, 0.0))[1]))
            counted = update.used(now)
            entry = update.reservations.get(name)
            if entry is not None and entry.expires > now:
                add_usage(counted, entry.usage, -1)  # written over with this replica's sum: counted once
            for held_token, (usage, held_until) in mine.items():
                if held_token != token and held_until > now:
                    add_usage(counted, usage)
            add_usage(counted, before)
            lacking = shortfalls(terms, counted, amount)
            behind = self._behind(policy, update)
            why = behind or (_short_at(policy, pool, lacking) if lacking else None)
            if why is not None:
                if over is None:
                    raise Refused(pool, why)
                note = behind_note(policy.groups[pool].path) if behind else why
                if note not in over:  # a retried write says it once
                    over.append(note)
            grown = growth(terms, counted, amount) if moves else {}
            self._put_draws(update, mine)
            if self.write(update, until) is not None:
                with self._index_lock:
                    self._drawing[pool] = mine
                return grown
            if self._monotonic() >= until:
                self.stats.unavailable += 1
                raise LedgerUnavailable(f"the ledger of group {pool} kept changing under concurrent writes: "
                                        "gave up registering a draw at the request deadline")
            state = self.read(pool, until)

    def _book(self, pool: str, state: LedgerState, now: float) -> dict[str, tuple[dict[str, int], float]]:
        """This replica's registrations at `pool` (a copy); at the first touch in this process, an earlier
        incarnation's unexpired sum there is kept as one registration until it expires."""
        book = self._drawing.get(pool)
        if book is None:
            book = {}
            entry = state.reservations.get(self.replica + DRAW_SUFFIX)
            if entry is not None and entry.expires > now:
                book[INHERITED_DRAW] = (dict(entry.usage), entry.expires)
            self._drawing[pool] = book
        return dict(book)

    def _put_draws(self, update: LedgerState, book: Mapping[str, tuple[dict[str, int], float]]) -> None:
        name = self.replica + DRAW_SUFFIX
        total: dict[str, int] = {}
        for usage, _ in book.values():
            add_usage(total, usage)
        if total:
            update.reservations[name] = Held(total, len(book), max(u for _, u in book.values()), update.asks)
        else:
            update.reservations.pop(name, None)

    def _register_batch(self, group: str, draws: Draws, tokens: dict[str, str], until: float) -> bool:
        """Register what each slot of a batch draws beyond what its token already holds, in batch order;
        at the first pool without room, that slot is refused and False returned: the batch is decided again
        without it (the slots after it were decided counting it), so at most one is refused per round."""
        for slot, need in draws.need.items():
            token = tokens.setdefault(slot, self._draw_token())
            have = self._registered(group, token)
            more = {k: v - have.get(k, 0) for k, v in need.items() if v > have.get(k, 0)}
            if not more:
                continue
            try:
                self._register(group, token, more, until,
                               draws.over.setdefault(slot, []) if slot in draws.force else None)
            except Refused as why:
                draws.refused[slot] = why.text
                return False
        return True

    def _dry_drawn(self, group: str, ask: Ask, decision: Decision, used: Mapping[str, int], until: float
                   ) -> Decision:
        """A dry run that would draw on the ancestors answered as its admission would be: each pool it would
        grow is read (never written) and checked as a registration would check it."""
        if not ask.dry_run or not decision.allowed or not decision.touches:
            return decision  # every admission passes here: nothing more is looked at
        terms = self._terms(group)
        policy = self._policy_now()
        if terms is None or policy is None:
            return decision
        child, passed = group, growth(terms, used, {k: v for k, v in decision.delta.items() if v > 0})
        while passed and (pool := policy.groups[child].parent) is not None:
            state = self.read(pool, until)
            counted = state.used(self._clock())
            pool_terms = self._terms_in(policy, pool)
            lacking = shortfalls(pool_terms, counted, passed)
            behind = self._behind(policy, state)
            if why := behind or (_short_at(policy, pool, lacking) if lacking else None):
                return refused_decision(decision, why) if decision.mode == "enforce" else with_overdraws(
                    decision, [behind_note(policy.groups[pool].path) if behind else why])
            child, passed = pool, growth(pool_terms, counted, passed) if policy.lending.moves(pool) else {}
        return decision

    def _unregister(self, token: str, until: float) -> None:
        """Lower everything `token` registered (its request was not admitted); a write that fails leaves it
        to expire: over for a while, never under."""
        with self._index_lock:
            pools = [pool for pool, book in self._drawing.items() if token in book]
        for pool in pools:
            with self._index_lock:
                held = self._drawing.get(pool, {}).get(token)
            if held is not None:
                self._lower(pool, token, held[0], until)

    def _lower(self, pool: str, token: str, usage: Mapping[str, int], until: float) -> None:
        with self._writer(pool):
            self._lower_in_turn(pool, token, usage, until)

    def _lower_in_turn(self, pool: str, token: str, usage: Mapping[str, int], until: float) -> None:
        try:
            state = self.read(pool, until)
            while self._monotonic() < until:
                now = self._clock()
                update = state.copy()
                with self._index_lock:
                    mine = {t: held for t, held in self._book(pool, update, now).items() if held[1] > now}
                held = mine.get(token)
                if held is None:
                    return
                left = dict(held[0])
                add_usage(left, usage, -1)
                if any(v > 0 for v in left.values()):
                    mine[token] = ({k: v for k, v in left.items() if v > 0}, held[1])
                else:
                    del mine[token]
                self._put_draws(update, mine)
                if self.write(update, until) is not None:
                    with self._index_lock:
                        self._drawing[pool] = mine
                    return
                state = self.read(pool, until)
        except LedgerUnavailable:
            return  # it expires


__all__ = ["CATCHING_UP", "INHERITED_DRAW", "Draws", "Refused", "Registering", "behind_decision", "behind_note",
           "behind_text", "behind_warned",
           "refused_decision", "with_overdraws"]

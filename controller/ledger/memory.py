"""The in-process store: the ledger in one process, with no cluster needed; SQLite is its journal.

Its admission rules exist here once; the controller's calls are in
`reconciling`, its record of who borrows in `borrowers`, the tables and the
rules it shares with its journal in `inprocess`. Given a `Journal`
(`sqlite.SqliteJournal`, what `serve` runs by default) every change is
written there first, in one transaction, and reaches memory only once that
committed; with none it is the memory store.

Per group it holds observed usage, pending reservations and cash. Admission
asks the ledger two things at once: "does this fit?" and "then it is mine".
Both happen under the lock of the one group the request is checked against
(groups are carved from their parents, so a request never needs a second
group's room), which makes N concurrent requests that fit k at a time admit
exactly k. There is no global lock across groups: requests for different
groups never wait for each other. A short index lock guards the per-object
tables; it is always taken innermost and never held while evaluating.

Two ways to run:

* **standalone** (the default; what `quotalang serve` uses with no cluster):
  nobody watches the cluster, so usage comes from admissions alone, and what
  an object holds (per group) errs toward over-counting, as native quota
  does:

  - CREATE of a name the ledger does not hold: its group holds its usage.
  - CREATE of a name it already holds (a retry, or a re-create the apiserver
    will refuse with AlreadyExists — the webhook is asked first): never
    lowers anything. The same group holds the per-key maximum of the two;
    another group is charged as well, and the first keeps what it held.
  - UPDATE: the object holds what the updated object charges, in its group
    (a shrink frees quota at once, a label move releases the old group,
    unlabelled releases all); an object the UPDATE leaves with no kind rule
    keeps what it held, as the decision's charges (none) say.
  - DELETE (when the webhook configuration sends it): every group it held is
    released.

  Nothing is written before the object's body is packed and the decision is
  complete: an object that fails anywhere leaves no trace.
* **reconciled** (`standalone=False`; for the controller): an admitted request
  becomes a pending reservation keyed by the object's identity, holding the
  usage delta per group it was admitted with, a deadline and the admitted
  resourceVersion. The controller calls `observe` when the watch shows the
  object at or after that version (the reservation is folded into observed
  usage), `forget` when it is deleted, `expire` to return quota an admitted but
  never persisted object held, and `resync` after a full LIST. A resync never
  drops unexpired reservations, so an in-flight admission cannot be overwritten
  (kubernetes#123434).

Reservations are conservative: only the positive part of a delta is reserved.
A shrink or a move out of a group releases quota when the controller observes
it, not when it is admitted, because an admitted request may never persist.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from quotalang.controller.ledger.accrual import accrued
from quotalang.controller.ledger.arithmetic import add_usage
from quotalang.controller.ledger.base import (
    DEFAULT_RESERVATION_TTL,
    Ask,
    CashState,
    LedgerUnavailable,
    ObjectKey,
    Observed,
)
from quotalang.controller.ledger.bodies import look_up, pack, recorded
from quotalang.controller.ledger.borrowers import BorrowerBook
from quotalang.controller.ledger.inprocess import (
    GroupNumbers,
    Held,
    Journal,
    Loaded,
    PendingAdmission,
    standalone_after,
)
from quotalang.controller.ledger.reconciling import Reconciling
from quotalang.decision import Decision
from quotalang.errors import InternalError
from quotalang.reclaimable import Borrower


class MemoryLedger(Reconciling):
    """The in-process ledger: one process, no cluster needed; durable with a `journal`.

    `clock` is injectable (seconds; deadlines are on it, so a journal wants
    wall-clock epoch seconds, which mean the same after a restart) so tests
    can move reservation deadlines without sleeping. `fallback_lookup` finds
    what the index does not hold (with a cluster: a live GET, as DESIGN
    orders it for `/scale`).
    """

    def __init__(
        self,
        *,
        standalone: bool = True,
        reservation_ttl: float = DEFAULT_RESERVATION_TTL,
        clock: Callable[[], float] = time.monotonic,
        fallback_lookup: Callable[[ObjectKey], Mapping[str, Any] | None] | None = None,
        journal: Journal | None = None,
    ) -> None:
        self._standalone = standalone
        self._fallback_lookup = fallback_lookup
        self._ttl = reservation_ttl
        self._clock = clock
        self._journal = journal
        self._groups: dict[str, GroupNumbers] = {}
        # The per-object tables below and the journal's writes; always taken innermost.
        self._index_lock = threading.Lock()
        self._observed: dict[ObjectKey, Observed] = {}
        self._held: dict[ObjectKey, Held] = {}  # standalone: object -> group -> usage
        self._pending: dict[ObjectKey, PendingAdmission] = {}
        self._bodies: dict[ObjectKey, bytes] = {}  # the object index, as JSON (see bodies.pack)
        self._borrowers = BorrowerBook(journal)  # admissions that borrowed, until the object goes
        self._next_deadline = math.inf
        # Orders observe/forget (index, then totals) against resync (both replaced): taken first, before
        # any group lock or `_index_lock`, and never by admission.
        self._order_lock = threading.Lock()
        # Identities observed or forgotten since the last resync, whose listing may predate them (`summed`).
        self._told: set[ObjectKey] = set()
        if journal is not None:
            self._load(journal.load())

    def _load(self, loaded: Loaded) -> None:
        """Memory rebuilt from what the journal holds."""
        self._observed, self._held, self._bodies = loaded.observed, loaded.held, loaded.bodies
        self._pending = loaded.pending
        self._borrowers.load(loaded.borrowers, lambda k: k in self._observed or k in self._held or k in self._pending)
        for key, observed in self._observed.items():
            if observed.group is not None:
                self._group(observed.group).add_observed(observed.usage, +1, key.cluster)
        for key, held in self._held.items():
            for group, usage in held.items():
                self._group(group).add_observed(usage, +1, key.cluster)
        for key, pending in self._pending.items():
            self._next_deadline = min(self._next_deadline, pending.deadline)
            for group, usage in pending.charges.items():
                state = self._group(group)
                state.add_reserved(usage, +1)
                state.pending.add(key)
        for group, cash in loaded.cash.items():
            state = self._group(group)
            state.cash, state.period_start, state.last_accrual = cash.used, cash.period_start, cash.last_accrual

    # ------------------------------------------------------------ reading
    @property
    def standalone(self) -> bool:
        return self._standalone

    @property
    def durable(self) -> bool:
        """With a journal the controller keeps its observations until its first full sync (see reconcile)."""
        return self._journal is not None

    @property
    def fetches(self) -> bool:
        return self._fallback_lookup is not None

    def objects_of(self, group: str) -> Iterator[tuple[ObjectKey, dict[str, int]]]:
        """The objects recorded against `group` and their usage (a copy; the group page lists them)."""
        with self._index_lock:
            rows = [(k, dict(o.usage)) for k, o in self._observed.items() if o.group == group]
            rows += [(k, dict(h[group])) for k, h in self._held.items() if group in h]
        return iter(rows)

    def lookup(
        self, identity: ObjectKey, *, local: bool = False, version: str | None = None
    ) -> Mapping[str, Any] | None:
        """The admitted (pending) version of an object, else its observed one, else (unless `local`) the
        fallback's; `version` as `bodies.look_up`."""
        return look_up(identity, self._pending, self._bodies, self._clock(),
                       None if local else self._fallback_lookup, version, fetches=self.fetches)

    def recorded(self, identity: ObjectKey) -> bytes | None:
        """`lookup(identity, local=True)`'s body still packed (`bodies.recorded`)."""
        return recorded(identity, self._pending, self._bodies, self._clock())

    def borrowers(self) -> tuple[Borrower, ...]:
        """Every admission recorded as borrowing (a copy): a lender's request may name some to reclaim."""
        with self._index_lock:
            return self._borrowers.all()

    def settle(self, identity: ObjectKey, done: bool) -> None:
        """A reclaim the controller carried out (`done`: the record goes) or gave up on (unmarked: its usage
        counts again, since the cluster still holds it). Journalled before it shows."""
        with self._index_lock:
            self._borrowers.settle(identity, done)

    def pending(self) -> Iterable[ObjectKey]:
        """Identities with a pending reservation (a copy)."""
        with self._index_lock:
            return list(self._pending)

    def __len__(self) -> int:
        """Objects recorded: observed (reconciled), or admitted and not deleted (standalone)."""
        return len(self._held) if self._standalone else len(self._observed)

    # ---------------------------------------------------------- admission
    def reserve(self, ask: Ask) -> Decision:
        """Decide `ask` and, when the decision `reserves`, record it: atomically per group.

        The ask is decided under the lock of its group (`Ask.group`); what is
        recorded comes from the decision alone (`stored`, `reservation`,
        `stored_usage`), journalled before it shows. The evaluator's
        `quotalang.InputError` for an object that cannot be read passes
        through, before anything is written; `LedgerUnavailable` when the
        journal cannot write (then nothing was recorded).
        """
        group_name = ask.group
        if self._pending and self._clock() >= self._next_deadline:
            self.expire()
        state = self._group(group_name) if group_name is not None else None
        with state.lock if state is not None else contextlib.nullcontext():
            decision = ask.decision(self)
            if not decision.reserves:
                return decision
            if decision.group is not None and decision.group != group_name:  # would break check-and-reserve
                raise InternalError(f"decided in group {decision.group} under the lock of {group_name}")
            drawing = decision.touches and state is not None
            if not drawing:
                released = self._record(state if decision.group is not None else None, ask, decision)
        if drawing:  # beyond its guarantee: decided again under the locks of the ancestors it draws on
            assert state is not None
            decision, released = self._reserve_drawing(ask, state, decision.touches)
        for name, usage in released:  # other groups, after our lock is released: never two at once
            other = self._group(name)
            with other.lock:
                other.add_observed(usage, -1, ask.identity.cluster)
        return decision

    def _reserve_drawing(
        self, ask: Ask, state: GroupNumbers, touches: tuple[str, ...]
    ) -> tuple[Decision, list[tuple[str, dict[str, int]]]]:
        """Decide and record an ask that changes its ancestors' balances (it lends or borrows, issue 29).

        The decision is made again holding the locks of those ancestors from
        the root down, then its group's: a fixed order (one lock per depth,
        deeper last), so two such requests never wait for each other in a
        circle. Every request that changes a group's balance holds that
        group's lock, so under these locks the balances it is checked
        against can only grow (a release, observed without them), never
        shrink: N requests racing for one parent's room admit what fits.
        When the balances moved meanwhile and it now touches more ancestors,
        it lets go and tries again holding those too (at most the tree's
        depth times). Waits end at the ask's deadline (`LedgerUnavailable`):
        across a policy reload two trees may order the same groups apart.
        """
        held: tuple[str, ...] = ()
        while True:
            held = touches if len(touches) > len(held) else held  # nearest first; each a prefix of the other
            with contextlib.ExitStack() as locks:
                for name in reversed(held):
                    locks.enter_context(_waiting(self._group(name).lock, ask.deadline))
                locks.enter_context(_waiting(state.lock, ask.deadline))
                decision = ask.decision(self)
                if not decision.reserves:
                    return decision, []
                touches = decision.touches
                if len(touches) <= len(held) and not self._taken(decision):
                    return decision, self._record(state, ask, decision)

    def _taken(self, decision: Decision) -> bool:
        """Whether a borrower the decision reclaims went meanwhile or is already being reclaimed by another:
        then it is decided again (it now sees that), so one borrower's room is never given twice."""
        with self._index_lock:
            return self._borrowers.taken(decision)

    def try_reserve(self, ask: Ask) -> Decision:
        """`reserve`: in one process nothing waits but a group's lock (and a local commit)."""
        return self.reserve(ask)

    def _record(self, state: GroupNumbers | None, ask: Ask, decision: Decision) -> list[tuple[str, dict[str, int]]]:
        """Record a decision that reserves (the caller holds `state.lock`); return releases due elsewhere."""
        assert decision.stored is not None  # `reserves` implies it
        packed = pack(decision.stored)  # before anything is written: a body that cannot be packed writes nothing
        if self._standalone:
            released = self._fold(ask.identity, decision, state, packed)
        else:
            self._reserve(ask.identity, state, decision, packed, ask.admitted_version)
            released = []
        self._note_borrowing(ask.identity, decision)
        return released

    def _note_borrowing(self, key: ObjectKey, decision: Decision) -> None:
        """Record who borrows (issue 29) and mark the borrowers the decision reclaims; see `borrowers`."""
        with self._index_lock:
            self._borrowers.note(key, decision, self._clock())

    def _fold(
        self, key: ObjectKey, decision: Decision, state: GroupNumbers | None, body: bytes
    ) -> list[tuple[str, dict[str, int]]]:
        """Standalone: what the object holds after `decision` (the rules are in the module doc).

        The caller holds `state.lock` (the decision's group); the groups the
        object leaves are returned, to be released after that lock is let go.
        """
        group = decision.group
        with self._index_lock:
            known = key in self._held
            held = self._held.get(key, {})
            after = standalone_after(held, decision)
            if known and after == held and self._bodies.get(key) == body:
                return []  # a retry of what is recorded: nothing to write
            if self._journal is not None:
                self._journal.held(key, after, body)
            self._held[key] = after
            self._bodies[key] = body
        if state is not None and group is not None and group in after:
            before = held.get(group)
            if before is None:
                state.add_observed(after[group], +1, key.cluster)
            elif before != after[group]:
                diff = dict(after[group])
                add_usage(diff, before, -1)
                state.add_observed(diff, +1, key.cluster, count=False)
        return [(g, usage) for g, usage in held.items() if g not in after]

    def _reserve(
        self, key: ObjectKey, state: GroupNumbers | None, decision: Decision, body: bytes, version: str | None
    ) -> None:
        """Reconciled: add the decision's reservation to the object's pending one (caller holds `state.lock`)."""
        deadline = self._clock() + self._ttl
        charges = decision.reservation
        with self._index_lock:
            current = self._pending.get(key)
            merged: Held = {g: dict(u) for g, u in current.charges.items()} if current is not None else {}
            for group, usage in charges.items():
                add_usage(merged.setdefault(group, {}), usage)
            if version is None and current is not None:
                version = current.resource_version
            pending = PendingAdmission(merged, deadline, version, body)
            if self._journal is not None:
                self._journal.reserved(key, pending)
            self._pending[key] = pending
            self._next_deadline = min(self._next_deadline, deadline)
        # Only the checked group can be charged positively (moves release the old one, which is
        # not reserved), and the caller holds its lock.
        if state is not None and decision.group in charges:
            state.add_reserved(charges[decision.group], +1)
            state.pending.add(key)

    # ---------------------------------------------------------------- cash
    def update_cash(self, group: str, accrue: Callable[[CashState], CashState | None]) -> CashState:
        """Apply an accrual to the group's stored cash under its lock, journalled before it shows."""
        state = self._group(group)
        with state.lock:
            stored = CashState(dict(state.cash), state.period_start, state.last_accrual)
            new = accrued(group, stored, accrue)
            if new is None:
                return stored
            used = {k: v for k, v in new.used.items() if v}
            if self._journal is not None:
                with self._index_lock:
                    self._journal.cash(group, CashState(used, new.period_start, new.last_accrual))
            state.cash, state.period_start, state.last_accrual = used, new.period_start, new.last_accrual
            return new

    def cash_state(self, group: str) -> CashState:
        state = self._group(group)
        with state.lock:
            return CashState(dict(state.cash), state.period_start, state.last_accrual)

    def close(self) -> None:
        """Close the journal (a graceful stop); a crash needs nothing."""
        if self._journal is not None:
            with self._index_lock:
                self._journal.close()


@contextlib.contextmanager
def _waiting(lock: threading.Lock, deadline: float) -> Iterator[None]:
    """Hold `lock`, waiting no later than `deadline` (monotonic; inf: as long as it takes)."""
    timeout = -1.0 if deadline == math.inf else max(deadline - time.monotonic(), 0.0)
    if not lock.acquire(timeout=timeout):
        raise LedgerUnavailable("a group's lock was not free before the request's deadline")
    try:
        yield
    finally:
        lock.release()


__all__ = ["MemoryLedger"]

"""The fold queue and the leader's fenced writes: observations written per group in batches.

Invariant: every controller write is the leader's alone, stamped with its
epoch (an older epoch steps back with `NotLeader`) and tokened, so a write
whose answer was lost is recognised instead of applied twice; a fold lists
the identities it observed in the same write that adds their usage; what
frees quota is due at the next flush, what frees none may wait
`Tuning.fold_patience` (well within the reservation TTL, so an unconfirmed
admission is still held when folded); a failed write keeps its group queued.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping

from quotalang.controller.ledger.arithmetic import add_usage
from quotalang.controller.ledger.base import LedgerUnavailable, NotLeader, ObjectKey, Observation, Observed, ObservesOne
from quotalang.controller.ledger.bodies import pack_observed
from quotalang.controller.ledger.crd import FOLD_CAP, Held, LedgerState, identity_key
from quotalang.controller.ledger.kubernetes.book import _confirmed, _fold_entry, _fold_parts
from quotalang.controller.ledger.kubernetes.core import _Edit
from quotalang.controller.ledger.kubernetes.edits import adder, all_of, confirming, releaser
from quotalang.controller.ledger.kubernetes.publishing import Publishing


class Folding(Publishing, ObservesOne):
    """The fold queue and the leader's fenced writes: observations written per group in batches."""

    def mutate(
        self,
        group: str,
        change: Callable[[LedgerState], bool],
        *,
        folded: list[str] | None = None,
        token: str | None = None,
    ) -> LedgerState | None:
        """Apply `change` to the group's ledger by CAS, re-reading and re-applying on conflict.

        `change` edits the state in place and returns whether it changed it
        (nothing is written otherwise). Fenced by the leader epoch when a
        fence is set. Each write carries a unique token in `status.lastWrite`,
        so a write whose answer was lost is recognised on re-read instead of
        being applied twice. `folded` (a fold write) lists the identities
        observed, for the replicas to confirm their admissions; any other
        write clears the list. `token` (a retried fold) names an earlier
        attempt: if it landed, nothing is applied again. Returns the state
        written, or None if nothing changed.
        """
        until = self._monotonic() + self.tuning.controller_timeout
        epoch = self._epoch()
        token = token or self._token(epoch)
        with self._writer(group):
            written = self._mutate(group, change, until, epoch, token, folded)
        if written is not None:
            self._publish_draw(written)
        return written

    def _mutate(
        self,
        group: str,
        change: Callable[[LedgerState], bool],
        until: float,
        epoch: int | None,
        token: str,
        folded: list[str] | None,
    ) -> LedgerState | None:
        state = self._cache.get(group)
        if state is None:
            state = self.read(group, until)
        own: set[str] = set()  # this replica's admissions the fold write being tried confirms (`_account_own`)
        while True:
            if state.last_write == token:  # the write landed after all (its answer was lost)
                self._drop_mine(group, own)
                return state
            update = state.copy()
            if epoch is not None and update.leader_epoch > epoch:
                self.stats.fenced += 1
                raise NotLeader(
                    f"the ledger of group {group} was written by leader epoch {update.leader_epoch}; "
                    f"this replica's epoch is {epoch}"
                )
            claim = epoch is not None and update.leader_epoch < epoch  # a new leader stamps every object
            if not change(update) and not claim:
                return None
            if epoch is not None:
                update.leader_epoch = epoch
            update.last_write = token
            update.folded = list(folded or [])
            own = self._account_own(update, folded) if folded else set()
            written = self.write(update, until)
            if written is not None:
                self._drop_mine(group, own)
                return written
            if self._monotonic() >= until:
                raise LedgerUnavailable(f"the ledger of group {group}: no write succeeded in time")
            state = self.read(group, until)

    def _account_own(self, update: LedgerState, folded: Iterable[str]) -> set[str]:
        """The leader's fold write also writes the leader's own smaller sum, so it needs no `tidy` write.

        The admissions the fold confirms leave this replica's entry in the
        same compare-and-swap that adds their usage to the totals (counted
        once, never none), and what its lease handed out since the lease was
        written moves from the lease entry into the sum (the lease entry keeps
        only what is still free in it, and its deadline; past its window the
        lease is returned, as `tidy` would). Without this, each
        fold would cost a second write per group. The caller holds the group's
        writer lock, so no batch or lease admission changes `_mine` meanwhile;
        `_mutate` drops the confirmed admissions once the write landed. When no
        other replica has an entry, no other can hold these identities, so
        they are left out of `folded`: at one replica the list stays empty and
        every write of the object stays small.
        """
        group = update.group
        lease = self._leases.get(group)
        held_lease = update.reservations.get(self._lease_name)
        if lease is not None and held_lease is None:
            return set()  # a lease this replica no longer sees written: leave both entries to `tidy`
        with self._index_lock:
            mine = self._mine.get(group)
            if mine is None:
                return set()
            confirmed = _confirmed(mine, folded)
            held = mine.held(drop=confirmed)
        self._put_sum(update, held)
        if confirmed and all(name in (self.replica, self._lease_name) for name in update.reservations):
            update.folded = [entry for entry in update.folded if _fold_parts(entry)[0] not in confirmed]
        if lease is not None and held_lease is not None:
            if self._monotonic() >= lease.usable_until:  # returned with the fold: `tidy` then has nothing to write
                update.reservations.pop(self._lease_name, None)
            else:
                update.reservations[self._lease_name] = Held(dict(lease.left), 0, held_lease.expires, update.asks)
        return confirmed

    def _token(self, epoch: int | None) -> str:
        return f"{self.replica}/{epoch}/{next(self._tokens)}"

    def _epoch(self) -> int | None:
        if self.fence is None:
            return None
        epoch = self.fence()
        if epoch is None:
            raise NotLeader("this replica is not the leader: only the leader reconciles the ledger")
        return epoch

    def observe_many(self, observations: Iterable[Observation]) -> None:
        """Several observations, folded in batches: one write per group touched, not one per object.

        Each group's changes wait in a queue for the next `flush` (every
        `fold_interval`, by the runtime's fold thread; at once when it is 0),
        which writes them with one compare-and-swap and lists the identities
        observed there in `status.folded`. The result is the same as
        observing them one after another.
        """
        edits: dict[str, list[_Edit]] = {}
        freeing: set[str] = set()
        epoch = self._told_epoch()
        with self._order_lock:
            for seen in observations:
                packed = pack_observed(seen.body)
                with self._index_lock:
                    previous = self._observed.get(seen.identity)
                    self._observed[seen.identity] = Observed(seen.group, dict(seen.usage))
                    self._told[seen.identity] = epoch
                    if packed is not None:
                        self._bodies[seen.identity] = packed
                same = previous is not None and previous.group == seen.group
                if seen.group is not None:
                    diff = dict(seen.usage)
                    if same and previous is not None:
                        add_usage(diff, previous.usage, -1)
                    fold = _fold_entry(identity_key(seen.identity), seen.resource_version)
                    edits.setdefault(seen.group, []).append((adder(diff, not same, seen.identity.cluster), fold))
                    if any(value < 0 for value in diff.values()):
                        freeing.add(seen.group)
                if previous is not None and previous.group is not None and not same:
                    edits.setdefault(previous.group, []).append(
                        (releaser(previous.usage, seen.identity.cluster), None))
                    freeing.add(previous.group)
            self._enqueue(edits, patient=edits.keys() - freeing)
        self._flush_now()

    def forget(self, identity: ObjectKey) -> None:
        """The object is gone: release its observed usage; any replica's admission of it is confirmed too."""
        epoch = self._told_epoch()
        fold = _fold_entry(identity_key(identity), None)
        with self._order_lock:
            with self._index_lock:
                previous = self._observed.pop(identity, None)
                self._told[identity] = epoch
                self._bodies.pop(identity, None)
                self._pending.pop(identity, None)
            if previous is not None and previous.group is not None:
                self._enqueue({previous.group: [(releaser(previous.usage, identity.cluster), fold)]})
            else:
                # Never observed (admitted, then deleted before the watch folded it): confirm it where it is held.
                with self._cache_lock:
                    holding = [g for g, state in self._cache.items() if state.reservations]
                self._enqueue({group: [(confirming, fold)] for group in holding})
        self._flush_now()

    def _told_epoch(self) -> int | None:
        """The epoch a call is told in (None: unfenced, or not leading: it counts in no leader's resync)."""
        return self.fence() if self.fence is not None else None

    def _enqueue(self, edits: Mapping[str, list[_Edit]], patient: Collection[str] = ()) -> None:
        """Queue edits behind what each group already waits for (the caller holds `_order_lock`).

        A group is due at the next flush, except that the groups in `patient`
        (their edits free no quota: new objects, growth, confirmations of
        admissions) may wait `fold_patience` to share one write with what comes
        after them, or until half a fold write's worth has queued. Waiting
        costs nothing in safety: an admitted object is held by its replica's
        sum until the fold confirms it (the reservation TTL is far longer),
        and a release or shrink is never held back. It saves a write per
        group per observation when groups are many and each is quiet.
        """
        now = self._monotonic()
        with self._queue_lock:
            for group, changes in edits.items():
                queued = self._queue.setdefault(group, [])
                queued.extend(changes)
                due = now + self.tuning.fold_patience if group in patient and len(queued) < FOLD_CAP // 2 else now
                self._due[group] = min(due, self._due.get(group, due))

    def _flush_now(self) -> None:
        """With no fold thread (`fold_interval` 0: tests, tools), write what was just queued at once."""
        if self.fold_interval <= 0:
            self.flush()

    def flush(self, patient: bool = False) -> int:
        """Write the groups' waiting observations, at most `FOLD_CAP` per write; return the writes made.

        `patient` (the runtime's fold thread) writes only the groups that are
        due (`_enqueue`); otherwise every queued group is written. Fold writes
        retry on conflict like any controller write; admissions between two
        flushes are not held up by them (a flush is one write per group per
        `fold_interval` at most, not one per event). A group whose write
        fails keeps what it had not written at the head of its queue (with
        the failed write's token: it may have landed) and the other groups
        are written; the first error is raised at the end. `NotLeader`
        drops the queue: it goes with the lease, and the next leader's
        resync lists everything again.
        """
        writes = 0
        failed: Exception | None = None
        with self._flush_lock:
            with self._queue_lock:
                now = self._monotonic()
                due = [g for g, at in self._due.items() if at <= now] if patient else list(self._due)
                queue = {g: self._queue.pop(g) for g in due}
                unsure = {g: self._unsure.pop(g) for g in due if g in self._unsure}
                for group in due:
                    del self._due[group]
            if not queue:
                return 0
            try:
                epoch = self._epoch()
            except NotLeader:
                self._drop_queue()
                raise
            for group, changes in queue.items():
                start = 0
                token, size = unsure.get(group, (self._token(epoch), FOLD_CAP))
                try:
                    while start < len(changes):
                        chunk = changes[start:start + size]
                        folded = [fold for _, fold in chunk if fold is not None]
                        edits = [change for change, _ in chunk] + ([confirming] if folded else [])
                        self.mutate(group, all_of(edits), folded=folded, token=token)
                        writes += 1
                        start += len(chunk)
                        token, size = self._token(epoch), FOLD_CAP
                except NotLeader:
                    self._drop_queue()
                    raise
                except Exception as exc:  # LedgerUnavailable, or a bug: keep the rest for the next flush
                    with self._queue_lock:
                        self._queue[group] = changes[start:] + self._queue.get(group, [])
                        self._unsure[group] = (token, min(size, len(changes) - start))  # the chunk it wrote
                        self._due[group] = 0.0  # retried at the next flush
                    failed = failed or exc
        if failed is not None:
            raise failed
        return writes

    def _drop_queue(self) -> None:
        """Not the leader (any more): what waits goes with the lease; the next leader's resync lists it anew."""
        with self._queue_lock:
            self._queue, self._due, self._unsure = {}, {}, {}


__all__ = ["Folding"]

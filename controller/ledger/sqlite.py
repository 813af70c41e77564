"""The SQLite store: the embedded ledger on local disk, so that `kill -9` at any moment loses nothing.

It keeps what the memory store keeps — per object its recorded usage, group
and body; pending reservations; per group cash and the last accrual — in a
SQLite database (the standard library's `sqlite3`, WAL journal), and an
in-memory mirror of it that admission reads. The mirror is rebuilt from the
database when the store opens; after that every change goes to the database
first, in one transaction, and reaches the mirror only once that transaction
has committed. So:

* an admission is answered `allowed` only after its record has committed: a
  crash before the commit leaves nothing (and nobody heard "allowed"); a
  crash after it leaves the record (the answer may have been lost on the way,
  which the apiserver treats as a failed call — the usage is then counted
  though the client may not know; never the other way round);
* a transaction that fails (disk full, a file that vanished) raises
  `LedgerUnavailable` and changes neither the database nor the mirror: the
  request is answered per `--failure-mode`.

Check and reserve are atomic per group as in the memory store: the group's
lock is held across the evaluation and the commit, so N concurrent requests
that fit k admit exactly k. One connection serves the process, guarded by a
short lock that is always taken innermost (group lock → database lock) and
never held while evaluating. The database is opened in exclusive locking
mode: a second process cannot open the same file and share the quota
behind the first one's back (it fails at start with a clear message).

Durability: `synchronous=NORMAL` (the default) in WAL mode makes every
committed transaction survive the process being killed at any instant; an
operating-system crash or power loss may lose the last few transactions (the
database stays consistent). `synchronous="FULL"` also survives those, at the
price of an fsync per admission.

Modes, as in the memory store:

* **standalone** (no cluster confirms anything): an admission that reserves
  (`Decision.reserves`: allowed, not a dry run, a workload is stored) is
  recorded usage at once, by the memory store's standalone rules (which err
  toward over-counting, as native quota does): a CREATE of a new name holds
  `Decision.stored_usage` in `Decision.group`; a CREATE of a name already
  held (a retry, or a re-create the apiserver will refuse) never lowers
  anything — the same group holds the per-key maximum, another group is
  charged as well; an UPDATE makes the object hold what the updated object
  charges (a shrink or a label move takes effect at once, since no watch
  will ever report it), except that an update no kind rule reads keeps what
  it held; `forget` (a DELETE review) releases every group it held. There are
  no reservations, so nothing expires: recorded usage is not a reservation.
* **reconciled** (a controller feeds it): an admission becomes a pending
  reservation (`Decision.reservation`, the positive part of the charges) with
  a deadline `reservation_ttl` seconds ahead; `observe` at or after the
  admitted version folds it, `expire` returns it. Deadlines are wall-clock
  epoch seconds (the default clock is `time.time`) so they mean the same after
  a restart: a reservation whose deadline passed while the process was down
  is dropped by the first `expire` (or the first admission after it).

Values are written with bound parameters only, and usage as JSON text of
integers (nano units exceed 64 bits: 8 Ti of memory is 8.8e21 nano-bytes);
nothing in a review is ever interpolated into SQL. What is written comes from
the `Decision` the evaluator built, which has already refused invalid input.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from quotalang.controller.ledger.base import (
    DEFAULT_RESERVATION_TTL,
    Ask,
    CashState,
    GroupNumbers,
    GroupTable,
    LedgerUnavailable,
    ObjectKey,
    Observation,
    Observed,
    PendingAdmission,
    Usage,
    accrued,
    add_usage,
    at_or_after,
    look_up,
    pack,
    standalone_after,
    summed,
)
from quotalang.decision import Decision
from quotalang.errors import InternalError

SCHEMA_VERSION = 2  # 2: the cluster is part of an object's key (1 is migrated on open)
DEFAULT_FILE = "ledger.sqlite3"
WAL_CHECKPOINT_PAGES = 4000
Synchronous = Literal["NORMAL", "FULL"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS objects (
    api_group TEXT NOT NULL, kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    cluster TEXT NOT NULL DEFAULT '',  -- ObjectKey.cluster: "" in a single-cluster install
    grp TEXT,                -- reconciled: the group charged, NULL for none (the body is still kept for lookups)
    usage TEXT NOT NULL,     -- reconciled: JSON {key: nanos}
    held TEXT,               -- standalone: JSON {group: {key: nanos}}, NULL for an observed object
    body BLOB,               -- JSON of the stored object (base.pack)
    PRIMARY KEY (api_group, kind, namespace, name, cluster)
);
CREATE TABLE IF NOT EXISTS reservations (
    api_group TEXT NOT NULL, kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    cluster TEXT NOT NULL DEFAULT '',
    charges TEXT NOT NULL,   -- JSON {group: {key: nanos}}, positive
    deadline REAL NOT NULL,  -- epoch seconds
    resource_version TEXT,
    body BLOB,
    PRIMARY KEY (api_group, kind, namespace, name, cluster)
);
CREATE TABLE IF NOT EXISTS cash (
    grp TEXT PRIMARY KEY,
    used TEXT NOT NULL,      -- JSON {key: nano-unit-seconds}
    period_start REAL,
    last_accrual REAL
) WITHOUT ROWID;
"""

_KEY = "api_group, kind, namespace, name, cluster"  # ObjectKey's fields, in its order (statements pass *key)
_UPSERT_OBJECT = (
    f"INSERT INTO objects ({_KEY}, grp, usage, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    f"ON CONFLICT ({_KEY}) DO UPDATE SET grp = excluded.grp, usage = excluded.usage, "
    "held = NULL, body = coalesce(excluded.body, objects.body)"
)
_UPSERT_HELD = (
    f"INSERT INTO objects ({_KEY}, grp, usage, held, body) "
    f"VALUES (?, ?, ?, ?, ?, NULL, '{{}}', ?, ?) ON CONFLICT ({_KEY}) "
    "DO UPDATE SET grp = NULL, usage = '{}', held = excluded.held, body = excluded.body"
)
_UPSERT_USAGE = (
    f"INSERT INTO objects ({_KEY}, grp, usage) VALUES (?, ?, ?, ?, ?, ?, ?) "
    f"ON CONFLICT ({_KEY}) DO UPDATE SET grp = excluded.grp, usage = excluded.usage, held = NULL"
)
_WHERE_KEY = "WHERE api_group = ? AND kind = ? AND namespace = ? AND name = ? AND cluster = ?"
_DELETE_OBJECT = f"DELETE FROM objects {_WHERE_KEY}"
_UPSERT_RESERVATION = (
    f"INSERT INTO reservations ({_KEY}, charges, deadline, resource_version, body) "
    f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT ({_KEY}) DO UPDATE SET "
    "charges = excluded.charges, deadline = excluded.deadline, resource_version = excluded.resource_version, "
    "body = excluded.body"
)
_DELETE_RESERVATION = f"DELETE FROM reservations {_WHERE_KEY}"
_UPSERT_CASH = "INSERT OR REPLACE INTO cash (grp, used, period_start, last_accrual) VALUES (?, ?, ?, ?)"

Statement = tuple[str, Sequence[Any]]


def _migrate_from_1(db: sqlite3.Connection) -> None:
    """Schema 1 → 2 inside the opening transaction: every row is the one cluster's (cluster "").

    SQLite cannot change a primary key in place, so the two keyed tables are
    rebuilt; an aborted open rolls the whole copy back.
    """
    for table in ("objects", "reservations"):
        columns = ", ".join(row[1] for row in db.execute(f"PRAGMA table_info({table})"))
        db.execute(f"ALTER TABLE {table} RENAME TO {table}_v1")
        db.execute(next(s for s in _SCHEMA.split(";") if f"TABLE IF NOT EXISTS {table} " in s))
        db.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {table}_v1")
        db.execute(f"DROP TABLE {table}_v1")
    db.execute("UPDATE meta SET value = ? WHERE name = 'schema'", (str(SCHEMA_VERSION),))


class LedgerFileError(InternalError):
    """The database cannot be opened or read: not a quotalang ledger, another version, held by another process."""


def default_path() -> Path:
    """`$XDG_STATE_HOME/quotalang/ledger.sqlite3` (default `~/.local/state/quotalang/ledger.sqlite3`)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "quotalang" / DEFAULT_FILE


def _encode(usage: Mapping[str, int]) -> str:
    # The standard json module, not orjson: nano units exceed 64 bits.
    return json.dumps(usage, separators=(",", ":"), sort_keys=True)


def _usage(raw: Any, where: str) -> dict[str, int]:
    value = json.loads(raw)
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in value.items()
    ):
        raise ValueError(f"{where}: expected an object of key -> integer")
    return value


def _encode_held(held: Mapping[str, Mapping[str, int]]) -> str:
    return json.dumps(held, separators=(",", ":"), sort_keys=True)


def _charges(raw: Any, where: str) -> dict[str, dict[str, int]]:
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected an object of group -> usage")
    return {str(g): _usage(json.dumps(u), f"{where} group {g}") for g, u in value.items()}


def _time(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where}: expected epoch seconds, not {value!r}")
    return float(value)


class SqliteLedger(GroupTable):
    """The durable embedded ledger (see the module docstring).

    `clock` is injectable (epoch seconds; deadlines are stored as such).
    `fallback_lookup` finds what the index does not hold (with a cluster: a
    live GET). Call `close()` when done (a graceful stop); a crash needs
    nothing — the next open finds every committed transaction.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        standalone: bool = True,
        reservation_ttl: float = DEFAULT_RESERVATION_TTL,
        clock: Callable[[], float] = time.time,
        fallback_lookup: Callable[[ObjectKey], Mapping[str, Any] | None] | None = None,
        synchronous: Synchronous = "NORMAL",
    ) -> None:
        self.path = Path(path)
        self._standalone = standalone
        self._ttl = reservation_ttl
        self._clock = clock
        self._fallback_lookup = fallback_lookup
        self._groups: dict[str, GroupNumbers] = {}
        self._db_lock = threading.Lock()  # the connection and the object tables below; always innermost
        # Orders observe/forget (rows, then mirror totals) against resync (both replaced): taken first,
        # before any group lock or `_db_lock`, and never by admission (as in the memory store).
        self._order_lock = threading.Lock()
        # Identities observed or forgotten since the last resync, whose listing may predate them (`summed`).
        self._told: set[ObjectKey] = set()
        self._observed: dict[ObjectKey, Observed] = {}  # reconciled: what the watch saw
        self._held: dict[ObjectKey, dict[str, dict[str, int]]] = {}  # standalone: object -> group -> usage
        self._pending: dict[ObjectKey, PendingAdmission] = {}
        self._bodies: dict[ObjectKey, bytes] = {}
        self._next_deadline = math.inf
        self._db = self._open(synchronous)
        try:
            self._load()
        except BaseException:
            self._db.close()
            raise

    # ------------------------------------------------------------ opening
    def _open(self, synchronous: Synchronous) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():  # quota usage is nobody else's business: 0600, not the umask's 0644
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise LedgerFileError(f"cannot create the ledger database {self.path}: {exc.strerror or exc}") from None
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0.5)
        except sqlite3.Error as exc:
            raise LedgerFileError(f"cannot open the ledger database {self.path}: {exc}") from None
        try:
            # Exclusive: one process owns the file (a second one would count quota twice). WAL: a
            # commit is an append, and a crash mid-write leaves the last committed state.
            db.execute("PRAGMA locking_mode = EXCLUSIVE")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise LedgerFileError(f"the ledger database {self.path} cannot use a WAL journal (got {mode})")
            db.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'FULL' else 'NORMAL'}")
            # A checkpoint (copying the WAL into the database, with an fsync) every ~4,000 pages rather
            # than SQLite's 1,000: it halves an admission's cost; the WAL stays under ~16 MiB.
            db.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
            db.execute("BEGIN IMMEDIATE")  # takes the exclusive lock now, not at the first admission
            for statement in _SCHEMA.split(";"):  # no ";" inside the schema's comments
                if statement.strip():
                    db.execute(statement)
            row = db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
            if row is not None and row[0] == "1":
                _migrate_from_1(db)
                row = (str(SCHEMA_VERSION),)
            if row is None:
                db.execute("INSERT INTO meta (name, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise LedgerFileError(
                    f"the ledger database {self.path} has schema version {row[0]}; "
                    f"this quotalang reads version {SCHEMA_VERSION}"
                )
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            db.close()
            if "locked" in str(exc):
                raise LedgerFileError(
                    f"the ledger database {self.path} is in use by another process "
                    "(one quotalang serve per ledger file)"
                ) from None
            raise LedgerFileError(f"cannot open the ledger database {self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            db.close()
            raise LedgerFileError(f"{self.path} is not a quotalang ledger database: {exc}") from None
        except BaseException:
            db.close()
            raise
        return db

    def _load(self) -> None:
        """Rebuild the mirror from the database; a row that does not read is an error naming it."""
        db = self._db
        try:
            for api_group, kind, namespace, name, cluster, grp, usage, held, body in db.execute(
                f"SELECT {_KEY}, grp, usage, held, body FROM objects"
            ):
                key = ObjectKey(api_group, kind, namespace, name, cluster)
                if held is not None:
                    holding = _charges(held, f"object {key}")
                    self._held[key] = holding
                    if body is not None:
                        self._bodies[key] = bytes(body)
                    for group, part in holding.items():
                        self._group(group).add_observed(part, +1, cluster)
                    continue
                recorded = _usage(usage, f"object {key}")
                self._observed[key] = Observed(grp, recorded)
                if body is not None:
                    self._bodies[key] = bytes(body)
                if grp is not None:
                    self._group(grp).add_observed(recorded, +1, cluster)
            for api_group, kind, namespace, name, cluster, charges, deadline, rv, body in db.execute(
                f"SELECT {_KEY}, charges, deadline, resource_version, body FROM reservations"
            ):
                key = ObjectKey(api_group, kind, namespace, name, cluster)
                where = f"reservation {key}"
                pending = PendingAdmission(_charges(charges, where), _time(deadline, where) or 0.0, rv,
                                           bytes(body) if body is not None else None)
                self._pending[key] = pending
                self._next_deadline = min(self._next_deadline, pending.deadline)
                for group, usage_ in pending.charges.items():
                    state = self._group(group)
                    state.add_reserved(usage_, +1)
                    state.pending.add(key)
            for grp, used, period_start, last_accrual in db.execute(
                "SELECT grp, used, period_start, last_accrual FROM cash"
            ):
                state = self._group(grp)
                state.cash = _usage(used, f"cash of group {grp}")
                state.period_start = _time(period_start, f"cash of group {grp}: period start")
                state.last_accrual = _time(last_accrual, f"cash of group {grp}: last accrual")
        except (ValueError, TypeError, sqlite3.Error) as exc:
            raise LedgerFileError(f"the ledger database {self.path} cannot be read: {exc}") from None

    def close(self) -> None:
        with self._db_lock:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()

    def _commit(self, statements: Sequence[Statement], many: Sequence[Statement] = ()) -> None:
        """Run statements in one transaction (caller holds `_db_lock`); all or nothing.

        `many` are (sql, rows) pairs for executemany (a resync's thousands of rows).
        One statement alone (an admission's) runs as its own implicit
        transaction: as atomic, and two calls fewer on the hot path.
        """
        db = self._db
        if len(statements) == 1 and not many:
            try:
                db.execute(*statements[0])
            except sqlite3.Error as exc:
                raise LedgerUnavailable(f"the ledger database {self.path} could not be written: {exc}") from None
            return
        try:
            db.execute("BEGIN")
            for sql, params in statements:
                db.execute(sql, params)
            for sql, rows in many:
                db.executemany(sql, rows)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise LedgerUnavailable(f"the ledger database {self.path} could not be written: {exc}") from None

    # ------------------------------------------------------------ reading
    @property
    def standalone(self) -> bool:
        return self._standalone

    @property
    def durable(self) -> bool:
        """The controller keeps its observations until its first full sync (see reconcile)."""
        return True

    def objects_of(self, group: str) -> Iterator[tuple[ObjectKey, dict[str, int]]]:
        """The objects recorded against `group` and their usage (a copy; for the pages)."""
        with self._db_lock:
            rows = [(k, dict(o.usage)) for k, o in self._observed.items() if o.group == group]
            rows += [(k, dict(h[group])) for k, h in self._held.items() if group in h]
        return iter(rows)

    @property
    def fetches(self) -> bool:
        return self._fallback_lookup is not None

    def lookup(self, identity: ObjectKey, *, local: bool = False) -> Mapping[str, Any] | None:
        """The admitted (pending) version of an object, else its recorded one, else (unless `local`) the
        fallback's."""
        return look_up(identity, self._pending, self._bodies, self._clock(),
                       None if local else self._fallback_lookup)

    def pending(self) -> Iterable[ObjectKey]:
        """Identities with a pending reservation (a copy)."""
        with self._db_lock:
            return list(self._pending)

    def __len__(self) -> int:
        """Recorded objects: observed (reconciled), or admitted and not deleted (standalone)."""
        return len(self._held) if self._standalone else len(self._observed)

    # ---------------------------------------------------------- admission
    def reserve(self, ask: Ask) -> Decision:
        """Decide `ask` and, when the decision reserves, record it: atomically per group, in one transaction.

        Raises `LedgerUnavailable` when the record cannot be committed (then
        nothing was recorded); the evaluator's `UserInputError` for an object
        that cannot be read passes through.
        """
        group_name = ask.group
        if self._pending and self._clock() >= self._next_deadline:
            self.expire()
        if group_name is None:  # unlabelled or unknown: nothing to check, no lock to take
            decision = ask.decision(self)
            if not decision.reserves:
                return decision
            released = self._record(None, decision, ask.identity, ask.admitted_version)
        else:
            state = self._group(group_name)
            with state.lock:
                decision = ask.decision(self)
                if not decision.reserves:
                    return decision
                released = self._record(state, decision, ask.identity, ask.admitted_version)
        for name, usage in released:  # other groups, after our lock is released: never two at once
            other = self._group(name)
            with other.lock:
                other.add_observed(usage, -1, ask.identity.cluster)
        return decision

    def try_reserve(self, ask: Ask) -> Decision:
        """`reserve`: a local commit is not a wait."""
        return self.reserve(ask)

    def _record(
        self, state: GroupNumbers | None, decision: Decision, identity: ObjectKey | None, admitted: str | None
    ) -> list[tuple[str, dict[str, int]]]:
        """Record a decision that reserves (the caller holds `state.lock`); return releases due elsewhere."""
        stored = decision.stored
        assert stored is not None  # Decision.reserves says so
        key = identity or ObjectKey.of(stored)
        body = pack(stored)  # before any write: what cannot be encoded fails with nothing written
        if self._standalone:
            return self._fold(key, decision, state, body)
        self._reserve(key, state, decision, body, admitted)
        return []

    def _fold(
        self, key: ObjectKey, decision: Decision, state: GroupNumbers | None, body: bytes
    ) -> list[tuple[str, dict[str, int]]]:
        """Standalone: commit what the object holds after `decision`, then the mirror.

        The caller holds `state.lock` (the decision's group); the groups the
        object leaves are returned, to be released after that lock is let go.
        """
        group = decision.group
        with self._db_lock:
            known = key in self._held
            held = self._held.get(key, {})
            after = standalone_after(held, decision)
            if known and after == held and self._bodies.get(key) == body:
                return []  # a retry of what is recorded: nothing to write
            self._commit([(_UPSERT_HELD, (*key, _encode_held(after), body))])
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
        self, key: ObjectKey, state: GroupNumbers | None, decision: Decision, body: bytes, resource_version: str | None
    ) -> None:
        """Reconciled: add the decision's reservation to the object's pending one (caller holds `state.lock`)."""
        deadline = self._clock() + self._ttl
        charges = decision.reservation
        with self._db_lock:
            current = self._pending.get(key)
            merged: dict[str, dict[str, int]] = (
                {g: dict(u) for g, u in current.charges.items()} if current is not None else {}
            )
            for group, usage in charges.items():
                add_usage(merged.setdefault(group, {}), usage)
            version = resource_version if resource_version is not None else (
                current.resource_version if current is not None else None)
            self._commit([(_UPSERT_RESERVATION, (*key, json.dumps(merged), deadline, version, body))])
            self._pending[key] = PendingAdmission(merged, deadline, version, body)
            self._next_deadline = min(self._next_deadline, deadline)
        # Only the checked group can be charged positively (a move's old group is released, not
        # reserved), and the caller holds its lock.
        if state is not None and decision.group in charges:
            state.add_reserved(charges[decision.group], +1)
            state.pending.add(key)

    # ------------------------------------------------- the controller's API
    def observe(
        self,
        identity: ObjectKey,
        group: str | None,
        usage: Usage,
        *,
        resource_version: str | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        """The watch saw `identity` charging `usage` to `group`; one transaction (see `observe_many`)."""
        self.observe_many([Observation(identity, group, usage, resource_version, body)])

    def observe_many(self, observations: Iterable[Observation]) -> None:
        """Record a batch of observations in one transaction, then apply them to the mirror.

        Each replaces its object's recorded usage; a pending reservation is
        folded when the observation is at or after the admitted version.
        """
        batch = list(observations)
        if not batch:
            return
        packed = [pack(seen.body) if seen.body is not None else None for seen in batch]
        changes: list[tuple[Observed | None, Observation, PendingAdmission | None]] = []
        with self._order_lock:
            self._observe_batch(batch, packed, changes)
        for _, seen, folded in changes:  # after observed holds it: counted twice for a moment, never not at all
            if folded is not None:
                self._release(seen.identity, folded)

    def _observe_batch(
        self,
        batch: list[Observation],
        packed: list[bytes | None],
        changes: list[tuple[Observed | None, Observation, PendingAdmission | None]],
    ) -> None:
        """Rows and mirror for `observe_many` (the caller holds `_order_lock`); fills `changes`."""
        with self._db_lock:
            statements: list[Statement] = []
            folding: set[ObjectKey] = set()
            for seen, body in zip(batch, packed, strict=True):
                statements.append((_UPSERT_OBJECT, (*seen.identity, seen.group, _encode(seen.usage), body)))
                pending = self._pending.get(seen.identity)
                if pending is not None and seen.identity not in folding and at_or_after(
                    seen.resource_version, pending.resource_version
                ):
                    folding.add(seen.identity)
                    statements.append((_DELETE_RESERVATION, tuple(seen.identity)))
            self._commit(statements)
            for seen, body in zip(batch, packed, strict=True):
                previous = self._observed.get(seen.identity)
                self._observed[seen.identity] = Observed(seen.group, dict(seen.usage))
                self._told.add(seen.identity)
                if body is not None:
                    self._bodies[seen.identity] = body
                folded = self._pending.pop(seen.identity, None) if seen.identity in folding else None
                folding.discard(seen.identity)
                changes.append((previous, seen, folded))
        for previous, seen, _ in changes:
            if seen.group is not None:
                state = self._group(seen.group)
                with state.lock:
                    state.add_observed(seen.usage, +1, seen.identity.cluster)
            if previous is not None and previous.group is not None:
                state = self._group(previous.group)
                with state.lock:
                    state.add_observed(previous.usage, -1, seen.identity.cluster)

    def forget(self, identity: ObjectKey) -> None:
        """The object is gone (a watch DELETE, or a DELETE review in standalone mode): release it all."""
        with self._order_lock:
            with self._db_lock:
                if not self._standalone:
                    self._told.add(identity)
                if identity not in self._observed and identity not in self._pending and identity not in self._held:
                    return
                self._commit([(_DELETE_OBJECT, tuple(identity)), (_DELETE_RESERVATION, tuple(identity))])
                previous = self._observed.pop(identity, None)
                held = self._held.pop(identity, {})
                pending = self._pending.pop(identity, None)
                self._bodies.pop(identity, None)
            self._drop_observed(identity, previous, held)
        if pending is not None:
            self._release(identity, pending)

    def expire(self, now: float | None = None) -> int:
        """Drop reservations past their deadline (one transaction); return how many were dropped."""
        now = self._clock() if now is None else now
        with self._db_lock:
            expired = [(k, p) for k, p in self._pending.items() if p.deadline <= now]
            if expired:
                self._commit([], [(_DELETE_RESERVATION, [tuple(k) for k, _ in expired])])
                for key, _ in expired:
                    del self._pending[key]
            self._next_deadline = min((p.deadline for p in self._pending.values()), default=math.inf)
        for key, pending in expired:
            self._release(key, pending)
        return len(expired)

    def _release(self, identity: ObjectKey, pending: PendingAdmission) -> None:
        for group, usage in pending.charges.items():
            state = self._group(group)
            with state.lock:
                if identity in state.pending:
                    state.add_reserved(usage, -1)
                    state.pending.discard(identity)

    def resync(self, observed_by_group: Mapping[str, Mapping[ObjectKey, Usage]], cluster: str = "") -> None:
        """Replace `cluster`'s recorded usage with a fresh LIST of it (one transaction); reservations are kept.

        Other clusters' objects stay. The listing was taken before this call:
        what `observe`/`forget` were told of the cluster since its last resync
        is merged in (`base.summed`), under the lock they take, so an
        observation that folded a reservation after the listing is never
        replaced by the listing's older view.
        """
        with self._order_lock:
            with self._db_lock:
                told = {k: self._observed.get(k) for k in self._told if k.cluster == cluster}
                fresh, sums = summed(observed_by_group, told, cluster=cluster, index=self._observed)
                rows = [(*k, o.group, _encode(o.usage)) for k, o in fresh.items() if k.cluster == cluster]
                gone = [tuple(k) for k in self._observed.keys() - fresh.keys() if k.cluster == cluster]
                gone += [tuple(k) for k in self._held.keys() - fresh.keys()]
                self._commit([], [(_DELETE_OBJECT, gone), (_UPSERT_USAGE, rows)])
                self._observed = fresh
                self._told = {k for k in self._told if k.cluster != cluster}
                self._held = {}  # a LIST is the truth: what admissions alone recorded gives way to it
                for key in [k for k in self._bodies.keys() - fresh.keys() if k.cluster == cluster]:
                    del self._bodies[key]
            self._set_observed(sums)

    # ---------------------------------------------------------------- cash
    def _store_cash(self, group: str, state: GroupNumbers, new: CashState) -> None:
        """Write a group's cash, then the mirror (caller holds `state.lock`)."""
        used = {k: v for k, v in new.used.items() if v}
        with self._db_lock:
            self._commit([(_UPSERT_CASH, (group, _encode(used), new.period_start, new.last_accrual))])
        state.cash, state.period_start, state.last_accrual = used, new.period_start, new.last_accrual

    def update_cash(self, group: str, accrue: Callable[[CashState], CashState | None]) -> CashState:
        """Apply an accrual to the group's cash under its lock, committed before it shows."""
        state = self._group(group)
        with state.lock:
            stored = CashState(dict(state.cash), state.period_start, state.last_accrual)
            new = accrued(group, stored, accrue)
            if new is None:
                return stored
            self._store_cash(group, state, new)
            return new

    def cash_state(self, group: str) -> CashState:
        state = self._group(group)
        with state.lock:
            return CashState(dict(state.cash), state.period_start, state.last_accrual)

    def set_cash(self, group: str, spent: Mapping[str, int]) -> None:
        """Cash spent this period per key, in nano-unit-seconds."""
        state = self._group(group)
        with state.lock:
            self._store_cash(group, state, CashState(dict(spent), state.period_start, state.last_accrual))

    def add_cash(self, group: str, key: str, nanos: int) -> None:
        state = self._group(group)
        with state.lock:
            used = dict(state.cash)
            used[key] = used.get(key, 0) + nanos
            self._store_cash(group, state, CashState(used, state.period_start, state.last_accrual))


__all__ = ["DEFAULT_FILE", "SCHEMA_VERSION", "LedgerFileError", "SqliteLedger", "default_path"]

"""The SQLite store: the embedded ledger on local disk, so that `kill -9` at any moment loses nothing.

It is the in-process store (`memory.MemoryLedger`, where its admission
rules live once) with a journal: `SqliteJournal` keeps what that store keeps
— per object its recorded usage, group and body; pending reservations; per
group cash and the last accrual; who borrows (issue 29: an admission's draws and how it is
given back, until the object goes) — in a SQLite database (the standard
library's `sqlite3`, WAL journal): opening, transactions and loading (its
tables, statements and migration are `sqlite_schema`'s). Memory is rebuilt
from the database when the store opens; after that every change goes to
the database first, in one transaction, and reaches memory only once that
transaction has committed. So:

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
  is recorded usage at once, by the memory store's standalone rules
  (`inprocess.standalone_after`, which err toward over-counting, as native
  quota does); `forget` (a DELETE review) releases every group it held.
  There are no reservations, so nothing expires.
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
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from quotalang.borrowing import Draw
from quotalang.controller.ledger.base import (
    DEFAULT_RESERVATION_TTL,
    CashState,
    LedgerUnavailable,
    ObjectKey,
    Observation,
    Observed,
)
from quotalang.controller.ledger.inprocess import Held, Loaded, PendingAdmission
from quotalang.controller.ledger.memory import MemoryLedger
from quotalang.controller.ledger.sqlite_schema import (
    DELETE_BORROWER,
    DELETE_OBJECT,
    DELETE_RESERVATION,
    KEY,
    SCHEMA,
    SCHEMA_VERSION,
    UPSERT_BORROWER,
    UPSERT_CASH,
    UPSERT_HELD,
    UPSERT_OBJECT,
    UPSERT_RESERVATION,
    UPSERT_USAGE,
    Statement,
    migrate_from_1,
)
from quotalang.errors import InternalError
from quotalang.reclaimable import Borrower, Reclaim

DEFAULT_FILE = "ledger.sqlite3"
WAL_CHECKPOINT_PAGES = 4000
Synchronous = Literal["NORMAL", "FULL"]


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


def _encode_borrower(record: Borrower) -> str:
    """A borrower record as JSON; its key is the row's."""
    how = record.reclaim
    return json.dumps({"name": record.name, "group": record.group, "usage": record.usage,
                       "draws": [[d.group, d.key, d.amount] for d in record.draws], "suspend": how.suspend,
                       "priority": how.priority, "below": how.below, "admitted": record.admitted,
                       "reclaiming": record.reclaiming})


def _borrower(key: ObjectKey, raw: Any, where: str) -> Borrower:
    """A row of `borrowers` back as a record; a malformed one is an error naming it (ValueError, TypeError)."""
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError(f"{where}: not an object")
    draws = tuple(Draw(str(g), str(k), int(a)) for g, k, a in data["draws"])
    priority = data["priority"]
    reclaim = Reclaim(None if data["suspend"] is None else str(data["suspend"]),
                      None if priority is None else int(priority), int(data["below"]))
    return Borrower(key, str(data["name"]), str(data["group"]), draws, _usage(json.dumps(data["usage"]), where),
                    reclaim, float(data["admitted"]), data["reclaiming"] is True)


def _time(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where}: expected epoch seconds, not {value!r}")
    return float(value)


class SqliteJournal:
    """An `inprocess.Journal` in a SQLite file: one transaction per change (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], synchronous: Synchronous = "NORMAL") -> None:
        self.path = Path(path)
        self.db = self._open(synchronous)

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
            for statement in SCHEMA.split(";"):  # no ";" inside the schema's comments
                if statement.strip():
                    db.execute(statement)
            row = db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
            if row is not None and row[0] == "1":
                migrate_from_1(db)
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

    def load(self) -> Loaded:
        """What the database holds; a row that does not read is an error naming it."""
        loaded = Loaded({}, {}, {}, {}, {}, {})
        db = self.db
        try:
            for api_group, kind, namespace, name, cluster, grp, usage, held, body in db.execute(
                f"SELECT {KEY}, grp, usage, held, body FROM objects"
            ):
                key = ObjectKey(api_group, kind, namespace, name, cluster)
                if body is not None:
                    loaded.bodies[key] = bytes(body)
                if held is not None:
                    loaded.held[key] = _charges(held, f"object {key}")
                else:
                    loaded.observed[key] = Observed(grp, _usage(usage, f"object {key}"))
            for api_group, kind, namespace, name, cluster, charges, deadline, rv, body in db.execute(
                f"SELECT {KEY}, charges, deadline, resource_version, body FROM reservations"
            ):
                key = ObjectKey(api_group, kind, namespace, name, cluster)
                where = f"reservation {key}"
                loaded.pending[key] = PendingAdmission(_charges(charges, where), _time(deadline, where) or 0.0, rv,
                                                       bytes(body) if body is not None else None)
            for api_group, kind, namespace, name, cluster, record in db.execute(
                f"SELECT {KEY}, record FROM borrowers"
            ):
                key = ObjectKey(api_group, kind, namespace, name, cluster)
                loaded.borrowers[key] = _borrower(key, record, f"borrower {key}")
            for grp, used, period_start, last_accrual in db.execute(
                "SELECT grp, used, period_start, last_accrual FROM cash"
            ):
                where = f"cash of group {grp}"
                loaded.cash[grp] = CashState(_usage(used, where), _time(period_start, f"{where}: period start"),
                                             _time(last_accrual, f"{where}: last accrual"))
        except (ValueError, TypeError, KeyError, sqlite3.Error) as exc:
            raise LedgerFileError(f"the ledger database {self.path} cannot be read: {exc}") from None
        return loaded

    def held(self, key: ObjectKey, held: Held, body: bytes) -> None:
        self._commit([(UPSERT_HELD, (*key, _encode_held(held), body))])

    def reserved(self, key: ObjectKey, pending: PendingAdmission) -> None:
        self._commit([(UPSERT_RESERVATION, (*key, json.dumps(pending.charges), pending.deadline,
                                              pending.resource_version, pending.body))])

    def observed(self, seen: Sequence[tuple[Observation, bytes | None]], folded: Iterable[ObjectKey]) -> None:
        statements: list[Statement] = [
            (UPSERT_OBJECT, (*o.identity, o.group, _encode(o.usage), body)) for o, body in seen]
        statements += [(DELETE_RESERVATION, tuple(key)) for key in folded]
        self._commit(statements)

    def forgotten(self, key: ObjectKey) -> None:
        self._commit([(DELETE_OBJECT, tuple(key)), (DELETE_RESERVATION, tuple(key)),
                      (DELETE_BORROWER, tuple(key))])

    def borrowers(self, rows: Sequence[tuple[ObjectKey, Borrower | None]]) -> None:
        self._commit([(UPSERT_BORROWER, (*key, _encode_borrower(record))) if record is not None
                      else (DELETE_BORROWER, tuple(key)) for key, record in rows])

    def expired(self, keys: Sequence[ObjectKey]) -> None:
        self._commit([], [(DELETE_RESERVATION, [tuple(k) for k in keys])])

    def resynced(self, rows: Sequence[tuple[ObjectKey, Observed]], gone: Sequence[ObjectKey]) -> None:
        self._commit([], [(DELETE_OBJECT, [tuple(k) for k in gone]), (DELETE_BORROWER, [tuple(k) for k in gone]),
                          (UPSERT_USAGE, [(*k, o.group, _encode(o.usage)) for k, o in rows])])

    def cash(self, group: str, state: CashState) -> None:
        self._commit([(UPSERT_CASH, (group, _encode(state.used), state.period_start, state.last_accrual))])

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.close()

    def _commit(self, statements: Sequence[Statement], many: Sequence[Statement] = ()) -> None:
        """Run statements in one transaction (caller holds `_db_lock`); all or nothing.

        `many` are (sql, rows) pairs for executemany (a resync's thousands of rows).
        One statement alone (an admission's) runs as its own implicit
        transaction: as atomic, and two calls fewer on the hot path.
        """
        db = self.db
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



class SqliteLedger(MemoryLedger):
    """The durable embedded ledger: the in-process store journalled to a SQLite file (see the module doc).

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
        self.journal = SqliteJournal(path, synchronous)
        self.path = self.journal.path
        try:
            super().__init__(standalone=standalone, reservation_ttl=reservation_ttl, clock=clock,
                             fallback_lookup=fallback_lookup, journal=self.journal)
        except BaseException:
            self.journal.db.close()
            raise

    @property
    def _db(self) -> sqlite3.Connection:
        """The connection (tests inject SQLite's own failures through it)."""
        return self.journal.db


__all__ = ["DEFAULT_FILE", "SCHEMA_VERSION", "LedgerFileError", "SqliteJournal", "SqliteLedger", "default_path"]

"""The SQLite journal's schema: its tables, the statements that write them, and the migration on open.

Invariants: every value goes in through a bound parameter (nothing in a
review is ever interpolated into SQL; the only text formatted into a
statement is this module's own table and column names); the five key
columns are `ObjectKey`'s fields in its order, so a statement takes `*key`;
`SCHEMA_VERSION` changes with any change a binary that predates it could
misread, and the previous version is migrated inside the opening
transaction (all or nothing).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

# 2: the cluster is part of an object's key (1 is migrated on open). The `borrowers` table is created on
# open in a schema-2 file that lacks it (no version bump: a binary that predates it ignores the table, and
# a record it left behind for an object since gone is dropped when the store loads).
SCHEMA_VERSION = 2

SCHEMA = """
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
    body BLOB,               -- JSON of the stored object (bodies.pack)
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
CREATE TABLE IF NOT EXISTS borrowers (
    api_group TEXT NOT NULL, kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    cluster TEXT NOT NULL DEFAULT '',
    record TEXT NOT NULL,    -- JSON: an admission that borrowed (reclaimable.Borrower, see sqlite._encode_borrower)
    PRIMARY KEY (api_group, kind, namespace, name, cluster)
);
CREATE TABLE IF NOT EXISTS cash (
    grp TEXT PRIMARY KEY,
    used TEXT NOT NULL,      -- JSON {key: nano-unit-seconds}
    period_start REAL,
    last_accrual REAL
) WITHOUT ROWID;
"""

KEY = "api_group, kind, namespace, name, cluster"  # ObjectKey's fields, in its order (statements pass *key)
UPSERT_OBJECT = (
    f"INSERT INTO objects ({KEY}, grp, usage, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    f"ON CONFLICT ({KEY}) DO UPDATE SET grp = excluded.grp, usage = excluded.usage, "
    "held = NULL, body = coalesce(excluded.body, objects.body)"
)
UPSERT_HELD = (
    f"INSERT INTO objects ({KEY}, grp, usage, held, body) "
    f"VALUES (?, ?, ?, ?, ?, NULL, '{{}}', ?, ?) ON CONFLICT ({KEY}) "
    "DO UPDATE SET grp = NULL, usage = '{}', held = excluded.held, body = excluded.body"
)
UPSERT_USAGE = (
    f"INSERT INTO objects ({KEY}, grp, usage) VALUES (?, ?, ?, ?, ?, ?, ?) "
    f"ON CONFLICT ({KEY}) DO UPDATE SET grp = excluded.grp, usage = excluded.usage, held = NULL"
)
WHERE_KEY = "WHERE api_group = ? AND kind = ? AND namespace = ? AND name = ? AND cluster = ?"
DELETE_OBJECT = f"DELETE FROM objects {WHERE_KEY}"
UPSERT_RESERVATION = (
    f"INSERT INTO reservations ({KEY}, charges, deadline, resource_version, body) "
    f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT ({KEY}) DO UPDATE SET "
    "charges = excluded.charges, deadline = excluded.deadline, resource_version = excluded.resource_version, "
    "body = excluded.body"
)
DELETE_RESERVATION = f"DELETE FROM reservations {WHERE_KEY}"
UPSERT_BORROWER = (
    f"INSERT INTO borrowers ({KEY}, record) VALUES (?, ?, ?, ?, ?, ?) "
    f"ON CONFLICT ({KEY}) DO UPDATE SET record = excluded.record"
)
DELETE_BORROWER = f"DELETE FROM borrowers {WHERE_KEY}"
UPSERT_CASH = "INSERT OR REPLACE INTO cash (grp, used, period_start, last_accrual) VALUES (?, ?, ?, ?)"

Statement = tuple[str, Sequence[Any]]


def migrate_from_1(db: sqlite3.Connection) -> None:
    """Schema 1 → 2 inside the opening transaction: every row is the one cluster's (cluster "").

    SQLite cannot change a primary key in place, so the two keyed tables are
    rebuilt; an aborted open rolls the whole copy back.
    """
    for table in ("objects", "reservations"):
        columns = ", ".join(row[1] for row in db.execute(f"PRAGMA table_info({table})"))
        db.execute(f"ALTER TABLE {table} RENAME TO {table}_v1")
        db.execute(next(s for s in SCHEMA.split(";") if f"TABLE IF NOT EXISTS {table} " in s))
        db.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {table}_v1")
        db.execute(f"DROP TABLE {table}_v1")
    db.execute("UPDATE meta SET value = ? WHERE name = 'schema'", (str(SCHEMA_VERSION),))


__all__ = [
    "DELETE_BORROWER",
    "DELETE_OBJECT",
    "DELETE_RESERVATION",
    "KEY",
    "SCHEMA",
    "SCHEMA_VERSION",
    "UPSERT_BORROWER",
    "UPSERT_CASH",
    "UPSERT_HELD",
    "UPSERT_OBJECT",
    "UPSERT_RESERVATION",
    "UPSERT_USAGE",
    "WHERE_KEY",
    "Statement",
    "migrate_from_1",
]

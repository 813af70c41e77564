"""Opening the embedded SQLite ledger for `serve`: where its file lives, and the one-time import of an old cash file.

`--state PATH` used to name the memory store's cash JSON file (with a
cluster). The SQLite ledger replaces it: it keeps cash and the last accrual
together with usage and reservations. When `--state` names a file that is
still such a JSON file, it is imported once — parsed and checked whole
(`cash_file.load`), written into a new database beside it, a copy kept as
`PATH.imported-cash.json`, and the database moved over `PATH` with one
atomic rename — so a crash at any point leaves either the old JSON file at
`PATH` (and the import runs again) or the complete database.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from quotalang.controller import cash_file
from quotalang.controller.ledger.base import DEFAULT_RESERVATION_TTL, CashState, ObjectKey
from quotalang.controller.ledger.memory import MemoryLedger
from quotalang.controller.ledger.sqlite import SqliteLedger, default_path
from quotalang.server.logs import log_event

LOG = logging.getLogger("quotalang.serve")
SQLITE_MAGIC = b"SQLite format 3\x00"


def _is_old_cash_file(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            head = file.read(64)
    except OSError:
        return False
    return bool(head) and not head.startswith(SQLITE_MAGIC) and head.lstrip().startswith(b"{")


def import_cash_file(path: Path) -> int:
    """Turn the old cash JSON file at `path` into a SQLite ledger holding that cash; return the groups imported.

    Raises `cash_file.CashFileError` (naming the file) when it does not read;
    then nothing is changed.
    """
    parsed = MemoryLedger()
    cash_file.load(path, parsed)  # the whole file is checked before anything is written
    groups = parsed.group_names()
    fresh = path.with_name(path.name + ".importing")
    with contextlib.suppress(FileNotFoundError):
        fresh.unlink()  # a leftover of an import that crashed: redo it
    for leftover in (fresh.with_name(fresh.name + "-wal"), fresh.with_name(fresh.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
    ledger = SqliteLedger(fresh)
    try:
        for group in groups:
            saved = parsed.cash_state(group)

            def restore(_: CashState, saved: CashState = saved) -> CashState:
                return CashState(dict(saved.used), saved.period_start, saved.last_accrual)

            ledger.update_cash(group, restore)
    finally:
        ledger.close()  # checkpoints: the database is one file again, ready to be renamed
    copy = path.with_name(path.name + ".imported-cash.json")
    copy.write_bytes(path.read_bytes())
    os.replace(fresh, path)
    return len(groups)


def open_embedded(
    state: str | None,
    *,
    standalone: bool,
    reservation_ttl: float = DEFAULT_RESERVATION_TTL,
    fallback_lookup: Callable[[ObjectKey], Mapping[str, Any] | None] | None = None,
) -> SqliteLedger:
    """The SQLite ledger at `state` (default under `$XDG_STATE_HOME/quotalang/`), an old cash file imported first.

    Raises `LedgerFileError` / `CashFileError` (both `QuotalangError`s, shown
    without a traceback) when the file cannot be used.
    """
    path = Path(state) if state else default_path()
    if _is_old_cash_file(path):
        count = import_cash_file(path)
        log_event(LOG, logging.INFO, "imported an old cash state file into the SQLite ledger", path=str(path),
                  groups=count, copy=str(path.with_name(path.name + ".imported-cash.json")))
    return SqliteLedger(path, standalone=standalone, reservation_ttl=reservation_ttl,
                        fallback_lookup=fallback_lookup)


__all__ = ["import_cash_file", "open_embedded"]

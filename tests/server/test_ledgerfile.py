"""Opening serve's embedded SQLite ledger: the default place, and the one-time import of an old cash JSON file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quotalang.controller.cash_file import CashFileError
from quotalang.controller.ledger.base import CashState
from quotalang.server.ledgerfile import open_embedded

GPU = "requests.nvidia.com/gpu"
OLD = {"version": 1, "groups": {"alice": {"cash": {GPU: 3600 * 10**9}, "periodStart": 100.0, "lastAccrual": 200.0}}}


def test_the_default_file_is_under_xdg_state_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    ledger = open_embedded(None, standalone=True)
    assert ledger.path == tmp_path / "quotalang" / "ledger.sqlite3"
    assert ledger.path.is_file() and ledger.standalone
    ledger.close()


def test_an_old_cash_file_is_imported_once(tmp_path: Path) -> None:
    state = tmp_path / "cash.json"
    state.write_text(json.dumps(OLD))
    ledger = open_embedded(str(state), standalone=False)
    assert ledger.cash_state("alice") == CashState({GPU: 3600 * 10**9}, 100.0, 200.0)
    ledger.update_cash("alice", lambda s: CashState({GPU: 7200 * 10**9}, 100.0, 300.0))
    ledger.close()
    assert state.read_bytes().startswith(b"SQLite format 3\x00")  # the database took the file's place
    assert json.loads((tmp_path / "cash.json.imported-cash.json").read_text()) == OLD  # a copy is kept
    again = open_embedded(str(state), standalone=False)  # not imported again over newer cash
    assert again.cash_state("alice").last_accrual == 300.0
    again.close()


def test_an_unreadable_cash_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    state = tmp_path / "cash.json"
    state.write_text('{"version": 7}')
    with pytest.raises(CashFileError, match="unsupported version 7"):
        open_embedded(str(state), standalone=True)
    assert state.read_text() == '{"version": 7}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cash.json"]

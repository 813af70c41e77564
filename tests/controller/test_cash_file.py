"""Cash state on disk: round trip, missing file, corrupt or foreign files, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quotalang.controller import MemoryLedger
from quotalang.controller.cash_file import CashFileError, load, save
from quotalang.controller.ledger.base import CashState
from quotalang.errors import QuotalangError

GPU = "requests.nvidia.com/gpu"
A100 = "requests.nvidia.com/gpu.A100"
GPU_HOUR = 10**9 * 3600  # 3_600_000_000_000
MONDAY = 1_795_392_000.0  # 2026-11-23 00:00 UTC (20780 days × 86400 s; see test_cash.py)


def _set(ledger: MemoryLedger, group: str, state: CashState) -> None:
    ledger.update_cash(group, lambda _old: state)


def test_round_trip_through_a_memory_ledger(tmp_path: Path) -> None:
    path = tmp_path / "cash.json"
    ledger = MemoryLedger()
    # 40000 h of 8 GPUs over years, past 2**53, must survive JSON exactly: 40000 × 3.6e12 × 8 = 1.152e18
    big = 40000 * GPU_HOUR * 8
    assert big == 1_152_000_000_000_000_000
    _set(ledger, "alice", CashState({GPU: 3 * GPU_HOUR, A100: big + 1}, MONDAY, MONDAY + 3600.5))
    _set(ledger, "forever", CashState({GPU: 7}, None, MONDAY + 1))
    save(path, ledger, ["alice", "forever", "alice"])

    body = json.loads(path.read_text())
    assert body == {
        "version": 1,
        "groups": {
            "alice": {
                "cash": {GPU: 10_800_000_000_000, A100: 1_152_000_000_000_000_001},  # 3 × 3.6e12; big + 1
                "periodStart": 1_795_392_000.0,
                "lastAccrual": 1_795_395_600.5,  # MONDAY + 3600.5
            },
            "forever": {"cash": {GPU: 7}, "periodStart": None, "lastAccrual": 1_795_392_001.0},
        },
    }

    fresh = MemoryLedger()
    assert load(path, fresh) == 2
    assert fresh.cash_state("alice") == CashState(
        {GPU: 10_800_000_000_000, A100: 1_152_000_000_000_000_001}, 1_795_392_000.0, 1_795_395_600.5
    )
    assert fresh.cash_state("forever") == CashState({GPU: 7}, None, 1_795_392_001.0)
    assert fresh.cash_used("alice")[A100] == 1_152_000_000_000_000_001
    # nothing but the file and the directory: the temporary file was renamed away
    assert [p.name for p in tmp_path.iterdir()] == ["cash.json"]


def test_save_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "cash.json"
    path.write_text("old contents")
    ledger = MemoryLedger()
    _set(ledger, "g", CashState({GPU: 1}, None, MONDAY))
    save(path, ledger, ["g"])
    assert json.loads(path.read_text())["groups"]["g"]["cash"] == {GPU: 1}


def test_a_group_without_cash_round_trips_empty(tmp_path: Path) -> None:
    path = tmp_path / "cash.json"
    save(path, MemoryLedger(), ["empty"])
    fresh = MemoryLedger()
    assert load(path, fresh) == 1
    assert fresh.cash_state("empty") == CashState({}, None, None)


def test_missing_file_restores_nothing(tmp_path: Path) -> None:
    ledger = MemoryLedger()
    assert load(tmp_path / "nope.json", ledger) == 0
    assert ledger.group_names() == []


def test_ledger_ahead_of_the_file_keeps_its_numbers(tmp_path: Path) -> None:
    path = tmp_path / "cash.json"
    old = MemoryLedger()
    _set(old, "g", CashState({GPU: 1}, None, MONDAY))
    save(path, old, ["g"])
    newer = MemoryLedger()
    _set(newer, "g", CashState({GPU: 5}, None, MONDAY + 60))
    assert load(path, newer) == 0
    assert newer.cash_state("g") == CashState({GPU: 5}, None, MONDAY + 60)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"version": 2, "groups": {}}', "unsupported version 2"),
        ('{"groups": {}}', "unsupported version None"),
        ('{"version": true, "groups": {}}', "unsupported version True"),
        ('{"version": 1}', "groups must be an object"),
        ('{"version": 1, "groups": {"g": 3}}', "group 'g' must be an object"),
        ('{"version": 1, "groups": {"g": {"cash": {"k": 1.5}}}}', "cash k must be a non-negative integer"),
        ('{"version": 1, "groups": {"g": {"cash": {"k": -1}}}}', "cash k must be a non-negative integer"),
        ('{"version": 1, "groups": {"g": {"cash": {}, "lastAccrual": "today"}}}', "lastAccrual must be a number"),
        ('{"version": 1, "groups": {"g": {"cash": {}, "periodStart": true}}}', "periodStart must be a number"),
    ],
)
def test_corrupt_files_raise_a_clear_error_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "cash.json"
    path.write_text(text)
    ledger = MemoryLedger()
    with pytest.raises(CashFileError, match=message) as caught:
        load(path, ledger)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, QuotalangError)
    assert ledger.group_names() == []  # nothing restored from a bad file


def test_a_bad_group_restores_no_group(tmp_path: Path) -> None:
    path = tmp_path / "cash.json"
    path.write_text('{"version": 1, "groups": {"a": {"cash": {"k": 1}}, "b": {"cash": {"k": "x"}}}}')
    ledger = MemoryLedger()
    with pytest.raises(CashFileError, match="group 'b'"):
        load(path, ledger)
    assert ledger.group_names() == []


def test_binary_garbage_and_unreadable_paths(tmp_path: Path) -> None:
    path = tmp_path / "cash.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CashFileError, match="not UTF-8") as caught:
        load(path, MemoryLedger())
    assert str(path) in str(caught.value)
    with pytest.raises(CashFileError, match="cannot read") as caught:
        load(tmp_path, MemoryLedger())  # a directory
    assert str(tmp_path) in str(caught.value)


def test_save_into_a_missing_directory_raises_cash_file_error(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "cash.json"
    with pytest.raises(CashFileError, match="cannot write") as caught:
        save(path, MemoryLedger(), ["g"])
    assert str(path) in str(caught.value)

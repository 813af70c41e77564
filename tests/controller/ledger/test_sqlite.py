"""The SQLite store: what only a durable store can show — reopening, failed writes, the file itself.

The behaviour it shares with the memory store is in test_ledger_contract.py;
the kill -9 test of a running server is tests/server/test_crash.py. Numbers
as there: a pod asks for 4 cpu, group `a` may use 40.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from quotalang.compiler import CompiledPolicy, compile_sources
from quotalang.controller.ledger.base import CashState, LedgerUnavailable, ObjectKey
from quotalang.controller.ledger.sqlite import LedgerFileError, SqliteLedger, default_path
from quotalang.controller.ledger.sqlite_schema import SCHEMA_VERSION
from quotalang.loader import load_text
from tests.asks import admit
from tests.cash import add_cash
from tests.controller.ledger.test_memory import CPU, NANO, POLICY, Clock, deployment, key, usage

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    return compile_sources(load_text(POLICY, "ledger.quota"))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "ledger.sqlite3"


def cpu(ledger: SqliteLedger, group: str) -> int:
    return ledger.used(group).get("requests.cpu", 0)


def reopened(path: Path, ledger: SqliteLedger, **options: Any) -> SqliteLedger:
    """Close (as a stop would) and open again: the numbers must come back from the file alone."""
    ledger.close()
    return SqliteLedger(path, **options)


def test_recorded_usage_survives_a_reopen(policy: CompiledPolicy, path: Path) -> None:
    ledger = SqliteLedger(path)
    assert admit(ledger, policy, deployment("web", replicas=2), "CREATE").allowed
    assert admit(ledger, policy, deployment("api", "b", replicas=3), "CREATE").allowed
    ledger = reopened(path, ledger)
    assert (cpu(ledger, "a"), cpu(ledger, "b")) == (2 * CPU, 3 * CPU)
    assert ledger.group_usage("a").objects == 1
    parent = ledger.lookup(key("web"))  # the body is kept too: a /scale after a restart finds its parent
    assert parent is not None and parent["spec"]["replicas"] == 2
    assert admit(ledger, policy, deployment("more", replicas=8), "CREATE").allowed  # 2 + 8 = 10 pods: full
    assert not admit(ledger, policy, deployment("one-too-many"), "CREATE").allowed
    ledger.close()


KILLED = """
import os, signal, sys
from quotalang.compiler import compile_sources
from quotalang.controller.ledger.sqlite import SqliteLedger
from quotalang.loader import load_text
from tests.controller.ledger.test_memory import POLICY, deployment
from tests.asks import admit
ledger = SqliteLedger(sys.argv[1])
policy = compile_sources(load_text(POLICY, "ledger.quota"))
assert admit(ledger, policy, deployment("web", replicas=10), "CREATE").allowed
os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint: the WAL is all there is
"""


def test_a_kill_right_after_an_admission_loses_nothing(policy: CompiledPolicy, path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", KILLED, str(path)], cwd=ROOT, timeout=60, check=False)
    assert done.returncode == -signal.SIGKILL
    assert path.with_name(path.name + "-wal").exists()  # nothing was checkpointed
    again = SqliteLedger(path)
    assert cpu(again, "a") == 10 * CPU
    assert not admit(again, policy, deployment("web-2"), "CREATE").allowed  # the full group stays full
    again.close()


def test_moves_updates_and_deletes_persist(policy: CompiledPolicy, path: Path) -> None:
    ledger = SqliteLedger(path)
    admit(ledger, policy, deployment("web", "a", replicas=2), "CREATE")
    admit(ledger, policy, deployment("web", "b", replicas=3), "UPDATE", old=deployment("web", "a", replicas=2))
    admit(ledger, policy, deployment("gone", "a"), "CREATE")
    ledger.forget(key("gone"))
    ledger = reopened(path, ledger)
    assert (cpu(ledger, "a"), cpu(ledger, "b")) == (0, 3 * CPU)
    assert ledger.lookup(key("gone")) is None
    assert len(ledger) == 1
    ledger.close()


def test_unlabelled_objects_are_kept_for_lookups_and_charge_nothing(policy: CompiledPolicy, path: Path) -> None:
    ledger = SqliteLedger(path)
    assert admit(ledger, policy, deployment("free", None, replicas=50), "CREATE").allowed
    ledger = reopened(path, ledger)
    assert ledger.lookup(key("free")) is not None
    assert ledger.group_names() == []
    ledger.close()


def test_reservations_keep_their_deadline_across_a_restart(policy: CompiledPolicy, path: Path) -> None:
    clock = Clock()
    clock.now = 1000.0
    ledger = SqliteLedger(path, standalone=False, clock=clock, reservation_ttl=30)
    admit(ledger, policy, deployment("web", replicas=4), "CREATE")
    ledger = reopened(path, ledger, standalone=False, clock=clock, reservation_ttl=30)
    numbers = ledger.group_usage("a")
    assert (numbers.reserved["requests.cpu"], numbers.reservations) == (4 * CPU, 1)
    assert list(ledger.pending()) == [key("web")]
    clock.now = 1029.0
    assert ledger.expire() == 0
    clock.now = 1030.0  # the deadline passed while nobody ran: the first expire returns the quota
    assert ledger.expire() == 1
    ledger = reopened(path, ledger, standalone=False, clock=clock)
    assert cpu(ledger, "a") == 0 and list(ledger.pending()) == []
    ledger.close()


def test_an_observation_folds_the_reservation_durably(policy: CompiledPolicy, path: Path) -> None:
    clock = Clock()
    ledger = SqliteLedger(path, standalone=False, clock=clock)
    admit(ledger, policy, deployment("web", replicas=2), "CREATE")
    ledger.observe(key("web"), "a", usage(2), resource_version="7")
    ledger.resync({"a": {key("web"): usage(2), key("other"): usage(1)}})
    ledger = reopened(path, ledger, standalone=False, clock=clock)
    numbers = ledger.group_usage("a")
    assert (numbers.observed["requests.cpu"], dict(numbers.reserved), numbers.objects) == (3 * CPU, {}, 2)
    ledger.close()


def test_cash_and_the_last_accrual_persist(path: Path) -> None:
    ledger = SqliteLedger(path)
    gpu = "requests.nvidia.com/gpu"
    ledger.update_cash("a", lambda s: CashState({gpu: 3600 * NANO}, 100.0, 200.0))
    add_cash(ledger, "a", gpu, 1800 * NANO)
    ledger = reopened(path, ledger)
    assert ledger.cash_state("a") == CashState({gpu: 5400 * NANO}, 100.0, 200.0)
    assert dict(ledger.cash_used("a")) == {gpu: 5400 * NANO}
    ledger.close()


def test_usage_beyond_64_bits_round_trips(path: Path) -> None:
    """8 Ti of memory is 8.8e21 nano-bytes: more than SQLite's and orjson's 64-bit integers hold."""
    ledger = SqliteLedger(path, standalone=False)
    big = {"requests.memory": 8 * 2**40 * NANO}
    ledger.observe(key("huge"), "a", big)
    ledger = reopened(path, ledger, standalone=False)
    assert ledger.group_usage("a").observed == big
    ledger.close()


def test_names_that_look_like_sql_are_stored_verbatim(policy: CompiledPolicy, path: Path) -> None:
    """Bound parameters only: a name is data, never SQL."""
    name = "x'); DROP TABLE objects; --"
    obj = deployment(name)
    ledger = SqliteLedger(path)
    assert admit(ledger, policy, obj, "CREATE").allowed
    ledger = reopened(path, ledger)
    assert ledger.lookup(key(name)) == obj
    assert cpu(ledger, "a") == CPU
    ledger.close()


def test_a_failed_write_records_nothing_and_says_why(policy: CompiledPolicy, path: Path) -> None:
    ledger = SqliteLedger(path)
    admit(ledger, policy, deployment("web"), "CREATE")
    # A real SQLite error from inside the transaction (what a full disk raises), not a mock.
    ledger._db.execute("CREATE TEMP TRIGGER full BEFORE INSERT ON objects BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    with pytest.raises(LedgerUnavailable, match=r"ledger database .* could not be written: disk full"):
        admit(ledger, policy, deployment("next", replicas=2), "CREATE")
    assert cpu(ledger, "a") == CPU  # the mirror did not move
    assert ledger.lookup(key("next")) is None
    ledger._db.execute("DROP TRIGGER full")
    assert admit(ledger, policy, deployment("next", replicas=2), "CREATE").allowed  # and it recovers
    ledger = reopened(path, ledger)
    assert cpu(ledger, "a") == 3 * CPU
    ledger.close()


def test_a_second_process_cannot_share_the_file(path: Path) -> None:
    ledger = SqliteLedger(path)
    with pytest.raises(LedgerFileError, match="in use by another process"):
        SqliteLedger(path)
    ledger.close()
    SqliteLedger(path).close()  # free again once the first is closed


def test_a_file_that_is_not_a_ledger_is_refused(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database, it is some text file that happens to be here" * 20)
    with pytest.raises(LedgerFileError, match="is not a quotalang ledger database"):
        SqliteLedger(path)


def test_another_schema_version_is_refused(path: Path) -> None:
    SqliteLedger(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE name = 'schema'")
    db.commit()
    db.close()
    with pytest.raises(LedgerFileError, match=f"schema version 99; this quotalang reads version {SCHEMA_VERSION}"):
        SqliteLedger(path)


_SCHEMA_1 = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE objects (api_group TEXT NOT NULL, kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    grp TEXT, usage TEXT NOT NULL, held TEXT, body BLOB, PRIMARY KEY (api_group, kind, namespace, name));
CREATE TABLE reservations (api_group TEXT NOT NULL, kind TEXT NOT NULL, namespace TEXT NOT NULL,
    name TEXT NOT NULL, charges TEXT NOT NULL, deadline REAL NOT NULL, resource_version TEXT, body BLOB,
    PRIMARY KEY (api_group, kind, namespace, name));
CREATE TABLE cash (grp TEXT PRIMARY KEY, used TEXT NOT NULL, period_start REAL, last_accrual REAL) WITHOUT ROWID;
INSERT INTO meta VALUES ('schema', '1');
INSERT INTO objects VALUES ('apps', 'Deployment', 'ns', 'web', 'a', '{"requests.cpu":8000000000}', NULL, NULL);
INSERT INTO reservations VALUES ('apps', 'Deployment', 'ns', 'api', '{"a":{"requests.cpu":4000000000}}',
    4102444800.0, NULL, NULL);
"""


def test_a_schema_1_file_is_migrated_as_the_one_clusters(path: Path) -> None:
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.executescript(_SCHEMA_1)
    db.close()
    ledger = SqliteLedger(path, standalone=False, clock=Clock())
    usage = ledger.group_usage("a")  # 8 observed + 4 reserved (its deadline is in 2100)
    assert (usage.observed["requests.cpu"], usage.reserved["requests.cpu"]) == (2 * CPU, CPU)
    assert list(ledger.pending()) == [key("api")]  # cluster ""
    in_b = ObjectKey("apps", "Deployment", "ns", "web", "b")  # the same name in cluster b: another object
    ledger.observe(in_b, "a", {"requests.cpu": CPU})
    ledger = reopened(path, ledger, standalone=False, clock=Clock())
    assert ledger.group_usage("a").observed["requests.cpu"] == 3 * CPU
    assert ledger.group_usage("a").objects == 2
    ledger.close()
    assert sqlite3.connect(path).execute("SELECT value FROM meta").fetchone() == (str(SCHEMA_VERSION),)


def test_a_corrupt_row_is_refused_naming_it(path: Path) -> None:
    SqliteLedger(path).close()
    db = sqlite3.connect(path)
    held = '{"a": {"cpu": "lots"}}'
    db.execute("INSERT INTO objects VALUES ('apps', 'Deployment', 'ns', 'bad', '', NULL, '{}', ?, NULL)", (held,))
    db.commit()
    db.close()
    with pytest.raises(LedgerFileError, match=r"cannot be read: object Deployment.apps ns/bad"):
        SqliteLedger(path)


def test_the_file_is_private_and_uses_wal(path: Path) -> None:
    ledger = SqliteLedger(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert ledger._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    ledger.close()


def test_default_path_follows_xdg_state_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_path() == tmp_path / "quotalang" / "ledger.sqlite3"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_path() == tmp_path / "home" / ".local" / "state" / "quotalang" / "ledger.sqlite3"


def test_retries_write_nothing(policy: CompiledPolicy, path: Path) -> None:
    """The apiserver retries; re-admitting the identical object must not cost a transaction."""
    ledger = SqliteLedger(path)
    admit(ledger, policy, deployment("web"), "CREATE")
    before = ledger._db.total_changes
    admit(ledger, policy, deployment("web"), "CREATE")
    assert ledger._db.total_changes == before
    ledger.close()


def test_objects_of_lists_a_groups_workloads(policy: CompiledPolicy, path: Path) -> None:
    ledger = SqliteLedger(path)
    admit(ledger, policy, deployment("web", replicas=2), "CREATE")
    admit(ledger, policy, deployment("api", "b"), "CREATE")
    assert [(k, u["requests.cpu"]) for k, u in ledger.objects_of("a")] == [(key("web"), 2 * CPU)]
    assert ObjectKey("apps", "Deployment", "ns", "api") in dict(ledger.objects_of("b"))
    ledger.close()

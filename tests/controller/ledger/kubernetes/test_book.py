"""A replica's admission book: the sum in step, expiry from the front, what the ledger object holds."""

from __future__ import annotations

from quotalang.controller.ledger.crd import Held
from quotalang.controller.ledger.kubernetes.book import _Admissions, _confirmed, _Mine, _replaces, _written


def book() -> _Admissions:
    mine = _Admissions()
    mine.put("a", _Mine({"cpu": 1}, 10.0, "7"))
    mine.put("b", _Mine({"cpu": 2, "mem": 5}, 20.0, None))
    mine.put("c", _Mine({"cpu": 4}, 30.0, "9"))
    return mine


def test_the_sum_is_kept_in_step_with_puts_and_drops() -> None:
    mine = book()
    assert mine.total == {"cpu": 7, "mem": 5}
    mine.put("b", _Mine({"cpu": 3}, 40.0, "8"))  # replaced: 1 + 4 + 3, and b moves to the end
    assert mine.total == {"cpu": 8} and list(mine.items) == ["a", "c", "b"]
    assert mine.drop("a") and not mine.drop("a")
    assert mine.total == {"cpu": 7}


def test_expiry_pops_from_the_front_and_stops_at_the_first_live_one() -> None:
    mine = book()
    assert not mine.expire(9.9)
    assert mine.expire(20.0)  # a (10) and b (20) are past; c (30) is not
    assert list(mine.items) == ["c"] and mine.total == {"cpu": 4}


def test_what_the_object_holds_with_a_batchs_changes_and_without_dropped_slots() -> None:
    mine = book()
    assert mine.held() == Held({"cpu": 7, "mem": 5}, 3, 30.0)
    held = mine.held({"d": _Mine({"cpu": 10}, 50.0, None), "a": _Mine({"cpu": 2}, 45.0, "7")}, drop=["c"])
    # without c (4): 1 + 2 = 3; a replaced by 2: 4; d adds 10: 14; count 3 - 1 + 1 = 3; last 50
    assert held == Held({"cpu": 14, "mem": 5}, 3, 50.0)
    assert _Admissions().held() is None


def test_a_fold_confirms_what_it_observed_at_or_after_the_admitted_version() -> None:
    mine = book()
    # An UPDATE against version 7 is stored as a later one: a seen at 7 is the object before it (not yet);
    # b was a CREATE: any version holds it; c, updated against 9, seen at 10; x is not this replica's.
    folded = ["a@7", "b@3", "c@10", "x@1"]
    assert _confirmed(mine, folded) == {"b", "c"}


def test_a_create_or_the_same_version_replaces_a_newer_version_adds() -> None:
    pending = _Mine({"cpu": 1}, 10.0, "7")
    assert _replaces(pending, "CREATE", None) and _replaces(pending, "UPDATE", "7")
    assert not _replaces(pending, "UPDATE", "8")


def test_an_entry_is_written_when_sum_count_and_deadline_match_to_the_microsecond() -> None:
    assert _written(Held({"cpu": 1}, 1, 10.0), Held({"cpu": 1}, 1, 10.000001))
    assert not _written(Held({"cpu": 1}, 1, 10.0), Held({"cpu": 1}, 1, 10.0001))
    assert not _written(Held({"cpu": 1}, 1, 10.0), None) and _written(None, None)

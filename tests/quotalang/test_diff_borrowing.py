"""`quotalang diff` and borrowing (issue 29): lend / borrow changes, and what they do to current borrowing.

The old policy is test_tree_borrowing's (GPUs): root 8, all carved (own room 0); a 4 lend 2; b 4 borrow 2.
With b using 6 now: b's T 4 − 6 = −2 (borrowed 2, from root's pool: a's offer min(2, 4) = 2); root's
T 0 + 2 − 2 = 0 cannot drop, so a's 2 are lent out.
"""

from __future__ import annotations

from pathlib import Path

from tests.quotalang.test_policydiff import policy, run, run_json
from tests.quotalang.test_tree_borrowing import POLICY

GPU = "requests.nvidia.com/gpu"
B_USES_6 = '{"b": {"requests.nvidia.com/gpu": "6"}}'


def dirs(tmp_path: Path, new: str, usage: str | None = None) -> list[str]:
    argv = [policy(tmp_path, "old", POLICY), policy(tmp_path, "new", new)]
    if usage is not None:
        (tmp_path / "u.json").write_text(usage)
        argv += ["--usage", str(tmp_path / "u.json")]
    return argv


def test_lend_and_borrow_changes_are_listed_per_group_and_key(tmp_path: Path) -> None:
    new = POLICY.replace(f"{GPU} 4 lend 2", f"{GPU} 4 lend 1").replace(f"{GPU} 4 borrow 2", f"{GPU} 4 borrow 3")
    code, body = run_json(*dirs(tmp_path, new))
    assert code == 0  # no usage given: nothing current can be over
    assert body["changes"] == [
        {"group": "a", "key": f"lend {GPU}", "old": "2", "new": "1", "change": "lowered"},
        {"group": "b", "key": f"borrow {GPU}", "old": "2", "new": "3", "change": "raised"}]
    code, text = run(str(tmp_path / "old"), str(tmp_path / "new"))
    assert code == 0
    assert f"lend {GPU}    2 -> 1  lowered" in text


def test_a_lend_lowered_below_what_is_borrowed_now_is_over_at_the_pool(tmp_path: Path) -> None:
    # a lends 1 (was 2) while b borrows a's 2: under the new policy a offers min(1, 4) = 1, root's T
    # 0 + 1 − 2 = −1 < 0: root's pool is over by 1. a's note: 2 held − 1 lent = 1.
    new = POLICY.replace(f"{GPU} 4 lend 2", f"{GPU} 4 lend 1")
    code, body = run_json(*dirs(tmp_path, new, B_USES_6))
    assert code == 1
    balance, lend = body["borrowing"]  # in tree order: root first
    assert (lend["group"], lend["what"], lend["amount"], lend["over"]) == ("a", "lend", "1", False)
    assert lend["message"] == f"a lends {GPU} 1 (was 2), below the 2 others hold of it now (borrowing: b 2)"
    assert (balance["group"], balance["what"], balance["amount"], balance["over"]) == ("root", "balance", "1", True)
    assert f"root balance of {GPU} would be -1, below its floor 0" in body["problems"]


def test_a_borrow_lowered_below_what_the_group_borrows_now(tmp_path: Path) -> None:
    # b may borrow 1 (was 2) and borrows 2 now: 1 too many; b's own 6 > hard 4 + borrow 1: over (as a limit).
    new = POLICY.replace(f"{GPU} 4 borrow 2", f"{GPU} 4 borrow 1")
    code, body = run_json(*dirs(tmp_path, new, B_USES_6))
    assert code == 1
    (note,) = body["borrowing"]  # b's own balance (4 − 6 = −2 < −1) is the over_quota entry, not repeated
    assert note["message"] == f"b may borrow {GPU} 1 (was 2), below the 2 it borrows now"
    assert note["amount"] == "1"
    assert [(o["group"], o["key"]) for o in body["over_quota"]] == [("b", GPU)]


def test_borrowing_within_hard_plus_borrow_is_not_over(tmp_path: Path) -> None:
    # Only cpu changes: b's 6 GPUs are within 4 + borrow 2 and root's balance stays 0: no problem.
    new = POLICY.replace("limits.cpu 10", "limits.cpu 12")
    code, body = run_json(*dirs(tmp_path, new, B_USES_6))
    assert code == 0
    assert body["over_quota"] == [] and body["borrowing"] == []


def test_a_hard_lowered_into_the_guarantee_is_reported(tmp_path: Path) -> None:
    # a uses 3; its hard 4 → 3 with lend 2 leaves a guarantee of 1: 2 of its current 3 are no longer
    # guaranteed. Nothing is over: a's T 3 − 3 = 0; root's own room 8 − 7 = 1, T 1 ≥ 0. Exit 0.
    new = POLICY.replace(f"{GPU} 4 lend 2", f"{GPU} 3 lend 2")
    (tmp_path / "u.json").write_text('{"a": {"requests.nvidia.com/gpu": "3"}}')
    code, text = run(*dirs(tmp_path, new), "--usage", str(tmp_path / "u.json"))
    assert code == 0
    assert f"root/a: guarantee of {GPU} lowered to 1 (hard 3 − lend 2), below the 3 it holds now" in text
    assert "no problems" in text

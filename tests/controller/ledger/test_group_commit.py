"""Group commit: requests that arrive while a batch is being decided form the next batch."""

from __future__ import annotations

import threading
import time

import pytest

from quotalang.controller.ledger.group_commit import GroupCommit, Slot


def test_waiting_requests_are_decided_together_in_arrival_order() -> None:
    batches: list[list[int]] = []
    first_started, release = threading.Event(), threading.Event()

    def process(batch: list[Slot[int]]) -> None:
        batches.append([slot.item for slot in batch])
        if len(batches) == 1:
            first_started.set()
            release.wait(5)
        for slot in batch:
            slot.result = slot.item * 10

    commit: GroupCommit[int] = GroupCommit(process)
    results: dict[int, object] = {}

    def submit(item: int) -> None:
        results[item] = commit.submit(item, time.monotonic() + 5, lambda: TimeoutError("late"))

    leader = threading.Thread(target=submit, args=(0,))
    leader.start()
    first_started.wait(5)
    followers = []
    for item in (1, 2, 3):  # queued, in this order, while batch [0] is in flight
        thread = threading.Thread(target=submit, args=(item,))
        thread.start()
        followers.append(thread)
        while len(commit._waiting) < item:
            time.sleep(0.001)
    release.set()
    for thread in (leader, *followers):
        thread.join(5)
    assert batches == [[0], [1, 2, 3]]
    assert results == {0: 0, 1: 10, 2: 20, 3: 30}
    assert commit.batches == 2 and commit.batched == 3


def test_an_error_reaches_every_request_of_its_batch_only() -> None:
    calls = []

    def process(batch: list[Slot[int]]) -> None:
        calls.append(len(batch))
        if batch[0].item == 1:
            raise RuntimeError("apiserver gone")
        for slot in batch:
            slot.result = "ok"

    commit: GroupCommit[int] = GroupCommit(process)
    with pytest.raises(RuntimeError, match="apiserver gone"):
        commit.submit(1, time.monotonic() + 5, lambda: TimeoutError())
    assert commit.submit(2, time.monotonic() + 5, lambda: TimeoutError()) == "ok"


def test_a_request_never_picked_up_gives_up_at_its_deadline() -> None:
    hold = threading.Event()

    def process(batch: list[Slot[int]]) -> None:
        hold.wait(5)
        for slot in batch:
            slot.result = "ok"

    commit: GroupCommit[int] = GroupCommit(process)
    leader = threading.Thread(target=commit.submit, args=(0, time.monotonic() + 5, lambda: TimeoutError()))
    leader.start()
    while not commit._busy:
        time.sleep(0.001)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="busy"):
        commit.submit(1, time.monotonic() + 0.2, lambda: TimeoutError("busy"))
    assert 0.15 < time.monotonic() - started < 1.0
    hold.set()
    leader.join(5)

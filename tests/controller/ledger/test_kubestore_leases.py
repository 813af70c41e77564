"""Leases in the kubernetes store, against a real kube-apiserver: a burst admits without a write per request.

Numbers by hand: every `web-N` Deployment runs one pod requesting 1 cpu
(10**9 nanos). Group `big` may use 1000 cpu, `mid` 20. A batch takes a lease
once the replica admitted 4 in the group's current window
(`Tuning.lease_after`): m more of its last admission, m the largest of
256, 128, ..., 2, 1 no larger than the window's admissions that leaves room for 4 m.
Where a test needs its admissions in one window on a slow machine, it
widens the window (and the wait for a lease's return with it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest

from quotalang.compiler import CompiledPolicy, compile_sources
from quotalang.controller.kube import deadline
from quotalang.controller.kube.api import KubeApi
from quotalang.controller.ledger.base import ObjectKey, Observation
from quotalang.controller.ledger.crd import Held, LedgerState, from_object, object_path
from quotalang.controller.ledger.kubernetes.ledger import KubernetesLedger
from quotalang.controller.ledger.kubernetes.tuning import Tuning
from quotalang.decision import Decision
from quotalang.loader import load_text
from quotalang.server.engine import ask_for
from tests.asks import admit
from tests.controller.kube_apiserver import Cluster, apiserver, client, wipe_ledgers
from tests.controller.ledger.kubernetes.rig import CPU, POLICY, deployment  # the same numbers on the fake API
from tests.e2e.kube_cluster import wait_until

__all__ = ["apiserver"]  # the session fixture, imported for pytest


DEFAULT = Tuning()  # what a test without its own tuning runs with


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    return compile_sources(load_text(POLICY, "leases.quota"))


@pytest.fixture
def window() -> Tuning:
    """A lease window of 3 s (and 6 s to wait for a return): a test's admissions fall in one window."""
    return Tuning(lease_window=3.0, answer_wait=6.0)


@pytest.fixture
def apis(apiserver: Cluster) -> Iterator[list[KubeApi]]:
    wipe_ledgers(apiserver)
    made = [client(apiserver) for _ in range(3)]
    yield made
    for api in made:
        api.close()


def entries(api: KubeApi, group: str) -> dict[str, int]:
    """requests.cpu per reservation entry of the group's ledger object, in whole cpus."""
    state = from_object(api.request("GET", object_path(group)), group)
    return {name: held.usage.get("requests.cpu", 0) // CPU for name, held in state.reservations.items()}


def version(api: KubeApi, group: str) -> str:
    return str(api.request("GET", object_path(group))["metadata"]["resourceVersion"])


def burst(ledger: KubernetesLedger, policy: CompiledPolicy, group: str, prefix: str, count: int = 4) -> None:
    for i in range(count):
        assert admit(ledger, policy, deployment(f"{prefix}-{i}", group), "CREATE").allowed


def test_a_burst_admits_within_its_lease_without_writing(
    apis: list[KubeApi], policy: CompiledPolicy, window: Tuning
) -> None:
    ledger = KubernetesLedger(apis[0], replica="r0", tuning=window)
    burst(ledger, policy, "big", "web", 3)
    assert entries(apis[0], "big") == {"r0": 3}  # fewer than 4 in the window: no lease
    assert admit(ledger, policy, deployment("web-3", "big"), "CREATE").allowed
    # The 4th: a lease of 4 (4 admitted in the window, and room for 4 × 4 more) beside the 4 held.
    assert entries(apis[0], "big") == {"r0": 4, "r0~lease": 4}
    written = version(apis[0], "big")
    burst(ledger, policy, "big", "more")  # 4 more: all within the lease
    assert version(apis[0], "big") == written  # not one write
    assert ledger.stats.leased == 4
    assert ledger.used("big")["requests.cpu"] == 8 * CPU  # what the replica checks against: its own 8
    assert admit(ledger, policy, deployment("web-9", "big"), "CREATE").allowed  # the 5th: a write
    assert entries(apis[0], "big") == {"r0": 9, "r0~lease": 8}  # 9 in the window: 8 (16 > 9)
    # 10 more: 8 within the lease (17 held); the 18th writes: 18 in the window, so a lease of 16; the 19th is
    # within it (the object still says 18 and 16).
    burst(ledger, policy, "big", "last", 10)
    assert entries(apis[0], "big") == {"r0": 18, "r0~lease": 16}
    assert ledger.stats.leased == 13


def test_a_fold_does_not_refill_a_lease(apis: list[KubeApi], policy: CompiledPolicy, window: Tuning) -> None:
    ledger = KubernetesLedger(apis[0], replica="r0", tuning=window)
    burst(ledger, policy, "big", "web")  # the 4th takes a lease of 4
    burst(ledger, policy, "big", "leased", 2)  # 2 of the 4 handed out
    # The leader observes 3 of the replica's admissions: they leave its own sum, but the lease stays half used.
    ledger.observe_many([Observation(ObjectKey("apps", "Deployment", "default", f"web-{i}"), "big",
                                     {"requests.cpu": CPU}) for i in range(3)])
    written = version(apis[0], "big")
    burst(ledger, policy, "big", "rest", 2)  # the other 2: still no write
    assert version(apis[0], "big") == written
    assert admit(ledger, policy, deployment("next", "big"), "CREATE").allowed  # not 3 more: a write
    assert version(apis[0], "big") != written
    state = from_object(apis[0].request("GET", object_path("big")), "big")
    assert state.observed["requests.cpu"] == 3 * CPU
    assert entries(apis[0], "big") == {"r0": 9 - 3, "r0~lease": 8}  # 9 in the window: a lease of 8


def test_another_replica_counts_a_lease_and_asks_for_its_return(
    apis: list[KubeApi], policy: CompiledPolicy
) -> None:
    a, b = KubernetesLedger(apis[0], replica="a"), KubernetesLedger(apis[1], replica="b")
    burst(a, policy, "mid", "web")
    # 4 of 20 used; room for 4 × 4 more: a lease of 4.
    assert entries(apis[0], "mid") == {"a": 4, "a~lease": 4}
    # b asks for 13: 4 + 4 + 13 = 21 > 20, but 4 + 13 fits — only a's lease keeps it out. b asks; a, at its
    # next tick, answers by returning the lease, long before its window is over.
    with running(a, apis[0], "mid"):
        started = time.monotonic()
        assert admit(b, policy, deployment("huge", "mid", cpu="13"), "CREATE").allowed
        assert time.monotonic() - started < min(DEFAULT.lease_window, DEFAULT.answer_wait) / 2
    assert entries(apis[0], "mid") == {"a": 4, "b": 13}


def test_a_lease_never_returned_still_counts_after_the_wait(apis: list[KubeApi], policy: CompiledPolicy) -> None:
    a, b = KubernetesLedger(apis[0], replica="a"), KubernetesLedger(apis[1], replica="b")
    burst(a, policy, "mid", "web")
    # a went away holding its lease: b waits ANSWER_WAIT, then denies (never over-admits).
    started = time.monotonic()
    denied = admit(b, policy, deployment("huge", "mid", cpu="13"), "CREATE")
    assert not denied.allowed
    assert "used 8 of 20" in denied.message
    assert DEFAULT.answer_wait - 0.2 <= time.monotonic() - started < DEFAULT.answer_wait + 2
    assert entries(apis[0], "mid") == {"a": 4, "a~lease": 4}


def test_three_replicas_holding_leases_admit_exactly_what_fits(
    apis: list[KubeApi], policy: CompiledPolicy, window: Tuning
) -> None:
    """Each of three replicas admits 4 cpu of `mid` (20) in a burst; then 60 concurrent 1-cpu requests over
    the three: exactly the 8 left are admitted, some within the leases (each replica's tidy runs as the
    runtime runs it).

    The leases by hand: r0 after its 4 sees 4 used, room 16 ≥ 4 × 4: 4. r1 sees 4 + 4 + its 4 = 12, room 8:
    not 4 × 4, but 4 × 2: 2. r2 sees 14 + its 4 = 18, room 2 < 4 × 1: none."""
    replicas = [KubernetesLedger(api, replica=f"r{i}", tuning=window) for i, api in enumerate(apis)]
    for n, ledger in enumerate(replicas):
        burst(ledger, policy, "mid", f"warm-{n}")
    assert entries(apis[0], "mid") == {"r0": 4, "r0~lease": 4, "r1": 4, "r1~lease": 2, "r2": 4}
    stop = threading.Event()

    def tidy() -> None:
        while not stop.wait(0.1):
            for ledger in replicas:
                ledger.tidy(patient=True)

    tidier = threading.Thread(target=tidy, daemon=True)
    tidier.start()
    try:
        start = threading.Barrier(60)

        def one(i: int) -> bool:
            start.wait()
            until = time.monotonic() + deadline.budget(10)
            return admit(replicas[i % 3], policy, deployment(f"web-{i}", "mid"), "CREATE", deadline=until).allowed

        with ThreadPoolExecutor(60) as pool:
            results = list(pool.map(one, range(60)))
    finally:
        stop.set()
        tidier.join(5)
    assert results.count(True) == 8
    assert replicas[0].stats.leased >= 1 and replicas[1].stats.leased >= 1  # their leases were in play
    held = entries(apis[0], "mid")
    assert sum(v for k, v in held.items() if not k.endswith("~lease")) == 20


def test_on_the_event_loop_only_what_a_lease_covers_is_decided(
    apis: list[KubeApi], policy: CompiledPolicy, window: Tuning
) -> None:
    """`try_reserve` (the server's first try, on its event loop): an admission within the lease is decided with
    no call; anything that needs one answers None and writes nothing, and a local lookup makes no call."""
    ledger = KubernetesLedger(apis[0], replica="r0", tuning=window,
                              fallback_lookup=lambda identity: pytest.fail(f"looked {identity} up live"))

    def tried(obj: dict[str, Any], dry_run: bool = False) -> Decision | None:
        return ledger.try_reserve(ask_for(policy, obj, "CREATE", dry_run=dry_run))

    assert tried(deployment("first", "big")) is None  # no lease yet: it needs a write
    burst(ledger, policy, "big", "web")  # the 4th takes a lease of 4
    written = version(apis[0], "big")
    fast = tried(deployment("fast", "big"))
    assert fast is not None and fast.allowed
    assert tried(deployment("dry", "big"), dry_run=True) is None  # a dry run: a fresh read
    assert tried(deployment("huge", "big", cpu="2000")) is None  # a denial: a fresh read
    assert ledger.fetches
    assert ledger.lookup(ObjectKey("apps", "Deployment", "default", "nowhere"), local=True) is None  # no live GET
    assert version(apis[0], "big") == written
    assert ledger.stats.leased == 1
    assert ledger.reservations("big")["apps/Deployment/default/fast"]["requests.cpu"] == CPU


@contextmanager
def running(ledger: KubernetesLedger, api: KubeApi, group: str) -> Iterator[None]:
    """What the runtime does for a replica every tick: its ledger watch feeds the cache, and `tidy` runs."""
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.05):
            ledger.remember(from_object(api.request("GET", object_path(group)), group))
            ledger.tidy(patient=True)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def test_a_replica_that_needs_folded_room_asks_and_the_other_answers(
    apis: list[KubeApi], policy: CompiledPolicy
) -> None:
    """After a fold, a's sum still holds what the leader moved to observed, and a writes its smaller sum only
    after TIDY_LAG: b counts web twice (2 observed + a's 2). b's 18 fits without a's sum, so b asks; a answers at
    its next tick by writing its sum (now 0), and b admits 18: 2 + 18 = 20 of 20."""
    a, b = KubernetesLedger(apis[0], replica="a"), KubernetesLedger(apis[1], replica="b")
    leader = KubernetesLedger(apis[2], replica="c")
    assert admit(a, policy, deployment("web", "mid", cpu="2"), "CREATE").allowed
    leader.observe(ObjectKey("apps", "Deployment", "default", "web"), "mid", {"requests.cpu": 2 * CPU})
    a.remember(from_object(apis[0].request("GET", object_path("mid")), "mid"))  # a's watch sees the fold
    assert a.tidy(patient=True) == 0  # its smaller sum waits
    assert entries(apis[0], "mid") == {"a": 2}  # folded into observed, still in a's sum: counted twice
    with running(a, apis[0], "mid"):
        started = time.monotonic()
        assert admit(b, policy, deployment("rest", "mid", cpu="18"), "CREATE").allowed
        assert time.monotonic() - started < DEFAULT.tidy_lag / 2  # answered, not written after the lag
    assert entries(apis[0], "mid") == {"b": 18}
    assert from_object(apis[0].request("GET", object_path("mid")), "mid").asks == 1


def test_a_replica_waiting_for_answers_answers_the_asks_made_meanwhile(
    apis: list[KubeApi], policy: CompiledPolicy
) -> None:
    """A batch that waits for answers holds its group's writer turn, so its replica's tidy cannot answer
    another replica's ask until the wait is over; the waiting batch answers it itself.

    By hand (mid: 20): d went away holding 4 and a lease of 4; a holds web (2): 10 used. a's 11 would fit
    without d's 8, so a asks and waits for d, which never answers. The leader folds web (observed 2, still in
    a's sum: 12 counted). b's 10 fits without a's and d's entries (2 + 8 + 10 = 20), so b asks; a's waiting
    batch writes its sum (now none), and b admits 10: 8 + 2 + 10 = 20 of 20, long before a's wait ends.
    a's 11 is then denied (8 + 2 + 10 + 11 > 20)."""
    tuning = Tuning(answer_wait=4.0)
    a, b = KubernetesLedger(apis[0], replica="a", tuning=tuning), KubernetesLedger(apis[1], replica="b", tuning=tuning)
    dead = KubernetesLedger(apis[2], replica="d", tuning=tuning)
    leader = KubernetesLedger(apis[2], replica="c", tuning=tuning)
    burst(dead, policy, "mid", "gone")
    assert admit(a, policy, deployment("web", "mid", cpu="2"), "CREATE").allowed
    assert entries(apis[0], "mid") == {"d": 4, "d~lease": 4, "a": 2}
    with running(a, apis[0], "mid"), ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(admit, a, policy, deployment("wide", "mid", cpu="11"), "CREATE")
        wait_until(lambda: from_object(apis[0].request("GET", object_path("mid")), "mid").asks == 1, "a's ask", 5)
        leader.observe(ObjectKey("apps", "Deployment", "default", "web"), "mid", {"requests.cpu": 2 * CPU})
        time.sleep(0.2)  # a's watch (the tick) sees the fold
        assert not waiting.done()
        started = time.monotonic()
        assert admit(b, policy, deployment("rest", "mid", cpu="10"), "CREATE").allowed
        assert time.monotonic() - started < tuning.answer_wait / 2
        denied = waiting.result(timeout=10)
    assert not denied.allowed and "used 20 of 20" in denied.message
    assert entries(apis[0], "mid") == {"d": 4, "d~lease": 4, "b": 10}


def test_once_every_replica_answered_a_denial_is_final(apis: list[KubeApi], policy: CompiledPolicy) -> None:
    """a holds 2 it really admitted (nothing folded). b's 19 would fit without a's sum, so b asks; a answers by
    writing the same 2, and b denies then (2 + 19 > 20) instead of waiting out ANSWER_WAIT."""
    a, b = KubernetesLedger(apis[0], replica="a"), KubernetesLedger(apis[1], replica="b")
    assert admit(a, policy, deployment("web", "mid", cpu="2"), "CREATE").allowed
    with running(a, apis[0], "mid"):
        started = time.monotonic()
        denied = admit(b, policy, deployment("huge", "mid", cpu="19"), "CREATE")
        assert not denied.allowed and "used 2 of 20" in denied.message
        assert time.monotonic() - started < DEFAULT.answer_wait / 2
    state = from_object(apis[0].request("GET", object_path("mid")), "mid")
    assert (state.asks, state.reservations["a"].answered) == (1, 1)
    assert entries(apis[0], "mid") == {"a": 2}


def test_the_leaders_fold_write_carries_its_own_smaller_sum(
    apis: list[KubeApi], policy: CompiledPolicy, window: Tuning
) -> None:
    """The leader's own admissions leave its sum in the fold write that adds them to observed: no write of its
    own after it, and no moment of counting them twice. What its lease handed out moves into the sum; the lease
    entry keeps what is still free (4 − 2 = 2)."""
    leader = KubernetesLedger(apis[0], replica="r0", tuning=window)
    burst(leader, policy, "big", "web")  # 4 in the sum; the 4th takes a lease of 4
    burst(leader, policy, "big", "leased", 2)  # 2 of the lease handed out
    assert entries(apis[0], "big") == {"r0": 4, "r0~lease": 4}
    writes = leader.stats.writes
    leader.observe_many([Observation(ObjectKey("apps", "Deployment", "default", f"web-{i}"), "big",
                                     {"requests.cpu": CPU}) for i in range(3)])
    assert leader.stats.writes == writes + 1
    state = from_object(apis[0].request("GET", object_path("big")), "big")
    assert state.observed["requests.cpu"] == 3 * CPU
    # web-3 and leased-0/1 are still unconfirmed: 3 in the sum, 2 left in the lease: 3 + 3 + 2 = 8, as before.
    assert entries(apis[0], "big") == {"r0": 3, "r0~lease": 2}
    assert leader.tidy(patient=True) == 0  # nothing left to write
    burst(leader, policy, "big", "rest", 2)  # the lease's last 2: no write
    assert leader.stats.writes == writes + 1
    assert leader.used("big")["requests.cpu"] == 8 * CPU


def test_a_steady_two_a_second_takes_a_lease(apis: list[KubeApi], policy: CompiledPolicy, window: Tuning) -> None:
    """The window before counts: 2 admissions in one window and 2 in the next are 4 lately, so the 4th takes a
    lease of 4 (room: 4 used + 4 × 4 ≤ 1000), though no single window saw 4."""
    ledger = KubernetesLedger(apis[0], replica="r0", tuning=window)
    burst(ledger, policy, "big", "early", 2)
    time.sleep(window.lease_window + 0.05)  # the next window
    assert admit(ledger, policy, deployment("late-0", "big"), "CREATE").allowed
    assert entries(apis[0], "big") == {"r0": 3}  # 3 lately: no lease yet
    assert admit(ledger, policy, deployment("late-1", "big"), "CREATE").allowed
    assert entries(apis[0], "big") == {"r0": 4, "r0~lease": 4}


def test_the_leaders_fold_write_returns_a_lease_past_its_window(
    apis: list[KubeApi], policy: CompiledPolicy, window: Tuning
) -> None:
    leader = KubernetesLedger(apis[0], replica="r0", tuning=window)
    burst(leader, policy, "big", "web")  # the 4th takes a lease of 4
    assert entries(apis[0], "big") == {"r0": 4, "r0~lease": 4}
    time.sleep(window.lease_window + 0.05)  # nothing more is handed out of it
    leader.observe(ObjectKey("apps", "Deployment", "default", "web-0"), "big", {"requests.cpu": CPU})
    assert entries(apis[0], "big") == {"r0": 3}  # folded, and the lease returned in the same write
    writes = leader.stats.writes
    assert leader.tidy(patient=True) == 0
    assert leader.stats.writes == writes


def test_a_busy_groups_lease_past_its_window_is_replaced_by_the_next_batch(
    apis: list[KubeApi], policy: CompiledPolicy, window: Tuning
) -> None:
    """The runtime's tidy leaves a lease past its window while the group is busy (an admission within the last
    half window): the next batch returns it in the write it makes anyway. Once the group is quiet, tidy does."""
    ledger = KubernetesLedger(apis[0], replica="r0", tuning=window)
    burst(ledger, policy, "big", "web")  # the 4th takes a lease of 4
    time.sleep(window.lease_window * 0.6)
    assert admit(ledger, policy, deployment("in-lease", "big"), "CREATE").allowed  # 1 of the 4 handed out
    time.sleep(max(ledger._leases["big"].usable_until - time.monotonic(), 0) + 0.05)
    written = version(apis[0], "big")
    assert ledger.tidy(patient=True) == 0  # busy: the last admission was about 0.4 window ago
    assert version(apis[0], "big") == written
    writes = ledger.stats.writes
    assert admit(ledger, policy, deployment("next", "big"), "CREATE").allowed
    assert ledger.stats.writes == writes + 1
    # 6 admitted, 6 lately: a new lease of 4 (room: 6 + 4 × 4 ≤ 1000), in the write that returned the old one.
    assert entries(apis[0], "big") == {"r0": 6, "r0~lease": 4}
    time.sleep(max(ledger._leases["big"].usable_until - time.monotonic(), 0) + 0.05)  # quiet for a window
    assert ledger.tidy(patient=True) == 1
    assert entries(apis[0], "big") == {"r0": 6}


def test_a_lease_written_after_an_ask_is_asked_for_again(apis: list[KubeApi]) -> None:
    """A replica that answered an ask may take a new lease with its next batch; the waiting one must ask again
    rather than wait for that lease's window to end (its `answered` shows it was written after the ask)."""
    b = KubernetesLedger(apis[1], replica="b")
    state = LedgerState("mid", asks=3)
    state.reservations = {"a": Held({"requests.cpu": CPU}, 1, time.time() + 30, 3),
                          "a~lease": Held({"requests.cpu": 4 * CPU}, 0, time.time() + 30, 2)}
    assert not b._lent_since(state, 3)  # the lease predates b's ask 3: a's answer will return it
    state.reservations["a~lease"].answered = 3
    assert b._lent_since(state, 3)  # written after a answered ask 3: ask again
    state.reservations["b~lease"] = Held({"requests.cpu": CPU}, 0, time.time() + 30, 5)
    del state.reservations["a~lease"]
    assert not b._lent_since(state, 3)  # b's own lease is no one else's

"""The deterministic simulation of the replicated ledger (`simulation.py`): it passes, it replays, it finds bugs.

CI runs 500 schedules (`SCHEDULES`; `QUOTALANG_SIM_SCHEDULES` for more, or
`python -m tests.controller.ledger.simulation --schedules N`), in a
subprocess with `PYTHONHASHSEED=0` so that a printed seed replays exactly
in any process. Each planted bug (`simulation.PLANTS`) must be found within
the first `PLANT_SEEDS` seeds; the seeds that find them are printed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.controller.ledger.simulation import (
    BORROWING_PLANTS,
    CPU_KEY,
    PLANTS,
    Config,
    Simulation,
    SimulationFailure,
    planted,
)

ROOT = Path(__file__).resolve().parents[3]
SCHEDULES = int(os.environ.get("QUOTALANG_SIM_SCHEDULES", "500"))
PLANT_SEEDS = 200
BORROWING_SCHEDULES = SCHEDULES // 5  # the lend/borrow tree (`--borrowing`), beside the carved one
CPU = 10**9


def simulate(*flags: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run([sys.executable, "-m", "tests.controller.ledger.simulation", "--json", *flags],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.stdout, done.stderr
    summary: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    print(json.dumps({k: v for k, v in summary.items() if k != "failure"}))
    return summary


def test_every_schedule_keeps_the_invariants_under_faults() -> None:
    summary = simulate("--schedules", str(SCHEDULES))
    assert summary["failure"] is None, summary["failure"]
    assert summary["schedules"] == SCHEDULES
    faults = summary["faults"]
    for fault in ("conflict", "reset", "timeout", "lost", "unavailable", "crash", "restart", "stall",
                  "watch-gap", "never-created"):
        assert faults.get(fault, 0) > 0, f"no schedule injected {fault}: {faults}"
    assert summary["allowed"] < summary["admissions"]  # schedules run groups into their limits


def test_borrowing_schedules_keep_the_balances_under_faults() -> None:
    summary = simulate("--schedules", str(BORROWING_SCHEDULES), "--borrowing")
    assert summary["failure"] is None, summary["failure"]
    assert summary["schedules"] == BORROWING_SCHEDULES
    assert summary["allowed"] < summary["admissions"]
    assert summary["borrowed"] > 0  # draws on ancestors are admitted (registered), not refused


def test_the_borrowing_checks_fail_on_trees_built_by_hand() -> None:
    """TREE's cpu: root 16 (own 2 after m 10 and c 4); m 10 lend 2 borrow 2 over a 6 lend 3 borrow 2 and
    b 4 lend 2 borrow 3; c 4 borrow 4."""
    check = Simulation(0, Config(borrowing=True)).check_balances
    # a 7: T(a) = -1, share -1; b 0: share 2; T(m) = 0 - 1 + 2 = 1, share 1. c 7: T(c) = -3, share -3.
    # T(root) = 2 + 1 - 3 = 0 >= 0. Beyond guarantees under root: m 7 - 8 -> 0, c 7 - 4 = 3 <= 2 + 2 = 4.
    check({"a": {CPU_KEY: 7 * CPU}, "c": {CPU_KEY: 7 * CPU}})
    # c 8: T(c) = -4, share -4: T(root) = 2 + 1 - 4 = -1 < 0.
    with pytest.raises(SimulationFailure, match=r"T\(root\) = -1000000000 of requests.cpu, floor 0"):
        check({"a": {CPU_KEY: 7 * CPU}, "c": {CPU_KEY: 8 * CPU}})
    # c 10, past its borrow: its share stops at -4, so T(root) = 2 + 2 - 4 = 0 holds, but 10 - 4 = 6 beyond
    # c's guarantee is more than root may hand out (own 2 + m's lend 2).
    with pytest.raises(SimulationFailure, match=re.escape(
            "guarantee lent: under root, requests.cpu used beyond the children's guarantees is 6000000000, "
            "more than the 4000000000")):
        check({"c": {CPU_KEY: 10 * CPU}})


def test_a_seed_replays_exactly() -> None:
    def trace(seed: int) -> list[str]:
        sim = Simulation(seed, Config(steps=30))
        sim.trace.__init__(maxlen=10**6)  # type: ignore[misc]  # keep all of it
        sim.run()
        return [*sim.trace, str(sim.server.revision), str(sim.now)]

    assert trace(3) == trace(3)
    assert trace(3) != trace(4)


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_a_planted_bug_is_found(plant: str) -> None:
    summary = simulate("--schedules", str(PLANT_SEEDS), "--plant", plant,
                       *(("--borrowing",) if plant in BORROWING_PLANTS else ()))
    assert summary["failed_seed"] is not None, f"{plant} not found in {PLANT_SEEDS} schedules"
    print(f"{plant}: found by seed {summary['failed_seed']}: {summary['failure'].splitlines()[0]}")


def test_a_failure_names_its_seed_and_how_to_replay_it() -> None:
    with planted("write-without-version"), pytest.raises(SimulationFailure) as failure:
        for seed in range(PLANT_SEEDS):
            Simulation(seed).run()
    first = str(failure.value).splitlines()
    assert first[0].startswith("seed ")
    assert first[1].startswith("replay: PYTHONHASHSEED=0 python -m tests.controller.ledger.simulation --seed ")
    assert first[1].endswith("--plant write-without-version")


def test_a_fold_write_on_a_hung_connection_gives_up_the_call_not_the_fold() -> None:
    """A finding (seed 1, calls hanging up to 30 s): a fold write waited its whole 30 s on one hung call, the
    admissions it confirms left their replicas' sums at the 30 s TTL first, and the group was under-counted
    (250m of 3 cpu held). Each call now waits at most `Tuning.call_timeout` (5 s) and is retried."""
    summary = simulate("--seed", "1", "--max-hang", "30")
    assert summary["failure"] is None, summary["failure"]
    assert summary["schedules"] == 1


def test_a_replica_restarted_under_its_old_name_keeps_what_its_entry_held() -> None:
    """A finding (seed 36, restarts keep the replica's name, as a container restart keeps $POD_NAME): the new
    incarnation, with empty memory, found its old entry holding an unconfirmed admission it knew nothing of, so
    its entry and its admissions disagreed at quiescence (and a write of its own smaller sum would have dropped
    the admission before it was folded). The entry now joins its book until its deadline."""
    summary = simulate("--seed", "36", "--restart-same-name")
    assert summary["failure"] is None, summary["failure"]
    assert summary["schedules"] == 1


def test_a_scale_is_checked_against_the_parent_at_the_scale_s_own_version() -> None:
    """A finding (seed 1, Scales looked up in the ledger as the engine does): a Scale was checked against an
    admitted UPDATE that was never stored while another replica's write had moved the object on, so it was
    charged from 3 replicas the object never had and group a ran 8.75 of its 6 cpu. A Scale now trusts only a
    body known to be at its own resourceVersion (the watch's, else a live read)."""
    summary = simulate("--seed", "1", "--scale-parent", "lookup")
    assert summary["failure"] is None, summary["failure"]
    assert summary["schedules"] == 1

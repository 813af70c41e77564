"""Cash accrual: windows, pod runs, model keys, no double counting.

Every expected number is worked out by hand in a comment. Units: one GPU is
10**9 nanos, so one GPU held for one hour is 10**9 × 3600 nano-GPU-seconds.

Anchor dates (UTC), by hand:
  days 1970-01-01 .. 2026-01-01 = 56 × 365 + 14 leap days (1972..2024) = 20454
  2026-11-23 is day 20454 + (31+28+31+30+31+30+31+31+30+31 = 304) + 22 = 20780,
  i.e. 20780 × 86400 = 1_795_392_000 s; 20780 mod 7 = 4 and 1970-01-01 was a
  Thursday, so 2026-11-23 is a Monday.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quotalang.compiler import CashBudget, CompiledPolicy, compile_policy
from quotalang.controller import MemoryLedger
from quotalang.controller.cash import PodRun, accrue, finished_at, period_end, period_start, pod_run, scheduled_at
from quotalang.controller.ledger.base import CashState

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "policies"

NANO = 10**9
HOUR = 3600
GPU_HOUR = NANO * HOUR  # 3_600_000_000_000
GPU = "requests.nvidia.com/gpu"
A100 = "requests.nvidia.com/gpu.A100"
GPU_LABEL = "biz.group.resource.quota/gpu-type"  # examples/policies/settings.quota

MONDAY = 1_795_392_000.0  # 2026-11-23 00:00 UTC, see the module docstring
DAY = 86400.0
SUNDAY_2300 = MONDAY - HOUR  # 2026-11-22 23:00
MONDAY_0100 = MONDAY + HOUR  # 2026-11-23 01:00


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def budget(key: str = GPU, period: Any = "week", hours: int = 1000) -> CashBudget:
    return CashBudget(key, hours * GPU_HOUR, period, str(hours))


def run(start: float, end: float | None = None, gpus: int = 1, uid: str = "p", **more: int) -> PodRun:
    usage = {GPU: gpus * NANO, **{k: v * NANO for k, v in more.items()}}
    return PodRun(uid, "alice", usage, start, end)


# ------------------------------------------------------------ period_start


def test_anchor_date_is_the_hand_computed_monday() -> None:
    assert at("2026-11-23T00:00:00") == MONDAY
    assert datetime.fromtimestamp(MONDAY, UTC).weekday() == 0


def test_period_start_day_week_month_lifetime() -> None:
    t = MONDAY + 2 * DAY + 13.5 * HOUR  # Wednesday 2026-11-25 13:30
    assert period_start("day", t) == MONDAY + 2 * DAY  # that Wednesday, 00:00
    assert period_start("week", t) == MONDAY  # the Monday before
    # 2026-11-01 is 22 days before 2026-11-23
    assert period_start("month", t) == MONDAY - 22 * DAY
    assert period_start(None, t) is None


def test_period_start_on_a_boundary_is_that_boundary() -> None:
    assert period_start("day", MONDAY) == MONDAY
    assert period_start("week", MONDAY) == MONDAY
    # Sunday 23:00 belongs to the week that started 6 days before Monday 2026-11-23
    assert period_start("week", SUNDAY_2300) == MONDAY - 7 * DAY
    assert period_start("day", SUNDAY_2300) == MONDAY - DAY


def test_period_start_month_in_january_and_december() -> None:
    # 2027-01-01 = 2026-11-23 + (30 - 23 + 1 = 8 days to Dec 1) + 31 = 39 days
    assert period_start("month", MONDAY + 39 * DAY + 5) == MONDAY + 39 * DAY
    assert period_start("month", MONDAY + 39 * DAY - 1) == MONDAY + 8 * DAY  # 2026-12-01


def test_period_end_is_when_the_budget_renews() -> None:
    t = MONDAY + 2 * DAY + 13.5 * HOUR  # Wednesday 2026-11-25 13:30
    assert period_end("day", t) == MONDAY + 3 * DAY  # Thursday 00:00
    assert period_end("week", t) == MONDAY + 7 * DAY  # the next Monday
    assert period_end("week", SUNDAY_2300) == MONDAY  # an hour later
    assert period_end("month", t) == MONDAY + 8 * DAY  # 2026-12-01 (see above)
    assert period_end("month", MONDAY + 8 * DAY) == MONDAY + 39 * DAY  # December ends 2027-01-01
    assert period_end(None, t) == math.inf  # lifetime: never renews


def test_period_start_rejects_unknown_period() -> None:
    with pytest.raises(ValueError, match="fortnight"):
        period_start("fortnight", MONDAY)


# ------------------------------------------------------------ accrue: windows


def test_weekly_budget_sunday_to_monday_keeps_only_the_monday_hour() -> None:
    # Last accrual Sunday 23:00 with 5 GPU-hours already spent last week.
    state = CashState({GPU: 5 * GPU_HOUR}, MONDAY - 7 * DAY, SUNDAY_2300)
    # 2 GPUs running since Sunday 22:00.
    runs = [run(SUNDAY_2300 - HOUR, gpus=2)]
    new = accrue(state, runs, {GPU: budget()}, MONDAY_0100)
    assert new is not None
    # the week reset at Monday 00:00: last week's 5 h are gone, and only
    # 00:00 → 01:00 counts: 2 GPUs × 1 h = 2 × 3_600_000_000_000 = 7_200_000_000_000
    assert new.used == {GPU: 7_200_000_000_000}
    assert new.period_start == MONDAY
    assert new.last_accrual == MONDAY_0100


def test_daily_budget_resets_at_midnight_but_carries_within_the_day() -> None:
    state = CashState({GPU: GPU_HOUR}, MONDAY, MONDAY + 10 * HOUR)
    runs = [run(MONDAY, gpus=3)]
    new = accrue(state, runs, {GPU: budget(period="day")}, MONDAY + 12 * HOUR)
    assert new is not None
    # carried 1 h + 3 GPUs × (12 - 10 = 2 h) = 1 + 6 = 7 GPU-hours = 25_200_000_000_000
    assert new.used == {GPU: 25_200_000_000_000}
    assert new.period_start == MONDAY
    # Then over midnight into Tuesday 00:30: only the 30 minutes of Tuesday count.
    newer = accrue(new, runs, {GPU: budget(period="day")}, MONDAY + DAY + 1800)
    assert newer is not None
    # 3 GPUs × 1800 s × 10**9 = 5_400_000_000_000
    assert newer.used == {GPU: 5_400_000_000_000}
    assert newer.period_start == MONDAY + DAY


def test_month_rollover() -> None:
    oct31_2330 = at("2026-10-31T23:30:00")
    nov1 = at("2026-11-01T00:00:00")
    assert nov1 == MONDAY - 22 * DAY  # 2026-11-01 is 22 days before 2026-11-23
    assert oct31_2330 == nov1 - 1800
    state = CashState({GPU: 100 * GPU_HOUR}, at("2026-10-01T00:00:00"), oct31_2330)
    runs = [run(oct31_2330 - DAY, gpus=4)]
    new = accrue(state, runs, {GPU: budget(period="month")}, nov1 + 1800)
    assert new is not None
    # October's 100 h are dropped; 4 GPUs × 30 min = 2 GPU-hours = 7_200_000_000_000
    assert new.used == {GPU: 7_200_000_000_000}
    assert new.period_start == nov1


def test_lifetime_budget_never_resets() -> None:
    state = CashState({GPU: 5 * GPU_HOUR}, None, SUNDAY_2300)
    runs = [run(SUNDAY_2300 - HOUR, gpus=2)]
    new = accrue(state, runs, {GPU: budget(period=None)}, MONDAY_0100)
    assert new is not None
    # 5 h carried + 2 GPUs × 2 h (Sun 23:00 → Mon 01:00) = 9 GPU-hours = 32_400_000_000_000
    assert new.used == {GPU: 32_400_000_000_000}
    assert new.period_start is None
    # and a month later, still no reset: + 2 GPUs × 30 days × 24 h = 1440 h → 1449 h
    later = accrue(new, runs, {GPU: budget(period=None)}, MONDAY_0100 + 30 * DAY)
    assert later is not None
    assert later.used == {GPU: 1449 * GPU_HOUR}  # 1449 × 3_600_000_000_000 = 5_216_400_000_000_000
    assert later.used[GPU] == 5_216_400_000_000_000


def test_first_accrual_of_a_lifetime_budget_counts_from_the_pod_start() -> None:
    runs = [run(MONDAY - 3 * HOUR)]
    new = accrue(CashState({}, None, None), runs, {GPU: budget(period=None)}, MONDAY)
    assert new is not None
    assert new.used == {GPU: 3 * GPU_HOUR}  # 1 GPU × 3 h = 10_800_000_000_000
    assert new.used[GPU] == 10_800_000_000_000


def test_first_accrual_of_a_weekly_budget_counts_from_the_week_start() -> None:
    # Stale numbers with no last accrual are not trusted: they restart at 0.
    state = CashState({GPU: 77}, None, None)
    runs = [run(MONDAY - 3 * HOUR)]  # since Sunday 21:00
    new = accrue(state, runs, {GPU: budget()}, MONDAY + 2 * HOUR)
    assert new is not None
    assert new.used == {GPU: 2 * GPU_HOUR}  # only Monday 00:00 → 02:00: 7_200_000_000_000
    assert new.used[GPU] == 7_200_000_000_000


def test_pod_scheduled_before_the_last_accrual_counts_from_the_last_accrual() -> None:
    state = CashState({GPU: 10 * GPU_HOUR}, MONDAY, MONDAY + 5 * HOUR)
    runs = [run(MONDAY + HOUR, gpus=1)]  # running since 01:00, already accrued 01:00 → 05:00
    new = accrue(state, runs, {GPU: budget()}, MONDAY + 6 * HOUR)
    assert new is not None
    # 10 h + 1 GPU × (06:00 - 05:00) = 11 GPU-hours = 39_600_000_000_000
    assert new.used == {GPU: 39_600_000_000_000}


def test_finished_pod_counts_until_it_finished() -> None:
    state = CashState({}, MONDAY, MONDAY + HOUR)
    runs = [
        run(MONDAY, end=MONDAY + 2 * HOUR + 900, gpus=2, uid="done"),  # ends 02:15
        run(MONDAY, end=MONDAY + 30 * 60, gpus=8, uid="long-gone"),  # ended 00:30, before the last accrual
        run(MONDAY + 5 * HOUR, gpus=8, uid="future"),  # scheduled after now (clock skew)
    ]
    new = accrue(state, runs, {GPU: budget()}, MONDAY + 3 * HOUR)
    assert new is not None
    # only "done" from 01:00 to 02:15 = 4500 s × 2 GPUs × 10**9 = 9_000_000_000_000
    assert new.used == {GPU: 9_000_000_000_000}


def test_two_accruals_do_not_double_count() -> None:
    runs = [run(MONDAY, gpus=2), run(MONDAY + HOUR, end=MONDAY + 4 * HOUR, gpus=1, uid="q")]
    budgets = {GPU: budget()}
    start = CashState({}, MONDAY, MONDAY)
    once = accrue(start, runs, budgets, MONDAY + 5 * HOUR)
    first = accrue(start, runs, budgets, MONDAY + 2 * HOUR)
    assert first is not None
    twice = accrue(first, runs, budgets, MONDAY + 5 * HOUR)
    # 2 GPUs × 5 h + 1 GPU × (04:00 - 01:00 = 3 h) = 13 GPU-hours = 46_800_000_000_000
    assert once is not None and twice is not None
    assert once.used == twice.used == {GPU: 46_800_000_000_000}
    # first: 2 × 2 h + 1 × 1 h = 5 GPU-hours = 18_000_000_000_000
    assert first.used == {GPU: 18_000_000_000_000}
    # accruing again at the same moment, or earlier, changes nothing
    assert accrue(twice, runs, budgets, MONDAY + 5 * HOUR) is None
    assert accrue(twice, runs, budgets, MONDAY + 4 * HOUR) is None


def test_keys_no_longer_budgeted_are_dropped_and_mixed_periods() -> None:
    state = CashState({GPU: GPU_HOUR, "requests.cpu": 123}, MONDAY, MONDAY + HOUR)
    budgets = {GPU: budget(), A100: budget(A100, period="day", hours=10)}
    runs = [PodRun("p", "alice", {GPU: NANO, A100: NANO}, MONDAY, None)]
    now = MONDAY + DAY + HOUR  # Tuesday 01:00
    new = accrue(state, runs, budgets, now)
    assert new is not None
    # GPU (weekly): 1 h + 1 GPU × (Tue 01:00 - Mon 01:00 = 24 h) = 25 GPU-hours = 90_000_000_000_000
    # A100 (daily): window starts Tuesday 00:00, nothing stored: 1 GPU × 1 h = 3_600_000_000_000
    assert new.used == {GPU: 90_000_000_000_000, A100: 3_600_000_000_000}
    # earliest window start: Monday (week) before Tuesday (day)
    assert new.period_start == MONDAY


def test_fractional_seconds_use_exact_milliseconds() -> None:
    # 1 millicpu-like usage: 1_000_000 nanos held 0.25 s → 1_000_000 × 250 ms // 1000 = 250_000
    runs = [PodRun("p", "g", {"requests.cpu": 1_000_000}, MONDAY, None)]
    new = accrue(CashState({}, MONDAY, MONDAY), runs, {"requests.cpu": budget("requests.cpu")}, MONDAY + 0.25)
    assert new is not None
    assert new.used == {"requests.cpu": 250_000}


def test_accrue_through_the_memory_ledger() -> None:
    ledger = MemoryLedger()
    budgets = {GPU: budget()}
    runs = [run(MONDAY, gpus=1)]
    ledger.update_cash("alice", lambda s: accrue(s, runs, budgets, MONDAY + HOUR))
    ledger.update_cash("alice", lambda s: accrue(s, runs, budgets, MONDAY + 2 * HOUR))
    # first accrual: window start Monday 00:00 → 01:00 = 1 h; second 01:00 → 02:00 = 1 h; 2 GPU-hours
    assert ledger.cash_used("alice") == {GPU: 7_200_000_000_000}
    state = ledger.cash_state("alice")
    assert (state.period_start, state.last_accrual) == (MONDAY, MONDAY + 2 * HOUR)


# ------------------------------------------------------------ additivity (property)

WEEK = 7 * DAY
_offsets = st.integers(min_value=0, max_value=int(WEEK * 1000) - 1).map(lambda ms: ms / 1000)


@st.composite
def _runs(draw: st.DrawFn) -> list[PodRun]:
    out = []
    for i in range(draw(st.integers(min_value=0, max_value=5))):
        start = MONDAY - DAY + draw(st.integers(min_value=0, max_value=int((WEEK + DAY) * 1000))) / 1000
        end = None if draw(st.booleans()) else start + draw(st.integers(min_value=0, max_value=10**9)) / 1000
        micro = draw(st.integers(min_value=0, max_value=10**7))  # whole micro-units: nanos % 1000 == 0
        out.append(PodRun(f"p{i}", "g", {GPU: micro * 1000}, start, end))
    return out


@settings(max_examples=300, deadline=None)
@given(
    points=st.lists(_offsets, min_size=3, max_size=3, unique=True),
    runs=_runs(),
    period=st.sampled_from(["day", "week", "month", None]),
    carried=st.integers(0, 10**15),
)
def test_accruing_in_two_steps_equals_one_step(
    points: list[float], runs: list[PodRun], period: str | None, carried: int
) -> None:
    a, b, c = (MONDAY + p for p in sorted(points))
    if period is not None and (period_start(period, a) != period_start(period, c)):
        return  # a boundary in between: the split is allowed to differ (windows reset)
    budgets = {GPU: CashBudget(GPU, 10**20, period, "x")}  # type: ignore[arg-type]
    state = CashState({GPU: carried} if carried else {}, period_start(period, a), a)
    direct = accrue(state, runs, budgets, c)
    middle = accrue(state, runs, budgets, b)
    assert direct is not None and middle is not None
    split = accrue(middle, runs, budgets, c)
    assert split == direct


@settings(max_examples=200, deadline=None)
@given(points=st.lists(_offsets, min_size=3, max_size=3, unique=True), nanos=st.integers(min_value=1, max_value=10**12))
def test_split_loses_at_most_one_nano_second_for_sub_micro_usage(points: list[float], nanos: int) -> None:
    a, b, c = (MONDAY + p for p in sorted(points))
    budgets = {GPU: CashBudget(GPU, 10**20, None, "x")}
    runs = [PodRun("p", "g", {GPU: nanos}, MONDAY - 1, None)]
    state = CashState({}, None, a)
    direct = accrue(state, runs, budgets, c)
    middle = accrue(state, runs, budgets, b)
    assert direct is not None and middle is not None
    split = accrue(middle, runs, budgets, c)
    assert split is not None
    # floor(x) + floor(y) ∈ {floor(x + y) - 1, floor(x + y)}
    assert 0 <= direct.used.get(GPU, 0) - split.used.get(GPU, 0) <= 1


# ------------------------------------------------------------ pods


NODE_VALUES = {"A100": "NVIDIA-A100-SXM4-80GB", "V100": "Tesla-V100-SXM2-32GB"}  # examples/policies/settings.quota


def pod(
    *,
    node: str | None = "node-1",
    scheduled: str | None = "2026-11-23T01:00:00Z",
    gpus: int = 2,
    gpu_model: str | None = None,
    phase: str = "Running",
    status_extra: Mapping[str, Any] | None = None,
    uid: str = "uid-1",
) -> dict[str, Any]:
    labels = {"biz.group.resource.quota": "alice"}
    if gpu_model is not None:
        labels[GPU_LABEL] = gpu_model
    spec: dict[str, Any] = {
        "containers": [
            {"name": "train", "resources": {"requests": {"cpu": "4"}, "limits": {"nvidia.com/gpu": str(gpus)}}}
        ]
    }
    if node is not None:
        spec["nodeName"] = node
    if gpu_model is not None:  # the example policy reads GPU models from the node label the pod pins
        spec["nodeSelector"] = {"nvidia.com/gpu.product": NODE_VALUES[gpu_model]}
    conditions = [{"type": "Initialized", "status": "True", "lastTransitionTime": "2026-11-23T00:59:00Z"}]
    if scheduled is not None:
        conditions.append({"type": "PodScheduled", "status": "True", "lastTransitionTime": scheduled})
    status: dict[str, Any] = {"phase": phase, "conditions": conditions, **(status_extra or {})}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "ns", "uid": uid, "labels": labels},
        "spec": spec,
        "status": status,
    }


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    return compile_policy(str(EXAMPLES))


@pytest.fixture(scope="module")
def a100_policy(tmp_path_factory: pytest.TempPathFactory) -> CompiledPolicy:
    """The example policy with alice also budgeting A100 hours."""
    root = tmp_path_factory.mktemp("policies")
    for source in EXAMPLES.iterdir():
        shutil.copy(source, root / source.name)
    path = root / "ai-platform.quota"
    text = path.read_text()
    marker = "group alice in nlp {"
    head, tail = text.split(marker, 1)
    body, rest = tail.split("}", 1)
    path.write_text(head + marker + body + f"  cash {A100}  500h per week\n}}" + rest)
    compiled = compile_policy(str(root))
    assert set(compiled.groups["alice"].cash) == {GPU, A100}
    return compiled


def test_scheduled_at_reads_the_pod_scheduled_condition() -> None:
    assert scheduled_at(pod()) == MONDAY_0100
    assert scheduled_at(pod(scheduled="2026-11-23T01:00:00.5+00:00")) == MONDAY_0100 + 0.5


def test_unscheduled_pod_accrues_nothing(policy: CompiledPolicy) -> None:
    # PodScheduled=True but no nodeName yet: not bound.
    assert scheduled_at(pod(node=None)) is None
    assert pod_run(policy, pod(node=None), "alice", MONDAY_0100) is None
    # nodeName set, but no PodScheduled condition / a False one
    assert scheduled_at(pod(scheduled=None)) is None
    unscheduled = pod()
    unscheduled["status"]["conditions"][1]["status"] = "False"
    assert scheduled_at(unscheduled) is None
    assert pod_run(policy, unscheduled, "alice", MONDAY_0100) is None


def test_finished_at_takes_the_latest_finish_of_any_container() -> None:
    terminated = {
        "initContainerStatuses": [{"name": "init", "state": {"terminated": {"finishedAt": "2026-11-23T01:05:00Z"}}}],
        "containerStatuses": [{"name": "train", "state": {"terminated": {"finishedAt": "2026-11-23T03:00:00Z"}}}],
        "ephemeralContainerStatuses": [
            {"name": "debug", "state": {"terminated": {"finishedAt": "2026-11-23T03:30:00Z"}}}
        ],
    }
    done = pod(phase="Succeeded", status_extra=terminated)
    assert finished_at(done, observed_at=MONDAY + 9 * HOUR) == MONDAY + 3.5 * HOUR  # the debug container, 03:30
    # terminal but no finish times: when we saw it
    assert finished_at(pod(phase="Failed"), observed_at=MONDAY + 9 * HOUR) == MONDAY + 9 * HOUR
    assert finished_at(pod(), observed_at=MONDAY + 9 * HOUR) is None


def test_pod_run_of_a_running_pod(policy: CompiledPolicy) -> None:
    got = pod_run(policy, pod(gpus=2), "alice", MONDAY + 2 * HOUR)
    # alice budgets only requests.nvidia.com/gpu: cpu and pods are not kept
    assert got == PodRun("uid-1", "alice", {GPU: 2 * NANO}, MONDAY_0100, None)


def test_finished_pod_still_counts_its_resources(policy: CompiledPolicy) -> None:
    status = {"containerStatuses": [{"name": "train", "state": {"terminated": {"finishedAt": "2026-11-23T02:30:00Z"}}}]}
    done = pod(gpus=2, phase="Succeeded", status_extra=status)
    got = pod_run(policy, done, "alice", MONDAY + 9 * HOUR)
    assert got == PodRun("uid-1", "alice", {GPU: 2 * NANO}, MONDAY_0100, MONDAY + 2.5 * HOUR)
    new = accrue(CashState({}, MONDAY, MONDAY), [got], policy.groups["alice"].cash, MONDAY + 9 * HOUR)
    assert new is not None
    # 2 GPUs × (02:30 - 01:00 = 1.5 h = 5400 s) × 10**9 = 10_800_000_000_000
    assert new.used == {GPU: 10_800_000_000_000}


def test_deleted_pod_still_counts_its_resources(policy: CompiledPolicy) -> None:
    gone = pod(gpus=1)
    gone["metadata"]["deletionTimestamp"] = "2026-11-23T01:10:00Z"
    gone["metadata"]["deletionGracePeriodSeconds"] = 0
    got = pod_run(policy, gone, "alice", MONDAY + 2 * HOUR)
    assert got is not None and got.usage == {GPU: NANO}


def test_pod_holding_no_budgeted_key_has_no_run(policy: CompiledPolicy) -> None:
    assert pod_run(policy, pod(gpus=0), "alice", MONDAY_0100) is None
    assert pod_run(policy, pod(), "no-such-group", MONDAY_0100) is None


def test_model_keys_charge_both_the_generic_and_the_model_budget(a100_policy: CompiledPolicy) -> None:
    got = pod_run(a100_policy, pod(gpus=4, gpu_model="A100"), "alice", MONDAY + 3 * HOUR)
    assert got is not None
    assert got.usage == {GPU: 4 * NANO, A100: 4 * NANO}
    new = accrue(CashState({}, MONDAY, MONDAY_0100), [got], a100_policy.groups["alice"].cash, MONDAY + 3 * HOUR)
    assert new is not None
    # 4 GPUs × (03:00 - 01:00 = 2 h) = 8 GPU-hours = 28_800_000_000_000 on each key
    assert new.used == {GPU: 28_800_000_000_000, A100: 28_800_000_000_000}
    # a V100 pod charges only the generic key of these two
    v100 = pod_run(a100_policy, pod(gpus=4, gpu_model="V100"), "alice", MONDAY + 3 * HOUR)
    assert v100 is not None and v100.usage == {GPU: 4 * NANO}


def test_model_key_dropped_when_the_group_budgets_only_the_generic_key(policy: CompiledPolicy) -> None:
    got = pod_run(policy, pod(gpus=4, gpu_model="A100"), "alice", MONDAY + 3 * HOUR)
    assert got is not None and got.usage == {GPU: 4 * NANO}

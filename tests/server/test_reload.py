"""Policy hot reload: good → bad keeps the good one and counts; → good again swaps."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from quotalang.errors import PolicyError
from quotalang.server.metrics import Metrics
from quotalang.server.reload import PolicyHolder, PolicyReloader
from tests.server.webhook_helpers import POLICY

NANO = 10**9
BROKEN = POLICY.replace(
    "group ml in root {\n  requests.cpu                    40",
    "group ml in root {\n  requests.cpu                   400",
)  # 400 + 10 + 10 > 100: E105
SMALLER = POLICY.replace(
    "group ml in root {\n  requests.cpu                    40",
    "group ml in root {\n  requests.cpu                    30",
)
EXTRA_KIND = """\
kind batch/v1 Job {
  pods {
    replicas spec.parallelism default 1
    template spec.template
  }
}
"""


def counter(metrics: Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    assert value is not None
    return value


def ml_cpu(holder: PolicyHolder) -> int:
    assert holder.policy is not None
    return holder.policy.groups["ml"].hard["requests.cpu"]


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, PolicyHolder, Metrics, PolicyReloader]:
    (tmp_path / "org.quota").write_text(POLICY)
    holder, metrics = PolicyHolder(), Metrics()
    reloader = PolicyReloader([str(tmp_path)], holder, metrics)
    reloader.load_initial()
    return tmp_path, holder, metrics, reloader


def test_a_broken_policy_fails_the_first_load(tmp_path: Path) -> None:
    (tmp_path / "org.quota").write_text(BROKEN)
    with pytest.raises(PolicyError) as caught:
        PolicyReloader([str(tmp_path)], PolicyHolder()).load_initial()
    assert "E105" in caught.value.render()


def test_good_then_bad_keeps_the_good_then_good_swaps(
    setup: tuple[Path, PolicyHolder, Metrics, PolicyReloader],
) -> None:
    folder, holder, metrics, reloader = setup
    first = holder.policy
    assert first is not None
    assert reloader.reload() == "unchanged"

    (folder / "org.quota").write_text(BROKEN)
    assert reloader.reload() == "rejected"
    assert holder.policy is first
    assert holder.last_error is not None and "E105" in holder.last_error
    assert counter(metrics, "quotalang_policy_reload_errors_total") == 1
    assert counter(metrics, "quotalang_policy_last_reload_ok") == 0
    assert reloader.reload() == "unchanged"  # the same broken content is not retried or counted again
    assert counter(metrics, "quotalang_policy_reload_errors_total") == 1

    (folder / "org.quota").write_text(SMALLER)
    assert reloader.reload() == "loaded"
    assert holder.policy is not first
    assert holder.policy is not None and holder.policy.checksum != first.checksum
    assert ml_cpu(holder) == 30 * NANO
    assert holder.last_error is None
    assert counter(metrics, "quotalang_policy_reloads_total") == 1
    assert counter(metrics, "quotalang_policy_last_reload_ok") == 1


def test_force_reloads_unchanged_content(setup: tuple[Path, PolicyHolder, Metrics, PolicyReloader]) -> None:
    _, holder, _, reloader = setup
    first = holder.policy
    assert reloader.reload(force=True) == "loaded"
    assert holder.policy is not first
    assert holder.policy is not None and first is not None and holder.policy.checksum == first.checksum


def test_a_configmap_symlink_swap_is_seen(tmp_path: Path) -> None:
    """The kubelet's layout: org.quota → ..data/org.quota, ..data → ..<timestamp>, swapped atomically."""
    (tmp_path / "..2024_01").mkdir()
    (tmp_path / "..2024_01" / "org.quota").write_text(POLICY)
    os.symlink("..2024_01", tmp_path / "..data")
    os.symlink("..data/org.quota", tmp_path / "org.quota")
    holder = PolicyHolder()
    reloader = PolicyReloader([str(tmp_path)], holder)
    reloader.load_initial()
    assert ml_cpu(holder) == 40 * NANO

    (tmp_path / "..2024_02").mkdir()
    (tmp_path / "..2024_02" / "org.quota").write_text(SMALLER)
    os.symlink("..2024_02", tmp_path / "..data_tmp")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    shutil.rmtree(tmp_path / "..2024_01")
    assert reloader.reload() == "loaded"
    assert ml_cpu(holder) == 30 * NANO


def test_imported_files_and_new_files_are_watched(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "jobs.quota").write_text("# nothing yet\n")
    (tmp_path / "org.quota").write_text('import "rules/jobs.quota"\n' + POLICY)
    holder = PolicyHolder()
    reloader = PolicyReloader([str(tmp_path)], holder)
    reloader.load_initial()
    assert reloader.reload() == "unchanged"
    assert holder.policy is not None and len(holder.policy.kinds) == 2

    (tmp_path / "rules" / "jobs.quota").write_text(EXTRA_KIND)  # an imported file, outside the listing
    assert reloader.reload() == "loaded"
    assert len(holder.policy.kinds) == 3

    (tmp_path / "rules" / "jobs.quota").write_text("# nothing again\n")
    (tmp_path / "more.quota").write_text(EXTRA_KIND)  # a new file in the directory
    assert reloader.reload() == "loaded"
    assert len(holder.policy.kinds) == 3
    (tmp_path / "more.quota").unlink()
    assert reloader.reload() == "loaded"
    assert len(holder.policy.kinds) == 2


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def test_run_polls_the_files_and_wakes_on_request(
    setup: tuple[Path, PolicyHolder, Metrics, PolicyReloader],
) -> None:
    folder, holder, metrics, reloader = setup
    reloader.interval = 0.05

    async def scenario() -> None:
        task = asyncio.create_task(reloader.run())
        try:
            (folder / "org.quota").write_text(SMALLER)
            await _until(lambda: ml_cpu(holder) == 30 * NANO)
            reloader.interval = 3600  # from now on only a request (SIGHUP) reloads in time
            before = counter(metrics, "quotalang_policy_reloads_total")
            reloader.request_reload()
            await _until(lambda: counter(metrics, "quotalang_policy_reloads_total") == before + 1)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


@pytest.mark.parametrize("kind", ["dangling", "looping"])
def test_a_broken_file_is_rejected_by_name_and_the_last_good_policy_serves(
    setup: tuple[Path, PolicyHolder, Metrics, PolicyReloader], kind: str
) -> None:
    """Issue 25 #13: a dangling or looping symlinked `.quota` file was skipped silently: the policy
    loaded without its groups ("unknown quota group" for all their workloads) and the metrics said fine."""
    folder, holder, metrics, reloader = setup
    first = holder.policy
    (folder / "extra.quota").write_text(EXTRA_KIND)
    assert reloader.reload() == "loaded"
    good = holder.policy
    assert good is not None and good is not first
    (folder / "extra.quota").unlink()
    if kind == "dangling":
        (folder / "extra.quota").symlink_to(folder / "gone.quota")
        said = "is a symlink to"
        why = "that points to nothing"
    else:
        (folder / "extra.quota").symlink_to(folder / "loop.quota")
        (folder / "loop.quota").symlink_to(folder / "extra.quota")
        said, why = "is a symlink to", "that loops"
    assert reloader.reload() == "rejected"
    assert holder.policy is good  # the last good policy keeps serving
    error = holder.last_error
    assert error is not None and "E005" in error and "extra.quota" in error and said in error and why in error
    assert counter(metrics, "quotalang_policy_reload_errors_total") == 1
    assert counter(metrics, "quotalang_policy_last_reload_ok") == 0


def test_a_dangling_symlink_fails_the_first_load_by_name(tmp_path: Path) -> None:
    (tmp_path / "org.quota").write_text(POLICY)
    (tmp_path / "teams.quota").symlink_to(tmp_path / "..data" / "teams.quota")
    with pytest.raises(PolicyError) as caught:
        PolicyReloader([str(tmp_path)], PolicyHolder()).load_initial()
    assert "teams.quota is a symlink to" in caught.value.render()
    assert "points to nothing" in caught.value.render()

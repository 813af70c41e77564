"""The request deadline: the apiserver's `?timeout=` and the share of it a decision may use."""

from __future__ import annotations

import pytest

from quotalang.controller.kube.deadline import budget, parse_timeout


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10.0), ("1m30s", 90.0), ("500ms", 0.5), ("", None), (None, None), ("10", None), ("s", None)],
)
def test_apiserver_timeouts_parse(text: str | None, seconds: float | None) -> None:
    assert parse_timeout(text) == seconds


def test_the_budget_leaves_time_for_the_answer() -> None:
    assert budget(10) == 9.5
    assert budget(1) == 0.5

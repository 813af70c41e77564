"""The controller's metrics, read at scrape time (the runner's tests scrape a live controller with `scrape`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from quotalang.controller.metrics import ControllerCollector
from quotalang.controller.runner import Controller


def scrape(controller: Controller | None) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(ControllerCollector(lambda: controller))
    lines = generate_latest(registry).decode().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if not line.startswith("#")}


def test_a_follower_reports_no_controller_but_says_so() -> None:
    assert scrape(None) == {"quotalang_controller_synced": 0.0}

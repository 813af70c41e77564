"""The controller's numbers for Prometheus, read at scrape time from whichever controller runs.

With the kubernetes store the controller comes and goes with the Lease, so
the collector is registered once over a function that returns the current
one (None on a follower: nothing is reported but `synced 0`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from quotalang.controller.runner import Controller


class ControllerCollector(Collector):
    def __init__(self, current: Callable[[], Controller | None]) -> None:
        self.current = current

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        controller = self.current()
        synced = GaugeMetricFamily("quotalang_controller_synced",
                                   "1 once every watched collection was listed (usage comes from the cluster).")
        synced.add_metric([], 1 if controller is not None and controller.synced else 0)
        yield synced
        if controller is None:
            return
        families = {
            "lists": CounterMetricFamily("quotalang_controller_lists", "Complete listings (first sync, resyncs, "
                                         "relists after 410 Gone).", labels=["source"]),
            "events": CounterMetricFamily("quotalang_controller_watch_events", "Watch events handled.",
                                          labels=["source"]),
            "gone": CounterMetricFamily("quotalang_controller_watch_gone", "Watches resumed too late (410 Gone): "
                                        "relisted.", labels=["source"]),
            "errors": CounterMetricFamily("quotalang_controller_watch_errors", "Failed lists or watches, retried "
                                          "with backoff.", labels=["source"]),
        }
        for source, watcher in sorted(controller.watchers.items()):
            stats = watcher.stats
            for field, family in families.items():
                family.add_metric([source], getattr(stats, field))
        yield from families.values()
        objects = GaugeMetricFamily("quotalang_controller_objects", "Workloads the controller indexes.")
        objects.add_metric([], len(controller.reconciler))
        yield objects
        if controller.reclaimer is not None:  # issue 29: what reclaim did, per borrowing group
            reclaims = CounterMetricFamily("quotalang_reclaims", "Borrowers reclaimed for a lender, by outcome: "
                                           "suspended, deleted, gone (went first), failed (not done by the "
                                           "deadline).", labels=["group", "outcome"])
            for (group, outcome), count in sorted(controller.reclaimer.counts.items()):
                reclaims.add_metric([group, outcome], count)
            yield reclaims


__all__ = ["ControllerCollector"]

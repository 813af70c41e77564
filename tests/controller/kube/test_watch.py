"""The watcher against a real apiserver: paged lists, events in order, 410 Gone, 404, unreachable.

ConfigMaps stand in for workloads: the watcher is generic over collections,
and a ConfigMap is the cheapest object to write hundreds of times .
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from quotalang.controller.kube.api import KubeApi
from quotalang.controller.kube.watch import Backoff, Gone, Watcher
from tests.controller.kube_apiserver import apiserver, client
from tests.e2e.kube_cluster import Cluster, free_port, wait_until

__all__ = ["apiserver"]


class Recorder:
    """A sink that keeps what it was given, in order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.listings: list[list[str]] = []
        self.events: list[tuple[str, str]] = []

    def replace(self, source: str, items: Iterable[dict[str, Any]]) -> None:
        items = list(items)  # a listing is consumed once, as it arrives
        assert all((i["apiVersion"], i["kind"]) == ("v1", "ConfigMap") for i in items)  # typed like events
        with self.lock:
            self.listings.append(sorted(i["metadata"]["name"] for i in items))

    def apply(self, source: str, event: str, obj: dict[str, Any]) -> None:
        with self.lock:
            self.events.append((event, obj["metadata"]["name"]))


@pytest.fixture
def api(apiserver: Cluster) -> Iterator[KubeApi]:
    made = client(apiserver)
    yield made
    made.close()


_namespaces = iter(range(10_000))


@pytest.fixture
def namespace(api: KubeApi) -> str:
    name = f"watch-{next(_namespaces)}-{int(time.time() * 1000) % 100_000}"
    api.request("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": name}})
    return name


def configmap(api: KubeApi, namespace: str, name: str, value: str = "1") -> dict[str, Any]:
    return api.request("POST", f"/api/v1/namespaces/{namespace}/configmaps",
                       body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                             "data": {"v": value}})


def test_a_listing_spans_every_page(api: KubeApi, namespace: str) -> None:
    for i in range(7):
        configmap(api, namespace, f"cm-{i}")
    sink = Recorder()
    watcher = Watcher(api, "cm", f"/api/v1/namespaces/{namespace}/configmaps", sink, page_size=3)
    version = watcher.list_once()
    # 7 objects in pages of 3: three requests, one listing of all 7.
    assert sink.listings == [[f"cm-{i}" for i in range(7)]]
    assert int(version) > 0
    assert watcher.listed.is_set() and watcher.served


def test_events_arrive_in_order_and_the_watch_resumes(api: KubeApi, namespace: str) -> None:
    sink = Recorder()
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    watcher = Watcher(api, "cm", path, sink, watch_seconds=1)  # each watch ends after 1 s and resumes
    watcher.start()
    try:
        wait_until(watcher.listed.is_set, "the first listing")
        configmap(api, namespace, "a")
        time.sleep(1.5)  # across at least one watch restart: the resume must not lose or repeat events
        api.request("PATCH", f"{path}/a", body={"data": {"v": "2"}}, content_type="application/merge-patch+json")
        api.request("DELETE", f"{path}/a")
        wait_until(lambda: len(sink.events) >= 3, "three events")
        time.sleep(1.2)
    finally:
        watcher.stop()
    assert sink.events == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
    assert sink.listings == [[]]  # resumed from the last version, never relisted
    assert watcher.stats.gone == 0


def test_a_watch_stream_yields_each_event_whole_however_it_is_chunked(api: KubeApi, namespace: str) -> None:
    """Events larger than a read (a 200 KB ConfigMap spans several) and many in one read (100 small ones) come
    out whole and in order."""
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    version = api.request("GET", path)["metadata"]["resourceVersion"]
    big = "x" * 200_000
    configmap(api, namespace, "big-0", big)
    for i in range(100):
        configmap(api, namespace, f"small-{i}", str(i))
    configmap(api, namespace, "big-1", big)
    seen: list[tuple[str, str]] = []
    for event in api.watch(path, {"resourceVersion": version}, timeout=10):
        seen.append((event["object"]["metadata"]["name"], event["object"]["data"]["v"]))
        if len(seen) == 102:
            break
    assert seen == [("big-0", big), *((f"small-{i}", str(i)) for i in range(100)), ("big-1", big)]


def test_a_version_older_than_the_watch_cache_is_gone_and_the_loop_relists(
    apiserver: Cluster, namespace: str
) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    before = client(apiserver)
    stale = Watcher(before, "cm", path, Recorder()).list_once()
    configmap(before, namespace, "churn")
    before.close()
    # A restarted apiserver's watch cache starts at the current revision: `stale` is now too old,
    # exactly what a watcher that outlived an apiserver restart or an etcd compaction meets.
    apiserver.stop_apiserver()
    apiserver.start_apiserver()
    api = client(apiserver)
    sink = Recorder()
    watcher = Watcher(api, "cm", path, sink)
    with pytest.raises(Gone):
        watcher.watch_once(stale, 5)

    class StartsStale(Watcher):
        lists = 0

        def list_once(self) -> str:
            fresh = super().list_once()
            self.lists += 1
            return stale if self.lists == 1 else fresh

    looping = StartsStale(api, "cm", path, sink, watch_seconds=2)
    looping.start()
    try:
        wait_until(lambda: looping.lists >= 2, "a relist after 410 Gone", timeout=20)
    finally:
        looping.stop()
        api.close()
    assert looping.stats.gone == 1
    assert sink.listings[-1] == ["churn"]


def test_a_collection_the_server_does_not_serve_counts_as_listed_and_empty(api: KubeApi) -> None:
    sink = Recorder()
    watcher = Watcher(api, "tfjobs", "/apis/kubeflow.org/v1/tfjobs", sink)  # no such CRD here
    watcher.start()
    try:
        wait_until(watcher.listed.is_set, "the listing of a missing collection", timeout=10)
    finally:
        watcher.stop()
    assert sink.listings == [[]]
    assert watcher.served is False


def test_an_unreachable_apiserver_is_retried_with_backoff_and_stops_cleanly(apiserver: Cluster) -> None:
    api = client(apiserver)
    api.host = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    watcher = Watcher(api, "cm", "/api/v1/configmaps", Recorder())
    watcher.backoff = Backoff(initial=0.05, cap=0.2)
    watcher.start()
    try:
        wait_until(lambda: watcher.stats.errors >= 3, "three failed attempts", timeout=10)
        assert not watcher.listed.is_set()
    finally:
        watcher.stop()
        api.close()
    assert watcher._thread is not None
    watcher._thread.join(timeout=2)
    assert not watcher._thread.is_alive()


def test_backoff_doubles_up_to_its_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(initial=1.0, cap=8.0)
    delays = [backoff.next_delay() for _ in range(6)]
    # Full jitter in [d/2, d] for d = 1, 2, 4, 8, 8, 8.
    for delay, ceiling in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert 0.5 <= backoff.next_delay() <= 1.0

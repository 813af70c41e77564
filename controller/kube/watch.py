"""List + watch one collection, forever: the controller's eyes on the cluster.

One `Watcher` per resource (every kind the policy has a rule for, and pods)
runs in its own thread. It LISTs (in pages), hands the whole listing to the
sink as a `replace`, then WATCHes from the list's resourceVersion and hands
each event to the sink as an `apply`. It follows the apiserver's contract the
way client-go's reflector does:

* every event and every BOOKMARK moves the resourceVersion it resumes from,
  so a watch that ends (the server's `timeoutSeconds`, a dropped connection)
  resumes where it left off without a relist;
* `410 Gone` (the version was compacted away) means events were lost: relist;
* errors back off exponentially with jitter, capped, reset by a good list;
* a collection the server does not serve (404: a CRD not installed yet)
  counts as listed and empty, so one missing CRD cannot hold readiness hostage;
  it is retried at the backoff cap;
* every `resync` seconds (`math.inf`: never) the watcher relists, and the
  sink recomputes usage from scratch; it relists between watches, so a relist never races the
  events of its own collection;
* whether the apiserver answers is kept for health reports (`failure`,
  `failing_since`, `working_since`): a LIST or WATCH that ends in an error
  starts a run of failures, the next one that succeeds ends it.

The sink is called from the watcher's thread only, one call at a time per
watcher; it must be thread-safe across watchers.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from quotalang.controller.kube.api import ApiError, KubeApi, KubeError

LOG = logging.getLogger("quotalang.controller")

PAGE_SIZE = 500
WATCH_SECONDS = 60  # the server ends each watch after this; resuming is cheap


class WatchSink(Protocol):
    def replace(self, source: str, items: Iterable[dict[str, Any]]) -> None:
        """A full listing of `source`, consumed once as it arrives: objects not in it are gone."""

    def apply(self, source: str, event: str, obj: dict[str, Any]) -> None:
        """One watch event: ADDED, MODIFIED or DELETED."""


class Gone(KubeError):
    """The resourceVersion to resume from is too old: events were lost, relist."""


@dataclass
class Backoff:
    """Exponential backoff with full jitter, as client-go's reflector does."""

    initial: float = 0.5
    cap: float = 30.0
    attempt: int = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.initial * 2**self.attempt)
        self.attempt = min(self.attempt + 1, 16)
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.attempt = 0


@dataclass(slots=True)
class WatchStats:
    """Plain counters for metrics and tests (a torn read only blurs a scrape)."""

    lists: int = 0
    events: int = 0
    bookmarks: int = 0
    gone: int = 0
    errors: int = 0


class Watcher:
    """List + watch `path` (a collection, cluster-wide) into `sink` until `stop()`."""

    def __init__(
        self,
        api: KubeApi,
        source: str,
        path: str,
        sink: WatchSink,
        *,
        resync: float = 300.0,
        page_size: int = PAGE_SIZE,
        watch_seconds: int = WATCH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        relist_after_failure: bool = False,
    ) -> None:
        self.api = api
        # After a failed call, list again rather than resume the watch: for a member cluster of a
        # Fleet, whose outage may have outlived its watch history (or its etcd), the listing is the truth.
        self.relist_after_failure = relist_after_failure
        self.source = source
        self.path = path
        self.sink = sink
        self.resync = resync
        self.page_size = page_size
        self.watch_seconds = watch_seconds
        self.clock = clock
        self.stats = WatchStats()
        self.backoff = Backoff()
        self.listed = threading.Event()  # set after the first complete listing
        self.served = True  # False while the server answers 404 for the collection
        self.failure: str | None = None  # the last error while calls fail; None once one succeeds again
        self.failing_since: float | None = None  # wall clock: the first failure of the current run
        self.working_since: float | None = None  # wall clock: the first success after the last failure
        self._stop = threading.Event()
        self._relist = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ running
    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"watch-{self.source}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the loop to end; a watch in flight ends at its next event or timeout (daemon thread)."""
        self._stop.set()

    def request_relist(self) -> None:
        """Relist at the end of the current watch (a new policy, an operator's resync)."""
        self._relist.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        version: str | None = None
        listed_at = 0.0
        while not self._stop.is_set():
            try:
                due = self._relist.is_set() or self.clock() - listed_at >= self.resync
                if version is None or due:
                    self._relist.clear()
                    version = None  # a listing that fails is retried as a listing, not as a watch
                    version = self.list_once()
                    listed_at = self.clock()
                    self.backoff.reset()
                    self._succeeded()
                    if not self.served:
                        self._stop.wait(self.backoff.cap)
                        version = None
                        continue
                version = self.watch_once(version, self._watch_window(listed_at))
                self._succeeded()
            except Gone:
                self.stats.gone += 1
                LOG.info("watch of %s: resourceVersion too old (410 Gone); relisting", self.source)
                version = None
            except KubeError as exc:
                self.stats.errors += 1
                self._failed(exc)
                if self.relist_after_failure:
                    version = None
                delay = self.backoff.next_delay()
                LOG.warning("watch of %s failed (%s); retrying in %.1fs", self.source, exc, delay)
                self._stop.wait(delay)
            except Exception:  # a bug in the sink must not end the watch for good
                if self._stop.is_set():
                    return  # stopped mid-event (a leader stepping down): nothing to report
                self.stats.errors += 1
                LOG.exception("handling %s failed; relisting", self.source)
                version = None
                self._stop.wait(self.backoff.next_delay())

    def _succeeded(self) -> None:
        if self.failure is not None or self.working_since is None:
            self.working_since = time.time()
        self.failure = self.failing_since = None

    def _failed(self, exc: KubeError) -> None:
        if self.failure is None:
            self.failing_since = time.time()
        self.failure = str(exc) or type(exc).__name__

    def _watch_window(self, listed_at: float) -> int:
        left = min(self.resync - (self.clock() - listed_at), self.watch_seconds)  # resync may be math.inf
        return max(1, min(self.watch_seconds, int(left) + 1))

    # --------------------------------------------------------- one round
    def list_once(self) -> str:
        """LIST every page into the sink; return the list's resourceVersion.

        The sink consumes the listing page by page as it arrives (a listing of
        100,000 pods is never held whole); a failure midway raises out of the
        sink's loop, so a partial listing never makes the sink forget anything.
        """
        try:
            first = self._page(None)
        except ApiError as exc:
            if exc.status != 404:
                raise
            if self.served:
                LOG.warning("%s is not served by the apiserver (404): counted as empty until it is", self.source)
            self.served = False
            self.sink.replace(self.source, [])
            self.listed.set()
            return ""
        version = [str((first.get("metadata") or {}).get("resourceVersion") or "")]

        def items() -> Iterator[dict[str, Any]]:
            page = first
            while True:
                yield from _typed(page)
                token = (page.get("metadata") or {}).get("continue")
                if not token:
                    return
                page = self._page(str(token))
                version[0] = str((page.get("metadata") or {}).get("resourceVersion") or version[0])

        self.sink.replace(self.source, items())
        self.served = True
        self.stats.lists += 1
        self.listed.set()
        return version[0]

    def _page(self, token: str | None) -> dict[str, Any]:
        query: dict[str, Any] = {"limit": self.page_size}
        if token is not None:
            query["continue"] = token
        try:
            return self.api.request("GET", self.path, query=query, timeout=60.0)
        except ApiError as exc:
            if exc.status == 410:  # the continue token expired mid-listing: start over
                raise Gone(str(exc)) from None
            raise

    def watch_once(self, version: str, seconds: int) -> str:
        """WATCH from `version` for at most `seconds`; return the version to resume from."""
        query = {"resourceVersion": version, "allowWatchBookmarks": "true", "timeoutSeconds": seconds}
        try:
            for event in self.api.watch(self.path, query, timeout=seconds + 30):
                version = self._handle(event, version)
                if self._stop.is_set():
                    break
        except ApiError as exc:
            if exc.status == 410:  # some servers answer a stale watch with a plain 410, not an ERROR event
                raise Gone(str(exc)) from None
            raise
        return version

    def _handle(self, event: Mapping[str, Any], version: str) -> str:
        kind = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            return version
        if kind == "ERROR":
            raise _error(obj)
        if kind == "BOOKMARK":
            self.stats.bookmarks += 1
        elif kind in ("ADDED", "MODIFIED", "DELETED") and not self._stop.is_set():
            self.stats.events += 1
            self.sink.apply(self.source, str(kind), obj)
        return _resource_version(obj) or version


def _typed(page: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A list's items, each given the apiVersion and kind the apiserver leaves out of list items."""
    api_version = page.get("apiVersion")
    kind = str(page.get("kind") or "").removesuffix("List")
    items: list[dict[str, Any]] = page.get("items") or []
    for item in items:
        if "kind" not in item and kind:
            item["kind"] = kind
        if "apiVersion" not in item and api_version:
            item["apiVersion"] = api_version
    return items


def _resource_version(obj: Mapping[str, Any]) -> str | None:
    meta = obj.get("metadata")
    value = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    return str(value) if value else None


def _error(status: Mapping[str, Any]) -> KubeError:
    """A watch ERROR event carries a Status; 410 (Expired/Gone) means relist."""
    code = status.get("code")
    message = str(status.get("message") or "")
    if code == 410 or status.get("reason") in ("Expired", "Gone"):
        return Gone(message)
    return ApiError(int(code) if isinstance(code, int) else 500, str(status.get("reason") or "Error"), message)


__all__ = ["Backoff", "Gone", "WatchSink", "WatchStats", "Watcher"]

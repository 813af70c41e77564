"""A fake apiserver for the calls the kubernetes ledger store, its runtime and the election make.

Exactly the subset of `KubeApi` they use: `request` (GET, POST, PUT, DELETE
of objects and GET of collections) and `watch` (events after a
resourceVersion, bookmarks, `410 Gone` once history is compacted), with the
apiserver's compare-and-swap rules: one revision counter for everything (as
etcd's), a PUT or a DELETE carrying a resourceVersion that is not the
object's is refused with 409 Conflict, a POST of an existing name with 409
AlreadyExists, a missing object is 404. Bodies cross it as JSON (orjson, both
ways), so nothing the caller keeps aliases what is stored.

Deterministic: it has no thread and reads no real clock. Every call sleeps
its latency on the injected `Clock` (a simulation's yield point) and asks a
`Network` which fault, if any, the call meets:

* `conflict`: another writer lands first (the object's version moves, a
  watch event is sent), so a compare-and-swap on the old version gets 409;
* `reset`: no answer, nothing applied (connection refused or reset);
* `timeout`: no answer after the call's whole timeout (at most `hang`
  seconds, if set), nothing applied;
* `lost`: applied, and then the answer is lost (the caller sees `reset`);
* `unavailable`: a 503 answer, nothing applied.

`FakeApiServer` holds the state and is what a test or simulation drives as
"the cluster" (no faults); `FakeKubeApi` is one client's view of it, with
its own faults, as each replica has its own connection.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from quotalang.controller.kube.api import ApiError, Unreachable
from quotalang.controller.ledger.crd import COLLECTION_PATH

LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
FAULTS = ("conflict", "reset", "timeout", "lost", "unavailable")


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class Network(Protocol):
    """What a client's calls meet: a fault (one of `FAULTS`) or None, asked before each call is applied;
    `answered` after it was applied, before its answer reaches the caller (another yield point)."""

    def fault(self, method: str, path: str) -> str | None: ...

    def answered(self, method: str, path: str) -> None: ...


class Reliable:
    """A network with no faults."""

    def fault(self, method: str, path: str) -> str | None:
        return None

    def answered(self, method: str, path: str) -> None:
        return None


def _copy(obj: Mapping[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = orjson.loads(orjson.dumps(obj))
    return copied


@dataclass(slots=True)
class _Event:
    revision: int
    collection: str
    type: str
    obj: dict[str, Any]


@dataclass
class FakeApiServer:
    """Objects by path, one revision counter, and every collection's event history since `compacted`."""

    collections: tuple[str, ...] = (COLLECTION_PATH, LEASES)
    revision: int = 1
    compacted: int = 0  # watch history at or before this revision is gone (a watch from it gets 410)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[_Event] = field(default_factory=list)
    writes: int = 0

    # ------------------------------------------------------------------ paths
    def _collection_of(self, path: str) -> str | None:
        parent = path.rsplit("/", 1)[0]
        return parent if parent in self.collections else None

    def _record(self, collection: str, kind: str, obj: dict[str, Any]) -> None:
        self.events.append(_Event(self.revision, collection, kind, _copy(obj)))

    def _stamp(self, obj: dict[str, Any]) -> None:
        self.revision += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.revision)

    # ------------------------------------------------------------ the verbs
    def get(self, path: str) -> dict[str, Any]:
        if path in self.collections:
            items = [_copy(obj) for p, obj in sorted(self.objects.items()) if p.rsplit("/", 1)[0] == path]
            return {"kind": "List", "metadata": {"resourceVersion": str(self.revision)}, "items": items}
        if self._collection_of(path) is None:
            raise ApiError(404, "NotFound", f"GET {path}: the server could not find the requested resource")
        obj = self.objects.get(path)
        if obj is None:
            raise ApiError(404, "NotFound", f"GET {path}: not found")
        return _copy(obj)

    def create(self, collection: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if collection not in self.collections:
            raise ApiError(404, "NotFound", f"POST {collection}: the server could not find the requested resource")
        obj: dict[str, Any] = _copy(body)
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not name:
            raise ApiError(422, "Invalid", f"POST {collection}: metadata.name: Required value")
        path = f"{collection}/{name}"
        if path in self.objects:
            raise ApiError(409, "AlreadyExists", f"POST {collection}: {name} already exists")
        meta.pop("resourceVersion", None)
        meta["uid"] = f"uid-{self.revision + 1}"
        self._stamp(obj)
        self.objects[path] = obj
        self.writes += 1
        self._record(collection, "ADDED", obj)
        return _copy(obj)

    def replace(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """PUT: a compare-and-swap when the body carries a resourceVersion, else unconditional (as for CRs)."""
        collection = self._collection_of(path)
        current = self.objects.get(path)
        if collection is None or current is None:
            raise ApiError(404, "NotFound", f"PUT {path}: not found")
        obj: dict[str, Any] = _copy(body)
        meta = obj.setdefault("metadata", {})
        wanted = meta.get("resourceVersion")
        if wanted is not None and str(wanted) != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f"PUT {path}: the object has been modified; please apply your "
                                            "changes to the latest version and try again")
        meta["uid"] = current["metadata"].get("uid")
        self._stamp(obj)
        self.objects[path] = obj
        self.writes += 1
        self._record(collection, "MODIFIED", obj)
        return _copy(obj)

    def delete(self, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        collection = self._collection_of(path)
        current = self.objects.get(path)
        if collection is None or current is None:
            raise ApiError(404, "NotFound", f"DELETE {path}: not found")
        wanted = ((body or {}).get("preconditions") or {}).get("resourceVersion")
        if wanted is not None and str(wanted) != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f"DELETE {path}: precondition failed: resourceVersion")
        del self.objects[path]
        self._stamp(current)
        self.writes += 1
        self._record(collection, "DELETED", current)
        return {"kind": "Status", "status": "Success"}

    def touch(self, path: str) -> None:
        """Another writer's no-op write: the object's version moves (and a watch event is sent)."""
        current = self.objects.get(path)
        collection = self._collection_of(path)
        if current is not None and collection is not None:
            self._stamp(current)
            self._record(collection, "MODIFIED", current)

    def compact(self) -> None:
        """Drop the watch history: every watch from an earlier version gets 410 Gone and must relist."""
        self.compacted = self.revision
        self.events.clear()

    def events_after(self, collection: str, revision: int) -> list[_Event]:
        if revision < self.compacted:
            raise ApiError(410, "Expired", f"too old resource version: {revision} ({self.compacted})")
        return [e for e in self.events if e.revision > revision and e.collection == collection]


class FakeKubeApi:
    """One client of a `FakeApiServer`: `request` and `watch` as `KubeApi` has them, with latency and faults.

    `watch_limit` bounds how many events one watch call delivers before the
    stream ends (None: all that are pending), so a caller sees the history in
    as many pieces as a schedule wants.
    """

    def __init__(self, server: FakeApiServer, clock: Clock, *, network: Network | None = None,
                 latency: float = 0.002) -> None:
        self.server = server
        self.clock = clock
        self.network: Network = network or Reliable()
        self.latency = latency
        self.watch_limit: int | None = None
        self.hang: float | None = None
        self.calls = 0

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
        timeout: float = 10.0,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One call: applied (or not) as `Network.fault` says; `ApiError` or `Unreachable` as `KubeApi` raises."""
        self.calls += 1
        self.clock.sleep(self.latency)
        fault = self.network.fault(method, path)
        if fault == "reset":
            raise Unreachable(f"{method} {path}: ConnectionResetError")
        if fault == "timeout":
            self.clock.sleep(timeout if self.hang is None else min(timeout, self.hang))
            raise Unreachable(f"{method} {path}: ReadTimeoutError")
        if fault == "unavailable":
            raise ApiError(503, "ServiceUnavailable", f"{method} {path}: the server is currently unable to "
                                                      "handle the request")
        if fault == "conflict" and method in ("PUT", "DELETE"):
            self.server.touch(path)
        answer = self._apply(method, path, body)
        self.network.answered(method, path)
        if fault == "lost":
            raise Unreachable(f"{method} {path}: the answer was lost")
        return answer

    def _apply(self, method: str, path: str, body: Mapping[str, Any] | None) -> dict[str, Any]:
        if method == "GET":
            return self.server.get(path)
        if method == "POST":
            return self.server.create(path, body or {})
        if method == "PUT":
            return self.server.replace(path, body or {})
        if method == "DELETE":
            return self.server.delete(path, body)
        raise ApiError(405, "MethodNotAllowed", f"{method} {path}")

    def watch(self, path: str, query: Mapping[str, Any], timeout: float) -> Iterator[dict[str, Any]]:
        """The events after `query["resourceVersion"]`, then a BOOKMARK (if allowed), then the stream ends.

        A version older than the compacted history is an ERROR event with
        410 in the stream, as the apiserver sends it.
        """
        self.calls += 1
        self.clock.sleep(self.latency)
        fault = self.network.fault("WATCH", path)
        if fault in ("reset", "timeout", "lost"):
            raise Unreachable(f"WATCH {path}: ConnectionResetError")
        if fault == "unavailable":
            raise ApiError(503, "ServiceUnavailable", f"WATCH {path}")
        if path not in self.server.collections:
            raise ApiError(404, "NotFound", f"WATCH {path}")
        try:
            since = int(str(query.get("resourceVersion") or "0"))
        except ValueError:
            raise ApiError(400, "BadRequest", f"WATCH {path}: invalid resourceVersion") from None
        return self._stream(path, since, query.get("allowWatchBookmarks") == "true")

    def _stream(self, path: str, since: int, bookmarks: bool) -> Iterator[dict[str, Any]]:
        try:
            events = self.server.events_after(path, since)
        except ApiError as exc:
            yield {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired",
                                               "message": exc.message}}
            return
        delivered = events if self.watch_limit is None else events[:self.watch_limit]
        for event in delivered:
            yield {"type": event.type, "object": _copy(event.obj)}
        if bookmarks:  # never past an event not delivered
            cut = len(delivered) < len(events)
            last = (delivered[-1].revision if delivered else since) if cut else self.server.revision
            yield {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": str(last)}}}

    def close(self) -> None:
        return None


__all__ = ["FAULTS", "LEASES", "Clock", "FakeApiServer", "FakeKubeApi", "Network", "Reliable"]

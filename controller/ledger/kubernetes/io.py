"""Compare-and-swap I/O: GET, PUT on `resourceVersion`, POST, LIST and DELETE of ledger objects, with retries.

Invariant: a write lands only on the version it was computed from (409 is
answered None, never retried blindly); transient errors (unreachable, 5xx,
429) are retried with back-off (`Tuning.retry_backoff`) until the caller's
deadline, then `LedgerUnavailable`; every answer feeds the cache.
"""

from __future__ import annotations

from collections.abc import Iterable

from quotalang.controller.kube.api import ApiError, KubeError
from quotalang.controller.ledger.base import LedgerUnavailable
from quotalang.controller.ledger.crd import (
    COLLECTION_PATH,
    LedgerState,
    from_object,
    object_path,
    to_object,
)
from quotalang.controller.ledger.kubernetes.cache import Cache
from quotalang.controller.ledger.kubernetes.core import LOG


class Io(Cache):
    """Compare-and-swap I/O: GET, PUT on `resourceVersion`, POST, LIST and DELETE of ledger objects, with retries."""

    def read(self, group: str, until: float, *, create: bool = True) -> LedgerState:
        """A fresh GET (creating the object when missing), retried on errors until `until` (monotonic)."""
        while True:
            try:
                self.stats.reads += 1
                obj = self.api.request("GET", object_path(group), timeout=self._left(until))
                state = from_object(obj, group)
                self.remember(state)
                return state
            except ApiError as exc:
                if exc.status == 404 and create:
                    self._create(group, until)
                    continue
                self._retry_or_raise(exc, until, f"reading the ledger of group {group}")
            except KubeError as exc:
                self._retry_or_raise(exc, until, f"reading the ledger of group {group}")

    def _create(self, group: str, until: float) -> None:
        try:
            obj = self.api.request("POST", COLLECTION_PATH, body=to_object(self._new_state(group, until)),
                                   timeout=self._left(until))
            self.stats.writes += 1
            self.remember(from_object(obj, group))
            LOG.info("created the ledger of group %s", group)
        except ApiError as exc:
            if exc.status != 409:  # AlreadyExists: another replica was first, fine
                raise

    def _new_state(self, group: str, until: float) -> LedgerState:
        """A group's object as created (`Registering` stamps the terms its empty count is under)."""
        return LedgerState(group)

    def write(self, state: LedgerState, until: float) -> LedgerState | None:
        """PUT `state` if the object is still at `state.resource_version`; None on 409 Conflict."""
        while True:
            try:
                obj = self.api.request("PUT", object_path(state.group), body=to_object(state),
                                       timeout=self._left(until))
            except ApiError as exc:
                if exc.status == 409:
                    self.stats.conflicts += 1
                    return None
                self._retry_or_raise(exc, until, f"writing the ledger of group {state.group}")
                return None  # the write may have landed: re-read and decide again
            except KubeError as exc:
                self._retry_or_raise(exc, until, f"writing the ledger of group {state.group}")
                return None
            self.stats.writes += 1
            written = from_object(obj, state.group)
            self.remember(written)
            return written

    def _retry_or_raise(self, exc: KubeError, until: float, doing: str) -> None:
        """Back off and return if the error is worth retrying and time is left; else raise."""
        status = exc.status if isinstance(exc, ApiError) else None
        transient = status is None or status == 429 or status >= 500
        left = until - self._monotonic()
        if not transient:
            raise LedgerUnavailable(f"{doing}: {exc}") from None
        if left <= 0.05:
            self.stats.unavailable += 1
            raise LedgerUnavailable(f"{doing}: gave up at the request deadline: {exc}") from None
        self.stats.retries += 1
        self._sleep(min(self.tuning.retry_backoff, left / 4))

    def load_all(self) -> str:
        """LIST every ledger object into the cache; return the list's resourceVersion (for a watch)."""
        until = self._monotonic() + self.tuning.controller_timeout
        while True:
            try:
                listing = self.api.request("GET", COLLECTION_PATH, timeout=self._left(until))
                break
            except KubeError as exc:
                self._retry_or_raise(exc, until, "listing the ledger objects")
        self.load(listing.get("items") or [])
        return str((listing.get("metadata") or {}).get("resourceVersion") or "")

    def ensure_groups(self, groups: Iterable[str]) -> int:
        """Create the ledger objects of `groups` that do not exist yet; return how many were created."""
        until = self._monotonic() + self.tuning.controller_timeout
        created = 0
        for group in groups:
            if group in self._cache:
                continue
            before = self.stats.writes
            self.read(group, until)
            created += self.stats.writes > before
        return created

    def delete_if_empty(self, group: str) -> bool:
        """Delete a removed group's ledger if it holds nothing, guarded by its resourceVersion."""
        state = self._cache.get(group)
        if state is None or not state.is_empty():
            return False
        body = {"kind": "DeleteOptions", "apiVersion": "v1",
                "preconditions": {"resourceVersion": state.resource_version}}
        try:
            self.api.request("DELETE", object_path(group), body=body, timeout=self.tuning.controller_timeout)
        except ApiError as exc:
            if exc.status in (404, 409):
                return False
            raise
        self.drop(group)
        return True


__all__ = ["Io"]

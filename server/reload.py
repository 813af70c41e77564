"""Policy hot reload: poll the policy's content every 2 s, reload on SIGHUP.

Polling the *content* (a checksum of every file the policy read, plus the
directory's `*.quota` listing) rather than mtimes or inotify catches the
symlink swap a mounted ConfigMap does (`..data` → a new timestamped folder),
edits in place, and files that appear or vanish, with no dependency.

A policy that fails to load or check is rejected: the last good one keeps
serving, the error is logged with its carets and counted
(`quotalang_policy_reload_errors_total`), and the same broken content is not
retried until it changes. A good one is compiled off the event loop and
swapped in with one attribute assignment, so a request sees either the old
policy or the new one, never a mix.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from quotalang import loader
from quotalang.compiler import compile_sources
from quotalang.errors import PolicyError
from quotalang.policy import CompiledPolicy
from quotalang.server.logs import log_event

if TYPE_CHECKING:
    from quotalang.server.metrics import Metrics

LOG = logging.getLogger("quotalang.reload")
DEFAULT_INTERVAL = 2.0
Result = Literal["unchanged", "loaded", "rejected"]


class PolicyHolder:
    """The policy being served. Readers take `.policy` once per request."""

    __slots__ = ("last_error", "loaded_at", "policy")

    def __init__(self, policy: CompiledPolicy | None = None) -> None:
        self.policy = policy
        self.loaded_at: float | None = time.time() if policy is not None else None
        self.last_error: str | None = None

    def swap(self, policy: CompiledPolicy) -> None:
        self.policy = policy
        self.loaded_at = time.time()
        self.last_error = None


def _abs(name: str) -> str:
    """Absolute without resolving symlinks: a ConfigMap's files keep their names across swaps."""
    return os.path.abspath(name)


class PolicyReloader:
    """Keeps `holder` serving the newest good policy found at `paths`."""

    def __init__(
        self,
        paths: Sequence[str],
        holder: PolicyHolder,
        metrics: Metrics | None = None,
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self.paths = [str(p) for p in paths]
        self.holder = holder
        self.metrics = metrics
        self.interval = interval
        self._imports: frozenset[str] = frozenset()  # files the last load read beyond the listing
        self._digest: str | None = None
        self._lock = threading.Lock()
        self._wake = asyncio.Event()

    def _files(self) -> list[str]:
        files = set(self._imports)
        for root in self.paths:
            path = Path(root)
            if path.is_dir():
                try:
                    files.update(_abs(str(p)) for p in path.iterdir() if p.suffix == ".quota")
                except OSError:
                    files.add(_abs(root))  # unreadable: hashed as an error below
            else:
                files.add(_abs(root))
        return sorted(files)

    def digest(self) -> str:
        """A checksum of the policy's files as they are on disk now."""
        sha = hashlib.sha256()
        for name in self._files():
            sha.update(name.encode() + b"\0")
            try:
                sha.update(Path(name).read_bytes())
            except OSError as exc:
                sha.update(f"\0error {exc.errno}".encode())
            sha.update(b"\0")
        return sha.hexdigest()

    def load_initial(self) -> CompiledPolicy:
        """The first load: a broken policy raises `PolicyError` (serve exits 2) instead of waiting."""
        with self._lock:
            self._digest = self.digest()
            policy = self._load()
        if self.metrics is not None:
            self.metrics.policy_ok.set(1)
        return policy

    def reload(self, force: bool = False) -> Result:
        """Load the policy if its content changed (or `force`); swap it in if it is good."""
        with self._lock:
            digest = self.digest()
            if digest == self._digest and not force:
                return "unchanged"
            self._digest = digest
            previous = self.holder.policy
            try:
                policy = self._load()
            except PolicyError as exc:
                return self._rejected(exc.render())
            except Exception as exc:  # a bug in a stage must not take the server down
                return self._rejected(f"{type(exc).__name__}: {exc}")
        if self.metrics is not None:
            self.metrics.reloads.inc()
            self.metrics.policy_ok.set(1)
        log_event(
            LOG, logging.INFO, "policy loaded",
            checksum=policy.checksum,
            previous=previous.checksum if previous is not None else None,
            groups=len(policy.groups),
            kinds=len(policy.kinds),
            warnings=len(policy.warnings),
        )
        return "loaded"

    def _load(self) -> CompiledPolicy:
        """Load, check, compile and swap in (the caller holds the lock and set `_digest`)."""
        sources = loader.load(self.paths)
        policy = compile_sources(sources)
        imports = frozenset(_abs(name) for name in sources.texts)
        if imports != self._imports:
            # The set of files to watch changed (first load, a new import): checksum the
            # new set now, so that the next poll does not see it as a change.
            self._imports = imports
            self._digest = self.digest()
        self.holder.swap(policy)
        return policy

    def _rejected(self, error: str) -> Result:
        self.holder.last_error = error
        if self.metrics is not None:
            self.metrics.reload_errors.inc()
            self.metrics.policy_ok.set(0)
        serving = self.holder.policy.checksum if self.holder.policy is not None else None
        log_event(LOG, logging.ERROR, "policy rejected; the last good policy keeps serving",
                  serving=serving, error=error)
        return "rejected"

    def request_reload(self) -> None:
        """Ask `run` to reload now, whatever the checksum says (the SIGHUP handler)."""
        self._wake.set()

    async def run(self) -> None:
        """Poll every `interval` seconds until cancelled; wake early on `request_reload`."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            force = self._wake.is_set()
            self._wake.clear()
            await asyncio.to_thread(self.reload, force)

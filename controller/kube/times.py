"""Kubernetes timestamps: RFC 3339 in UTC, read and written in one place.

The Lease (`renewTime`, `acquireTime`), the QuotaLedger (`deadline`,
`lastAccrual`) and pod status (`lastTransitionTime`, `finishedAt`) all carry
them. Both directions are cached: a ledger object's reservation deadlines
are written again with every write of the object and read again from every
answer and watch event.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache


@lru_cache(maxsize=8192)
def format_time(epoch: float) -> str:
    """RFC 3339 with microseconds in UTC, as Kubernetes writes MicroTime."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@lru_cache(maxsize=8192)
def parse_time(text: str) -> float:
    """An RFC 3339 time (`2026-11-23T09:00:00Z`, with or without fractions) as epoch seconds.

    A time without an offset is UTC. Raises `ValueError` for anything else.
    """
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


__all__ = ["format_time", "parse_time"]

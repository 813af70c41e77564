"""resourceVersion order: which of two copies of an object is the newer, and what an observation confirms.

resourceVersions are opaque to clients, but etcd's are integers. Invariant:
an observation confirms an admission only at or after the version it was
admitted against (a CREATE has none, so any observation of it does), and a
cached copy is replaced only by a newer one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def version_of(obj: Mapping[str, Any] | None) -> str | None:
    """An object's metadata.resourceVersion, if any."""
    meta = obj.get("metadata") if type(obj) is dict or isinstance(obj, Mapping) else None  # plain dicts first
    value = meta.get("resourceVersion") if type(meta) is dict or isinstance(meta, Mapping) else None
    return str(value) if value else None


def later(candidate: str, current: str) -> bool:
    """Whether resourceVersion `candidate` comes after `current`.

    resourceVersions are opaque, but etcd's are integers; anything else
    counts as later when it differs.
    """
    try:
        return int(candidate) > int(current)
    except ValueError:
        return candidate != current


def at_or_after(seen: str | None, admitted: str | None) -> bool:
    """Whether an observation at `seen` includes an admission made at `admitted`.

    An object admitted on CREATE has no version yet, so any observation of it counts.
    """
    if admitted is None or seen is None:
        return True
    return later(seen, admitted)


def newer(candidate: str | None, current: str | None) -> bool:
    """Whether a copy at `candidate` should replace a cached one at `current` (nothing cached: yes)."""
    if current is None:
        return True
    if candidate is None:
        return False
    return later(candidate, current)


__all__ = ["at_or_after", "later", "newer", "version_of"]

"""The object index's bodies: how a store keeps what it admitted and observed, and reads it back.

A `Scale` and an HPA carry no template, so the engine looks their parent up
in the store (`Ledger.lookup`); every store answers through `look_up` here.
Invariant: a body is packed before anything is written (one that cannot be
packed is denied and leaves no trace), and a lookup at a resourceVersion
returns only a body known to be at that version.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import orjson

from quotalang.controller.ledger.base import ObjectKey
from quotalang.errors import InputError


def pack(body: Mapping[str, Any]) -> bytes:
    """Stores keep indexed bodies as JSON bytes, not dicts.

    Ten thousand objects as nested dicts are a million objects the cyclic GC
    traverses on every full collection, and each admission would add a
    hundred more; one bytes object per body is invisible to it (and smaller).
    Bodies are read back only for a `Scale` or an HPA, which are rare.
    A body orjson cannot encode (nested past its depth limit) is an
    `InputError`: stores pack before they write anything, so such an object
    is denied and leaves no trace.
    """
    try:
        return orjson.dumps(body, default=str)
    except orjson.JSONEncodeError as exc:
        raise InputError(f"the object cannot be recorded: {exc}") from None


def pack_observed(body: Mapping[str, Any] | None) -> bytes | None:
    """`pack` for what the watch saw: an object the index cannot hold is still counted, only not indexed
    (a `/scale` of it is then looked up live)."""
    if body is None:
        return None
    try:
        return pack(body)
    except InputError:
        return None


def unpack(raw: bytes) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(raw)
    return body


class Admitted(Protocol):
    """An admitted object's body, held until its reservation's deadline."""

    @property
    def deadline(self) -> float: ...

    @property
    def body(self) -> bytes | None: ...

    @property
    def resource_version(self) -> str | None: ...  # the version an UPDATE was admitted against


def look_up(
    identity: ObjectKey,
    admitted: Mapping[ObjectKey, Admitted],
    observed: Mapping[ObjectKey, bytes],
    now: float,
    fallback: Callable[[ObjectKey], Mapping[str, Any] | None] | None,
    version: str | None = None,
    *,
    fetches: bool = False,
) -> Mapping[str, Any] | None:
    """`Ledger.lookup` for every store.

    The admitted body (until its reservation's deadline), else the observed
    one, else what `fallback` finds (pass None for a `local` lookup).

    With `version`, the resourceVersion the object has now (a Scale carries
    its parent's), only a body known to be that version is trusted: the
    observed one if the watch saw it at `version`, else, where the store
    `fetches`, a live read (None from a `local` lookup: the caller reads in a
    thread). An admitted body is not known to be stored: it may be an update
    a later webhook or the storage refused while another writer moved the
    object on, and a Scale checked against it would be charged from replicas
    the object never had (the simulation's `--scale-parent lookup`, seed 1).
    A store that cannot read live passes over only an admitted body that was
    admitted against `version` itself (had it been stored, the object would
    have a newer one).
    """
    pending = admitted.get(identity)
    live = pending if pending is not None and pending.deadline > now else None
    if version:
        seen = observed.get(identity)
        if seen is not None:
            body = unpack(seen)
            meta = body.get("metadata")
            if isinstance(meta, Mapping) and meta.get("resourceVersion") == version:
                return body
        if fetches:
            return fallback(identity) if fallback is not None else None
        if live is not None and live.resource_version == version:
            live = None
    raw = live.body if live is not None else None
    if raw is None:
        raw = observed.get(identity)
    if raw is not None:
        return unpack(raw)
    return fallback(identity) if fallback is not None else None


def recorded(
    identity: ObjectKey, admitted: Mapping[ObjectKey, Admitted], observed: Mapping[ObjectKey, bytes], now: float
) -> bytes | None:
    """The packed body a local `look_up` without a version returns (the admitted one until its deadline,
    else the observed one), unparsed: a caller that only compares it with an object packs that instead."""
    pending = admitted.get(identity)
    raw = pending.body if pending is not None and pending.deadline > now else None
    return raw if raw is not None else observed.get(identity)


__all__ = ["Admitted", "look_up", "pack", "pack_observed", "recorded", "unpack"]

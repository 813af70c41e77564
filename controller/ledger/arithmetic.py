"""Usage arithmetic every store shares: sums that drop zeros, per-key maxima, a resync's new totals.

Usage is a mapping of resource key to nano units (exact integers, never
floats). Invariant: a key whose total reaches zero leaves the mapping, so two
usages are equal exactly when they charge the same; and a resync's sums
(`summed`) never count an object as less than the listing or the calls made
since it say it holds.
"""

from __future__ import annotations

from collections.abc import Mapping

from quotalang.controller.ledger.base import ObjectKey, Observed, Usage


def add_usage(target: dict[str, int], usage: Usage, sign: int = 1) -> None:
    """Add (or, with sign -1, subtract) usage in place; keys that reach zero leave."""
    for key, value in usage.items():
        total = target.get(key, 0) + sign * value
        if total:
            target[key] = total
        else:
            target.pop(key, None)


def maximum(a: Usage, b: Usage) -> dict[str, int]:
    """Per key, the larger of two usages: what to hold when either may be the one that exists."""
    out = dict(a)
    for key, value in b.items():
        if value > out.get(key, 0):
            out[key] = value
    return out


ClusterSums = dict[str, dict[str, tuple[dict[str, int], int]]]  # group -> cluster -> (usage, objects)


def summed(
    observed_by_group: Mapping[str, Mapping[ObjectKey, Usage]],
    told: Mapping[ObjectKey, Observed | None] | None = None,
    *,
    cluster: str = "",
    index: Mapping[ObjectKey, Observed] | None = None,
) -> tuple[dict[ObjectKey, Observed], ClusterSums]:
    """A resync of `cluster`: the new per-object index and, per group and cluster, (usage, object count).

    Only `cluster`'s objects are replaced: the store's current `index` of
    other clusters' objects is kept as is (a listing's identities of another
    cluster are ignored), so one cluster's relist never forgets another's
    usage. `told` is what the store was told (`observe`: its entry;
    `forget`: None) of `cluster`'s objects since the listing may have been
    taken, i.e. since that cluster's previous resync (other clusters' entries
    are ignored: they are for their own resync). Either may be the newer of
    the two: the listing can predate a call (a fold that confirmed an
    admission must not be undone), or a call can still be on its way with
    what the listing shows (it will be applied as a difference against this
    index). So a told object keeps its told group; in that group it counts
    the per-key larger of the two usages (a growth the listing saw first is
    counted now, whether or not an admission reserved it); a forgotten one
    stays gone (a re-created object was admitted, and its reservation holds
    it until its own call folds it). Neither order counts an object as less
    than it holds; the next call, or the next resync, makes the number exact.
    """
    fresh: dict[ObjectKey, Observed] = {k: o for k, o in (index or {}).items() if k.cluster != cluster}
    for group, objects in observed_by_group.items():
        for identity, usage in objects.items():
            if identity.cluster == cluster:
                fresh[identity] = Observed(group, dict(usage))
    for identity, seen in (told or {}).items():
        if identity.cluster != cluster:
            continue
        listed = fresh.pop(identity, None)
        if seen is None:
            continue
        usage = dict(seen.usage)
        if listed is not None and listed.group == seen.group:
            usage = maximum(usage, listed.usage)
        fresh[identity] = Observed(seen.group, usage)
    sums: ClusterSums = {}
    for identity, observed in fresh.items():
        if observed.group is not None:
            total, count = sums.setdefault(observed.group, {}).get(identity.cluster, ({}, 0))
            add_usage(total, observed.usage)
            sums[observed.group][identity.cluster] = (total, count + 1)
    return fresh, sums


def totals(by_cluster: Mapping[str, tuple[Mapping[str, int], int]]) -> tuple[dict[str, int], int]:
    """A group's usage and object count summed over its clusters."""
    usage: dict[str, int] = {}
    count = 0
    for part, objects in by_cluster.values():
        add_usage(usage, part)
        count += objects
    return usage, count


__all__ = ["ClusterSums", "add_usage", "maximum", "summed", "totals"]

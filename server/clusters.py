"""`serve --cluster NAME=KUBECONFIG`: which clusters one serve decides for, and where its ledger lives.

One serve may decide for several clusters (issue 18): each registered cluster
has its own admission route (`/validate/NAME`), its own watchers, and its
name in every object identity, so that `team-a/web` in two clusters is two
workloads charged against one ledger.

The rules, each a usage error (exit 2) when broken:

* `NAME` is a DNS label (it appears in a URL path, a metric label and the
  ledger's identity encoding); each name once.
* `KUBECONFIG` is a file, or `in-cluster` for the cluster serve runs in (its
  service account). One cluster registered twice would charge every object
  twice, so the same file (or `in-cluster`) may appear once.
* `--cluster` replaces `--kubeconfig`/`--in-cluster` (the single-cluster
  form, whose cluster has the name ""); the two forms do not mix.
* The hub, the cluster that holds what is shared (the kubernetes store's
  QuotaLedgers and Lease, the `--cert-secret` Secret, and the apiserver the
  API port asks about bearer tokens), is `--ledger-cluster NAME`: a
  registered name, or `NAME=KUBECONFIG` for a cluster that holds the ledger
  and is not watched (a hub that runs no workloads). Without the flag it is
  the only cluster when one is given, else the `in-cluster` one (where serve
  runs); with neither, a serve that needs a hub says so.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from quotalang.errors import QuotalangError

IN_CLUSTER = "in-cluster"
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class ClusterError(QuotalangError):
    """A `--cluster` or `--ledger-cluster` that cannot be used (exit 2)."""


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    """A cluster serve talks to: its name and how to reach it."""

    name: str  # "" for the single-cluster form (--kubeconfig / --in-cluster)
    kubeconfig: str | None  # None: the pod's own cluster (in-cluster, else the default kubeconfig)
    watched: bool = True  # False: a ledger cluster that is not a member

    def describe(self) -> str:
        where = self.kubeconfig or IN_CLUSTER
        return f"{self.name}={where}" if self.name else where


@dataclass(frozen=True, slots=True)
class Clusters:
    """The registered clusters (in the order given) and the hub, if there is one."""

    members: tuple[ClusterSpec, ...]
    hub: ClusterSpec | None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.members)

    @property
    def several(self) -> bool:
        """The `--cluster` form: routes per cluster, names in identities (even for one cluster)."""
        return any(c.name for c in self.members)


def cluster_name(text: str, flag: str = "--cluster") -> str:
    if len(text) > 63 or not _DNS_LABEL.fullmatch(text):
        raise ClusterError(
            f"{flag}: {text!r} is not a cluster name (a DNS label: lowercase letters, digits and '-', "
            "at most 63 characters, starting and ending with a letter or digit)"
        )
    return text


def parse_spec(text: str, flag: str = "--cluster") -> ClusterSpec:
    """`NAME=KUBECONFIG` or `NAME=in-cluster`."""
    name, sep, where = text.partition("=")
    if not sep or not where:
        raise ClusterError(f"{flag} {text!r}: give NAME=KUBECONFIG, or NAME={IN_CLUSTER} for the cluster serve "
                           "runs in")
    cluster_name(name, flag)
    if where == IN_CLUSTER:
        return ClusterSpec(name, None)
    if not os.path.isfile(where):
        raise ClusterError(f"{flag} {text}: no such kubeconfig file: {where}")
    return ClusterSpec(name, where)


def _same_place(spec: ClusterSpec) -> str:
    return os.path.realpath(spec.kubeconfig) if spec.kubeconfig else IN_CLUSTER


def plan(
    clusters: Sequence[str],
    ledger_cluster: str | None,
    *,
    kubeconfig: str | None = None,
    in_cluster: bool = False,
) -> Clusters:
    """Check the flags and name the clusters; `Clusters((), None)` when serve watches none."""
    if not clusters:
        if ledger_cluster is not None:
            raise ClusterError("--ledger-cluster names one of the --cluster clusters: give --cluster NAME=KUBECONFIG")
        if kubeconfig is None and not in_cluster:
            return Clusters((), None)
        single = ClusterSpec("", kubeconfig)
        return Clusters((single,), single)
    if kubeconfig is not None or in_cluster:
        raise ClusterError("--cluster names every cluster serve decides for; --kubeconfig and --in-cluster are the "
                           "single-cluster form: use one form (NAME=in-cluster for the cluster serve runs in)")
    members: list[ClusterSpec] = []
    seen: dict[str, str] = {}  # where -> name
    for text in clusters:
        spec = parse_spec(text)
        if spec.name in (m.name for m in members):
            raise ClusterError(f"--cluster {spec.name} is given twice: each cluster has one name")
        where = _same_place(spec)
        if where in seen:
            raise ClusterError(f"--cluster {spec.name} and --cluster {seen[where]} are the same cluster "
                               f"({spec.kubeconfig or IN_CLUSTER}): its objects would be charged twice")
        seen[where] = spec.name
        members.append(spec)
    return Clusters(tuple(members), _hub(members, ledger_cluster, seen))


def _hub(members: list[ClusterSpec], ledger_cluster: str | None, seen: dict[str, str]) -> ClusterSpec | None:
    if ledger_cluster is None:
        if len(members) == 1:
            return members[0]
        return next((m for m in members if m.kubeconfig is None), None)
    if "=" not in ledger_cluster:
        cluster_name(ledger_cluster, "--ledger-cluster")
        for member in members:
            if member.name == ledger_cluster:
                return member
        names = ", ".join(m.name for m in members)
        raise ClusterError(f"--ledger-cluster {ledger_cluster} is not one of the --cluster names ({names}); "
                           f"a cluster that holds the ledger without being watched is NAME=KUBECONFIG")
    spec = parse_spec(ledger_cluster, "--ledger-cluster")
    if spec.name in (m.name for m in members):
        raise ClusterError(f"--ledger-cluster {ledger_cluster}: {spec.name} is a --cluster already; name it alone "
                           f"(--ledger-cluster {spec.name})")
    where = _same_place(spec)
    if where in seen:
        raise ClusterError(f"--ledger-cluster {ledger_cluster} is --cluster {seen[where]}: name it "
                           f"(--ledger-cluster {seen[where]})")
    return ClusterSpec(spec.name, spec.kubeconfig, watched=False)


def need_hub(found: Clusters, what: str) -> ClusterSpec:
    """The hub, or a usage error saying that `what` needs one."""
    if found.hub is None:
        names = ", ".join(found.names)
        raise ClusterError(f"{what} lives in one cluster, and with several (--cluster {names}) none is chosen: "
                           "give --ledger-cluster NAME (one of them, or NAME=KUBECONFIG for a hub that is not "
                           "watched)")
    return found.hub


__all__ = ["IN_CLUSTER", "ClusterError", "ClusterSpec", "Clusters", "cluster_name", "need_hub", "parse_spec", "plan"]

"""`authorize users`: may the request's user charge the group? Asked of the apiserver, cached briefly.

PodSecurityPolicy's pattern: charging group G needs verb `use` on
`groups.quotalang.dev` with resourceName G, which RBAC grants like any other
(`quotalang manifests` prints a ClusterRole template). The question is a
SubjectAccessReview through `apiauth.KubeReviews`, the one client the API
port's token check uses too, put to the apiserver of the review's cluster.

The question is asked in the workload's namespace, so a RoleBinding there
grants it (a ClusterRoleBinding everywhere). Answers are cached per
(cluster, namespace, user — name, uid, groups, extra —, group)
for `ttl` seconds, allowed and denied alike, in at most `size` entries: the
pods of one burst cost one review, and a revoked grant holds at most `ttl`
longer (as the API port's cache). An apiserver that cannot be asked is not
cached, and the request is refused (failing closed): a grant nobody could
check is no grant. It is asked within what is left of the review's own
deadline (never more than `REVIEW_TIMEOUT`), so a slow apiserver is refused
in time for the webhook to answer, rather than the webhook timing out.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from cachetools import TTLCache

from quotalang.server.apiauth import API_GROUP, RESOURCE, REVIEW_TIMEOUT, Action, Reviews, Unavailable, User

USE = "use"
DEFAULT_TTL = 10.0  # seconds
DEFAULT_SIZE = 4096

_Key = tuple[str, str, User, str]  # (cluster, namespace, user, group)


def user_of(info: Mapping[str, Any] | None) -> User | None:
    """The request's `userInfo` as a SubjectAccessReview's subject (admission checked its types); None when
    it names nobody."""
    if not isinstance(info, Mapping) or not info.get("username"):
        return None
    extra = info.get("extra") or {}
    return User(
        name=str(info["username"]),
        uid=str(info.get("uid") or ""),
        groups=tuple(str(g) for g in info.get("groups") or ()),
        extra=tuple(sorted((str(k), tuple(str(v) for v in vs)) for k, vs in extra.items())),
    )


def _resource(group: str) -> str:
    return f'{RESOURCE}.{API_GROUP} "{group}"'


def refusal(user: str, group: str) -> str:
    """What a user without the grant is told: the verb and resource to bind."""
    return (f"user {user} may not {USE} {_resource(group)}: bind a Role/ClusterRole granting verb {USE} on "
            f'{RESOURCE}.{API_GROUP} resourceNames ["{group}"]')


class Grants:
    """The `use` answers for each cluster's reviews (`reviews`: cluster name, "" for the one cluster, to its
    client); safe to share between the event loop and worker threads."""

    def __init__(self, reviews: Mapping[str, Reviews], *, ttl: float = DEFAULT_TTL, size: int = DEFAULT_SIZE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.reviews = reviews
        self._answers: TTLCache[_Key, bool] = TTLCache(maxsize=size, ttl=ttl, timer=clock)
        self._clock = clock
        self._lock = threading.Lock()

    def known(self, user: User | None, group: str, namespace: str, cluster: str = "") -> bool:
        """Whether `check` can answer without asking the apiserver (the event loop's test)."""
        if user is None or cluster not in self.reviews:
            return True
        with self._lock:
            return (cluster, namespace, user, group) in self._answers

    def check(self, user: User | None, group: str, namespace: str, cluster: str = "", *,
              deadline: float = math.inf) -> str | None:
        """The refusal, or None when `user` may use `group` in `namespace`; asks the apiserver what is not remembered
        (blocking: off the event loop) by `deadline` (on `clock`: the review's, monotonic)."""
        if user is None:
            return _nobody(group)
        with self._lock:
            allowed = self._answers.get((cluster, namespace, user, group))
        if allowed is None:
            reviews = self.reviews.get(cluster)
            if reviews is None:
                return (f"cannot ask whether user {user.name} may {USE} {_resource(group)}: this server has no "
                        "apiserver to ask (serve --kubeconfig or --in-cluster); denied")
            left = deadline - self._clock()
            if left <= 0:
                return (f"no time left to ask the apiserver whether user {user.name} may {USE} "
                        f"{_resource(group)} (the review's deadline has passed); denied")
            try:
                allowed = reviews.authorize(user, Action(USE, name=group, namespace=namespace),
                                            min(left, REVIEW_TIMEOUT))
            except Unavailable as exc:
                return (f"cannot ask the apiserver whether user {user.name} may {USE} {_resource(group)} "
                        f"(SubjectAccessReview): {str(exc)[:200]}; denied until it answers")
            with self._lock:
                self._answers[cluster, namespace, user, group] = allowed
        return None if allowed else refusal(user.name, group)


def _nobody(group: str) -> str:
    return f"the request names no user (userInfo.username), so nobody may {USE} {_resource(group)}; denied"


__all__ = ["USE", "Grants", "refusal", "user_of"]

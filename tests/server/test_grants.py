"""`authorize users`: the user's `use` grant on a group, asked by the engine (a fake Reviews counts the asks)
and cached per (cluster, user, group). Messages and counts are written by hand."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from quotalang.controller import MemoryLedger
from quotalang.server.admission import AdmissionRequest
from quotalang.server.apiauth import Action, Unavailable, User
from quotalang.server.cli import main
from quotalang.server.engine import Engine
from quotalang.server.grants import Grants, user_of
from quotalang.server.reload import PolicyHolder
from tests.server.webhook_helpers import compile_text, deployment, review, scale_review

POLICY = """\
import "quotalang:policies"

settings {
  group label "team"
  authorize users
}

group ai {
  namespaces "shared"
  requests.cpu 20
}

group llm in ai {
  requests.cpu 8
}

group vision in ai {
  mode warn
  requests.cpu 8
}
"""

ALICE = User("alice", uid="u-1", groups=("team-a",))
NO_GRANT = ('user alice may not use groups.quotalang.dev "llm": bind a Role/ClusterRole granting verb use on '
            'groups.quotalang.dev resourceNames ["llm"]')


class FakeReviews:
    """Grants as (user name, group) pairs; every question counted."""

    def __init__(self, *grants: tuple[str, str]) -> None:
        self.grants = set(grants)
        self.asked: list[tuple[str, tuple[str, ...], str]] = []
        self.namespaces: list[str] = []  # where each question was asked
        self.timeouts: list[float] = []  # what each question was given to answer in
        self.latency = 0.0  # how long this apiserver takes: a question given less times out
        self.down = False

    def authenticate(self, token: str) -> User | None:
        raise AssertionError("the grant check never authenticates")

    def authorize(self, user: User, action: Action, timeout: float = 5.0) -> bool:
        if self.down:
            raise Unavailable("connection refused")
        assert (action.verb, action.path, action.subresource) == ("use", None, "")
        self.asked.append((user.name, user.groups, action.name))
        self.namespaces.append(action.namespace)
        self.timeouts.append(timeout)
        if timeout < self.latency:
            raise Unavailable(f"timed out after {timeout:g} s")
        return (user.name, action.name) in self.grants


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------ the cache
def test_answers_are_cached_allowed_and_denied_until_the_ttl() -> None:
    reviews, clock = FakeReviews(("alice", "vision")), Clock()
    grants = Grants({"": reviews}, ttl=10, clock=clock)
    assert grants.check(ALICE, "llm", "shared") == NO_GRANT
    assert grants.check(ALICE, "vision", "shared") is None
    clock.now = 9.9
    assert grants.check(ALICE, "llm", "shared") == NO_GRANT and grants.check(ALICE, "vision", "shared") is None
    assert len(reviews.asked) == 2  # both answers remembered, the denial too
    clock.now = 10.1
    reviews.grants.add(("alice", "llm"))  # granted since: seen once the answer has expired
    assert grants.check(ALICE, "llm", "shared") is None
    assert len(reviews.asked) == 3


def test_the_key_holds_the_users_groups_the_namespace_and_the_cluster() -> None:
    reviews = FakeReviews(("alice", "llm"))
    grants = Grants({"": reviews, "eu-1": reviews})
    grants.check(ALICE, "llm", "shared")
    admin = User("alice", uid="u-1", groups=("team-a", "admins"))
    grants.check(admin, "llm", "shared")  # other groups: asked again
    grants.check(ALICE, "llm", "shared", "eu-1")  # another cluster's apiserver: asked again
    grants.check(ALICE, "llm", "other")  # another namespace (its RoleBindings): asked again
    grants.check(ALICE, "llm", "shared")
    assert reviews.asked == [("alice", ("team-a",), "llm"), ("alice", ("team-a", "admins"), "llm"),
                             ("alice", ("team-a",), "llm"), ("alice", ("team-a",), "llm")]
    assert reviews.namespaces == ["shared", "shared", "shared", "other"]


def test_the_cache_is_bounded() -> None:
    reviews = FakeReviews()
    grants = Grants({"": reviews}, size=2)
    for name in ("a", "b", "c"):
        grants.check(User(name), "llm", "shared")
    grants.check(User("a"), "llm", "shared")  # pushed out by c: asked again
    grants.check(User("c"), "llm", "shared")  # still held
    assert [user for user, _, _ in reviews.asked] == ["a", "b", "c", "a"]


def test_an_apiserver_that_cannot_answer_refuses_and_is_not_cached() -> None:
    reviews = FakeReviews(("alice", "llm"))
    reviews.down = True
    grants = Grants({"": reviews})
    assert grants.check(ALICE, "llm", "shared") == (
        'cannot ask the apiserver whether user alice may use groups.quotalang.dev "llm" (SubjectAccessReview): '
        "connection refused; denied until it answers"
    )
    reviews.down = False
    assert grants.check(ALICE, "llm", "shared") is None


def test_the_question_gets_what_is_left_of_the_reviews_deadline() -> None:
    reviews, clock = FakeReviews(("alice", "llm"), ("alice", "vision")), Clock()
    grants = Grants({"": reviews}, clock=clock)
    clock.now = 100.0
    assert grants.check(ALICE, "llm", "shared", deadline=101.5) is None
    assert grants.check(ALICE, "vision", "shared") is None  # no deadline: the review timeout, 5 s
    assert reviews.timeouts == [1.5, 5.0]
    # a slow apiserver (3 s) with 2 s left: refused within the webhook's own budget, and not cached
    reviews.latency = 3.0
    assert grants.check(ALICE, "ai", "shared", deadline=102.0) == (
        'cannot ask the apiserver whether user alice may use groups.quotalang.dev "ai" (SubjectAccessReview): '
        "timed out after 2 s; denied until it answers"
    )
    # past the deadline: refused unasked
    assert grants.check(ALICE, "ai", "shared", deadline=100.0) == (
        'no time left to ask the apiserver whether user alice may use groups.quotalang.dev "ai" '
        "(the review's deadline has passed); denied"
    )
    assert reviews.timeouts == [1.5, 5.0, 2.0]


def test_the_engine_asks_within_the_reviews_deadline() -> None:
    reviews = FakeReviews(("alice", "llm"))
    reviews.latency = 3.0
    engine = engine_with(reviews)
    denied = engine.review(request(review(web())), deadline=time.monotonic() + 1.0)
    assert denied is not None and (denied.verdict, denied.reason) == ("deny", "not-authorized")
    assert "timed out after" in denied.response["status"]["message"]
    assert len(reviews.timeouts) == 1 and 0.5 < reviews.timeouts[0] <= 1.0
    # the default deadline: the apiserver's 10 s webhook timeout less the answer's way back, capped at 5 s
    assert engine.review(request(review(web()))).verdict == "allow"  # type: ignore[union-attr]
    assert reviews.timeouts[1] == 5.0


def test_a_request_naming_no_user_or_no_apiserver_is_refused_unasked() -> None:
    reviews = FakeReviews(("alice", "llm"))
    grants = Grants({"": reviews})
    assert grants.check(None, "llm", "shared") == (
        'the request names no user (userInfo.username), so nobody may use groups.quotalang.dev "llm"; denied'
    )
    assert grants.check(ALICE, "llm", "shared", "elsewhere") == (
        'cannot ask whether user alice may use groups.quotalang.dev "llm": this server has no apiserver to ask '
        "(serve --kubeconfig or --in-cluster); denied"
    )
    assert reviews.asked == []


def test_user_of_reads_the_review_user() -> None:
    assert user_of(None) is None
    assert user_of({"username": ""}) is None
    assert user_of({"username": "alice", "uid": "u-1", "groups": ["g"], "extra": {"b": ["2"], "a": ["1"]}}) == (
        User("alice", "u-1", ("g",), (("a", ("1",)), ("b", ("2",))))
    )


# ------------------------------------------------------------------ the engine asks
def request(body: dict[str, Any], user: str = "alice") -> AdmissionRequest:
    req: AdmissionRequest = body["request"]
    req["userInfo"] = {"username": user, "uid": "u-1", "groups": ["team-a"]}
    return req


def engine_with(reviews: FakeReviews | None) -> Engine:
    grants = Grants({"": reviews}) if reviews is not None else None
    return Engine(PolicyHolder(compile_text(POLICY)), MemoryLedger(), grants=grants)


def web(group: str = "llm", replicas: int = 1) -> dict[str, Any]:
    body = deployment("web", group, replicas=replicas, cpu="1", namespace="shared")
    body["metadata"]["uid"] = "web-1"
    return body


def test_a_create_needs_the_grant_on_its_group() -> None:
    reviews = FakeReviews(("bob", "llm"))
    engine = engine_with(reviews)
    denied = engine.review(request(review(web())))
    assert denied is not None
    assert (denied.verdict, denied.reason, denied.group) == ("deny", "not-authorized", "llm")
    assert denied.response["status"]["message"] == NO_GRANT
    admitted = engine.review(request(review(web()), "bob"))
    assert admitted is not None and (admitted.verdict, admitted.reason) == ("allow", "charged")
    assert reviews.asked == [("alice", ("team-a",), "llm"), ("bob", ("team-a",), "llm")]
    assert reviews.namespaces == ["shared", "shared"]  # the workload's: a RoleBinding there grants it


def test_a_dry_run_asks_too() -> None:
    reviews = FakeReviews()
    outcome = engine_with(reviews).review(request(review(web(), dry_run=True)))
    assert outcome is not None and outcome.reason == "not-authorized"
    assert len(reviews.asked) == 1


def test_updates_ask_only_when_they_move_the_workload() -> None:
    reviews = FakeReviews(("alice", "llm"))
    engine = engine_with(reviews)
    assert engine.review(request(review(web()))).verdict == "allow"  # type: ignore[union-attr]
    resized = engine.review(request(review(web(replicas=2), "UPDATE", old=web())))
    assert resized is not None and resized.verdict == "allow"
    assert len(reviews.asked) == 1  # same group: not asked
    moved = engine.review(request(review(web("vision"), "UPDATE", old=web())))
    # vision is in warn mode: allowed (as a binding finding is), and the missing grant said
    assert moved is not None and moved.verdict == "allow"
    assert moved.response["warnings"][0] == (  # clipped at 120 characters
        'vision: user alice may not use groups.quotalang.dev "vision": bind a Role/ClusterRole granting verb '
        "use on groups.quot…"
    )
    assert reviews.asked[-1] == ("alice", ("team-a",), "vision") and len(reviews.asked) == 2


def test_a_controllers_child_and_a_scale_follow_their_owner_unasked() -> None:
    reviews = FakeReviews(("bob", "llm"))
    engine = engine_with(reviews)
    assert engine.review(request(review(web()), "bob")).verdict == "allow"  # type: ignore[union-attr]
    child = deployment("web-5d9", "llm", cpu="1", namespace="shared")
    child["kind"] = "ReplicaSet"
    child["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                             "uid": "web-1", "controller": True}]
    owned = engine.review(request(review(child), "system:serviceaccount:kube-system:deployment-controller"))
    assert owned is not None and (owned.verdict, owned.reason) == ("allow", "owned")
    scaled = engine.review(request(scale_review("web", 3, 1, namespace="shared")))
    assert scaled is not None and scaled.verdict == "allow"
    assert reviews.asked == [("bob", ("team-a",), "llm")]  # only the Deployment's CREATE
    child["metadata"]["ownerReferences"][0]["uid"] = "forged"  # an owner nobody admitted: asked as itself
    forged = engine.review(request(review(child)))
    assert forged is not None and forged.reason == "not-authorized"
    assert len(reviews.asked) == 2


def test_the_event_loop_defers_an_unknown_answer_to_a_thread() -> None:
    reviews = FakeReviews(("alice", "llm"))
    engine = engine_with(reviews)
    assert engine.review(request(review(web())), wait=False) is None
    assert reviews.asked == []
    assert engine.review(request(review(web())), wait=True).verdict == "allow"  # type: ignore[union-attr]
    again = engine.review(request(review(web(replicas=1) | {"metadata": {**web()["metadata"], "name": "w2"}})),
                          wait=False)
    assert again is not None and again.verdict == "allow" and len(reviews.asked) == 1


@pytest.mark.parametrize("down", [True, False], ids=["apiserver-down", "no-apiserver"])
def test_no_answer_fails_closed(down: bool) -> None:
    reviews = FakeReviews(("alice", "llm"))
    reviews.down = True
    outcome = engine_with(reviews if down else None).review(request(review(web())))
    assert outcome is not None and (outcome.verdict, outcome.reason) == ("deny", "not-authorized")
    assert "denied" in outcome.response["status"]["message"]


# ------------------------------------------------------------------ the role to bind
def test_manifests_prints_the_role_that_grants_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "org.quota").write_text(POLICY)
    base = ["manifests", "--policy", str(tmp_path), "--namespace", "quotalang", "--image", "q:1", "--format", "json"]
    out = io.StringIO()
    assert main([*base, "--grant-role", "llm"], out) == 0
    assert orjson.loads(out.getvalue()) == {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "quotalang-use-llm",
                     "labels": {"app.kubernetes.io/name": "quotalang", "app.kubernetes.io/component": "webhook"}},
        "rules": [{"apiGroups": ["quotalang.dev"], "resources": ["groups"], "resourceNames": ["llm"],
                   "verbs": ["use"]}],
    }
    assert main([*base, "--grant-role", "lm"], io.StringIO()) == 2
    assert "--grant-role lm: no such group; did you mean llm?" in capsys.readouterr().err

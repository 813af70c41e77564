"""The API port's gate (`quotalang.server.apiauth`): 401 without an accepted token, 403 without the grant.

`FakeReviews` stands in for the apiserver only for speed (tests/e2e/test_api_auth.py
asks the real one); it counts the questions so that the cache is checked too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from quotalang.controller import MemoryLedger
from quotalang.server.api import create_api_app
from quotalang.server.apiauth import (
    EXPLAIN_ACTION,
    METRICS,
    READ,
    Action,
    Gate,
    KubeReviews,
    Unavailable,
    User,
    action_for,
)
from quotalang.server.metrics import Metrics
from quotalang.server.reload import PolicyHolder
from tests.server.webhook_helpers import deployment

ALICE = User("alice", uid="u-1", groups=("team-a", "system:authenticated"))
BOB = User("bob")
CAROL = User("carol")
SCRAPER = User("system:serviceaccount:monitoring:prometheus")


class FakeReviews:
    """Tokens named after their users; grants as (user, action) pairs."""

    def __init__(self) -> None:
        self.users = {"alice-token": ALICE, "bob-token": BOB, "carol-token": CAROL, "scraper-token": SCRAPER}
        self.grants = {(ALICE, READ), (ALICE, EXPLAIN_ACTION), (SCRAPER, METRICS), (CAROL, READ)}
        self.authentications = 0
        self.authorizations = 0
        self.down = False

    def authenticate(self, token: str) -> User | None:
        if self.down:
            raise Unavailable("connection refused")
        self.authentications += 1
        return self.users.get(token)

    def authorize(self, user: User, action: Action, timeout: float = 5.0) -> bool:
        if self.down:
            raise Unavailable("connection refused")
        self.authorizations += 1
        return (user, action) in self.grants


@pytest.fixture
def reviews() -> FakeReviews:
    return FakeReviews()


@pytest.fixture
def gated(holder: PolicyHolder, ledger: MemoryLedger, reviews: FakeReviews) -> Starlette:
    metrics = Metrics()
    metrics.watch_ledger(ledger, lambda: holder.policy)
    return create_api_app(holder, ledger, metrics=metrics, gate=Gate(reviews), hosts=["testserver"])


@pytest.fixture
def web(gated: Starlette) -> Iterator[TestClient]:
    with TestClient(gated) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


# ------------------------------------------------------------ what each request needs
@pytest.mark.parametrize(
    ("method", "path", "action"),
    [
        ("GET", "/metrics", METRICS),
        ("GET", "/api/groups", READ),
        ("GET", "/api/groups/ml", READ),
        ("HEAD", "/", READ),
        ("GET", "/static/style.css", READ),
        ("GET", "/nope", READ),
        ("POST", "/api/explain", EXPLAIN_ACTION),
        ("POST", "/what-if", EXPLAIN_ACTION),
        ("POST", "/propose", EXPLAIN_ACTION),
        ("POST", "/metrics", METRICS),
    ],
)
def test_each_request_is_one_rbac_action(method: str, path: str, action: Action) -> None:
    assert action_for(method, path) == action


def test_actions_describe_themselves_as_rbac_does() -> None:
    assert METRICS.describe() == "get /metrics"
    assert READ.describe() == "get groups.quotalang.dev"
    assert EXPLAIN_ACTION.describe() == "create groups/explain.quotalang.dev"


# ------------------------------------------------------------ 401, 403, 200
@pytest.mark.parametrize("path", ["/metrics", "/api/groups", "/api/groups/mll", "/", "/nope"])
def test_no_token_is_a_401_that_asks_for_one(web: TestClient, reviews: FakeReviews, path: str) -> None:
    answer = web.get(path)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Bearer realm="quotalang"'
    body = answer.json()
    assert (body["kind"], body["code"], body["reason"]) == ("Status", 401, "Unauthorized")
    assert "Authorization: Bearer" in body["message"]
    assert reviews.authentications == 0


def test_a_token_the_apiserver_rejects_is_a_401(web: TestClient) -> None:
    answer = web.get("/api/groups", headers=bearer("forged"))
    assert answer.status_code == 401
    assert "not accepted by the apiserver" in answer.json()["message"]


@pytest.mark.parametrize("path", ["/metrics", "/api/groups", "/api/groups/ml", "/api/groups/mll", "/", "/nope"])
def test_a_token_without_the_grant_is_a_403_that_names_no_group(web: TestClient, path: str) -> None:
    answer = web.get(path, headers=bearer("bob-token"))
    assert answer.status_code == 403
    message = answer.json()["message"]
    assert message.startswith("bob may not get ")
    assert "ml" not in message.replace("quotalang", "")  # neither the group asked for nor a near one


def test_the_metrics_grant_reads_metrics_and_nothing_else(web: TestClient) -> None:
    assert web.get("/metrics", headers=bearer("scraper-token")).status_code == 200
    answer = web.get("/api/groups", headers=bearer("scraper-token"))
    assert answer.status_code == 403
    assert "may not get groups.quotalang.dev" in answer.json()["message"]


def test_the_read_grant_reads_the_tree_the_pages_and_near_names(web: TestClient) -> None:
    assert next(g["name"] for g in web.get("/api/groups", headers=bearer("alice-token")).json()) == "root"
    assert web.get("/", headers=bearer("alice-token")).status_code == 200
    missing = web.get("/api/groups/mll", headers=bearer("alice-token"))
    assert missing.status_code == 404
    assert "did you mean ml?" in missing.json()["message"]
    assert web.get("/metrics", headers=bearer("alice-token")).status_code == 403


def test_explain_needs_its_own_grant(web: TestClient) -> None:
    body = orjson.dumps(deployment("web"))
    assert web.post("/api/explain", content=body, headers=bearer("alice-token")).status_code == 200
    answer = web.post("/api/explain", content=body, headers=bearer("carol-token"))
    assert answer.status_code == 403
    assert "may not create groups/explain.quotalang.dev" in answer.json()["message"]


# ------------------------------------------------------------ the cache
def test_a_scrape_asks_the_apiserver_once_per_token_and_action(web: TestClient, reviews: FakeReviews) -> None:
    for _ in range(5):
        assert web.get("/metrics", headers=bearer("scraper-token")).status_code == 200
    assert (reviews.authentications, reviews.authorizations) == (1, 1)
    web.get("/api/groups", headers=bearer("scraper-token"))
    assert (reviews.authentications, reviews.authorizations) == (1, 2)  # a new action, the same user
    for _ in range(3):
        web.get("/api/groups", headers=bearer("forged"))
    assert reviews.authentications == 2  # a rejected token is remembered too


def test_answers_expire(reviews: FakeReviews) -> None:
    gate = Gate(reviews, ttl=0.05)
    assert gate.check("scraper-token", METRICS).status == 0
    assert gate.cached("scraper-token", METRICS) is not None
    time.sleep(0.1)
    assert gate.cached("scraper-token", METRICS) is None
    gate.check("scraper-token", METRICS)
    assert (reviews.authentications, reviews.authorizations) == (2, 2)


def test_the_cache_is_bounded(reviews: FakeReviews) -> None:
    gate = Gate(reviews, size=8)
    for n in range(100):
        gate.check(f"forged{n}", METRICS)
    assert len(gate._users) == 8


def test_an_unreachable_apiserver_is_a_503_and_not_remembered(web: TestClient, reviews: FakeReviews) -> None:
    reviews.down = True
    answer = web.get("/metrics", headers=bearer("scraper-token"))
    assert answer.status_code == 503
    assert answer.json()["reason"] == "ServiceUnavailable"
    reviews.down = False
    assert web.get("/metrics", headers=bearer("scraper-token")).status_code == 200


# ------------------------------------------------------------ hostile headers
@pytest.mark.parametrize(
    ("value", "status", "message"),
    [
        (b"Basic YWxpY2U6cGFzcw==", 401, "not a bearer token"),
        (b"Bearer", 401, "empty"),
        (b"Bearer ", 401, "empty"),
        (b"Bearer " + b"a" * 100_000, 401, "more than any token"),
        (b"Bearer \xff\xfe", 401, "not ASCII"),
        (b"Bearer alice-token, bob-token", 401, "characters no token has"),
        (b"Bearer <script>", 401, "characters no token has"),
        (b"Bearer a\tb", 401, "characters no token has"),
    ],
    ids=["basic", "no-space", "empty", "huge", "not-ascii", "two-tokens", "markup", "tab"],
)
def test_malformed_authorization_is_refused_without_asking(
    web: TestClient, reviews: FakeReviews, value: bytes, status: int, message: str
) -> None:
    answer = web.get("/api/groups", headers=[(b"authorization", value)])
    assert answer.status_code == status
    assert message in answer.json()["message"]
    assert reviews.authentications == 0


def test_two_authorization_headers_are_a_400(web: TestClient, reviews: FakeReviews) -> None:
    headers = [(b"authorization", b"Bearer alice-token"), (b"authorization", b"Bearer bob-token")]
    answer = web.get("/api/groups", headers=headers)
    assert answer.status_code == 400
    assert "more than one Authorization header" in answer.json()["message"]
    assert reviews.authentications == 0


def test_the_scheme_is_case_insensitive(web: TestClient) -> None:
    assert web.get("/metrics", headers={"authorization": "bearer scraper-token"}).status_code == 200


# ------------------------------------------------------------ the requests put to the apiserver
class FakeApi:
    """KubeApi.request's shape: the answers queued, the requests kept."""

    def __init__(self, *answers: dict[str, Any]) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[str, str, Any]] = []

    def request(self, method: str, path: str, *, body: Any = None, **_: Any) -> dict[str, Any]:
        self.requests.append((method, path, body))
        return self.answers.pop(0)


def test_a_token_review_and_a_subject_access_review_as_the_apiserver_reads_them() -> None:
    api = FakeApi(
        {"status": {"authenticated": True, "user": {"username": "alice", "uid": "u-1", "groups": ["team-a"],
                                                    "extra": {"scopes": ["x"]}}}},
        {"status": {"allowed": True}},
        {"status": {"allowed": False, "reason": "no RBAC policy matched"}},
    )
    reviews = KubeReviews(api)  # type: ignore[arg-type]
    user = reviews.authenticate("t0ken")
    assert user == User("alice", "u-1", ("team-a",), (("scopes", ("x",)),))
    assert reviews.authorize(user, READ) is True
    assert reviews.authorize(user, METRICS) is False
    (_, token_path, token_body), (_, sar_path, read), (_, _, metrics) = api.requests
    assert token_path == "/apis/authentication.k8s.io/v1/tokenreviews"
    assert token_body["spec"] == {"token": "t0ken"}
    assert sar_path == "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    assert read["spec"] == {
        "user": "alice", "uid": "u-1", "groups": ["team-a"], "extra": {"scopes": ["x"]},
        "resourceAttributes": {"group": "quotalang.dev", "resource": "groups", "subresource": "", "verb": "get"},
    }
    assert metrics["spec"]["nonResourceAttributes"] == {"path": "/metrics", "verb": "get"}


@pytest.mark.parametrize(
    "answer",
    [{}, {"status": None}, {"status": {"authenticated": False}}, {"status": {"authenticated": True}},
     {"status": {"authenticated": True, "user": {"username": ""}}}, {"status": {"authenticated": "yes"}}],
)
def test_an_unauthenticated_or_odd_token_review_is_no_user(answer: dict[str, Any]) -> None:
    assert KubeReviews(FakeApi(answer)).authenticate("t") is None  # type: ignore[arg-type]


def test_an_apiserver_error_is_unavailable() -> None:
    from quotalang.controller.kube.api import ApiError

    class Failing:
        def request(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            raise ApiError(403, "Forbidden", "cannot create tokenreviews")

    with pytest.raises(Unavailable, match="cannot create tokenreviews"):
        KubeReviews(Failing()).authenticate("t")  # type: ignore[arg-type]

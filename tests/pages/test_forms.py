"""The pages over HTTP, no browser: hostile input gets a clear 4xx page, never a traceback or a 500."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from quotalang.compiler import compile_policy
from quotalang.controller import MemoryLedger
from quotalang.server.api import create_api_app
from quotalang.server.pages import MAX_FORM
from quotalang.server.reload import PolicyHolder
from tests.pages.conftest import ROOT

FORM = {"content-type": "application/x-www-form-urlencoded"}


class FormClient(TestClient):
    """A client that posts forms as the pages do: with the form token the server put in them."""

    token = ""

    def post(self, url: Any, *, data: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
        if isinstance(data, dict):
            data = {"csrf": self.token, **data}
        return super().post(url, data=data, **kwargs)


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.chdir(ROOT)  # proposals read the policy files by the names the served policy has
    holder = PolicyHolder(compile_policy(["examples/policies"]))
    app = create_api_app(holder, MemoryLedger(), hosts=["testserver"])
    with FormClient(app, raise_server_exceptions=False) as test:
        test.token = app.state.form_token
        yield test


@pytest.mark.parametrize("path", ["/", "/?q=bob", "/groups/bob", "/what-if", "/propose", "/propose?group=alice",
                                  "/pages/tree.json", "/pages/groups/bob.json", "/static/pages.js"])
def test_every_page_answers(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 200, answer.text


def test_pages_carry_a_strict_content_security_policy(client: TestClient) -> None:
    csp = client.get("/").headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp.split(
        "style-src-attr")[0]


@pytest.mark.parametrize(("workload", "said"), [
    ("kind: [", "is not YAML or JSON"),
    ("- a\n- b", "is list, not a workload object"),
    ("a: &x [1, 2]\nb: *x", "aliases (*name) are not accepted"),
    ("[" * 5000 + "]" * 5000, "nests more than 128 levels"),
    ("{\"kind\": \"Pod\", \"x\": " + "{\"a\": " * 200 + "1" + "}" * 200 + "}", "nests more than 128 levels"),
    ("", "paste a workload"),
    ("apiVersion: v1\nmetadata: {name: x}", "has no kind"),
    ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, labels: {biz.group.resource.quota: bob}}\n"
     "spec: {replicas: many, template: {spec: {containers: []}}}", "not an integer"),
    ("a: 1\n---\nb: 2", "holds several YAML documents"),
])
def test_what_if_refuses_bad_workloads_clearly(client: TestClient, workload: str, said: str) -> None:
    answer = client.post("/what-if", data={"workload": workload, "operation": "CREATE"})
    assert answer.status_code == 400, answer.text[-500:]
    assert said in answer.text.replace("&#39;", "'").replace("&#34;", '"')
    assert "Traceback" not in answer.text


def test_huge_bodies_are_refused_before_they_are_read(client: TestClient) -> None:
    for path in ("/what-if", "/propose", "/propose/diff"):
        answer = client.post(path, content=b"workload=" + b"x" * MAX_FORM, headers=FORM)
        assert answer.status_code == 413, path


def test_too_many_fields_and_wrong_encodings_are_400s(client: TestClient) -> None:
    many = "&".join(f"limit:k{i}=1" for i in range(1000))
    assert client.post("/propose", content=many.encode(), headers=FORM).status_code == 400
    assert client.post("/propose", content=b"group=\xff", headers=FORM).status_code == 400
    assert client.post("/what-if", content=b"{}", headers={"content-type": "application/json"}).status_code == 415


def test_escapes_what_it_shows(client: TestClient) -> None:
    answer = client.post("/what-if", data={"workload": "kind: <script>alert(1)</script>\napiVersion: v1"})
    assert "<script>alert" not in answer.text and "&lt;script&gt;" in answer.text
    answer = client.get("/groups/<img src=x>")
    assert answer.status_code == 404 and "<img src=x>" not in answer.text
    assert "&lt;img src=x&gt;" in answer.text


@pytest.mark.parametrize(("form", "status", "said"), [
    ({"group": "nobody"}, 404, "no group 'nobody' in the policy"),
    ({"group": "alce"}, 404, "did you mean alice"),
    ({"group": ""}, 404, "no group ''"),
    ({"group": "alice", "limit:requests.cpu": "1\n}\ngroup evil in root {"}, 400, "is not a quantity"),
    ({"group": "alice", "limit:requests.cpu": "1Qi"}, 400, "is not a quantity"),
    ({"group": "alice", "limit:requests.cpu": ""}, 400, "empty"),
    ({"group": "alice", "cash:requests.nvidia.com/gpu": "lots"}, 400, "is not an amount of hours"),
    ({"group": "alice", "limit:limits.nvidia.com/gpu": "1"}, 400, "does not declare"),
    ({"group": "alice", "child": "Not A Name"}, 400, "new group name"),
    ({"group": "alice", "child": "bob"}, 400, "exists already"),
    ({"group": "alice", "child": "x" * 100}, 400, "at most 63"),
])
def test_propose_refuses_bad_forms_clearly(client: TestClient, form: dict[str, str], status: int, said: str) -> None:
    answer = client.post("/propose", data=form)
    assert answer.status_code == status, answer.text[-300:]
    assert said in answer.text.replace("&#39;", "'")


def test_propose_reports_e105_and_usage_over_new_limits(client: TestClient) -> None:
    answer = client.post("/propose", data={"group": "alice", "limit:requests.nvidia.com/gpu.A100": "100"})
    assert answer.status_code == 200
    assert "E105: children of nlp over-allocate requests.nvidia.com/gpu.A100: 132 &gt; 128 " \
           "(alice 100, bob 16, carol 16)" in answer.text


def test_adding_a_child_declares_every_key_of_its_parent(client: TestClient) -> None:
    form = {"group": "nlp", "child": "dan", "child-limit:requests.nvidia.com/gpu.A100": "8",
            "child-cash:requests.nvidia.com/gpu": "100"}
    answer = client.post("/propose/diff", data=form)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-disposition"] == 'attachment; filename="quotalang-nlp.diff"'
    added = [line[1:] for line in answer.text.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert "group dan in nlp {" in added
    assert "  requests.nvidia.com/gpu.A100  8" in added
    assert "  cash requests.nvidia.com/gpu  100h per week" in added
    checked = client.post("/propose", data=form)
    assert "lint: no errors." in checked.text


def test_a_diff_of_nothing_is_a_400(client: TestClient) -> None:
    answer = client.post("/propose/diff", data={"group": "alice"})
    assert answer.status_code == 400 and "nothing changed" in answer.text


def test_propose_refuses_when_the_files_differ_from_what_is_served(client: TestClient, tmp_path: Path) -> None:
    policy = tmp_path / "policy"
    shutil.copytree(ROOT / "examples" / "policies", policy)
    client.app.state.holder.swap(compile_policy([str(policy)]))
    assert client.get("/propose?group=alice").status_code == 200
    path = policy / "ai-platform.quota"
    path.write_text(path.read_text().replace("pods                          100", "pods  101", 1))
    answer = client.post("/propose", data={"group": "alice", "limit:pods": "99"})
    assert answer.status_code == 400
    assert "differ from the policy being served" in answer.text
    path.write_text("group broken {\n")
    answer = client.post("/propose", data={"group": "alice", "limit:pods": "99"})
    assert answer.status_code == 400 and "do not load" in answer.text

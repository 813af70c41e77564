"""Property-based fuzzing of `POST /api/explain` and the what-if page with hostile YAML and JSON (issue 25 #9).

The example workloads, mutated as in test_fuzz_http (hostile values anywhere,
quantities past the bounds: 4,401 digits, `0.000…01`, `1e5000`), are posted as
YAML or JSON, and the YAML is made worse: nesting thousands of levels deep
(block `- - -` and flow `[[[`), anchors and aliases, integers past int64 and
past 4,300 digits, several documents, a body cut short, a media type that is
not JSON or YAML. What must hold for every one, in both failure modes:

* the answer is a 200 decision, or a 400/413/415 `Status` (the what-if page:
  its 400/413 page); never a 5xx, never a logged error or traceback;
* a 200 is the decision the evaluator gives the same object on its own:
  allowed alike, and the same usage (nothing asked is charged less), and
  nothing is reserved (explain never touches the ledger).

Bodies go through the real API app (the parsing process, the explain thread)
over httpx's ASGI transport on one event loop. The number of examples is the
same hypothesis profile as test_fuzz_http (`ci`: 2,000).
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import httpx
import orjson
import yaml
from hypothesis import event, given, settings
from hypothesis import strategies as st

from quotalang.controller import MemoryLedger
from quotalang.errors import UserInputError
from quotalang.evaluator import evaluate
from quotalang.server.admission import BadReview, check_object
from quotalang.server.api import create_api_app
from quotalang.server.app import create_app
from quotalang.server.bodies import parse_document
from quotalang.server.metrics import Metrics
from quotalang.server.reload import PolicyHolder
from tests.server import test_fuzz_http as fuzz_http
from tests.server.test_fuzz_http import OBJECTS, POLICY, PROFILE, Errors, mutated_object

YAML = "application/yaml"
loop, errors = fuzz_http.loop, fuzz_http.errors  # its fixtures: one event loop, the logged errors


@st.composite
def hostile_yaml(draw: st.DrawFn, obj: dict[str, Any]) -> tuple[bytes, str, bool]:
    """(body, media type, whether it should parse to `obj`): `obj` as YAML or JSON, or made hostile."""
    text = yaml.safe_dump(obj, sort_keys=False)
    how = draw(st.sampled_from(["yaml", "yaml", "json", "deep-block", "deep-flow", "alias", "digits",
                                "int64", "documents", "cut", "plain"]))
    event(f"body: {how}")
    levels = draw(st.sampled_from([129, 1000, 5000, 20000]))
    if how == "yaml":
        return text.encode(), YAML, True
    if how == "json":
        return orjson.dumps(obj), "application/json", True
    if how == "deep-block":
        return (text + "extra: " + "- " * levels + "x\n").encode(), YAML, False
    if how == "deep-flow":
        return (text + "extra: " + "[" * levels + "]" * levels + "\n").encode(), YAML, False
    if how == "alias":
        laughs = "a: &a [x, x, x, x, x, x, x, x]\n" + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 8)}]\n" for i in range(8))
        return (laughs + text).encode(), YAML, False
    if how == "digits":
        return (text + "extra: " + "9" * draw(st.sampled_from([4301, 4400, 20000])) + "\n").encode(), YAML, False
    if how == "int64":
        return (text + f"extra: {2**63 + draw(st.integers(0, 2**64))}\n").encode(), YAML, False
    if how == "documents":
        return (text + "---\n" + text).encode(), YAML, False
    if how == "cut":
        body = text.encode()
        return body[: draw(st.integers(min_value=0, max_value=len(body)))], YAML, False
    return text.encode(), "text/plain; x=yaml", False


class Api:
    """The API app over a fresh ledger, its engine the admission app's (so the failure mode is the app's)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, failure_mode: str) -> None:
        self.loop = loop
        self.ledger = MemoryLedger()
        holder = PolicyHolder(POLICY)
        admission = create_app(holder, self.ledger, failure_mode=failure_mode,  # type: ignore[arg-type]
                               metrics=Metrics())
        app = create_api_app(holder, self.ledger, engine=admission.state.engine, hosts=["api"])
        self.token = app.state.form_token
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://api"
        )

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.client.post(path, **kwargs))

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())


def expected(obj: Any) -> dict[str, Any] | None:
    """The evaluator's own decision for `obj` (as JSON), or None when it cannot read the object
    (or the object is not one a review may carry: the server refuses it before the evaluator)."""
    if not isinstance(obj, dict) or not obj.get("kind"):
        return None  # explain takes a workload: a kind is what makes one
    try:
        parse_document(orjson.dumps(obj), as_yaml=False)  # the bounds every posted body has (int64, depth)
        check_object(obj, "object")
        return evaluate(POLICY, obj, "CREATE", usage=MemoryLedger()).as_json()
    except (UserInputError, BadReview):
        return None


@settings(settings.get_profile(PROFILE))
@given(data=st.data(), base=st.sampled_from(OBJECTS), failure_mode=st.sampled_from(["deny", "allow"]),
       page=st.booleans())
def test_no_explain_body_gets_a_5xx_and_a_decision_is_the_evaluators(
    loop: asyncio.AbstractEventLoop, errors: Errors, data: st.DataObject, base: dict[str, Any],
    failure_mode: str, page: bool,
) -> None:
    api = Api(loop, failure_mode)
    try:
        errors.found.clear()
        obj = data.draw(mutated_object(base)) if data.draw(st.booleans()) else copy.deepcopy(base)
        body, media, parses = data.draw(hostile_yaml(obj))
        if page:  # the what-if form: YAML (or JSON) pasted, this server's token
            form = {"workload": body.decode("utf-8", "replace"), "operation": "CREATE", "csrf": api.token}
            answer = api.post("/what-if", data=form)
            assert answer.status_code in (200, 400, 413), (answer.status_code, answer.text[-500:])
        else:
            answer = api.post("/api/explain", content=body, headers={"content-type": media})
            assert answer.status_code in (200, 400, 413, 415), (answer.status_code, answer.text[:500])
            assert answer.json()["message" if answer.status_code != 200 else "allowed"] is not None
        event(f"status: {answer.status_code}")
        if parses and not page:
            want = expected(obj)
            assert (answer.status_code == 200) == (want is not None), answer.text[:300]
            if want is not None:
                decided = answer.json()
                assert decided["allowed"] == want["allowed"], (decided["message"], want["message"])
                assert decided["usage"] == want["usage"]  # nothing is charged less than asked
        assert api.ledger.group_names() == [] or all(
            not api.ledger.group_usage(g).used for g in api.ledger.group_names())  # explain reserves nothing
        assert not errors.found, errors.found
    finally:
        api.close()

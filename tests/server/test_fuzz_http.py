"""Property-based fuzzing of `POST /validate` with mutated AdmissionReviews.

Every example workload in examples/workloads is sent, against the example
policy, as an AdmissionReview that hypothesis mutates: values anywhere in the
object replaced by hostile ones (malformed and negative quantities, wrong
types, huge numbers, nesting hundreds of levels deep), keys deleted, request
fields of the wrong type, bodies cut short. What must hold for every one:

* the answer is a well-formed AdmissionReview for the request's uid, or a
  400/413 `Status`; never a 5xx, never a failure-mode answer ("could not
  decide"), never a logged traceback or error, in either failure mode;
* the ledger's totals equal the sum of the charges of the requests that were
  admitted, computed here by evaluating each request independently of the
  server (and a request admitted over HTTP must be one the evaluator allows:
  an invalid object is never admitted, whatever the failure mode);
* a quantity past quotalang's bounds (4,401 digits, `0.000…01`, `1e5000`)
  is an invalid object, denied in both failure modes like any malformed one;
* a forged `oldObject` buys nothing: the ledger is standalone, so an UPDATE
  is charged against what the ledger recorded for the name (README,
  standalone rules), whatever the review claims the name held.

Each example runs on a fresh memory ledger (standalone), with a CREATE and,
when that was admitted, an UPDATE of the same object: their charges add up
exactly, so the oracle needs no model of the ledger.

The number of examples comes from a hypothesis profile: `ci` (the default,
2,000 examples, what the suite runs) or `dev` (200), chosen with
`QUOTALANG_FUZZ_PROFILE`. Requests go through the real ASGI app over httpx's
ASGI transport on one event loop: the same routing, body reading and error
handling as uvicorn gives it, without a socket or a thread per request.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from quotalang import loader
from quotalang.compiler import compile_sources
from quotalang.controller import MemoryLedger, ObjectKey
from quotalang.controller.kube.naming import kind_of_resource
from quotalang.errors import UserInputError
from quotalang.evaluator import evaluate
from quotalang.policy import CompiledPolicy
from quotalang.server.admission import BadReview, parse_review
from quotalang.server.app import create_app
from quotalang.server.metrics import Metrics
from quotalang.server.reload import PolicyHolder

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WORKLOADS = sorted((EXAMPLES / "workloads").glob("*.yaml"))

settings.register_profile(
    "ci", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROFILE = os.environ.get("QUOTALANG_FUZZ_PROFILE", "ci")

MARKER = re.compile(rb'"@@(deep|raw):([^@]+)@@"')
RAW = {  # JSON orjson will not write but will read: numbers past 64 bits and past float range
    "huge": b"1" + b"0" * 25, "-huge": b"-1" + b"0" * 25, "inf": b"1e400", "tiny": b"1e-400",
    "digits": b"9" * 4401, "exponent": b"1e5000",  # past Python's 4,300-digit conversion, past a float
}
HOSTILE_STRINGS = [
    "-8", "-1", "1e1.5", "1.5.5", "lots", "1e400", "0x10", "∞", "", " 1", "1 ", "100m", "1Ki", "-100m",
    "99999999999999999999999999", "9223372036854775808", "1e-9", "0.0000000001", "NaN", "null", "true",
    "CREATE", "UPDATE", "DELETE", "CONNECT", "create", "Scale", "HorizontalPodAutoscaler", "scale", "status",
    "x" * 5000,
    # issue 25 #6, #7: past the quantity bounds (160 characters, 10^128 units), and just inside them
    "9" * 4401, "0." + "0" * 4400 + "1", "1e5000", "-1e5000", "1e400", "1e128", "1e127", "9" * 129,
    "1e2147483648", "1e-5000", "1E127", "99Ei", "1e-2147483647",
]


def _policy() -> CompiledPolicy:
    return compile_sources(loader.load([str(EXAMPLES / "policies")]))


POLICY = _policy()
OBJECTS = [yaml.safe_load(path.read_text()) for path in WORKLOADS]


def deep(levels: int) -> str:
    """A marker `encode` replaces with `levels` nested objects (orjson cannot write past 254)."""
    return f"@@deep:{levels}@@"


def raw(name: str) -> str:
    """A marker `encode` replaces with the JSON `RAW[name]`."""
    return f"@@raw:{name}@@"


def _expand(match: re.Match[bytes]) -> bytes:
    if match[1] == b"raw":
        return RAW[match[2].decode()]
    levels = int(match[2])
    return b'{"a":' * levels + b"1" + b"}" * levels


def encode(body: Any) -> bytes:
    return MARKER.sub(_expand, orjson.dumps(body))


def hostile() -> st.SearchStrategy[Any]:
    """A value that should not be where it is put."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.builds(raw, st.sampled_from(sorted(RAW))),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(HOSTILE_STRINGS),
        st.text(max_size=12),
    )
    return st.one_of(
        scalars,
        st.builds(deep, st.integers(min_value=1, max_value=1100)),
        st.lists(scalars, max_size=3),
        st.dictionaries(st.sampled_from(["cpu", "memory", "nvidia.com/gpu", "a"]), scalars, max_size=3),
    )


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside `node` (dict keys and list indexes)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield (*prefix, index)
            yield from paths(value, (*prefix, index))


def _set(root: Any, path: tuple[Any, ...], value: Any, delete: bool) -> None:
    node = root
    for step in path[:-1]:
        node = node[step]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value


@st.composite
def mutated_object(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """`base` with one to four values replaced, wrapped or deleted."""
    obj = copy.deepcopy(base)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        found = list(paths(obj))
        if not found:
            break
        path = draw(st.sampled_from(found))
        how = draw(st.sampled_from(["replace", "replace", "delete", "wrap"]))
        node = obj
        for step in path:
            node = node[step]
        if how == "wrap":
            _set(obj, path, draw(st.sampled_from([[node], {"x": node}])), delete=False)
        else:
            _set(obj, path, draw(hostile()) if how == "replace" else None, delete=how == "delete")
    return obj


REQUEST_FIELDS = [
    "operation", "kind", "resource", "subResource", "name", "namespace", "dryRun", "uid", "object",
    "oldObject", "userInfo", "options", "requestKind", "requestResource", "requestSubResource",
]


@st.composite
def request_mutation(draw: st.DrawFn) -> tuple[str, Any]:
    """A request field (or a field of `kind` / `resource`) and a value for it."""
    field = draw(st.sampled_from([*REQUEST_FIELDS, "kind.kind", "kind.group", "resource.resource"]))
    value = draw(st.one_of(hostile(), st.sampled_from([True, False, "DELETE", "UPDATE", "scale", "status"])))
    if field == "oldObject" and isinstance(value, dict):
        value = [value]  # a dict here would make a fresh object's CREATE an UPDATE of something else
    return field, value


def review(base: dict[str, Any], obj: Any, operation: str = "CREATE", old: Any = None) -> dict[str, Any]:
    """An AdmissionReview of `obj` as the apiserver sends it, its names and kind read from `base`.

    (The object itself may have lost its metadata to a mutation; the request's
    fields are what the apiserver knows from the URL.)
    """
    group, _, version = base["apiVersion"].rpartition("/")
    meta = base["metadata"]
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": f"fuzz-{operation.lower()}",  # the same every run: hypothesis replays bodies
            "kind": {"group": group, "version": version, "kind": base["kind"]},
            "resource": {"group": group, "version": version, "resource": base["kind"].lower() + "s"},
            "name": meta["name"],
            "namespace": meta.get("namespace", ""),
            "operation": operation,
            "userInfo": {"username": "mallory", "groups": ["system:authenticated"]},
            "object": obj,
            "oldObject": old,
            "dryRun": False,
        },
    }


class Server:
    """One app over a fresh ledger per example, driven on one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, failure_mode: str) -> None:
        self.loop = loop
        self.ledger = MemoryLedger()
        app = create_app(
            PolicyHolder(POLICY), self.ledger, failure_mode=failure_mode,  # type: ignore[arg-type]
            metrics=Metrics(),
        )
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://webhook"
        )

    def post(self, body: bytes) -> httpx.Response:
        return self.loop.run_until_complete(
            self.client.post("/validate", content=body, headers={"content-type": "application/json"})
        )

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())


def expected_charges(request: Any, ledger: MemoryLedger) -> tuple[bool, dict[str, dict[str, int]]] | None:
    """(allowed, charges) as the evaluator decides this request on its own; None: nothing is charged.

    Follows the engine's routing as DESIGN states it: only CREATE and UPDATE
    of the object itself or of its `/scale` charge; a `/scale` parent is looked
    up in the ledger; HPAs are checked, never charged.
    """
    operation, gvk = request["operation"], request["kind"]
    sub = request.get("subResource") or ""
    if operation not in ("CREATE", "UPDATE") or request.get("dryRun") is True:
        return None
    if gvk["kind"] == "HorizontalPodAutoscaler" and gvk.get("group") == "autoscaling":
        return None
    obj, old = request["object"], request.get("oldObject")
    if sub == "scale" or gvk["kind"] == "Scale":
        resource = request.get("resource") or {}
        kind = kind_of_resource(POLICY, resource.get("group", ""), resource.get("resource", ""))
        if kind is None:
            return None
        meta = obj.get("metadata") or {}
        identity = ObjectKey(
            resource.get("group", ""), kind, request.get("namespace") or meta.get("namespace") or "",
            request.get("name") or meta.get("name") or "",
        )
        decision = evaluate(POLICY, obj, "UPDATE", old=old, usage=ledger, parent=ledger.lookup(identity),
                            namespace=identity.namespace or None)
    elif sub:
        return None
    else:
        identity = ObjectKey(gvk.get("group", ""), gvk["kind"], request.get("namespace") or "",
                             request.get("name") or "")
        recorded = ledger.lookup(identity, local=True)  # standalone: the ledger's record, never the review's
        uid = _uid(obj)
        if operation == "UPDATE" or (uid and recorded is not None and _uid(recorded) == uid):
            operation, old = "UPDATE", recorded
        else:
            old = None
        decision = evaluate(POLICY, obj, operation, old=old, usage=ledger, namespace=identity.namespace or None)
    return decision.allowed, {g: dict(c) for g, c in decision.charges.items()}


def _uid(obj: Any) -> Any:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    return meta.get("uid") if isinstance(meta, dict) else None


def inflated(obj: Any) -> Any:
    """`obj` claiming to have held ten times its replicas everywhere (a forged old object)."""
    copied = copy.deepcopy(obj)

    def scale(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "replicas" and isinstance(value, int) and not isinstance(value, bool):
                    node[key] = value * 10 + 10
                else:
                    scale(value)
        elif isinstance(node, list):
            for item in node:
                scale(item)

    scale(copied)
    return copied


def totals(ledger: MemoryLedger) -> dict[str, dict[str, int]]:
    found = {}
    for group in ledger.group_names():
        used = {k: v for k, v in ledger.group_usage(group).used.items() if v}
        if used:
            found[group] = used
    return found


def add(into: dict[str, dict[str, int]], charges: dict[str, dict[str, int]]) -> None:
    for group, usage in charges.items():
        target = into.setdefault(group, {})
        for key, value in usage.items():
            target[key] = target.get(key, 0) + value
            if not target[key]:
                del target[key]
        if not target:
            del into[group]


class Errors(logging.Handler):
    """Records at warning and above that are not a refused body, and anything with a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or (record.levelno >= logging.ERROR) or "Traceback" in record.getMessage():
            self.found.append(f"{record.name}: {record.getMessage()} {getattr(record, 'fields', '')}")


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


@pytest.fixture(scope="module")
def errors() -> Iterator[Errors]:
    """Errors logged under `quotalang` while a module's fuzz runs (test_fuzz_explain uses it too)."""
    handler = Errors()
    logger = logging.getLogger("quotalang")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def check_answer(answer: httpx.Response, uid: Any) -> dict[str, Any] | None:
    """The AdmissionResponse of a 200, or None for a well-formed 400/413 Status; fails otherwise."""
    assert answer.status_code in (200, 400, 413), (answer.status_code, answer.text[:500])
    body = answer.json()
    if answer.status_code != 200:
        assert body["kind"] == "Status" and body["code"] == answer.status_code and body["message"]
        return None
    assert body["apiVersion"] == "admission.k8s.io/v1" and body["kind"] == "AdmissionReview"
    response: dict[str, Any] = body["response"]
    assert response["uid"] == uid
    assert isinstance(response["allowed"], bool)
    status = response.get("status", {})
    assert status.get("code") != 500, f"a failure-mode answer: {status}"
    assert not any("could not decide" in w for w in response.get("warnings", [])), response
    return response


def _kind_of_answer(answer: dict[str, Any] | None, refused: int | None) -> str:
    """A coarse class of an answer, for hypothesis' statistics (--hypothesis-show-statistics)."""
    if answer is None:
        return f"refused {refused}"
    if answer["allowed"]:
        return "allowed with warnings" if answer.get("warnings") else "allowed"
    message = answer["status"]["message"]
    return "denied: cannot read" if message.startswith("cannot read") else "denied"


def step(server: Server, admitted: dict[str, dict[str, int]], body: bytes, uid: Any) -> Any:
    """Send one body; add what it charges to `admitted`; the request if it was admitted, else None.

    The oracle reads the request as the server will (decoded from the bytes
    sent) and decides it before the server does, on the same ledger.
    """
    expect: tuple[bool, dict[str, dict[str, int]]] | None = None
    refused: int | None = None
    try:
        request: Any = parse_review(body)
    except BadReview as exc:
        expect, refused = None, exc.status
    else:
        try:
            expect = expected_charges(request, server.ledger)
        except UserInputError:
            expect = (False, {})  # an object that cannot be read is denied
    answer = check_answer(server.post(body), uid)
    event(f"answer: {_kind_of_answer(answer, refused)}")
    if refused is not None:
        assert answer is None, f"the server took a body parse_review refuses with {refused}"
        return None
    assert answer is not None
    if expect is None:
        return None
    allowed, charges = expect
    assert answer["allowed"] == allowed, (answer, charges)
    if not allowed:
        return None
    add(admitted, charges)
    return request


@settings(settings.get_profile(PROFILE))
@given(
    data=st.data(),
    base=st.sampled_from(OBJECTS),
    failure_mode=st.sampled_from(["deny", "allow"]),
)
def test_no_body_gets_a_5xx_and_the_ledger_holds_what_was_admitted(
    loop: asyncio.AbstractEventLoop, errors: Errors, data: st.DataObject, base: dict[str, Any], failure_mode: str
) -> None:
    server = Server(loop, failure_mode)
    try:
        errors.found.clear()
        admitted: dict[str, dict[str, int]] = {}
        first = review(base, data.draw(mutated_object(base)) if data.draw(st.booleans()) else copy.deepcopy(base))
        routed = data.draw(st.sampled_from(["object", "object", "request", "body"]))
        if routed == "request":
            for _ in range(data.draw(st.integers(min_value=1, max_value=2))):
                field, value = data.draw(request_mutation())
                head, _, tail = field.partition(".")
                if tail and isinstance(first["request"].get(head), dict):
                    first["request"][head][tail] = value
                else:
                    first["request"][field] = value
        body = encode(first)
        if routed == "body":
            body = data.draw(st.sampled_from([
                body[: data.draw(st.integers(min_value=0, max_value=len(body)))],
                b"[" + body + b"]",
                body.replace(b"admission.k8s.io/v1", b"admission.k8s.io/v1beta1"),
                body.replace(b'"request":', b'"request":[', 1) + b"]",
            ]))
        first_request = step(server, admitted, body, first["request"].get("uid"))
        assert totals(server.ledger) == admitted

        # An UPDATE of what was admitted: the charges of both requests add up to the ledger. Its
        # oldObject is what was admitted, or a forgery (scaled up, moved, another object): either way
        # it is charged against what the ledger recorded.
        if first_request is not None and routed == "object":
            forged = data.draw(st.sampled_from(["honest", "mutated", "inflated", "new"]))
            old = first_request["object"]
            if forged == "mutated":
                old = data.draw(mutated_object(base))
            elif forged == "inflated":
                old = inflated(first_request["object"])
            elif forged == "new":
                old = None  # filled in below: the new object itself, a delta of nothing if trusted
            new = data.draw(mutated_object(base))
            second = review(base, new, "UPDATE", new if forged == "new" else old)
            event(f"old object: {forged}")
            step(server, admitted, encode(second), second["request"]["uid"])
            assert totals(server.ledger) == admitted
        assert not errors.found, errors.found
    finally:
        server.close()

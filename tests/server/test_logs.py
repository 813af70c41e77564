"""Structured logs: one line per decision, JSON or text, never the object body."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest
from starlette.testclient import TestClient

from quotalang.server import logs
from tests.server.webhook_helpers import deployment, review


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Route our loggers to a buffer in the requested format; restore them afterwards."""
    names = (*logs.OUR_LOGGERS, "uvicorn.access")
    saved = {
        n: (
            logging.getLogger(n).handlers[:],
            logging.getLogger(n).level,
            logging.getLogger(n).propagate,
            logging.getLogger(n).disabled,
        )
        for n in names
    }
    yield io.StringIO()
    for name, (handlers, level, propagate, disabled) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled


def test_a_json_line_per_decision_without_the_body(client: TestClient, captured: io.StringIO) -> None:
    buffer = captured
    logs.configure("json", "info", stream=buffer)
    secret = deployment("web", replicas=11)
    secret["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "TOKEN", "value": "hunter2"}]
    client.post("/validate", content=orjson.dumps(review(secret, uid="u-42")))
    lines = [orjson.loads(line) for line in buffer.getvalue().splitlines()]
    decisions = [line for line in lines if line["message"] == "decision"]
    assert len(decisions) == 1
    line = decisions[0]
    assert line["logger"] == "quotalang.admission"
    assert line["level"] == "info"
    assert {
        k: line[k] for k in ("uid", "operation", "kind", "namespace", "name", "group", "decision", "reason")
    } == {
        "uid": "u-42",
        "operation": "CREATE",
        "kind": "Deployment",
        "namespace": "team-a",
        "name": "web",
        "group": "ml",
        "decision": "deny",
        "reason": "over-quota",
    }
    assert isinstance(line["latency_ms"], float) and line["latency_ms"] >= 0
    assert line["denial"].endswith("requested 44 (11 × pod 4), used 0 of 40, 40 free")
    assert "hunter2" not in buffer.getvalue()


def test_text_lines_are_key_value(client: TestClient, captured: io.StringIO) -> None:
    buffer = captured
    logs.configure("text", "info", stream=buffer)
    client.post("/validate", content=orjson.dumps(review(deployment("web"), uid="u-7")))
    line = next(line for line in buffer.getvalue().splitlines() if " decision " in line)
    assert "uid=u-7" in line
    assert "decision=allow" in line
    assert "group=ml" in line
    assert "latency_ms=" in line


def test_bad_requests_are_logged_as_warnings(client: TestClient, captured: io.StringIO) -> None:
    buffer = captured
    logs.configure("json", "info", stream=buffer)
    client.post("/validate", content=b"nope")
    line = orjson.loads(buffer.getvalue().splitlines()[-1])
    assert (line["level"], line["message"], line["reason"]) == (
        "warning",
        "bad admission request",
        "not-json",
    )


def test_no_decision_lines_below_info(client: TestClient, captured: io.StringIO) -> None:
    buffer = captured
    logs.configure("json", "warning", stream=buffer)
    client.post("/validate", content=orjson.dumps(review(deployment("web"))))
    assert buffer.getvalue() == ""


def test_decisions_use_logging_when_someone_else_set_it_up(
    client: TestClient, captured: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    logs.configure("json", "info", stream=captured)
    logging.getLogger("quotalang").handlers.clear()  # an embedding program takes over
    logging.getLogger("quotalang").propagate = True
    with caplog.at_level(logging.INFO, logger="quotalang.admission"):
        client.post("/validate", content=orjson.dumps(review(deployment("web"), uid="u-9")))
    records = [r for r in caplog.records if r.name == "quotalang.admission"]
    assert [r.getMessage() for r in records] == ["decision"]
    assert records[0].fields["uid"] == "u-9"  # type: ignore[attr-defined]
    assert captured.getvalue() == ""

"""Structured logs: JSON lines or `key=value` text, one line per admission decision.

A decision line carries uid, operation, kind, namespace/name, group, decision,
reason and latency in milliseconds. Object bodies are never logged at info
level (they can hold secrets in env vars).

Decision lines skip the `logging` machinery once `configure` has set up the
stream: a LogRecord, the caller lookup, the formatter and the handler cost
about 10 µs a line, a tenth of the server's time at thousands of decisions a
second, against ~2 µs for one orjson call and a write under the handler's
lock (so lines never interleave with other records). Whoever reconfigures
logging (tests, an embedding program) gets ordinary records again.

On stderr, decision lines go through a block buffer that is flushed at most
`FLUSH_AFTER` seconds after the first unflushed line (and by every ordinary
record): a write system call per decision was 7 % of the server's time.

Lines are bounded: every field of a decision line is clipped (`FIELD_LIMIT`,
`MESSAGE_LIMIT` for the denial and the error), so a request cannot make a
line longer than a few KiB whatever names, kinds or labels it carries; event
fields are clipped at `EVENT_FIELD_LIMIT` (a rejected policy's carets fit).

This module knows nothing of the engine: a decision is anything with the
fields of `DecisionRecord` (the engine's `Outcome` is one), so logging sits
below every module that logs and no import runs back up.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any, Literal, Protocol

import orjson

LogFormat = Literal["json", "text"]
FLUSH_AFTER = 0.1  # seconds a decision line may wait in the buffer
FIELD_LIMIT = 256  # characters of one field of a decision line (names, kinds, uids, groups)
MESSAGE_LIMIT = 1024  # characters of a decision's denial or error message
EVENT_FIELD_LIMIT = 16384  # characters of one field of an event line
DECISIONS = logging.getLogger("quotalang.admission")
OUR_LOGGERS = ("quotalang", "uvicorn")


_second: tuple[int, str] = (-1, "")
_direct: logging.StreamHandler[Any] | None = None
_direct_json = True
_flush_pending = False
_buffered: Any = None


class DecisionRecord(Protocol):
    """What a decision line reads: the engine's `Outcome` has these fields."""

    @property
    def uid(self) -> str: ...
    @property
    def operation(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def group(self) -> str: ...
    @property
    def cluster(self) -> str: ...
    @property
    def verdict(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def error(self) -> str | None: ...
    @property
    def response(self) -> Mapping[str, Any]: ...


def clip_text(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[{len(text) - limit} more]"


def bounded(value: Any, limit: int) -> Any:
    """`value` as is when its text fits in `limit` characters, else its text clipped; scalars pass."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return clip_text(value, limit)
    text = str(value)
    return value if len(text) <= limit else clip_text(text, limit)


def _timestamp(created: float) -> str:
    """ISO 8601 UTC with milliseconds; the seconds part is formatted once a second."""
    global _second
    whole = int(created)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int(created % 1 * 1000):03d}Z"


def _text_fields(fields: dict[str, Any]) -> str:
    parts = []
    for key, value in fields.items():
        text = str(value)
        if not text or " " in text or '"' in text or "\n" in text:
            text = orjson.dumps(text).decode()
        parts.append(f"{key}={text}")
    return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            data.update(fields)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(data, default=str).decode()


class TextFormatter(logging.Formatter):
    """`time level message key=value ...`, values quoted when they hold spaces."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record.created), f"{record.levelname.lower():<7}", record.getMessage()]
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            parts.append(_text_fields(fields))
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(fmt: LogFormat = "text", level: str = "info", stream: Any = None) -> logging.Handler:
    """Send our loggers and uvicorn's to `stream` (stderr) in `fmt`; return the handler."""
    if stream is None:
        stream = _stderr_buffered()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    for name in OUR_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True  # one line per decision is ours
    global _direct, _direct_json
    _direct, _direct_json = handler, fmt == "json"
    return handler


def log_decision(outcome: DecisionRecord, seconds: float) -> None:
    """The one info line per decision (cheap when info is off); every field bounded."""
    if not DECISIONS.isEnabledFor(logging.INFO):
        return
    fields: dict[str, Any] = {
        "uid": clip_text(outcome.uid, FIELD_LIMIT),
        "operation": clip_text(outcome.operation, FIELD_LIMIT),
        "kind": clip_text(outcome.kind, FIELD_LIMIT),
        "namespace": clip_text(outcome.namespace, FIELD_LIMIT),
        "name": clip_text(outcome.name, FIELD_LIMIT),
        "group": clip_text(outcome.group, FIELD_LIMIT),
        "decision": outcome.verdict,
        "reason": outcome.reason,
        "latency_ms": round(seconds * 1000, 3),
    }
    status = outcome.response.get("status")
    if isinstance(status, Mapping) and "message" in status:
        fields["denial"] = clip_text(str(status["message"]), MESSAGE_LIMIT)
    warnings = outcome.response.get("warnings")
    if warnings:
        fields["warnings"] = len(warnings)
    if outcome.error is not None:
        fields["error"] = clip_text(outcome.error, MESSAGE_LIMIT)
    if outcome.cluster:  # one of the registered names (the route chose it)
        fields["cluster"] = outcome.cluster
    handler = _direct
    if handler is None or DECISIONS.handlers or handler not in logging.getLogger("quotalang").handlers:
        DECISIONS.info("decision", extra={"fields": fields})  # logging was set up by someone else
        return
    now = time.time()
    if _direct_json:
        head = {"time": _timestamp(now), "level": "info", "logger": DECISIONS.name, "message": "decision"}
        line = orjson.dumps(head | fields, default=str).decode() + "\n"
    else:
        line = f"{_timestamp(now)} info    decision {_text_fields(fields)}\n"
    handler.acquire()
    try:
        handler.stream.write(line)
    finally:
        handler.release()
    _schedule_flush(handler)


def _stderr_buffered() -> Any:
    """stderr with a block buffer (Python's own stderr flushes every line)."""
    global _buffered
    if _buffered is None:
        try:
            _buffered = open(sys.stderr.fileno(), "w", buffering=1 << 16, encoding="utf-8", closefd=False)  # noqa: SIM115
        except (AttributeError, OSError, ValueError):  # no real file descriptor (an embedding program)
            return sys.stderr
        atexit.register(_buffered.flush)
    return _buffered


def _schedule_flush(handler: logging.StreamHandler[Any]) -> None:
    """Flush soon, once: on the event loop when there is one, else at once."""
    global _flush_pending
    if _flush_pending:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        handler.flush()
        return
    _flush_pending = True
    loop.call_later(FLUSH_AFTER, _flush, handler)


def _flush(handler: logging.StreamHandler[Any]) -> None:
    global _flush_pending
    _flush_pending = False
    handler.flush()


def log_event(logger: logging.Logger, level: int, message: str, **fields: Any) -> None:
    """A non-decision event (reloads, TLS, startup) with structured fields, each bounded."""
    clipped = {key: bounded(value, EVENT_FIELD_LIMIT) for key, value in fields.items()}
    logger.log(level, message, extra={"fields": clipped})

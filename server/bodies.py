"""What people post to the API port (explain, what-if), parsed bounded and off the event loop.

One parser serves `/api/explain` and the what-if page. A body is parsed in a
worker process, never on the event loop the admission port shares: YAML is
parsed by Python code (libyaml's C parser, then PyYAML's constructor, ~2 s for
3 MB), and in a thread it would hold the GIL the event loop needs. The worker
runs at a lower priority, one body at a time, each within `PARSE_SECONDS`;
a body that takes longer, or that crashes the worker, is refused (413/400)
and a new worker started.

What is refused, with a 400 that says what to fix:

* YAML aliases (`*name`): a small body that expands without bound;
* nesting past `MAX_DEPTH` (YAML's composer recurses: 5,000 levels were a
  RecursionError; orjson refuses 1,024);
* integers outside int64 (every Kubernetes integer is one; YAML reads a
  4,400-digit one into a ValueError), and YAML that is not one document.

`ParsePool` bounds how many bodies are held (`MAX_WAITING`) and how long a
request waits (`WAIT_SECONDS`); past either, the answer is a 503 to retry.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import multiprocessing
import os
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import orjson
import yaml

from quotalang.server.admission import MAX_DEPTH, BadReview

PARSE_SECONDS = 10.0  # CPU a body may take in the worker (3 MB of YAML takes about 2 s)
WAIT_SECONDS = 10.0  # how long a request waits for a place, then for its turn, before a 503
MAX_WAITING = 4  # bodies read and in line for the worker (each up to the body limit, 3 MiB)
T = TypeVar("T")
_INT64 = 2**63
_YAML = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OPEN = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSE = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


class Busy(Exception):
    """The worker is taken: answer 503 and let the client retry."""


def _too_deep() -> BadReview:
    return BadReview(f"the body nests more than {MAX_DEPTH} levels deep; no workload needs that many",
                     reason="too-deep")


def _scan_yaml(data: bytes) -> None:
    """Refuse aliases, several documents and nesting past MAX_DEPTH, from the parser's events alone.

    libyaml's parser keeps an explicit stack (no recursion), so this is safe at
    any depth; the composer that builds objects afterwards recurses, and is
    only run on what passed.
    """
    depth = documents = 0
    for event in yaml.parse(data, Loader=_YAML):
        if isinstance(event, _OPEN):
            depth += 1
            if depth > MAX_DEPTH:
                raise _too_deep()
        elif isinstance(event, _CLOSE):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            mark = event.start_mark
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            raise BadReview(f"the body holds a YAML alias{where}: aliases (*name) are not accepted here, "
                            "write the value out", reason="not-yaml")
        elif isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise BadReview("the body holds several YAML documents: post one workload", reason="not-yaml")


def _check_values(data: Any) -> None:
    """Integers within int64 and nesting within MAX_DEPTH, walked without recursion."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        if type(node) is int and not -_INT64 <= node < _INT64:
            raise BadReview("the body holds an integer outside int64, as no Kubernetes integer is", reason="invalid")
        if isinstance(node, dict):
            children: Any = list(node.values()) + list(node.keys())
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth >= MAX_DEPTH:
            raise _too_deep()
        stack.extend((child, depth + 1) for child in children)


def parse_document(data: bytes, as_yaml: bool) -> Any:
    """One JSON or YAML document, bounded as above, or `BadReview`. Runs anywhere; `ParsePool` runs it apart."""
    if as_yaml:
        try:
            _scan_yaml(data)
            parsed = yaml.load(data, Loader=_YAML)  # a SafeLoader (CSafeLoader with libyaml)
        except yaml.YAMLError as exc:
            if "maximum nesting depth" in str(exc):  # libyaml's own bound (1,000), met while scanning ahead
                raise _too_deep() from None
            raise BadReview(f"the body is not YAML or JSON: {str(exc)[:400]}", reason="not-yaml") from None
        except ValueError as exc:  # an integer of more than 4,300 digits, a date out of range
            raise BadReview(f"the body holds a value YAML cannot read: {str(exc)[:200]}", reason="not-yaml") from None
        except RecursionError:  # not reached past the scan; kept so that no body can make a 500
            raise _too_deep() from None
    else:
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise BadReview(f"the body is not JSON: {exc} (send YAML with Content-Type application/yaml)",
                            reason="not-json") from None
    _check_values(parsed)
    return parsed


def describe(obj: Mapping[str, Any]) -> str:
    """`Kind name (apiVersion)` for an answer, bounded (a name may be as long as the body)."""
    meta = obj.get("metadata")
    name = meta.get("name", "<unnamed>") if isinstance(meta, Mapping) else "<unnamed>"
    return f"{str(obj.get('kind', '?'))[:100]} {str(name)[:200]} ({str(obj.get('apiVersion', '?'))[:100]})"


YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
JSON_TYPES = frozenset({"application/json", ""})


def is_yaml(content_type: str | None) -> bool:
    """Whether a body is YAML (True) or JSON (False) by its media type; 415 for any other.

    The media type is compared whole: `text/plain; x=yaml` is neither (a browser
    may send text/plain across origins without asking, JSON and YAML it may not).
    No Content-Type at all is JSON, as curl without -H sends it.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in YAML_TYPES:
        return True
    if media in JSON_TYPES:
        return False
    raise BadReview(f"Content-Type {media[:60]!r} is not served: post application/json or application/yaml",
                    status=415, reason="invalid")


def _timed_out(signum: int, frame: Any) -> None:
    raise TimeoutError


def _start_worker() -> None:
    os.nice(10)  # the admission port's process comes first
    signal.signal(signal.SIGALRM, _timed_out)


def _work(data: bytes, as_yaml: bool, seconds: float) -> tuple[Any, ...]:
    """In the worker: ("ok", value) or ("bad", status, reason, message); exceptions do not cross processes whole."""
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return ("ok", parse_document(data, as_yaml))
    except BadReview as exc:
        return ("bad", exc.status, exc.reason, exc.message)
    except TimeoutError:
        return ("bad", 413, "too-large", f"the body took more than {seconds:g} s to parse: post a smaller one")
    except MemoryError:
        return ("bad", 413, "too-large", "the body is too large to parse")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


_executor: concurrent.futures.ProcessPoolExecutor | None = None
_deciders = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="quotalang-explain")
_lock = threading.Lock()


def _workers() -> concurrent.futures.ProcessPoolExecutor:
    """The one parsing process of this server (every app shares it), started on first use."""
    global _executor
    with _lock:
        if _executor is None:
            # spawn: the server has threads (controller, uvicorn), which fork would copy half-held
            _executor = concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker)
        return _executor


@atexit.register
def _shutdown() -> None:
    """Stop the parsing process before the interpreter tears modules down (else its collector complains)."""
    global _executor
    with _lock:
        if _executor is not None:
            _executor.shutdown(wait=True, cancel_futures=True)
            _executor = None


def _restart(broken: concurrent.futures.ProcessPoolExecutor) -> None:
    global _executor
    with _lock:
        if _executor is broken:
            _executor = None


class ParsePool:
    """Parses and decides one app's posted bodies apart from its event loop, a bounded line of them at a time.

    A request first takes a place in line (`place`), before its body is read:
    at most `max_waiting` bodies are held at once, and a request that finds no
    place within `wait_seconds` is answered 503 with its body unread (the
    connection's flow control holds the rest of it back), so a flood costs
    neither memory nor the time to receive bodies that will not be parsed.
    Then the parse and the decision each wait for their turn.
    """

    def __init__(self, parse_seconds: float = PARSE_SECONDS, wait_seconds: float = WAIT_SECONDS,
                 max_waiting: int = MAX_WAITING) -> None:
        self.parse_seconds = parse_seconds
        self.wait_seconds = wait_seconds
        self.max_waiting = max_waiting
        self._places: asyncio.Semaphore | None = None
        self._turn: asyncio.Semaphore | None = None

    @contextlib.asynccontextmanager
    async def place(self) -> AsyncIterator[None]:
        """A place in line, to be taken before reading the body; `Busy` when none frees in time."""
        if self._places is None:
            self._places = asyncio.Semaphore(self.max_waiting)
        try:
            await asyncio.wait_for(self._places.acquire(), self.wait_seconds)
        except TimeoutError:
            raise Busy from None
        try:
            yield
        finally:
            self._places.release()

    async def _in_turn(self, run: Callable[[], Awaitable[T]]) -> T:
        if self._turn is None:
            self._turn = asyncio.Semaphore(1)
        try:
            await asyncio.wait_for(self._turn.acquire(), self.wait_seconds)
        except TimeoutError:
            raise Busy from None
        try:
            return await run()
        finally:
            self._turn.release()

    async def load(self, data: bytes, as_yaml: bool) -> Any:
        """The parsed document, `BadReview` (400/413) for a bad body, `Busy` when the worker is taken."""

        async def parse() -> tuple[Any, ...]:
            pool = _workers()
            try:
                return await asyncio.wrap_future(pool.submit(_work, data, as_yaml, self.parse_seconds))
            except concurrent.futures.BrokenExecutor:  # the worker died on this body (a crash, the OOM killer)
                _restart(pool)
                raise BadReview("the body could not be parsed: the parser stopped on it", reason="invalid") from None

        result = await self._in_turn(parse)
        if result[0] == "bad":
            _, status, reason, message = result
            raise BadReview(message, status=status, reason=reason)
        return result[1]

    async def decide(self, decide: Callable[[], T]) -> T:
        """`decide()` in the explain thread, one at a time: a large workload's decision never holds the loop.

        `Busy` when it has not finished within `wait_seconds` (it runs on: a thread cannot be stopped).
        """

        async def run() -> T:
            future = asyncio.wrap_future(_deciders.submit(decide))
            try:
                return await asyncio.wait_for(asyncio.shield(future), self.wait_seconds)
            except TimeoutError:
                raise Busy from None

        return await self._in_turn(run)


__all__ = ["Busy", "ParsePool", "describe", "is_yaml", "parse_document"]

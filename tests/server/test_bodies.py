"""The bounded parser of posted bodies (server/bodies.py): what it refuses, and its line."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from quotalang.server.admission import BadReview
from quotalang.server.bodies import Busy, ParsePool, is_yaml, parse_document


def test_a_workload_parses_the_same_as_yaml_and_json() -> None:
    text = b'{"kind": "Pod", "spec": {"replicas": 3, "x": [1, 2.5, null, true]}}'
    assert parse_document(text, as_yaml=True) == parse_document(text, as_yaml=False)
    assert parse_document(b"kind: Pod\nspec: {replicas: 3}", as_yaml=True) == {"kind": "Pod", "spec": {"replicas": 3}}


@pytest.mark.parametrize(("text", "as_yaml", "status"), [
    (b"a: 1\nb: 2\n" + b"c: " + b"[" * 129 + b"]" * 129, True, 400),
    (b"[" * 129 + b"]" * 129, False, 400),
    (b"x: " + b"1" * 20, True, 400),  # > int64
    (b"[-9223372036854775809]", True, 400),
    (b"x: &a {k: v}\ny: *a", True, 400),
    (b"{", False, 400),
])
def test_refused_bodies_are_a_4xx(text: bytes, as_yaml: bool, status: int) -> None:
    with pytest.raises(BadReview) as caught:
        parse_document(text, as_yaml)
    assert caught.value.status == status


def test_the_int64_bounds_themselves_are_accepted() -> None:
    assert parse_document(b"[-9223372036854775808, 9223372036854775807]", as_yaml=True) == [-(2**63), 2**63 - 1]
    nested = b"[" * 128 + b"]" * 128  # exactly the bound
    assert parse_document(nested, as_yaml=False) is not None


@pytest.mark.parametrize(("header", "yaml"), [(None, False), ("application/json; charset=utf-8", False),
                                               ("Application/YAML", True), ("text/yaml", True)])
def test_media_types(header: str | None, yaml: bool) -> None:
    assert is_yaml(header) is yaml


def test_a_full_line_answers_busy_without_waiting_for_the_body() -> None:
    async def run() -> None:
        pool = ParsePool(wait_seconds=0.05, max_waiting=1)
        async with pool.place():
            with pytest.raises(Busy):
                async with pool.place():
                    pass
        async with pool.place():  # freed again
            pass

    asyncio.run(run())


def test_the_worker_process_parses_and_a_bad_body_comes_back_as_bad_review() -> None:
    async def run() -> None:
        pool = ParsePool()
        assert await pool.load(b"kind: Pod", as_yaml=True) == {"kind": "Pod"}
        with pytest.raises(BadReview) as caught:
            await pool.load(b"- " * 300 + b"x", as_yaml=True)
        assert caught.value.status == 400 and caught.value.reason == "too-deep"

    asyncio.run(run())


def test_a_worker_killed_on_a_body_answers_400_and_the_next_body_gets_a_new_worker() -> None:
    """The OOM killer (or a crash) taking the parsing process is the sender's problem, never the next one's."""
    from quotalang.server import bodies

    async def run() -> None:
        pool = ParsePool(parse_seconds=30.0)
        assert await pool.load(b"{}", as_yaml=False) == {}  # the worker is up
        worker = bodies._workers()
        slow = b"[" + b"[1, 2, 3, 4, 5, 6, 7, 8]," * 400_000 + b"0]"  # long enough to be killed mid-parse
        parsing = asyncio.ensure_future(pool.load(slow, as_yaml=True))
        await asyncio.sleep(0.3)
        for process in list(worker._processes.values()):  # type: ignore[attr-defined]
            os.kill(process.pid, signal.SIGKILL)
        with pytest.raises(BadReview) as caught:
            await parsing
        assert caught.value.status == 400 and "stopped on it" in caught.value.message
        assert bodies._workers() is not worker  # replaced, and the broken one shut down
        assert await pool.load(b"kind: Pod", as_yaml=True) == {"kind": "Pod"}

    asyncio.run(run())

"""Every review is tried on the event loop first (`try_reserve`), and decided in a worker thread (`reserve`) only
when the store says it would wait (None): the request is answered once and charged once either way.

Numbers by hand (see webhook_helpers.POLICY): each test pod asks for 4 cpu of group `ml`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from quotalang.controller import MemoryLedger
from quotalang.controller.ledger.base import Ask
from quotalang.decision import Decision
from quotalang.server.app import create_app
from quotalang.server.reload import PolicyHolder
from tests.server.webhook_helpers import deployment, response_of, review

NANO = 10**9


class Blocking(MemoryLedger):
    """The memory store acting as a blocking one: on the loop it decides only if told to, else it would wait."""

    def __init__(self, decides_on_loop: bool) -> None:
        super().__init__()
        self.decides_on_loop = decides_on_loop
        self.calls: list[tuple[bool, int]] = []  # (may wait, thread) per call

    def try_reserve(self, ask: Ask) -> Decision | None:
        self.calls.append((False, threading.get_ident()))
        return super().reserve(ask) if self.decides_on_loop else None

    def reserve(self, ask: Ask) -> Decision:
        self.calls.append((True, threading.get_ident()))
        return super().reserve(ask)


def post(holder: PolicyHolder, ledger: Blocking) -> Mapping[str, Any]:
    with TestClient(create_app(holder, ledger)) as client:
        answer = client.post("/validate", content=orjson.dumps(review(deployment("web"))),
                             headers={"content-type": "application/json"})
    assert answer.status_code == 200, answer.text
    return response_of(answer.json())


@pytest.mark.parametrize("decides_on_loop", [False, True], ids=["would-wait", "on-the-loop"])
def test_a_blocking_store_is_tried_on_the_loop_then_in_a_thread(holder: PolicyHolder, decides_on_loop: bool) -> None:
    ledger = Blocking(decides_on_loop)
    assert post(holder, ledger)["allowed"] is True
    assert ledger.used("ml")["requests.cpu"] == 4 * NANO  # charged once
    first = ledger.calls[0]
    assert first[0] is False  # on the loop: waiting not allowed
    if decides_on_loop:
        assert len(ledger.calls) == 1
    else:
        assert len(ledger.calls) == 2
        second = ledger.calls[1]
        assert second[0] is True and second[1] != first[1]  # again, in a worker thread that may wait

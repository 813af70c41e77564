"""Fixtures for the server tests: the two apps (admission, API) per test over one fresh memory ledger."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from quotalang.compiler import CompiledPolicy
from quotalang.controller import MemoryLedger
from quotalang.server.api import create_api_app
from quotalang.server.app import create_app
from quotalang.server.denials import Denials
from quotalang.server.metrics import Metrics
from quotalang.server.reload import PolicyHolder
from tests.server.webhook_helpers import compile_text


@pytest.fixture(scope="session")
def policy() -> CompiledPolicy:
    return compile_text()


@pytest.fixture
def holder(policy: CompiledPolicy) -> PolicyHolder:
    return PolicyHolder(policy)


@pytest.fixture
def ledger() -> MemoryLedger:
    return MemoryLedger()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def denials() -> Denials:
    return Denials()


@pytest.fixture
def app(holder: PolicyHolder, ledger: MemoryLedger, metrics: Metrics, denials: Denials) -> Starlette:
    return create_app(holder, ledger, metrics=metrics, denials=denials)


@pytest.fixture
def client(app: Starlette) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def api_app(
    holder: PolicyHolder, ledger: MemoryLedger, metrics: Metrics, denials: Denials, app: Starlette
) -> Starlette:
    """The API port's app over the admission app's holder, ledger, metrics and denials (`app` first: it watches
    the ledger)."""
    return create_api_app(holder, ledger, metrics=metrics, denials=denials, hosts=["testserver"])


@pytest.fixture
def api(api_app: Starlette) -> Iterator[TestClient]:
    with TestClient(api_app) as test_client:
        yield test_client

"""Fixtures for the end-to-end suite: a real apiserver that calls a real webhook.

When the binaries are missing the suite is skipped — unless
`QUOTALANG_E2E_REQUIRED=1` (as `.ci/run` sets), which makes it fail instead:
a CI run that skipped its end-to-end tests has not tested anything real.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from quotalang.compiler import compile_policy
from quotalang.server.manifests import webhook_rules
from tests.e2e.kube_cluster import Cluster, Webhook, assets, wait_until

REQUIRED = os.environ.get("QUOTALANG_E2E_REQUIRED") == "1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)


def require_kube() -> Path:
    """The kube-apiserver/etcd folder; without one, skip — or fail when QUOTALANG_E2E_REQUIRED=1."""
    folder = assets()
    if folder is None:
        message = ("no kube-apiserver/etcd: run scripts/provision-kube.sh or set KUBEBUILDER_ASSETS")
        if REQUIRED:
            pytest.fail(f"QUOTALANG_E2E_REQUIRED=1 but {message}", pytrace=False)
        pytest.skip(message)
    return folder


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running = Cluster(require_kube(), tmp_path_factory.mktemp("cluster"))
    try:
        running.start()
        yield running
    finally:
        running.stop()


StartWebhook = Callable[..., Webhook]


@pytest.fixture
def start_webhook(cluster: Cluster, tmp_path: Path) -> Iterator[StartWebhook]:
    """Start `quotalang serve` on a policy and register it; stopped and unregistered after the test."""
    started: list[Webhook] = []

    def start(policy: str | Path, *args: str, probe: dict[str, object] | None = None,
              register: bool = True, port: int = 0) -> Webhook:
        if isinstance(policy, str):
            folder = tmp_path / f"policy-{len(started)}"
            folder.mkdir()
            (folder / "org.quota").write_text(policy)
            policy = folder
        hook = Webhook(cluster, policy, tmp_path / f"webhook-{len(started)}", tuple(args), port=port)
        hook.start()
        started.append(hook)
        if register:
            hook.register(webhook_rules(compile_policy(str(policy))))
            if probe is not None:
                wait_for_webhook(cluster, probe)
        return hook

    yield start
    for hook in started:
        hook.stop()
    cluster.kubectl("delete", "validatingwebhookconfiguration", "quotalang-e2e", "--ignore-not-found")


def wait_for_webhook(cluster: Cluster, probe: dict[str, object]) -> None:
    """Until the apiserver sends `probe` (a dry run our webhook must deny) to the webhook."""
    import orjson

    def denied() -> bool:
        done = cluster.kubectl("create", "--dry-run=server", "-f", "-", stdin=orjson.dumps(probe).decode(),
                               check=False)
        return "denied the request" in done.stderr

    wait_until(denied, "the webhook configuration to take effect", 30)

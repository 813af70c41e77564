"""A real etcd + kube-apiserver for the ledger-store and election tests (no mocks of the API).

It reuses the end-to-end suite's `Cluster` (tests/e2e/kube_cluster.py); the
binaries come from `$KUBEBUILDER_ASSETS` or `scripts/provision-kube.sh`'s
cache. Without them these tests skip, unless `QUOTALANG_E2E_REQUIRED=1`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from quotalang.controller.kube.api import KubeApi
from quotalang.controller.ledger.crd import COLLECTION_PATH
from quotalang.controller.ledger.kubernetes.runtime import install_crd
from tests.e2e.kube_cluster import Cluster as Cluster  # re-exported: the tests type their fixtures with it
from tests.e2e.kube_cluster import assets


@pytest.fixture(scope="session")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    folder = assets()
    if folder is None:
        message = "no kube-apiserver/etcd: run scripts/provision-kube.sh or set KUBEBUILDER_ASSETS"
        if os.environ.get("QUOTALANG_E2E_REQUIRED") == "1":
            pytest.fail(f"QUOTALANG_E2E_REQUIRED=1 but {message}", pytrace=False)
        pytest.skip(message)
    running = Cluster(folder, tmp_path_factory.mktemp("apiserver"))
    try:
        running.start()
        api = KubeApi.from_config(str(running.kubeconfig))
        install_crd(api)
        api.close()
        yield running
    finally:
        running.stop()


def client(cluster: Cluster) -> KubeApi:
    """A client of its own (its own connection pool), as a separate replica would have."""
    return KubeApi.from_config(str(cluster.kubeconfig))


def wipe_ledgers(cluster: Cluster) -> None:
    """Delete every QuotaLedger so each test starts from nothing."""
    api = client(cluster)
    try:
        api.request("DELETE", COLLECTION_PATH)
    finally:
        api.close()

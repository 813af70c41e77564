"""`serve --kubeconfig --store sqlite`: the reconciled ledger in a SQLite file, against a real apiserver.

The same cash scenario as test_controller.py's memory store with a JSON
`--state` file, but with the cash kept in the ledger database: a pod that
was scheduled 30 minutes before the webhook started holds 2 cpu; the cash
accrued before a restart is neither lost nor counted twice after it. And an
admitted Deployment is observed (its reservation folded) through the same
store.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from quotalang.controller.cash import period_start
from quotalang.controller.kube.api import KubeApi
from tests.e2e.conftest import StartWebhook
from tests.e2e.kube_cluster import Cluster, wait_until
from tests.e2e.test_controller import (
    NAMESPACE,
    _pod,
    cpu_reserved,
    cpu_seconds,
    cpu_used,
    deployment,
    namespace,  # noqa: F401 (the fixture)
    serve,
)


def test_the_sqlite_store_keeps_usage_and_cash_across_a_restart(
    cluster: Cluster, start_webhook: StartWebhook, namespace: str, tmp_path: Path  # noqa: F811
) -> None:
    state = tmp_path / "ledger.sqlite3"
    api = KubeApi.from_config(str(cluster.kubeconfig))
    try:
        api.request("POST", f"/api/v1/namespaces/{NAMESPACE}/pods", body=_pod("trainer", "node-1"))
        scheduled = int(time.time()) - 1800
        stamp = datetime.fromtimestamp(scheduled, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        api.request("PATCH", f"/api/v1/namespaces/{NAMESPACE}/pods/trainer/status",
                    body={"status": {"phase": "Running", "conditions": [
                        {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp}]}},
                    content_type="application/merge-patch+json")
    finally:
        api.close()
    hook = serve(start_webhook, cluster, "--store", "sqlite", "--state", str(state), "--accrue-interval", "1")

    def expected(now: float) -> float:
        return 2 * (now - max(scheduled, period_start("week", now) or scheduled))

    cluster.create(deployment("web", 1))  # admitted: a reservation, folded when the watch shows it
    wait_until(lambda: cpu_used(hook) == "3" and cpu_reserved(hook) == "0", "the Deployment observed", 15)
    wait_until(lambda: cpu_seconds(hook) > 0, "the first accrual", 15)
    first = cpu_seconds(hook)
    assert expected(time.time() - 4) <= first <= expected(time.time())
    hook.stop()  # a graceful stop accrues once more, into the database
    assert state.read_bytes().startswith(b"SQLite format 3\x00")
    time.sleep(2)
    hook.start()
    wait_until(lambda: cpu_seconds(hook) > first + 4, "accrual after the restart", 15)
    again = cpu_seconds(hook)
    assert expected(time.time() - 4) <= again <= expected(time.time())  # nothing lost, nothing twice
    assert cpu_used(hook) == "3"  # the pod's 2 and the Deployment's 1, once each

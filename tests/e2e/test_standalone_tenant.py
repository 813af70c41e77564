"""A tenant with kubectl against a standalone webhook that also receives DELETEs (issue 25 #4, #5).

Through the real apiserver: a Deployment kept by a finalizer stays charged
while it is Terminating and is released by the update that removes its last
finalizer; a CREATE the apiserver refuses with AlreadyExists charges at most
the larger of the two until the name's next update. Numbers by hand: group
team-a may use 4 cpu, and a `web` pod requests 1.
"""

from __future__ import annotations

from quotalang.compiler import compile_policy
from quotalang.server.manifests import webhook_rules
from tests.e2e.conftest import StartWebhook, wait_for_webhook
from tests.e2e.kube_cluster import Cluster, Webhook, wait_until
from tests.e2e.test_webhook import POLICY, deployment, namespace, probe, used  # noqa: F401 (namespace: a fixture)

KEEP = "e2e.quotalang.dev/keep"


def start(start_webhook: StartWebhook) -> Webhook:
    """The standalone webhook, registered for CREATE, UPDATE and DELETE (as the README describes)."""
    hook = start_webhook(POLICY, register=False)
    rules = webhook_rules(compile_policy(str(hook.policy)))
    for rule in rules:
        rule["operations"] = ["CREATE", "UPDATE", "DELETE"]
    hook.register(rules)
    wait_for_webhook(hook.cluster, probe())
    return hook


def cpu(hook: Webhook) -> str:
    return used(hook.group("team-a")["limits"], "requests.cpu")


def test_a_deployment_kept_by_a_finalizer_stays_charged_until_it_is_gone(
    cluster: Cluster, start_webhook: StartWebhook, namespace: str,  # noqa: F811
) -> None:
    hook = start(start_webhook)
    kept = deployment("kept", 4)  # 4 of 4
    kept["metadata"]["finalizers"] = [KEEP]
    cluster.create(kept)
    assert cpu(hook) == "4"
    cluster.kubectl("delete", "deployment", "kept", "-n", namespace, "--wait=false")
    stamp = cluster.kubectl("get", "deployment", "kept", "-n", namespace,
                            "-o", "jsonpath={.metadata.deletionTimestamp}").stdout
    assert stamp  # Terminating: still stored, its pods would still run
    assert cpu(hook) == "4"
    denied = cluster.create(deployment("second", 1), check=False)
    assert denied.returncode != 0 and "used 4 of 4, 0 free" in denied.stderr
    cluster.kubectl("patch", "deployment", "kept", "-n", namespace, "--type=merge",
                    "-p", '{"metadata":{"finalizers":null}}')
    wait_until(lambda: cluster.kubectl("get", "deployment", "kept", "-n", namespace, check=False).returncode != 0,
               "the Deployment gone", 15)
    assert cpu(hook) == "0"
    cluster.create(deployment("second", 1))
    assert cpu(hook) == "1"
    cluster.kubectl("delete", "deployment", "second", "-n", namespace)
    assert cpu(hook) == "0"


def test_a_create_refused_with_already_exists_holds_at_most_the_larger_until_the_next_update(
    cluster: Cluster, start_webhook: StartWebhook, namespace: str,  # noqa: F811
) -> None:
    hook = start(start_webhook)
    cluster.create(deployment("web", 1))
    assert cpu(hook) == "1"
    refused = cluster.create(deployment("web", 3), check=False)  # 1 + 3 ≤ 4: admitted, then AlreadyExists
    assert refused.returncode != 0 and "AlreadyExists" in refused.stderr
    assert cpu(hook) == "3"  # the per-key larger of the two, never the sum
    cluster.kubectl("annotate", "deployment", "web", "-n", namespace, "e2e.quotalang.dev/touched=yes")
    assert cpu(hook) == "1"  # the update says what the name holds: the stored object's 1 pod
    cluster.kubectl("delete", "deployment", "web", "-n", namespace)
    assert cpu(hook) == "0"

"""The aggregated API on a real kube-apiserver: kubectl as a team would use it, RBAC deciding, pages in Chromium.

kube-apiserver runs with front-proxy certificates of a CA of its own
(`--requestheader-*`, `--proxy-client-*`: kube_cluster.py); `quotalang serve`
reads that CA from kube-system/extension-apiserver-authentication and serves
`--aggregated-port`. The APIService names a Service of type ExternalName
`localhost`: with no kube-proxy nothing routes a ClusterIP, and Endpoints may
not hold loopback addresses, so `--enable-aggregator-routing` cannot reach a
server on 127.0.0.1; the aggregator resolves an ExternalName Service itself
(and verifies our certificate for `<service>.<namespace>.svc` against the
caBundle, as in a cluster).

Two ServiceAccounts ask, with tokens from the TokenRequest API: `viewer`,
bound only to the manifests' `quotalang-quotagroup-viewer`, and `stranger`,
bound to nothing.

Numbers by hand: root has 10 cpu, 8 carved to team-a (4) and team-b (4);
one Deployment of 2 replicas × 500m cpu is charged to team-a, so team-a uses
1 of 4 (3 free), and root's subtree uses 1 of 10 while root itself may still
start 10 − 8 − 0 = 2. team-a lends 2 of its 4 GPUs (guarantee 2) and team-b may
borrow 2: nobody uses a GPU, so nothing is borrowed or lent out (issue 29).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import yaml

from quotalang.server.aggregated_manifests import VIEWER, api_service, viewer_role
from tests.e2e.conftest import REQUIRED
from tests.e2e.kube_cluster import Cluster, Webhook, _stop, free_port, kubectl_binary, wait_until

NS = "e2e-aggregated"
SERVICE = "quotalang-visibility"
PREFIX = "/apis/visibility.quotalang.dev/v1alpha1"
POLICY = """\
settings {
  group label  "quota.group"
}
group root {
  requests.cpu             10
  requests.nvidia.com/gpu   8
}
group team-a in root {
  requests.cpu              4
  requests.nvidia.com/gpu   4 lend 2
  namespaces "e2e-aggregated"
  default namespaces "e2e-aggregated"
}
group team-b in root {
  requests.cpu              4
  requests.nvidia.com/gpu   2 borrow 2
}
kind apps/v1 Deployment {
  pods {
    replicas spec.replicas default 1
    template spec.template
  }
}
"""


def _kubeconfig(cluster: Cluster, folder: Path, account: str) -> Path:
    return cluster.kubeconfig_as(folder / f"{account}.kubeconfig", NS, account)


def _available(cluster: Cluster) -> bool:
    done = cluster.kubectl("get", "apiservice", "v1alpha1.visibility.quotalang.dev", "-o", "json", check=False)
    if done.returncode != 0:
        return False
    conditions = orjson.loads(done.stdout).get("status", {}).get("conditions", [])
    return any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions)


class Kubectl:
    def __init__(self, cluster: Cluster, kubeconfig: Path) -> None:
        binary = kubectl_binary(cluster.assets)
        assert binary is not None, "no kubectl"
        self.binary, self.kubeconfig = binary, kubeconfig

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.binary, "--kubeconfig", str(self.kubeconfig), *args], capture_output=True,
                              text=True, timeout=60)

    def proxy(self, port: int, log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen([self.binary, "--kubeconfig", str(self.kubeconfig), "proxy", "--port", str(port),
                                     "--address", "127.0.0.1"], stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def served(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Webhook, Path]]:
    folder = tmp_path_factory.mktemp("aggregated")
    policy = folder / "policy"
    policy.mkdir()
    (policy / "org.quota").write_text(POLICY)
    port = free_port()
    cluster.ensure_namespace(NS)
    hook = Webhook(cluster, policy, folder / "serve",
                   ("--kubeconfig", str(cluster.kubeconfig), "--aggregated-port", str(port)),
                   hosts=(f"{SERVICE}.{NS}.svc",))
    hook.start()
    labels = {"app.kubernetes.io/name": "quotalang-e2e"}
    try:
        for doc in (
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": SERVICE, "namespace": NS},
             "spec": {"type": "ExternalName", "externalName": "localhost"}},
            api_service(NS, SERVICE, ca_bundle=base64.b64encode(cluster.authority.cert.read_bytes()).decode(),
                        annotations={}, labels=labels, port=port),
            viewer_role(labels),
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "viewer", "namespace": NS}},
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "stranger", "namespace": NS}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": "e2e-aggregated-viewer"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": VIEWER},
             "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": NS}]},
            {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": "train", "namespace": NS, "labels": {"quota.group": "team-a"}},
             "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "train"}},
                      "template": {"metadata": {"labels": {"app": "train"}}, "spec": {"containers": [
                          {"name": "c", "image": "x", "resources": {"requests": {"cpu": "500m"}}}]}}}},
        ):
            cluster.apply(doc)
        wait_until(lambda: _available(cluster), "the APIService to be Available", 60, hook.process, hook.log)

        def counted() -> bool:
            rows = {r["key"]: r for r in hook.group("team-a")["limits"]}
            return bool(rows["requests.cpu"]["used"] == "1")

        wait_until(counted, "serve to observe the Deployment", 30, hook.process, hook.log)
        yield hook, folder
    finally:
        # An APIService nobody answers would make every later kubectl discovery complain.
        cluster.kubectl("delete", "apiservice", "v1alpha1.visibility.quotalang.dev", "--ignore-not-found")
        hook.stop()


def test_a_viewer_lists_and_describes_groups_with_kubectl(cluster: Cluster, served: tuple[Webhook, Path]) -> None:
    _, folder = served
    viewer = Kubectl(cluster, _kubeconfig(cluster, folder, "viewer"))
    done = viewer("get", "quotagroups")
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines()]
    assert lines[0] == ["NAME", "PARENT", "MODE", "CPU", "HARD", "CPU", "USED", "CPU", "FREE",
                        "GPU", "HARD", "GPU", "USED", "GPU", "FREE"]
    rows = {cells[0]: cells for cells in lines[1:]}
    # root: no parent (an empty cell), hard 10, its subtree uses 1, its own workloads may start 10 − 8 − 0 = 2
    assert rows["root"] == ["root", "enforce", "10", "1", "2", "8", "0", "2"]
    assert rows["team-a"] == ["team-a", "root", "enforce", "4", "1", "3", "4", "0", "4"]
    assert rows["team-b"] == ["team-b", "root", "enforce", "4", "0", "4", "2", "0", "2"]
    wide = viewer("get", "qg", "team-a", "-o", "wide")
    assert wide.returncode == 0 and "root/team-a" in wide.stdout, wide.stderr

    described = viewer("describe", "quotagroup", "team-a")
    assert described.returncode == 0, described.stderr
    text = described.stdout
    assert re.search(r"^Name:\s+team-a$", text, re.M) and re.search(r"^Kind:\s+QuotaGroup$", text, re.M), text
    assert re.search(r"Path:\s+root/team-a", text) and re.search(r"Subtree:\s+1$", text, re.M), text

    raw = viewer("get", "--raw", f"{PREFIX}/quotagroups/root")
    assert raw.returncode == 0, raw.stderr
    body = orjson.loads(raw.stdout)
    cpu = {r["key"]: r for r in body["status"]["limits"]}["requests.cpu"]
    assert (cpu["hard"], cpu["carved"], cpu["used"], cpu["subtree"], cpu["free"]) == ("10", "8", "0", "1", "2")
    gpu_of = {g["metadata"]["name"]: {r["key"]: r for r in g["status"]["limits"]}["requests.nvidia.com/gpu"]
              for g in orjson.loads(viewer("get", "--raw", f"{PREFIX}/quotagroups").stdout)["items"]}
    assert gpu_of["team-a"]["lending"] == {"lend": "2", "borrow": "0", "guarantee": "2", "own": "0", "borrowed": "0",
                                           "borrowed_from": [], "lent_out": "0", "over": "0"}
    assert (gpu_of["team-b"]["lending"]["borrow"], gpu_of["team-b"]["lending"]["guarantee"]) == ("2", "2")
    assert "lending" not in {r["key"]: r for r in body["status"]["limits"]}["requests.cpu"]  # nobody lends cpu
    charged = viewer("get", "chargeablegroups", "-n", NS)
    assert charged.returncode == 0, charged.stderr
    assert [line.split() for line in charged.stdout.splitlines()] == [["NAME", "PATH", "DEFAULT"],
                                                                     ["team-a", "root/team-a", "yes"]]
    missing = viewer("get", "quotagroup", "nobody")
    assert missing.returncode != 0 and 'quotagroups.visibility.quotalang.dev "nobody" not found' in missing.stderr


def test_without_the_role_kubectl_gets_403(cluster: Cluster, served: tuple[Webhook, Path]) -> None:
    _, folder = served
    stranger = Kubectl(cluster, _kubeconfig(cluster, folder, "stranger"))
    for args in (("get", "quotagroups"), ("get", "--raw", f"{PREFIX}/quotagroups/root"),
                 ("get", "--raw", f"{PREFIX}/pages/quota/"), ("get", "--raw", f"{PREFIX}/pages/quota/groups/root")):
        done = stranger(*args)
        assert done.returncode != 0, done.stdout
        assert "forbidden" in done.stderr.lower() and "stranger" in done.stderr, done.stderr


def test_only_the_front_proxy_may_call_the_port(cluster: Cluster, served: tuple[Webhook, Path]) -> None:
    """Forged X-Remote-User headers, with no certificate or with one of another CA, reach nothing."""
    hook, _ = served
    port = next(a for a in hook.args if a.isdigit() and a != str(hook.port))
    url = f"https://127.0.0.1:{port}{PREFIX}/quotagroups"
    context = ssl.create_default_context(cafile=str(cluster.authority.cert))
    forged = {"X-Remote-User": "system:admin", "X-Remote-Group": "system:masters"}
    with httpx.Client(verify=context, timeout=10) as client:
        answer = client.get(url, headers=forged)
    assert answer.status_code == 401 and "client certificate" in answer.json()["message"]
    other = ssl.create_default_context(cafile=str(cluster.authority.cert))
    other.load_cert_chain(str(cluster.admin.cert), str(cluster.admin.key))  # a user's certificate, not the proxy's
    with pytest.raises(httpx.HTTPError), httpx.Client(verify=other, timeout=10) as client:
        client.get(url, headers=forged).raise_for_status()
    proxy = ssl.create_default_context(cafile=str(cluster.authority.cert))
    proxy.load_cert_chain(str(cluster.front_proxy.cert), str(cluster.front_proxy.key))
    with httpx.Client(verify=proxy, timeout=10) as client:
        assert client.get(url, headers=forged).status_code == 200  # the aggregator's own certificate


def test_the_pages_through_kubectl_proxy_in_chromium(cluster: Cluster, served: tuple[Webhook, Path]) -> None:
    _, folder = served
    viewer = Kubectl(cluster, _kubeconfig(cluster, folder, "viewer"))
    port = free_port()
    proxy = viewer.proxy(port, folder / "proxy.log")
    base = f"http://127.0.0.1:{port}{PREFIX}/pages/quota"
    try:
        def up() -> bool:
            try:
                return httpx.get(f"{base}/", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, "kubectl proxy to serve the tree page", 30, proxy, folder / "proxy.log")
        chromium = shutil.which("chromium")
        if chromium is None:
            message = "no chromium on PATH (scripts/provision-browser.sh installs it)"
            if REQUIRED:
                pytest.fail(message)
            pytest.skip(message)
        from playwright.sync_api import expect, sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            try:
                page = browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
                page.goto(f"{base}/")
                page.get_by_role("link", name="team-a", exact=True).click()  # a link under the proxy's prefix
                page.wait_for_url(f"{base}/groups/team-a", timeout=10000)
                row = page.locator('tr[data-g="team-a"][data-k="requests.cpu"]')
                assert row.locator('[data-f="used"]').inner_text() == "1"
                assert row.locator('[data-f="free"]').inner_text() == "3"
                # The page's poll goes through the proxy too (a JSON under the same prefix).
                expect(page.locator("#live")).to_have_attribute("data-updated", re.compile(r"^\d+$"), timeout=15_000)
                page.goto(f"{base}/groups/root")
                root = page.locator('tr[data-g="root"][data-k="requests.cpu"]')
                assert root.locator('[data-f="subtree"]').inner_text() == "1"
                # A form through the proxy (the apiserver authorises the POST as create on pages/what-if):
                # team-a uses 1 of 4 cpu, so 4 pods of 1 cpu more are denied with the arithmetic.
                page.goto(f"{base}/what-if")
                page.fill("#workload", yaml.safe_dump({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "more", "namespace": NS, "labels": {"quota.group": "team-a"}},
                    "spec": {"replicas": 4, "template": {"spec": {"containers": [
                        {"name": "c", "image": "x", "resources": {"requests": {"cpu": "1"}}}]}}}}))
                page.click("button[type=submit]")
                assert "denied" in page.locator("#verdict").inner_text()
                assert "requested 4 (4 × pod 1), used 1 of 4, 3 free" in page.locator("#message").inner_text()
                artifacts = Path(os.environ.get("QUOTALANG_ARTIFACTS", "build/test-artifacts")) / "pages"
                artifacts.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(artifacts / "aggregated-root.png"), full_page=True)
                assert not errors, errors
            finally:
                browser.close()
    finally:
        _stop(proxy)

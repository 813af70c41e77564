"""Install quotalang as a platform engineer would, on a real kube-apiserver, with the webhook run from the image.

1. `quotalang manifests` prints the install; exactly that text goes to
   `kubectl apply -f -` (CRD, namespace, RBAC, ConfigMap, Service,
   Deployment, PDB, webhook configuration).
2. There is no kubelet: the test plays it. Two replicas of the Deployment's
   container run from the image (`buildah run --isolation chroot`, host
   network) with the Deployment's own args, `POD_NAME`/`POD_NAMESPACE` as the
   downward API would set them, the in-cluster service environment
   (`KUBERNETES_SERVICE_HOST/PORT`), the ConfigMap projected at the policy
   mount, an emptyDir at /tmp, and a ServiceAccount token from the
   TokenRequest API with the cluster CA mounted at
   /var/run/secrets/kubernetes.io/serviceaccount — so the webhook talks to
   the apiserver as `system:serviceaccount:quota-system:quotalang` and can do
   only what the manifests' RBAC grants. (The mount goes to /run/...: the
   image's /var/run is a symlink to /run, which buildah's chroot mounts do
   not follow.)
3. There is no endpoints controller and no kube-proxy: the test writes the
   Service's Endpoints itself (this host's address, one replica's port), and
   the apiserver runs with `--enable-aggregator-routing`, which makes it
   resolve a webhook Service to its Endpoints instead of a ClusterIP nothing
   routes. The apiserver still calls `quotalang.quota-system.svc` over TLS and
   checks the certificate against the caBundle that serve published.

Numbers by hand: team-a may use 4 cpu; every `web`/`batch` pod requests 1 cpu.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from tests.e2e.conftest import REQUIRED, wait_for_webhook
from tests.e2e.kube_cluster import ROOT, Cluster, _stop, assets, free_port, kubectl_binary, wait_until

NS = "quota-system"
IMAGE = os.environ.get("QUOTALANG_IMAGE", "")
SA_MOUNT = "/run/secrets/kubernetes.io/serviceaccount"  # = /var/run/..., see the module docstring
BUILDAH = ["buildah", "--storage-driver", "vfs"]

POLICY = """\
import "quotalang:policies/core.quota"

settings {
  group label  "quota.group"
}

group root {
  requests.cpu   20
}

group team-a in root {
  requests.cpu    4
}
"""


def deployment(name: str, replicas: int, group: str = "team-a") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "team-a", "labels": {"quota.group": group}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1",
                                         "resources": {"requests": {"cpu": "1"}}}]},
            },
        },
    }


def require() -> Path:
    """The kube binaries, buildah and the image, or fail (QUOTALANG_E2E_REQUIRED=1) / skip."""
    folder = assets()
    problems = []
    if folder is None:
        problems.append("no kube-apiserver/etcd (scripts/provision-kube.sh)")
    elif kubectl_binary(folder) is None:
        problems.append("no kubectl (scripts/provision-kube.sh)")
    if shutil.which("buildah") is None:
        problems.append("no buildah (scripts/provision-image.sh)")
    elif not IMAGE:
        problems.append("QUOTALANG_IMAGE is not set (QUOTALANG_IMAGE=$(scripts/build-image.sh))")
    elif subprocess.run([*BUILDAH, "inspect", "--type", "image", IMAGE], capture_output=True).returncode != 0:
        problems.append(f"no image {IMAGE} in buildah's vfs storage (scripts/build-image.sh)")
    if problems:
        message = "; ".join(problems)
        if REQUIRED:
            pytest.fail(f"QUOTALANG_E2E_REQUIRED=1 but {message}", pytrace=False)
        pytest.skip(message)
    assert folder is not None
    return folder


def read_only_root(container: str, mount_points: list[str]) -> Path | None:
    """Make the container's root filesystem read-only, as `readOnlyRootFilesystem: true` does.

    buildah 1.28 has no `run --read-only`; as root, the container's rootfs is
    bind-mounted read-only onto itself. The mount points buildah binds into it
    (the volumes and /run/.containerenv) are made first, while it is writable.
    Not root: None, and the test that checks the root is read-only skips.
    """
    if os.geteuid() != 0:
        return None
    rootfs = Path(subprocess.run([*BUILDAH, "mount", container], capture_output=True, text=True,
                                 check=True).stdout.strip())
    for point in mount_points:
        (rootfs / point.lstrip("/")).mkdir(parents=True, exist_ok=True)
    (rootfs / "run" / ".containerenv").touch()
    subprocess.run(["mount", "--bind", str(rootfs), str(rootfs)], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(rootfs), str(rootfs)], check=True)
    return rootfs


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        for child in children.get(current, []):
            found.append(child)
            todo.append(child)
    return found


def host_address() -> str:
    """This machine's address on its default route: an Endpoints address may not be loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent; the kernel picks the source address
        address: str = probe.getsockname()[0]
    if address.startswith("127."):
        pytest.fail("this machine has no non-loopback IPv4 address for the webhook's Endpoints")
    return address


@dataclass
class Replica:
    """One pod of the Deployment, as the kubelet would run it, from the image."""

    name: str
    port: int
    folder: Path
    container: str = ""
    process: subprocess.Popen[bytes] | None = None
    rootfs: Path | None = None  # bind-mounted read-only onto itself while the replica runs

    def root_mount_options(self) -> list[str]:
        """The mount options of `/` as the webhook process itself sees it (its /proc/PID/mountinfo)."""
        assert self.process is not None
        for pid in _descendants(self.process.pid):
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
                mounts = Path(f"/proc/{pid}/mountinfo").read_text()
            except OSError:
                continue
            if b"/opt/quotalang/bin/quotalang\0serve" in command or b"quotalang\0serve" in command:
                roots = [line.split() for line in mounts.splitlines() if line.split()[4] == "/"]
                return roots[-1][5].split(",")  # the topmost mount on /
        raise AssertionError(f"no webhook process under {self.process.pid}")

    @property
    def log(self) -> Path:
        return self.folder / "serve.log"


@dataclass
class Install:
    cluster: Cluster
    folder: Path
    text: str  # what `quotalang manifests` printed
    address: str
    replicas: list[Replica] = field(default_factory=list)

    @property
    def docs(self) -> list[dict[str, Any]]:
        return [d for d in yaml.safe_load_all(self.text) if d]

    def find(self, kind: str) -> dict[str, Any]:
        return next(d for d in self.docs if d["kind"] == kind)

    def get(self, *args: str) -> dict[str, Any]:
        out: dict[str, Any] = orjson.loads(self.cluster.kubectl("get", *args, "-o", "json").stdout)
        return out

    def service_account(self) -> Path:
        """A bound token for the manifests' ServiceAccount (TokenRequest) and the cluster CA, as mounted."""
        folder = self.folder / "serviceaccount"
        folder.mkdir(mode=0o755)
        with self.cluster.http() as client:
            answer = client.post(f"/api/v1/namespaces/{NS}/serviceaccounts/quotalang/token",
                                 json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                       "spec": {"expirationSeconds": 3600}})
        assert answer.status_code == 201, answer.text
        (folder / "token").write_text(answer.json()["status"]["token"])
        (folder / "ca.crt").write_bytes(self.cluster.authority.cert.read_bytes())
        (folder / "namespace").write_text(NS)
        for file in folder.iterdir():
            file.chmod(0o644)
        return folder

    def policy_volume(self) -> Path:
        """The ConfigMap as the kubelet projects it (read back from the apiserver, not from the text)."""
        folder = self.folder / "policy"
        folder.mkdir(mode=0o755)
        for name, text in self.get("configmap", "quotalang-policy", "-n", NS)["data"].items():
            (folder / name).write_text(text)
            (folder / name).chmod(0o644)
        return folder

    def start(self, replica: Replica, serviceaccount: Path, policy: Path) -> None:
        container = self.find("Deployment")["spec"]["template"]["spec"]["containers"][0]
        args = list(container["args"])
        args[args.index("--port") + 1] = str(replica.port)  # two replicas share this host's network
        if "--api-port" in args:  # ... and each needs an API port of its own
            args[args.index("--api-port") + 1] = str(free_port())
        env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(self.cluster.port)}
        for item in container["env"]:
            path = item["valueFrom"]["fieldRef"]["fieldPath"]
            env[item["name"]] = {"metadata.name": replica.name, "metadata.namespace": NS}[path]
        volumes = [f"{serviceaccount}:{SA_MOUNT}:ro"]
        for mount in container["volumeMounts"]:
            if mount["name"] == "policy":
                volumes.append(f"{policy}:{mount['mountPath']}:ro")
            elif mount["name"] == "tmp":  # an emptyDir
                tmp = replica.folder / "tmp"
                tmp.mkdir(parents=True)
                tmp.chmod(0o1777)
                volumes.append(f"{tmp}:{mount['mountPath']}")
            else:
                raise AssertionError(f"the Deployment mounts {mount['name']}, which this test cannot provide")
        replica.folder.mkdir(parents=True, exist_ok=True)
        replica.container = subprocess.run(
            [*BUILDAH, "from", "--pull=never", "--name", f"quotalang-e2e-{uuid.uuid4().hex[:8]}", IMAGE],
            capture_output=True, text=True, check=True).stdout.strip()
        if container["securityContext"].get("readOnlyRootFilesystem"):
            replica.rootfs = read_only_root(replica.container, [v.split(":")[1] for v in volumes])
        command = [*BUILDAH, "run", "--isolation", "chroot", "--network", "host"]
        for volume in volumes:
            command += ["--volume", volume]
        for name, value in env.items():
            command += ["--env", f"{name}={value}"]
        command += [replica.container, "--", "/opt/quotalang/bin/quotalang", *args]
        with replica.log.open("ab") as out:
            replica.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        self.replicas.append(replica)

    def ready(self, replica: Replica) -> bool:
        try:
            with httpx.Client(verify=False, timeout=2) as client:  # readiness only; TLS is checked by the apiserver
                return client.get(f"https://{self.address}:{replica.port}/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def route_to(self, replica: Replica) -> None:
        """The Endpoints the endpoints controller would write, with only this replica in them."""
        self.cluster.apply({
            "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "quotalang", "namespace": NS},
            "subsets": [{"addresses": [{"ip": self.address}],
                         "ports": [{"name": "https", "port": replica.port, "protocol": "TCP"}]}],
        })

    def holder(self) -> str | None:
        done = self.cluster.kubectl("get", "lease", "quotalang-ledger-leader", "-n", NS, "-o",
                                    "jsonpath={.spec.holderIdentity}", check=False)
        return done.stdout or None if done.returncode == 0 else None

    def stop(self) -> None:
        for replica in self.replicas:
            _stop(replica.process)
            if replica.rootfs is not None:
                subprocess.run(["umount", str(replica.rootfs)], capture_output=True)
            if replica.container:
                subprocess.run([*BUILDAH, "rm", replica.container], capture_output=True)


def _ready(install: Install, replica: Replica) -> Callable[[], bool]:
    return lambda: install.ready(replica)


def printed(policy: Path) -> str:
    """`quotalang manifests` for this install."""
    done = subprocess.run(
        [sys.executable, "-m", "quotalang.server.cli", "manifests", "--policy", str(policy),
         "--namespace", NS, "--image", IMAGE, "--kube-version", "1.20"],
        capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def chart(policy: Path) -> str:
    """charts/quotalang rendered by Helm's library, with the values `manifests --helm-values` prints for the
    same flags, and namespace.create (kube-system is labelled by hand, as the chart's notes say)."""
    from quotalang.server.manifests import Options
    from quotalang.server.manifests.chart import chart_values
    from tests.chart_render import render_text

    values = chart_values([str(policy)], Options(IMAGE, kube_version=(1, 20))) | {"namespace": {"create": True}}
    return render_text(values, NS)


@pytest.fixture(scope="module", params=["manifests", "chart"])
def install(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    """The install from `quotalang manifests`' YAML, then again from the Helm chart's rendering."""
    folder = require()
    work = tmp_path_factory.mktemp("install")
    cluster = Cluster(folder, work / "cluster", apiserver_args=("--enable-aggregator-routing=true",))
    policy = work / "policy-src"
    policy.mkdir()
    (policy / "org.quota").write_text(POLICY)
    text = printed(policy) if request.param == "manifests" else chart(policy)
    done: Install | None = None
    try:
        cluster.start()
        done = Install(cluster, work, text, host_address())
        cluster.kubectl("apply", "-f", "-", stdin=text)  # exactly what was printed (or rendered)
        cluster.ensure_namespace("team-a")
        serviceaccount, projected = done.service_account(), done.policy_volume()
        pods = [Replica(f"quotalang-{i}", free_port(), work / f"r{i}") for i in range(2)]  # --replicas 2
        for replica in pods:
            done.start(replica, serviceaccount, projected)
        for replica in pods:
            assert replica.process is not None
            wait_until(_ready(done, replica), f"{replica.name} /readyz", 120, replica.process, replica.log)
        wait_until(lambda: done.holder() is not None, "a replica to take the Lease", 60)
        # Admissions go to the replica that does not lead: it must fetch /scale parents itself.
        follower = next(r for r in done.replicas if r.name != done.holder())
        done.route_to(follower)
        if request.param == "chart":  # the chart's NOTES: before 1.21 label exempt namespaces (Helm must not own them)
            cluster.kubectl("label", "namespace", "kube-system", "quotalang.dev/exempt=true")
        wait_for_webhook(cluster, deployment("probe", 1, group="no-such-group"))
        yield done
    finally:
        if done is not None:
            done.stop()
        cluster.stop()


def test_the_default_manifests_hold_no_private_key_and_serve_publishes_its_ca(install: Install) -> None:
    from cryptography import x509

    assert "PRIVATE KEY" not in install.text
    assert "quotalang.dev/ignore" not in install.text  # no opt-out by label
    secret = install.get("secret", "quotalang-tls", "-n", NS)["data"]
    hook = install.get("validatingwebhookconfiguration", "quotalang")["webhooks"][0]
    bundle = base64.b64decode(hook["clientConfig"]["caBundle"])
    serving = x509.load_pem_x509_certificate(base64.b64decode(secret["tls.crt"]))
    serving.verify_directly_issued_by(x509.load_pem_x509_certificate(bundle))
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"quotalang.{NS}.svc" in names.get_values_for_type(x509.DNSName)


def test_admitted_denied_and_scaled_through_the_service(install: Install) -> None:
    cluster = install.cluster
    cluster.create(deployment("web", 3))
    denied = cluster.create(deployment("batch", 2), check=False)
    assert denied.returncode != 0
    assert denied.stderr.strip() == (
        'Error from server (Forbidden): error when creating "STDIN": admission webhook "quota.quotalang.dev" '
        "denied the request: quota exceeded in group root/team-a: "
        "requests.cpu: requested 2 (2 × pod 1), used 3 of 4, 1 free"
    )
    cluster.kubectl("scale", "deployment", "web", "-n", "team-a", "--replicas=4")  # 4 of 4: fits
    denied = cluster.kubectl("scale", "deployment", "web", "-n", "team-a", "--replicas=5", check=False)
    assert denied.returncode != 0
    assert "denied the request: quota exceeded in group root/team-a: requests.cpu" in denied.stderr
    assert "used 4 of 4, 0 free" in denied.stderr
    replicas = cluster.kubectl("get", "deployment", "web", "-n", "team-a", "-o", "jsonpath={.spec.replicas}")
    assert replicas.stdout == "4"

    # The ledger objects the replicas wrote, as the ServiceAccount (the RBAC let them).
    def charged() -> bool:
        ledger = install.get("quotaledgers", "team-a")
        status = ledger.get("status") or {}
        total = sum(int(v.get("usage", {}).get("requests.cpu", 0)) for v in status.get("reservations", {}).values())
        return total + int((status.get("observed") or {}).get("requests.cpu", 0)) == 4 * 10**9
    wait_until(charged, "team-a's QuotaLedger to hold 4 cpu", 30)


def test_the_lease_is_held_by_one_replica_and_both_serve(install: Install) -> None:
    holder = install.holder()
    assert holder in {"quotalang-0", "quotalang-1"}
    leader = next(r for r in install.replicas if r.name == holder)
    # Now the leader answers: an admission through it, too.
    install.route_to(leader)
    time.sleep(1)
    install.cluster.create(deployment("small", 0))
    for replica in install.replicas:
        assert replica.process is not None and replica.process.poll() is None, replica.log.read_text()[-2000:]
    text = "".join(r.log.read_text(errors="replace") for r in install.replicas)
    # The kubernetes client reports a refused call as "(403)" and "Reason: Forbidden";
    # ports, uids and latencies in the log may contain the digits 403.
    assert "(403)" not in text and "Forbidden" not in text, text[-3000:]


def test_a_user_who_may_label_namespaces_cannot_leave_quota(install: Install) -> None:
    """Kubernetes 1.20 has no name label: exemption is a label only the listed namespaces may carry.

    `lena` may create, patch and update namespaces (RBAC), and acts through
    impersonation (`kubectl --as`). The manifests labelled kube-system and
    quota-system; the namespaces webhook, answered by serve from the image,
    refuses the label anywhere else.
    """
    cluster = install.cluster
    label = "quotalang.dev/exempt"
    cluster.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                   "metadata": {"name": "ns-labeller"},
                   "rules": [{"apiGroups": [""], "resources": ["namespaces"],
                              "verbs": ["get", "list", "create", "patch", "update"]}]})
    cluster.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                   "metadata": {"name": "ns-labeller"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ns-labeller"},
                   "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "lena"}]})
    refused = cluster.kubectl("--as", "lena", "label", "namespace", "team-a", f"{label}=true", check=False)
    assert refused.returncode != 0
    assert ('admission webhook "namespaces.quotalang.dev" denied the request: namespace team-a may not carry '
            f"the label {label}: only the namespaces exempted at install time (kube-system, quota-system)"
            ) in refused.stderr
    created = cluster.kubectl("--as", "lena", "create", "-f", "-", check=False, stdin=orjson.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "escape", "labels": {label: "yes"}}}).decode())
    assert created.returncode != 0 and "may not carry the label" in created.stderr
    assert cluster.kubectl("get", "namespace", "escape", check=False).returncode != 0
    # Her other labels are none of quotalang's business, on any namespace.
    cluster.kubectl("--as", "lena", "label", "namespace", "team-a", "owner=lena", "--overwrite")
    cluster.kubectl("--as", "lena", "label", "namespace", "kube-system", "owner=platform", "--overwrite")
    assert label not in install.get("namespace", "team-a")["metadata"]["labels"]
    # team-a is still under quota (4 cpu); the listed namespaces are not (no call reaches the webhook).
    over = deployment("escape-attempt", 9)
    denied = cluster.create(over, check=False)
    assert denied.returncode != 0 and "quota exceeded in group root/team-a" in denied.stderr
    for namespace in ("kube-system", NS):
        exempt = {**over, "metadata": {**over["metadata"], "namespace": namespace}}
        cluster.create(exempt)
        cluster.kubectl("delete", "deployment", "escape-attempt", "-n", namespace)


def test_the_webhook_runs_with_a_read_only_root_filesystem(install: Install) -> None:
    """The Deployment says readOnlyRootFilesystem; the replicas ran (and served every test above) so."""
    if os.geteuid() != 0:
        pytest.skip("making the container's root read-only needs root (buildah 1.28 has no run --read-only)")
    container = install.find("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    for replica in install.replicas:
        assert replica.process is not None and replica.process.poll() is None, replica.log.read_text()[-2000:]
        assert "ro" in replica.root_mount_options()

"""A replica's ledger on the fake compare-and-swap API and a virtual clock: what the mechanism tests share.

Numbers by hand: group `big` may use 1000 cpu, `mid` 20 (children of
`root`, 2000); `web-N` runs one pod of 1 cpu (10**9 nanos). test_kubestore_leases.py runs the same
policy against a real apiserver.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from quotalang.compiler import CompiledPolicy, compile_sources
from quotalang.controller.ledger.crd import LedgerState, from_object, object_path
from quotalang.controller.ledger.kubernetes.ledger import KubernetesLedger
from quotalang.controller.ledger.kubernetes.tuning import Tuning
from quotalang.decision import Decision
from quotalang.loader import load_text
from quotalang.server.engine import ask_for
from tests.controller.ledger.fake_api import FakeApiServer, FakeKubeApi

CPU = 10**9
POLICY = """\
settings {
  group label "team"
  unlabelled deny
}

group root {
  requests.cpu   2000
}

group big in root {
  requests.cpu   1000
}

group mid in root {
  requests.cpu     20
}

kind apps/v1 Deployment {
  pods {
    replicas spec.replicas default 1
    template spec.template
  }
}
"""


def policy() -> CompiledPolicy:
    return compile_sources(load_text(POLICY, "rig.quota"))


class Clock:
    """Virtual time for every replica of a test: wall = monotonic + 1e6. `during_sleep` runs while a store
    waits (another replica's `tidy`, as its thread would)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.during_sleep: Callable[[], None] | None = None

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now + 1e6

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        hook, self.during_sleep = self.during_sleep, None  # its own calls' waits run nothing more
        try:
            if hook is not None and seconds > 0:
                hook()
        finally:
            self.during_sleep = hook


class Rig:
    """One fake apiserver, one clock, replicas made on demand."""

    def __init__(self, tuning: Tuning | None = None) -> None:
        self.server = FakeApiServer()
        self.clock = Clock()
        self.tuning = tuning or Tuning()
        self.policy = policy()
        self.api = FakeKubeApi(self.server, self.clock, latency=0.0)

    def replica(self, name: str, **options: Any) -> KubernetesLedger:
        api = FakeKubeApi(self.server, self.clock, latency=0.0)
        return KubernetesLedger(api, replica=name, clock=self.clock.wall,  # type: ignore[arg-type]
                                monotonic=self.clock.monotonic, sleep=self.clock.sleep, tuning=self.tuning,
                                **options)

    def admit(self, ledger: KubernetesLedger, name: str, group: str, cpu: str = "1") -> Decision:
        return ledger.reserve(ask_for(self.policy, deployment(name, group, cpu), "CREATE",
                                      deadline=self.clock.now + 9.5))

    def state(self, group: str) -> LedgerState:
        return from_object(self.api.request("GET", object_path(group)), group)

    def entries(self, group: str) -> dict[str, int]:
        """requests.cpu per reservation entry of the group's stored ledger, in whole cpus."""
        return {name: held.usage.get("requests.cpu", 0) // CPU for name, held in self.state(group).reservations.items()}


def deployment(name: str, group: str, cpu: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "labels": {"team": group}},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "app", "image": "app", "resources": {"requests": {"cpu": cpu}}}]}}},
    }

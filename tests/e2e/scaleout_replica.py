"""One webhook replica on the kubernetes store, as a process: bench/bench_store.py runs several.

(tests/e2e/test_scaleout.py runs the real `quotalang serve --store kubernetes` instead.)

It is `quotalang serve` reduced to what the benchmark needs (plain HTTP on
127.0.0.1, the requests are addressed to it directly), built from the same
parts: `create_app` over `server.stores.kubernetes_store`. `--cash` stands in
for the controller's accrual while leading: every `--tick` seconds it accrues
`rate` nano-units per second to a group's key from the *stored* last accrual
time, so a test can check that a failover never accrues an interval twice.

    python tests/e2e/scaleout_replica.py --policy DIR --port N --kubeconfig FILE --replica r1
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from controller.kubestore import CashState, KubernetesLedger, NotLeader


def cash_ticker(ledger: KubernetesLedger, spec: str, tick: float, stop: threading.Event) -> None:
    """Accrue `rate` per second to group/key from the stored lastAccrual, every `tick` s, until `stop`."""
    group, key, rate_text = spec.split(":")
    rate = int(rate_text)

    def accrue(state: CashState) -> CashState | None:
        now = int(time.time() * 1_000_000)  # whole microseconds, as the ledger stores times: exact sums
        if state.last_accrual is None:
            return CashState(state.used, now / 1e6, now / 1e6)
        last = round(state.last_accrual * 1_000_000)
        if now <= last:
            return None
        used = dict(state.used)
        used[key] = used.get(key, 0) + (now - last) * rate // 1_000_000
        return CashState(used, state.period_start, now / 1e6)

    while not stop.wait(tick):
        try:
            ledger.update_cash(group, accrue)
        except NotLeader:
            return
        except Exception as exc:
            logging.getLogger("quotalang.cash").warning("accrual failed: %s", exc)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--policy", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--store", choices=["memory", "kubernetes"], default="kubernetes")
    parser.add_argument("--kubeconfig")
    parser.add_argument("--replica", default="replica")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--lease-duration", type=float, default=15.0)
    parser.add_argument("--reservation-ttl", type=float, default=30.0)
    parser.add_argument("--failure-mode", choices=["allow", "deny"], default="deny")
    parser.add_argument("--cash", help="GROUP:KEY:NANOS_PER_SECOND to accrue while leading")
    parser.add_argument("--tick", type=float, default=0.5)
    args = parser.parse_args()

    import uvicorn

    from controller.ledger import Ledger, MemoryLedger
    from server import logs
    from server.app import create_app
    from server.metrics import Metrics
    from server.reload import PolicyHolder, PolicyReloader
    from server.stores import kubernetes_store

    logs.configure("json", "info")
    metrics = Metrics()
    holder = PolicyHolder()
    PolicyReloader([args.policy], holder, metrics).load_initial()
    ticking = threading.Event()

    def lead(ledger: KubernetesLedger) -> None:
        if args.cash:
            ticking.clear()
            threading.Thread(target=cash_ticker, args=(ledger, args.cash, args.tick, ticking), daemon=True).start()

    store = None
    ledger: Ledger
    if args.store == "kubernetes":
        store = kubernetes_store(holder, metrics, kubeconfig=args.kubeconfig, namespace=args.namespace,
                                 replica=args.replica, lease_duration=args.lease_duration,
                                 reservation_ttl=args.reservation_ttl, on_leader=lead, on_follower=ticking.set)
        store.start()
        ledger = store.ledger
    else:
        ledger = MemoryLedger(standalone=True)
    app = create_app(holder, ledger, failure_mode=args.failure_mode, metrics=metrics)
    try:
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_config=None, access_log=False, lifespan="off")
    finally:
        ticking.set()
        if store is not None:
            store.stop()


if __name__ == "__main__":
    main()

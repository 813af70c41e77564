"""docs/grafana/quotalang.json and the alerting rules query only metrics that `quotalang serve` exports.

Exported means: seen in a live /metrics of the app after an admission, or — for
the metrics that exist only with TLS or a cluster (certificate expiry, the
controller's watches) — registered by name in the server or controller code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import orjson
from starlette.testclient import TestClient

from quotalang.compiler import compile_policy
from quotalang.controller import MemoryLedger
from quotalang.server.api import create_api_app
from quotalang.server.app import create_app
from quotalang.server.metrics import Metrics
from quotalang.server.reload import PolicyHolder
from tests.pages.conftest import ROOT, workload
from tests.server.webhook_helpers import review

DASHBOARD = ROOT / "docs" / "grafana" / "quotalang.json"
METRIC = re.compile(r"\bquotalang_[a-z_]+")
SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def _queried() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return {m for e in exprs for m in METRIC.findall(e)}


def _family(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _live() -> set[str]:
    holder = PolicyHolder(compile_policy([str(ROOT / "examples" / "policies")]))
    ledger, metrics = MemoryLedger(), Metrics()
    app = create_app(holder, ledger, metrics=metrics)
    api_app = create_api_app(holder, ledger, metrics=metrics, hosts=["testserver"])
    with TestClient(app) as client, TestClient(api_app) as api:
        client.post("/validate", content=orjson.dumps(review(workload("deployment.yaml"))),
                    headers={"content-type": "application/json"})
        client.post("/validate", content=b"not json", headers={"content-type": "application/json"})
        text = api.get("/metrics").text
    names = set(re.findall(r"^(quotalang_[a-z_]+)", text, re.M))
    names |= set(re.findall(r"^# TYPE (quotalang_[a-z_]+)", text, re.M))
    return names


def _registered() -> set[str]:
    """Metric families the server and controller code registers (by their literal names)."""
    found: set[str] = set()
    for folder in ("server", "controller"):
        for path in Path(ROOT / folder).rglob("*.py"):
            found |= set(re.findall(r'"(quotalang_[a-z_]+)"', path.read_text()))
    return found


def test_the_dashboard_queries_only_exported_metrics() -> None:
    queried = _queried()
    assert len(queried) >= 10
    live = _live()
    families = {_family(n) for n in live} | _registered()
    unknown = sorted(q for q in queried if q not in live and _family(q) not in families)
    assert unknown == [], f"the dashboard queries metrics serve does not export: {unknown}"


def _alerted() -> set[str]:
    """The metrics the alerting rules (server/manifests/alerts.yaml) query."""
    import yaml

    groups = yaml.safe_load((ROOT / "server" / "manifests" / "alerts.yaml").read_text())["groups"]
    return {m for g in groups for r in g["rules"] for m in METRIC.findall(r["expr"])}


def test_the_alerts_query_only_exported_metrics() -> None:
    alerted = _alerted()
    assert len(alerted) >= 12  # by hand: 12 names across the 10 alerts
    live = _live()
    families = {_family(n) for n in live} | _registered()
    unknown = sorted(q for q in alerted if q not in live and _family(q) not in families)
    assert unknown == [], f"the alerts query metrics serve does not export: {unknown}"
    for name in alerted:  # counters by their exposed name, as the dashboard's
        assert f"{name}_total" not in live, f"{name} is a counter: query {name}_total"


def test_the_dashboard_covers_what_issue_17_lists() -> None:
    queried = {_family(q) for q in _queried()}
    for needed in ("quotalang_admissions", "quotalang_admission_duration_seconds", "quotalang_ledger_used",
                   "quotalang_ledger_free", "quotalang_cash_used_seconds", "quotalang_policy_last_reload_ok",
                   "quotalang_tls_not_after_seconds"):
        assert needed in queried, needed


def test_counters_are_queried_with_their_total_suffix() -> None:
    """prometheus-client exposes counters as `<name>_total`: a query on the bare name finds nothing."""
    live = _live()
    for name in _queried():
        if f"{name}_total" in live:
            raise AssertionError(f"{name} is a counter: query {name}_total")

"""The alerting rules: valid for Prometheus, each alert fired by its promtool test, shipped identically.

promtool is Debian's (package prometheus; scripts/provision-prometheus.sh).
Without it these tests skip, or fail under QUOTALANG_E2E_REQUIRED=1 (CI).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from quotalang.server.manifests import Options, manifests
from quotalang.server.manifests.chart import chart_values
from quotalang.server.manifests.monitoring import alert_groups
from tests.chart_render import CHART, render

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "server" / "manifests" / "alerts.yaml"
TESTS = Path(__file__).resolve().parent / "quotalang_test.yaml"
EXAMPLES = ROOT / "examples" / "policies"
WANTED = {  # issue 27: what the on-call must hear about, by alert
    "QuotalangAdmissionErrors", "QuotalangAdmissionSlow", "QuotalangCertificateExpiresSoon",
    "QuotalangCertificateExpiresToday", "QuotalangLedgerUnavailable", "QuotalangNoLeader",
    "QuotalangGroupOverHardLimit", "QuotalangCashBurningOut", "QuotalangDown", "QuotalangPolicyReloadFailing",
}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "no promtool (scripts/provision-prometheus.sh: Debian's prometheus package)"
        if os.environ.get("QUOTALANG_E2E_REQUIRED") == "1":
            pytest.fail(f"QUOTALANG_E2E_REQUIRED=1 but {message}", pytrace=False)
        pytest.skip(message)
    return found


def alerts() -> list[dict[str, Any]]:
    return [r for g in alert_groups() for r in g["rules"] if "alert" in r]


def test_promtool_check_rules_accepts_the_rules() -> None:
    done = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in done.stdout + done.stderr


def test_promtool_test_rules_passes() -> None:
    done = subprocess.run([promtool(), "test", "rules", str(TESTS)], capture_output=True, text=True, cwd=TESTS.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_every_alert_fires_in_a_test_and_the_issue_s_conditions_are_covered() -> None:
    names = {r["alert"] for r in alerts()}
    assert names == WANTED
    cases = yaml.safe_load(TESTS.read_text())["tests"]
    fired = {t["alertname"] for case in cases for t in case["alert_rule_test"] if t["exp_alerts"]}
    quiet = {t["alertname"] for case in cases for t in case["alert_rule_test"] if not t["exp_alerts"]}
    assert fired == names  # each alert fires on some series
    assert quiet == names  # and stays quiet on others (or before its `for`)


def test_a_broken_expectation_fails_promtool(tmp_path: Path) -> None:
    """The promtool run can fail: the same tests with one expected label changed do."""
    cases = yaml.safe_load(TESTS.read_text())
    cases["rule_files"] = [str(RULES)]
    leader = next(c for c in cases["tests"] if c["alert_rule_test"][0]["alertname"] == "QuotalangNoLeader")
    leader["alert_rule_test"][1]["exp_alerts"][0]["exp_labels"]["severity"] = "warning"
    broken = tmp_path / "broken_test.yaml"
    broken.write_text(yaml.safe_dump(cases))
    done = subprocess.run([promtool(), "test", "rules", str(broken)], capture_output=True, text=True)
    assert done.returncode != 0 and "QuotalangNoLeader" in done.stdout + done.stderr


def test_the_chart_and_the_manifests_ship_these_rules() -> None:
    assert (CHART / "files" / "alerts.yaml").read_text() == RULES.read_text()
    options = Options("registry.example/quotalang:0.1.0", prometheus_operator=True)
    printed = {d["kind"]: d for d in manifests([str(EXAMPLES)], "quota-system", options)}
    groups = yaml.safe_load(RULES.read_text())["groups"]
    assert printed["PrometheusRule"]["spec"] == {"groups": groups}
    endpoint = printed["ServiceMonitor"]["spec"]["endpoints"][0]
    assert (endpoint["port"], endpoint["scheme"]) == ("api", "https")
    assert endpoint["tlsConfig"]["ca"]["secret"] == {"name": "quotalang-tls", "key": "ca.crt"}
    chart = {d["kind"]: d for d in render(chart_values([str(EXAMPLES)], options), "quota-system")}
    assert json.loads(json.dumps(chart["PrometheusRule"])) == json.loads(json.dumps(printed["PrometheusRule"]))

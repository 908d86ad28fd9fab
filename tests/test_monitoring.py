"""The monitoring component (deploy/components/monitoring): it renders into a working overlay,
its alerts fire and stay quiet as `promtool test rules` expects, and the alerts and the
dashboard name only series a real server serves."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.test_deploy import by_kind, render_overlay
from tests.test_metrics import scrape  # noqa: F401 - the fixture: /metrics of a real server

ROOT = Path(__file__).resolve().parent.parent
COMPONENT = ROOT / "deploy" / "components" / "monitoring"
# Set by .ci/run, which fetches promtool from Debian's prometheus package: there a missing
# promtool fails the test instead of skipping it.
REQUIRE_PROMTOOL = os.environ.get("SEGUARD_REQUIRE_PROMTOOL") == "1"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if REQUIRE_PROMTOOL:
            pytest.fail("promtool is not on PATH (.ci/run puts Debian's there)")
        pytest.skip("promtool (Debian's prometheus package) is not on PATH")
    return found


def rule_groups() -> dict[str, Any]:
    rule = yaml.safe_load((COMPONENT / "prometheusrule.yaml").read_text())
    assert rule["kind"] == "PrometheusRule"
    groups: dict[str, Any] = rule["spec"]
    return groups


def rendered(tmp_path: Path) -> list[dict[str, Any]]:
    return render_overlay(
        tmp_path,
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources:\n- ../../base\ncomponents:\n- ../../components/monitoring\n",
    )


def test_the_component_renders_a_service_monitor_that_finds_the_metrics_port(
    tmp_path: Path,
) -> None:
    objects = rendered(tmp_path)
    [monitor] = by_kind(objects, "ServiceMonitor")
    [service] = by_kind(objects, "Service")
    labels = service["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    ports = {port["name"] for port in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
    # The alerts select job="seguard": the job is the Service's value of jobLabel.
    assert labels[monitor["spec"]["jobLabel"]] == "seguard"
    [rule] = by_kind(objects, "PrometheusRule")
    assert rule["spec"] == rule_groups()
    [dashboard] = [c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == "seguard-dashboard"]  # fmt: skip
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["seguard.json"])["uid"] == "seguard"


def test_the_alerts_fire_and_stay_quiet_as_their_unit_tests_say(tmp_path: Path) -> None:
    tool = promtool()
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_groups()))
    shutil.copy(ROOT / "tests" / "monitoring" / "alerts_test.yaml", tmp_path)
    for command in (
        ["check", "rules", str(tmp_path / "rules.yaml")],
        ["test", "rules", str(tmp_path / "alerts_test.yaml")],
    ):
        ran = subprocess.run([tool, *command], capture_output=True, text=True, check=False)
        assert ran.returncode == 0, ran.stdout + ran.stderr
    # Every alert has a case where it fires and one where it does not.
    cases = yaml.safe_load((ROOT / "tests" / "monitoring" / "alerts_test.yaml").read_text())
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in cases["tests"]:
        for check in case["alert_rule_test"]:
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    alerts = {rule["alert"] for group in rule_groups()["groups"] for rule in group["rules"]}
    assert fired == alerts and quiet == alerts


SERIES = re.compile(r"\b((?:seguard|process|python)_[a-z_]+|up)\b")


def named_series(expr: str) -> set[str]:
    """The series a PromQL expression reads, a histogram's by its family name."""
    return {re.sub(r"_(bucket|sum|count)$", "", name) for name in SERIES.findall(expr)}


def test_the_alerts_and_the_dashboard_name_only_series_the_server_serves(
    scrape: str,  # noqa: F811 - the fixture imported above
) -> None:
    served = {"up"}  # made by Prometheus itself for every target
    for family in text_string_to_metric_families(scrape):
        served.add(family.name + ("_total" if family.type == "counter" else ""))
    exprs = [rule["expr"] for group in rule_groups()["groups"] for rule in group["rules"]]
    dashboard = json.loads((COMPONENT / "dashboard.json").read_text())
    exprs += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    named = set().union(*(named_series(expr) for expr in exprs))
    assert named - served == set()
    # The dashboard shows each kind of trouble the alerts watch.
    assert len(named) >= 25

"""deploy/prometheus: the alert rules are a valid rule file that uses only exported metrics,
each alert says how bad it is and what to do, the PrometheusRule copy matches, and the compose
Prometheus scrapes both processes and loads the rules. With promtool on PATH the rules, the
config and the alert scenarios in promtool_alerts_test.yml are checked by Prometheus itself."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.promql import balanced, exported_metric_names, metric_names

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
PROMETHEUS_RULE = REPO / "deploy" / "k8s" / "components" / "monitoring" / "prometheusrule.yaml"
SCENARIOS = Path(__file__).with_name("promtool_alerts_test.yml")
DURATION = re.compile(r"^(\d+[smhdwy])+$")


@pytest.fixture(scope="module")
def rule_file() -> dict[str, Any]:
    return dict(yaml.safe_load(ALERTS.read_text(encoding="utf-8")))


def _rules(rule_file: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in rule_file["groups"] for rule in group["rules"]]


def _alerts(rule_file: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for r in _rules(rule_file) if "alert" in r}


def test_the_rule_file_has_the_prometheus_structure(rule_file: dict[str, Any]) -> None:
    assert set(rule_file) == {"groups"}
    names = [g["name"] for g in rule_file["groups"]]
    assert len(names) == len(set(names))
    for group in rule_file["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        for rule in group["rules"]:
            assert ("alert" in rule) != ("record" in rule), rule
            allowed = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
            assert set(rule) <= (allowed if "alert" in rule else {"record", "expr", "labels"})
            assert isinstance(rule["expr"], str)
            if "for" in rule:
                assert DURATION.match(rule["for"]), rule["for"]


def test_alert_names_are_unique(rule_file: dict[str, Any]) -> None:
    names = [r["alert"] for r in _rules(rule_file) if "alert" in r]
    assert len(names) == len(set(names))


def test_every_expression_is_balanced_and_uses_only_exported_metrics(
    rule_file: dict[str, Any],
) -> None:
    exported = exported_metric_names()
    for rule in _rules(rule_file):
        expr = rule["expr"]
        assert balanced(expr), rule.get("alert")
        names = metric_names(expr)
        assert names, rule.get("alert")
        assert names <= exported, (rule.get("alert"), names - exported)


def test_every_alert_has_a_severity_a_summary_a_description_and_a_runbook_hint(
    rule_file: dict[str, Any],
) -> None:
    for name, alert in _alerts(rule_file).items():
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}, name
        for key in ("summary", "description", "runbook"):
            assert alert["annotations"][key].strip(), (name, key)


def test_the_alerts_the_design_asks_for_exist(rule_file: dict[str, Any]) -> None:
    alerts = _alerts(rule_file)
    expected = {
        "CalendlyBrevoEventLagHigh": "calendly_brevo_event_lag_seconds_bucket",
        "CalendlyBrevoDeadLettersGrowing": "calendly_brevo_dead_lettered_total",
        "CalendlyBrevoBrevoUnauthorized": 'status="401"',
        "CalendlyBrevoWebhookSubscriptionDisabled": "calendly_brevo_webhook_subscription_active",
        "CalendlyBrevoWebhookSignaturesRejected": "bad_signature",
        "CalendlyBrevoNoEventsApplied": "absent(calendly_brevo_last_event_applied_timestamp",
        "CalendlyBrevoQueueDepthHigh": "calendly_brevo_queue_depth",
        "CalendlyBrevoWorkerDown": 'up{job="calendly-brevo-worker"}',
        "CalendlyBrevoDeadWorkerMessagesStuck": "calendly_brevo_stale_worker_messages",
    }
    for name, fragment in expected.items():
        assert fragment in alerts[name]["expr"], name
    assert alerts["CalendlyBrevoEventLagHigh"]["for"] == "10m"


def test_the_prometheus_rule_for_kubernetes_matches_alerts_yml(rule_file: dict[str, Any]) -> None:
    generated = yaml.safe_load(PROMETHEUS_RULE.read_text(encoding="utf-8"))
    assert generated["spec"] == rule_file, (
        "regenerate: python deploy/prometheus/to_prometheusrule.py"
    )


def test_compose_prometheus_scrapes_both_processes_and_loads_the_rules() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    # The receiver's admin port: compose's ADMIN_PORT; /metrics is not on the public 8080.
    compose = yaml.safe_load((PROMETHEUS.parents[1] / "docker-compose.yml").read_text())
    admin_port = compose["x-app"]["environment"]["ADMIN_PORT"]
    assert jobs["calendly-brevo-receiver"] == [f"receiver:{admin_port}"] != ["receiver:8080"]
    assert jobs["calendly-brevo-worker"] == ["worker:9191"]


# --- with promtool --------------------------------------------------------------------------------
promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not on PATH")


def _promtool(*args: str) -> None:
    result = subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@promtool
def test_promtool_accepts_the_rules_and_the_compose_config() -> None:
    _promtool("check", "rules", str(ALERTS))
    _promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))


@promtool
def test_the_alerts_fire_in_the_promtool_scenarios_and_only_there(
    rule_file: dict[str, Any], tmp_path: Path
) -> None:
    stripped = {
        "groups": [
            {**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]}
            for g in rule_file["groups"]
        ]
    }
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(stripped))
    scenarios = yaml.safe_load(SCENARIOS.read_text(encoding="utf-8"))
    (tmp_path / "test.yml").write_text(yaml.safe_dump({"rule_files": ["alerts.yml"], **scenarios}))
    _promtool("test", "rules", str(tmp_path / "test.yml"))

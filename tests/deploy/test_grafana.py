"""deploy/grafana: the dashboard loads, is well formed, and queries only metrics the app exports;
the compose provisioning points at it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.promql import balanced, exported_metric_names, metric_names

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARD = GRAFANA / "calendly-brevo.json"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text(encoding="utf-8")))


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def test_the_dashboard_is_recent_and_uses_a_datasource_variable(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["uid"] == "calendly-brevo"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def test_panel_ids_are_unique(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(ids) == len(set(ids))


def test_every_panel_has_a_datasource_targets_and_a_place(dashboard: dict[str, Any]) -> None:
    for panel in _panels(dashboard):
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, (panel["title"], cells.get((x, y)))
                cells[(x, y)] = panel["title"]


def test_every_query_uses_only_metrics_the_app_exports(dashboard: dict[str, Any]) -> None:
    exported = exported_metric_names()
    for title, expr in _queries(dashboard):
        assert balanced(expr), (title, expr)
        names = metric_names(expr)
        assert names, (title, expr)
        assert names <= exported, (title, names - exported)


def test_quantiles_come_from_histogram_buckets_summed_by_le(dashboard: dict[str, Any]) -> None:
    for title, expr in _queries(dashboard):
        if "histogram_quantile" in expr:
            assert "_bucket" in expr and "by (le" in expr, title


def test_the_dashboard_shows_what_the_runbook_needs(dashboard: dict[str, Any]) -> None:
    used = {n for _, expr in _queries(dashboard) for n in metric_names(expr)}
    assert {
        "calendly_brevo_webhooks_received_total",
        "calendly_brevo_events_processed_total",
        "calendly_brevo_event_lag_seconds_bucket",
        "calendly_brevo_webhook_receive_seconds_bucket",
        "calendly_brevo_dead_lettered_total",
        "calendly_brevo_dead_letters",
        "calendly_brevo_brevo_requests_total",
        "calendly_brevo_brevo_ratelimit_remaining",
        "calendly_brevo_brevo_ratelimit_limit",
        "calendly_brevo_brevo_429_total",
        "calendly_brevo_ratelimit_wait_seconds_bucket",
        "calendly_brevo_queue_depth",
        "calendly_brevo_stale_worker_messages",
        "calendly_brevo_brevo_batch_items_bucket",
        "calendly_brevo_brevo_batches_total",
        "calendly_brevo_brevo_batch_items_in_doubt_total",
        "up",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    } <= used


def test_compose_provisioning_loads_the_dashboard_from_prometheus() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/calendly-brevo.yml").read_text())
    (provider,) = providers["providers"]
    compose = yaml.safe_load((GRAFANA.parents[1] / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    target = f"{provider['options']['path']}/calendly-brevo.json"
    assert f"./deploy/grafana/calendly-brevo.json:{target}:ro" in mounts


def test_the_overview_says_when_the_connector_runs_dry_and_which_version_runs(
    dashboard: dict[str, Any],
) -> None:
    panels = {p["title"]: p for p in dashboard["panels"]}
    dry = panels["Dry run"]
    assert "calendly_brevo_dry_run" in dry["targets"][0]["expr"]
    (mapping,) = dry["fieldConfig"]["defaults"]["mappings"]
    assert mapping["options"]["1"]["color"] == "red"
    assert "calendly_brevo_build_info" in panels["Version"]["targets"][0]["expr"]

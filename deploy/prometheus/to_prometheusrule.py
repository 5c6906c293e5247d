"""Write deploy/prometheus/alerts.yml as the Prometheus Operator's PrometheusRule.

alerts.yml is the one source of the alert rules (docker compose loads it directly); the
PrometheusRule in deploy/k8s/components/monitoring/ is generated from it:

    python deploy/prometheus/to_prometheusrule.py

tests/deploy/test_prometheus_rules.py fails while the two disagree.
"""

from __future__ import annotations

from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "alerts.yml"
TARGET = HERE.parent / "k8s" / "components" / "monitoring" / "prometheusrule.yaml"
HEADER = (
    "# GENERATED from deploy/prometheus/alerts.yml, the one source of the alert rules: edit that\n"
    "# file, then run `python deploy/prometheus/to_prometheusrule.py`\n"
    "# (tests/deploy/test_prometheus_rules.py fails while the two disagree).\n"
)


def prometheus_rule(rules: dict[str, object]) -> dict[str, object]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "calendly-brevo",
            "labels": {"app.kubernetes.io/name": "calendly-brevo"},
        },
        "spec": rules,
    }


def main() -> None:
    rules = yaml.safe_load(SOURCE.read_text(encoding="utf-8"))
    text = yaml.safe_dump(prometheus_rule(rules), sort_keys=False, width=100, allow_unicode=True)
    TARGET.write_text(HEADER + text, encoding="utf-8")


if __name__ == "__main__":
    main()

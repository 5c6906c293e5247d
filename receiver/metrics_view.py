"""Render the Prometheus registry, aggregating worker processes in multiprocess mode."""

from __future__ import annotations

import os

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from calendly_brevo.metrics import PROCESS_FACTS


def render_metrics() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        registry.register(PROCESS_FACTS)
        return generate_latest(registry)
    return generate_latest(REGISTRY)

"""Metric names: what the app exports, and what a PromQL expression uses.

Not a PromQL parser: the expression check is lexical (strings, label matchers, ranges and label
lists removed, then every identifier that is not a function, keyword or number is a metric
name). Good enough to catch a renamed metric or a typo; ``promtool`` checks the grammar where
it is installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

from prometheus_client import REGISTRY

#: Sample-name suffixes a metric family of each type exposes.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "unknown": ("",),
}
#: Prometheus' own per-target series.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$\w+")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_TOKEN = re.compile(r"(?P<num>\d[\w.]*)|(?P<ident>[A-Za-z_:][\w:]*)(?P<call>\s*\()?")


def exported_metric_names() -> set[str]:
    """Sample names the connector exports, from prometheus-client's registry after importing
    ``calendly_brevo.metrics``, plus Dramatiq's Prometheus middleware and Prometheus' own."""
    metrics = importlib.import_module("calendly_brevo.metrics")
    names = set(PROMETHEUS_SERIES) | dramatiq_metric_names()
    # calendly_brevo_dry_run is absent until the settings are known: take it from describe().
    names |= {family.name for family in metrics.PROCESS_FACTS.describe()}
    for family in REGISTRY.collect():
        names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
        names |= {sample.name for sample in family.samples}
    return names


def dramatiq_metric_names() -> set[str]:
    """The names in Dramatiq's Prometheus middleware (read from its source: importing it needs
    a multiprocess directory), with the sample suffixes of their types."""
    spec = importlib.util.find_spec("dramatiq.middleware.prometheus")
    assert spec is not None and spec.origin is not None
    source = Path(spec.origin).read_text(encoding="utf-8")
    names: set[str] = set()
    for kind, name in re.findall(r"prom\.(Counter|Gauge|Histogram)\(\s*\"(dramatiq_\w+)\"", source):
        family = name.removesuffix("_total") if kind == "Counter" else name
        names |= {family + s for s in SUFFIXES[kind.lower()]}
    assert names, "no metric found in Dramatiq's Prometheus middleware"
    return names


def strip_strings(expr: str) -> str:
    return _STRING.sub('""', expr)


def balanced(expr: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for char in strip_strings(expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects."""
    text = _GRAFANA_VAR.sub("1m", strip_strings(expr))
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    names = set()
    for m in _TOKEN.finditer(text):
        ident = m.group("ident")
        if ident and not m.group("call") and ident.lower() not in KEYWORDS:
            names.add(ident)
    return names

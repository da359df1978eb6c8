"""The PromQL of every panel of dashboards/*.json, as Grafana would send it, and what counts as data.
Used by test_prometheus.py (a Prometheus scraping the application) and test_pipeline.py (Prometheus 3
behind the real Collector, and taking OTLP straight from the application)."""

from __future__ import annotations

import json
import math
from typing import Any, Dict, Iterator, List, Optional, Tuple

import yaml

from backend_support import ROOT

DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
# What Grafana substitutes before querying. The tests scrape every second, so 20 s windows hold
# enough samples for rate(); "All" on a multi-value variable is the regex .* (allValue).
SUBSTITUTIONS = {"$__rate_interval": "20s", "$__interval": "5s", "$__range": "5m", "$provider": ".*", "$model": ".*", "$job": ".*"}

# Panels whose healthy value is 0 (nothing leaked, no steer bug): a finite 0 is their data. Every other
# expression must show the workload itself: a finite value above 0 (a rate of 0 only shows a counter).
ZERO_IS_DATA = ("Open streams", "steer's own errors", "Stalled streams")

# Panels drawn from the Collector's span metrics: data only where spans went through a Collector.
SPAN_METRICS = "traces_spanmetrics_"


def panels(dashboard: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows keep their panels inside


def expressions(exemplars_only: bool = False) -> List[Tuple[str, str]]:
    """(label, PromQL) of every panel target; ``exemplars_only``: the targets that show exemplars."""
    found = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in panels(board):
            for target in panel.get("targets", []):
                if target.get("expr") and (target.get("exemplar") or not exemplars_only):
                    found.append((f"{path.stem}: {panel['title']} [{target['refId']}]", target["expr"]))
    return found


def latency_panels() -> List[Tuple[str, Dict[str, Any]]]:
    """(dashboard, panel) of every panel drawing a latency histogram (a ``_seconds_bucket``)."""
    return [(path.stem, panel) for path in DASHBOARDS for panel in panels(json.loads(path.read_text()))
            if any("_seconds_bucket" in t.get("expr", "") for t in panel.get("targets", []))]


def exemplar_trace_id_label() -> str:
    """The exemplar label Grafana's provisioned Prometheus data source opens in the Jaeger data source."""
    sources = yaml.safe_load((ROOT / "collector-config/grafana/provisioning/datasources/datasources.yml").read_text())["datasources"]
    jaeger = next(s["uid"] for s in sources if s["type"] == "jaeger")
    prometheus = next(s for s in sources if s["type"] == "prometheus")
    (label,) = [d["name"] for d in prometheus["jsonData"]["exemplarTraceIdDestinations"] if d["datasourceUid"] == jaeger]
    return str(label)


def substitute(expr: str, overrides: Optional[Dict[str, str]] = None) -> str:
    values = {**SUBSTITUTIONS, **(overrides or {})}
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(name, values[name])
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def has_data(label: str, result: List[Dict[str, Any]]) -> bool:
    values = [float(sample["value"][1]) for sample in result]
    if any(title in label for title in ZERO_IS_DATA):
        return any(math.isfinite(v) for v in values)
    return any(math.isfinite(v) and v > 0 for v in values)

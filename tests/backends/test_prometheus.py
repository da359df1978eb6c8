"""The Grafana dashboards against a real Prometheus (Debian ``prometheus``) scraping a process that runs
the demo workload through steer: every PromQL expression of every panel and every template variable
returns data, so the dashboards use the names as they arrive (translated by the Prometheus exporter:
dots to underscores, ``_seconds``, ``_bucket``/``_sum``/``_count``, ``_total``)."""

from __future__ import annotations

import json
import re
import time
from typing import Any, Dict

import pytest

from backend_support import ARTIFACTS, ROOT, Prometheus, prometheus  # noqa: F401 - the session fixture
from dashboard_queries import DASHBOARDS, SPAN_METRICS, expressions, has_data, latency_panels, panels, substitute
from steer.telemetry import semconv as sc

pytestmark = pytest.mark.backend


def test_dashboards_exist_and_are_provisionable() -> None:
    assert len(DASHBOARDS) >= 2
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        assert board["uid"] and board["title"].startswith("steer")
        for panel in panels(board):
            if panel["type"] != "row":
                assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
                assert panel["targets"], panel["title"]


def test_every_selector_keeps_to_steers_scope_and_the_service_variable() -> None:
    """Another GenAI instrumentation exports the same gen_ai_client_* names: every selector of steer's
    metrics filters on steer's instrumentation scope, every span-metrics selector on steer's spans, and
    all of them on the $job (service) variable."""
    for label, expr in expressions():
        for name, selector in re.findall(r"\b((?:gen_ai|steer|traces_spanmetrics)_[a-z_]+)\{([^}]*)\}", expr):
            if name.startswith("traces_spanmetrics"):
                assert 'span_instrumentation_scope_name="steer"' in selector and 'service_name=~"$job"' in selector, (label, name)
            else:
                assert 'otel_scope_name="steer"' in selector and 'job=~"$job"' in selector, (label, name)
        assert not re.search(r"\b(?:gen_ai|steer|traces_spanmetrics)_[a-z_]+\[", expr), f"{label}: a selector without labels"


def test_latency_panels_show_exemplars_and_link_to_the_services_traces_in_jaeger() -> None:
    """Each latency panel (steer's time to first chunk, gaps, duration; the span metrics' duration) shows
    exemplars on every query and links to the selected service's traces in Jaeger (${jaeger_url}, a
    variable of every dashboard). That the exemplars arrive and open the calls' spans in Jaeger, and
    that the link's search finds the service's traces, test_pipeline.py proves on the real backends."""
    found = latency_panels()
    titles = {panel["title"] for _, panel in found}
    for wanted in ("Time to first chunk", "Gap between chunks", "Duration", "span metrics"):
        assert any(wanted in title for title in titles), (wanted, titles)
    for board, panel in found:
        assert all(t.get("exemplar") is True for t in panel["targets"]), (board, panel["title"])
        urls = [link["url"] for link in panel.get("links", [])]
        assert any(u.startswith("${jaeger_url}/search?") and "service=${job}" in u for u in urls), (board, panel["title"], urls)
    for path in DASHBOARDS:
        names = {v["name"] for v in json.loads(path.read_text())["templating"]["list"]}
        assert {"job", "jaeger_url"} <= names, (path.stem, names)


def test_every_panel_expression_returns_data(prometheus: Prometheus) -> None:
    # The application's own metrics only: span metrics exist where spans went through a Collector
    # (test_pipeline.py queries those).
    pending = {label: substitute(expr) for label, expr in expressions() if SPAN_METRICS not in expr}
    assert len(pending) >= 20
    answers: Dict[str, Any] = {}
    deadline = time.monotonic() + 120  # rate() windows fill within a few scrapes of the first calls
    while pending and time.monotonic() < deadline:
        for label, expr in list(pending.items()):
            result = prometheus.query(expr)
            answers[label] = {"expr": expr, "result": result}
            if has_data(label, result):
                del pending[label]
        if pending:
            time.sleep(1)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "prometheus-dashboard-queries.json").write_text(json.dumps(answers, indent=2))
    assert not pending, "expressions without data:\n" + "\n".join(f"{k}: {v}" for k, v in pending.items()) + \
        "\nworkload log tail:\n" + prometheus.workload_log.read_text(errors="replace")[-2000:]


def test_template_variables_have_values(prometheus: Prometheus) -> None:
    for path in DASHBOARDS:
        for variable in json.loads(path.read_text())["templating"]["list"]:
            if variable["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["definition"])
            assert match, variable["definition"]
            values = prometheus.label_values(match.group(2), substitute(match.group(1)))
            assert values, f"{path.stem}: ${variable['name']} has no values"
    # Every provider of the workload shows up under the $provider variable (polling: a pass takes a while).
    wanted, deadline, providers = {"openai", "anthropic", "gcp.gemini"}, time.monotonic() + 90, set()
    while time.monotonic() < deadline and not wanted <= providers:
        providers = set(prometheus.label_values("gen_ai_provider_name", "gen_ai_client_operation_duration_seconds_count"))
        time.sleep(1)
    assert wanted <= providers


def prometheus_names() -> Dict[str, str]:
    """steer's metric names as the OpenTelemetry Prometheus exporter renders them (docs/telemetry.md)."""
    histograms = {
        sc.METRIC_OPERATION_DURATION: "_seconds", sc.METRIC_TIME_TO_FIRST_CHUNK: "_seconds",
        sc.METRIC_TIME_PER_OUTPUT_CHUNK: "_seconds", sc.METRIC_TOKEN_USAGE: "", sc.METRIC_STREAM_CHUNKS: "",
        sc.METRIC_TOKEN_USAGE_ESTIMATED: "", sc.METRIC_USAGE_CONFIDENCE: "",
    }
    names = {m: m.replace(".", "_") + suffix + "_count" for m, suffix in histograms.items()}
    names[sc.METRIC_STREAMS_ACTIVE] = sc.METRIC_STREAMS_ACTIVE.replace(".", "_")
    names[sc.METRIC_JSON_OUTPUTS] = sc.METRIC_JSON_OUTPUTS.replace(".", "_") + "_total"
    names[sc.METRIC_JSON_DUPLICATES_DROPPED] = sc.METRIC_JSON_DUPLICATES_DROPPED.replace(".", "_") + "_total"
    names[sc.METRIC_RETRIES] = sc.METRIC_RETRIES.replace(".", "_") + "_total"
    names[sc.METRIC_STREAMS_STALLED] = sc.METRIC_STREAMS_STALLED.replace(".", "_")
    names[sc.METRIC_COST] = sc.METRIC_COST.replace(".", "_") + "_USD_total"  # unit USD: kept as a suffix
    return names


def test_metric_names_arrive_translated(prometheus: Prometheus) -> None:
    missing = {otel: prom for otel, prom in prometheus_names().items() if not prometheus.query(prom)}
    assert not missing, f"not in Prometheus under the documented name: {missing}"
    docs = (ROOT / "docs" / "telemetry.md").read_text()
    for prom in prometheus_names().values():
        assert prom.rsplit("_count", 1)[0] in docs, f"docs/telemetry.md does not give the Prometheus name {prom}"


def latest_convention_names() -> set:
    """The Prometheus names of the metrics steer records instead under
    OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental (the dashboards query both with `or`)."""
    seconds = (sc.METRIC_INFERENCE_DURATION, sc.METRIC_INFERENCE_TIME_TO_FIRST_CHUNK, sc.METRIC_INFERENCE_TIME_PER_OUTPUT_CHUNK)
    others = {v for k, v in vars(sc).items() if k.startswith("METRIC_INFERENCE_") and v not in seconds}
    return {m.replace(".", "_") + "_seconds" for m in seconds} | {m.replace(".", "_") for m in others}


def test_expressions_name_only_metrics_steer_exports() -> None:
    known = {n.rsplit("_count", 1)[0] for n in prometheus_names().values()} | {"steer_internal_errors"} | latest_convention_names()
    for label, expr in expressions():
        for name in re.findall(r"\b((?:gen_ai|steer)_client_[A-Za-z_]+|steer_internal_errors)", expr):
            base = re.sub(r"_(bucket|sum|count|total)$", "", name)
            assert base in known or name in known, f"{label}: unknown metric {name}"

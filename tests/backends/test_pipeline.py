"""steer's workload through the real pipeline: OTLP -> the Collector running collector-config/
otel-collector.yaml (tail sampling, span metrics) -> Jaeger v2 (read back through its query API) and Prometheus 3 (the Collector's Prometheus exporter
scraped, and steer's OTLP metrics straight into Prometheus 3's OTLP receiver).
Binaries: ``make backends``. Fixture and processes: real_pipeline.py."""

from __future__ import annotations

import json
import time
from typing import Any, Dict, List, Tuple

import pytest

from backend_support import ARTIFACTS
from dashboard_queries import SPAN_METRICS, exemplar_trace_id_label, expressions, has_data, latency_panels, substitute
from real_pipeline import DIRECT, LATEST, OTHER_CALLS, PASSES, VIA_COLLECTOR, Pipeline, get_json, pipeline, span_tags, spans_of, wait_for  # noqa: F401 - fixture

# One pipeline per run: `make test-backends` distributes by file (the group mark does not group under
# pytest 9.2 with pytest-xdist 3.8: pytest-xdist issue 1386).
pytestmark = [pytest.mark.backend, pytest.mark.xdist_group("real-pipeline")]

SERVICES = (VIA_COLLECTOR, DIRECT, LATEST)
TRACES_SAMPLED = "otelcol_processor_tail_sampling_global_count_traces_sampled"
POLICY = "otelcol_processor_tail_sampling_count_traces_sampled"


def test_jaeger_shows_one_span_per_kept_call_with_the_gen_ai_attributes(pipeline: Pipeline) -> None:
    jaeger = pipeline.jaeger
    wait_for(lambda: set(SERVICES) <= set(jaeger.services()), "both services in Jaeger")
    for service in SERVICES:
        operations = set(jaeger.operations(service))
        assert {"chat gpt-4o", "chat gpt-4o-mini"} <= operations, operations
        traces = jaeger.traces(service)
        assert traces
        for trace in traces:
            assert len(trace["spans"]) == 1, "steer makes one span per call, its own trace here"
            tags = span_tags(trace["spans"][0])
            assert tags["span.kind"] == "client"
            for key in ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model"):
                assert tags.get(key), (key, tags)
            process = trace["processes"][trace["spans"][0]["processID"]]
            assert process["serviceName"] == service


def test_jaeger_holds_exactly_the_kept_traces(pipeline: Pipeline) -> None:
    gateway, jaeger = pipeline.collector, pipeline.jaeger
    total = sum(pipeline.calls(s) for s in SERVICES)
    wait_for(lambda: gateway.self_metric(TRACES_SAMPLED) >= total, "a sampling decision for every trace")
    sampled = gateway.self_metric(TRACES_SAMPLED, sampled="true")  # one span per trace here
    # What the Collector sent to Jaeger is exactly what it kept, and Jaeger holds exactly that (no sleep:
    # the exporter's count is final once it reached the kept count, and Jaeger's is compared with it).
    exported = lambda: gateway.self_metric("otelcol_exporter_sent_spans", exporter="otlp/jaeger")  # noqa: E731
    wait_for(lambda: exported() >= sampled, "the kept spans exported to Jaeger")
    assert exported() == sampled
    wait_for(lambda: sum(len(spans_of(jaeger.traces(s))) for s in SERVICES) >= sampled, "kept spans in Jaeger")
    assert sum(len(spans_of(jaeger.traces(s))) for s in SERVICES) == sampled
    assert gateway.self_metric("otelcol_exporter_send_failed_spans", exporter="otlp/jaeger") == 0


def test_tail_sampling_decides_every_trace_once_and_keeps_the_failed_and_cancelled_calls(pipeline: Pipeline) -> None:
    gateway = pipeline.collector
    total = sum(pipeline.calls(s) for s in SERVICES)
    # Every call is one trace; each gets its decision decision_wait (2 s) after its span arrived.
    wait_for(lambda: gateway.self_metric(TRACES_SAMPLED) >= total, "a sampling decision for every trace")
    sampled = gateway.self_metric(TRACES_SAMPLED, sampled="true")
    dropped = gateway.self_metric(TRACES_SAMPLED, sampled="false")
    assert sampled + dropped == total, (sampled, dropped, total)
    # The workload's faults (HTTP 500 and 529, 429, an in-stream error, JSON cut short) are kept on
    # every pass of every service; its healthy calls (most of them) are dropped (no random baseline).
    errors = gateway.self_metric(POLICY, policy="errors", sampled="true")
    assert errors >= 4 * PASSES * len(SERVICES), errors
    assert errors <= sampled < total / 2 < dropped, (errors, sampled, dropped)
    # The stalled call its caller's timeout cancels (once per pass) ends cancelled, not failed: kept by
    # the stream-ending policy, and there in Jaeger with its end.
    assert gateway.self_metric(POLICY, policy="bad-stream-endings", sampled="true") >= PASSES * len(SERVICES)
    for service in SERVICES:
        def cancelled() -> int:
            return sum(span_tags(span).get("steer.stream.end") == "cancelled" for span in spans_of(pipeline.jaeger.traces(service)))
        wait_for(lambda: cancelled() >= PASSES, f"the cancelled calls of {service} in Jaeger")
        assert cancelled() == PASSES, service


def test_collector_self_metrics_account_for_every_span(pipeline: Pipeline) -> None:
    gateway = pipeline.collector
    total = sum(pipeline.calls(s) for s in SERVICES)
    accepted = gateway.self_metric("otelcol_receiver_accepted_spans", receiver="otlp")
    refused = gateway.self_metric("otelcol_receiver_refused_spans", receiver="otlp")
    assert accepted == total and refused == 0, (accepted, refused, total)


def test_span_metrics_count_every_call_before_sampling(pipeline: Pipeline) -> None:
    prom = pipeline.prometheus
    for service in SERVICES:
        expr = f'sum(traces_spanmetrics_calls_total{{service_name="{service}", span_instrumentation_scope_name="steer"}})'
        wait_for(lambda: prom.query(expr) and float(prom.query(expr)[0]["value"][1]) >= pipeline.calls(service), f"span metrics of {service}")
        assert float(prom.query(expr)[0]["value"][1]) == pipeline.calls(service)


@pytest.mark.parametrize("service", SERVICES)
def test_every_dashboard_expression_returns_data(pipeline: Pipeline, service: str) -> None:
    """$job selects the path: VIA_COLLECTOR's metrics came through the Collector's Prometheus exporter,
    DIRECT's through Prometheus 3's OTLP receiver, LATEST's through the Collector under the newest
    conventions' names; all have span metrics (their spans went through the Collector). The rate windows
    cover the whole run: the workloads have finished by now."""
    prom = pipeline.prometheus
    pending = {label: substitute(expr, {"$job": service, "$__rate_interval": "5m"}) for label, expr in expressions()}
    answers: Dict[str, Any] = {}
    deadline = time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        for label, expr in list(pending.items()):
            answers[label] = {"expr": expr, "result": prom.query(expr)}
            if has_data(label, answers[label]["result"]):
                del pending[label]
        if pending:
            time.sleep(1)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"prometheus3-dashboard-queries-{service}.json").write_text(json.dumps(answers, indent=2))
    assert not pending, "expressions without data:\n" + "\n".join(f"{k}: {v}" for k, v in pending.items())
    assert any(SPAN_METRICS in expr for _, expr in expressions()), "a panel from the span metrics"


def test_the_scope_filter_leaves_out_another_instrumentations_metrics(pipeline: Pipeline) -> None:
    """Another GenAI instrumentation in the same service exports gen_ai.client.operation.duration too:
    the dashboards' otel_scope_name="steer" keeps its calls out of steer's counts."""
    prom = pipeline.prometheus

    def count(selector: str) -> float:
        result = prom.query(f"sum(gen_ai_client_operation_duration_seconds_count{{{selector}}})")
        return float(result[0]["value"][1]) if result else 0.0

    everything, steers = f'job="{VIA_COLLECTOR}"', f'job="{VIA_COLLECTOR}", otel_scope_name="steer"'
    wait_for(lambda: count(everything) == pipeline.calls(VIA_COLLECTOR) + OTHER_CALLS, "both instrumentations' calls")
    assert count(steers) == pipeline.calls(VIA_COLLECTOR)


@pytest.mark.parametrize("service", SERVICES)
def test_latency_panels_exemplars_open_the_calls_span_in_jaeger(pipeline: Pipeline, service: str) -> None:
    """Each dashboard target that shows exemplars gets them from Prometheus 3 (Grafana asks
    query_exemplars with the panel's own PromQL), on each path: steer's histograms scraped from the
    Collector's exporter (OpenMetrics), straight into the OTLP receiver, under the newest names, and the
    span metrics. steer records its points on its end-of-call worker with the call's span passed as
    context, so each exemplar is the call's own span. On failed calls' series (error_type set: tail
    sampling keeps every failed call) each must name a trace Jaeger holds, down to the span: what
    Grafana opens in the Jaeger data source (exemplarTraceIdDestinations: trace_id)."""
    prom, jaeger = pipeline.prometheus, pipeline.jaeger
    targets = {label: substitute(expr, {"$job": service, "$__rate_interval": "5m"}) for label, expr in expressions(exemplars_only=True)}
    assert any("Duration" in label for label in targets) and any(SPAN_METRICS in expr for expr in targets.values()), targets
    found: Dict[str, List[Dict[str, Any]]] = {}

    def every_target_has_exemplars() -> bool:  # the workloads exited; the exporter is scraped every second
        for label, expr in targets.items():
            found[label] = found.get(label) or prom.exemplars(expr)
        return all(found.values())

    wait_for(every_target_has_exemplars, "exemplars on every latency panel", detail=lambda: [k for k, v in found.items() if not v])
    trace_label = exemplar_trace_id_label()  # what the provisioned data source opens in Jaeger
    kept = {(series["seriesLabels"]["__name__"], e["labels"].get(trace_label, ""), e["labels"].get("span_id", ""))
            for series_list in found.values() for series in series_list if series["seriesLabels"].get("error_type")
            for e in series["exemplars"]}
    steers = {trace for name, trace, _ in kept if name.startswith("gen_ai_client_")}
    assert len(steers) >= 2 and any(name.startswith(SPAN_METRICS) for name, _, _ in kept), kept
    assert all(len(t) == 32 and len(s) == 16 for _, t, s in kept), kept

    def not_in_jaeger() -> List[Tuple[str, str, str]]:
        traces = {t: jaeger.trace(t) for t in {t for _, t, _ in kept}}
        return sorted((n, t, s) for n, t, s in kept if not traces[t] or s not in {span["spanID"] for span in traces[t]["spans"]})

    # Kept traces reach Jaeger after decision_wait: waiting for it, not sleeping.
    wait_for(lambda: not not_in_jaeger(), "the exemplars' traces and spans in Jaeger", timeout=30, detail=not_in_jaeger)
    # The panels' link to Jaeger: its search (service, lookback, limit) finds the service's traces
    # (asked of the query API the search page uses; the built Jaeger serves no UI).
    for _, panel in latency_panels():
        for link in panel["links"]:
            url = substitute(link["url"].replace("${job}", service).replace("${jaeger_url}/search?", jaeger.url + "/api/traces?"))
            assert url.startswith(jaeger.url + "/api/traces?"), url
            listed = get_json(url)["data"]
            assert listed and all(any(p["serviceName"] == service for p in t["processes"].values()) for t in listed), url

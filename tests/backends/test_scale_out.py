"""The scale-out topology of collector-config/, run for real: four application instances, two agent
Collectors (otel-agent.yaml: the loadbalancing exporter routing by trace id), two gateway Collectors
(otel-collector.yaml: tail sampling, span metrics) and Jaeger v2, where the kept traces are read back.

Every trace has spans from all four instances, leaving through both agents (fanout_app.py). In one
trace of every six, one instance makes the call a policy keeps: a failed call (instance 0), a cancelled
stream (instance 1), usage estimated with low confidence (instance 2); the other traces are healthy.
Routing by trace id is right when each trace is decided exactly once, by one gateway, on all of its
spans: then the number of decisions over both gateways is the number of traces (a split trace would
be decided twice), exactly the traces with a kept call are kept, and each is whole in Jaeger (all
eight spans, from the four instances) while every other trace is absent. No span is lost: the
Collectors' own counts (agents' receivers and exporters, gateways' receivers, samplers and Jaeger
exporters) and Jaeger's agree with what the instances sent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from backend_support import workload_env
from real_pipeline import Collector, Jaeger, Service, binary, span_tags, spans_of, wait_for

pytestmark = pytest.mark.backend

APP = Path(__file__).with_name("fanout_app.py")
INSTANCES, TRACES = 4, 24
TRACES_SAMPLED = "otelcol_processor_tail_sampling_global_count_traces_sampled"
POLICY = "otelcol_processor_tail_sampling_count_traces_sampled"
# fanout_app.py's kept calls -> the policy of collector-config/otel-collector.yaml that keeps each.
POLICIES = {"errors": "errors", "cancelled": "bad-stream-endings", "low-confidence": "low-confidence-usage"}


def total(collectors: List[Collector], metric: str, **labels: str) -> float:
    return sum(c.self_metric(metric, **labels) for c in collectors)


def test_agents_route_each_trace_to_one_gateway_and_jaeger_holds_the_kept_traces_whole(tmp_path: Path) -> None:
    binary("otelcol-steer")
    services: List[Service] = []
    try:
        jaeger = Jaeger(tmp_path)
        services.append(jaeger)
        # decision_wait 10 s: the instances' spans of one trace must all be in before its decision. The
        # instances drift apart over their 24 calls (a shared trace here spans them all, from the first
        # instance's start to the last one's end), and a loaded machine stretches streams, so the latency
        # policies are set out of reach: only the failed calls decide.
        gateways = [Collector(f"gateway-{i}", "otel-collector.yaml", tmp_path,
                              {"OTELCOL_JAEGER_OTLP_ENDPOINT": f"127.0.0.1:{jaeger.grpc}", "OTELCOL_DECISION_WAIT": "10s", "OTELCOL_SLOW_TRACE_MS": "3600000",
                               "OTELCOL_SLOW_FIRST_CHUNK_S": "3600", "OTELCOL_STALL_S": "3600"})
                    for i in range(2)]
        services += gateways
        ring = json.dumps([f"127.0.0.1:{g.grpc}" for g in gateways])
        agents = [Collector(f"agent-{i}", "otel-agent.yaml", tmp_path, {"OTELCOL_GATEWAYS": ring}) for i in range(2)]
        services += agents

        apps = []
        for index in range(INSTANCES):
            agent = agents[index % len(agents)]
            env = workload_env(OTEL_SERVICE_NAME=f"fanout-{index}", OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{agent.http}",
                               OTEL_METRICS_EXPORTER="none")
            apps.append(subprocess.Popen([sys.executable, str(APP), "--index", str(index), "--traces", str(TRACES),
                                          "--seed", tmp_path.name], env=env,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for app in apps:
            assert app.stdout.readline().strip() == "ready"
        for app in apps:  # all at once
            app.stdin.write("go\n")
            app.stdin.flush()
        reports: List[Dict[str, Any]] = []
        for app in apps:
            out, err = app.communicate(timeout=600)
            assert app.returncode == 0, err[-3000:]
            reports.append(json.loads(out.strip().splitlines()[-1]))

        sent = sum(r["spans"] for r in reports)
        traces = set(reports[0]["traces"])
        assert all(set(r["traces"]) == traces for r in reports) and len(traces) == TRACES
        kept_by = {reason: set(ids) for r in reports for reason, ids in r["kept"].items()}
        assert set(kept_by) == set(POLICIES) and all(len(ids) == TRACES // 6 for ids in kept_by.values()), kept_by
        kept = set().union(*kept_by.values())
        assert len(kept) == TRACES // 2

        # Agents: everything in, everything out to the gateways.
        wait_for(lambda: total(agents, "otelcol_exporter_sent_spans", exporter="load_balancing/traces") >= sent, "agents forwarding")
        assert total(agents, "otelcol_receiver_accepted_spans", receiver="otlp") == sent
        assert total(agents, "otelcol_exporter_send_failed_spans", exporter="load_balancing/traces") == 0
        # Gateways: together they got every span, each got a share.
        shares = [g.self_metric("otelcol_receiver_accepted_spans", receiver="otlp") for g in gateways]
        assert sum(shares) == sent and all(shares), shares
        # Each trace decided exactly once over both gateways: no trace was split between them.
        wait_for(lambda: total(gateways, TRACES_SAMPLED) >= TRACES, "a decision for every trace")
        assert total(gateways, TRACES_SAMPLED, sampled="true") == len(kept)
        assert total(gateways, TRACES_SAMPLED, sampled="false") == TRACES - len(kept)
        for reason, policy in POLICIES.items():  # each kind of kept call is matched by its own policy
            assert total(gateways, POLICY, policy=policy, sampled="true") >= len(kept_by[reason]), policy

        # Jaeger: every kept trace whole (two spans from each instance), every other trace absent, and
        # as many spans as the gateways exported: none lost between them.
        per_trace = 2 * INSTANCES
        wait_for(lambda: total(gateways, "otelcol_exporter_sent_spans", exporter="otlp/jaeger") >= len(kept) * per_trace, "kept spans exported")
        assert total(gateways, "otelcol_exporter_send_failed_spans", exporter="otlp/jaeger") == 0
        assert total(gateways, "otelcol_exporter_sent_spans", exporter="otlp/jaeger") == len(kept) * per_trace

        def incomplete() -> Dict[str, int]:
            found = {t: jaeger.trace(t) for t in kept}
            return {t: len(found[t]["spans"]) if found[t] else 0 for t in kept if not found[t] or len(found[t]["spans"]) < per_trace}

        wait_for(lambda: not incomplete(), "every kept trace whole in Jaeger", timeout=30, detail=incomplete)
        for trace_id in kept:
            held = jaeger.trace(trace_id)
            assert held is not None and len(held["spans"]) == per_trace, trace_id
            services_seen = sorted(held["processes"][span["processID"]]["serviceName"] for span in held["spans"])
            assert services_seen == sorted(f"fanout-{i}" for i in range(INSTANCES) for _ in range(2)), services_seen
            assert sum("gen_ai.operation.name" in span_tags(span) for span in held["spans"]) == INSTANCES
        assert [t for t in traces - kept if jaeger.trace(t)] == [], "healthy traces in Jaeger: tail sampling should drop them"
        # Searching by each service finds exactly the kept traces, whole: nothing else arrived, nothing lost.
        assert sorted(jaeger.services()) == [f"fanout-{i}" for i in range(INSTANCES)]
        for service in jaeger.services():
            listed = jaeger.traces(service)
            assert {t["traceID"]: len(t["spans"]) for t in listed} == {t: per_trace for t in kept}, service
            assert len(spans_of(listed)) == total(gateways, "otelcol_exporter_sent_spans", exporter="otlp/jaeger")

    finally:
        for service in reversed(services):
            service.stop()

"""The scale-out topology of collector-config/, run for real: four application instances, two agent
Collectors (otel-agent.yaml: the loadbalancing exporter routing by trace id) and two gateway
Collectors (otel-collector.yaml: tail sampling, span metrics).

Every trace has spans from all four instances, leaving through both agents (fanout_app.py). Instance 0
fails its call in every 4th trace. Routing by trace id is right when each trace is decided exactly
once, by one gateway, on all of its spans: then the number of decisions over both gateways is the
number of traces (a split trace would be decided twice) and exactly the failed traces are kept. No span
is lost: the counts of the Collectors' own metrics (agents' receivers and exporters, gateways'
receivers and samplers) agree with what the instances sent."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

from backend_support import workload_env
from real_pipeline import Collector, Service, binary
from steer.tools.phoenix import free_port

pytestmark = pytest.mark.backend

APP = Path(__file__).with_name("fanout_app.py")
INSTANCES, TRACES, FAIL_EVERY = 4, 24, 4
TRACES_SAMPLED = "otelcol_processor_tail_sampling_global_count_traces_sampled"


def wait_for(predicate: Any, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def total(collectors: List[Collector], metric: str, **labels: str) -> float:
    return sum(c.self_metric(metric, **labels) for c in collectors)


def test_agents_route_each_trace_to_one_gateway_and_lose_no_span(tmp_path: Path) -> None:
    binary("otelcol-steer")
    services: List[Service] = []
    try:
        # The gateways' kept traces go to a port nothing listens on: what they keep is counted by their
        # tail-sampling processors, before export.
        nowhere = f"127.0.0.1:{free_port()}"
        # decision_wait 10 s: the instances' spans of one trace must all be in before its decision. The
        # instances drift apart over their 24 calls (a shared trace here spans them all, from the first
        # instance's start to the last one's end), and a loaded machine stretches streams, so the latency
        # policies are set out of reach: only the failed calls decide.
        gateways = [Collector(f"gateway-{i}", "otel-collector.yaml", tmp_path,
                              {"OTELCOL_JAEGER_OTLP_ENDPOINT": nowhere, "OTELCOL_DECISION_WAIT": "10s", "OTELCOL_SLOW_TRACE_MS": "3600000",
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
                                          "--seed", tmp_path.name, "--fail-every", str(FAIL_EVERY)], env=env,
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
        kept = set(reports[0]["failed_traces"])
        assert all(set(r["traces"]) == traces for r in reports) and len(traces) == TRACES
        assert len(kept) == TRACES // FAIL_EVERY

        # Agents: everything in, everything out to the gateways.
        wait_for(lambda: total(agents, "otelcol_exporter_sent_spans", exporter="load_balancing/traces") >= sent, "agents forwarding")
        assert total(agents, "otelcol_receiver_accepted_spans", receiver="otlp") == sent
        assert total(agents, "otelcol_exporter_send_failed_spans", exporter="load_balancing/traces") == 0
        # Gateways: together they got every span, each got a share.
        shares = [g.self_metric("otelcol_receiver_accepted_spans", receiver="otlp") for g in gateways]
        assert sum(shares) == sent and all(shares), shares
        # Each trace decided exactly once over both gateways: no trace was split between them.
        wait_for(lambda: total(gateways, TRACES_SAMPLED) >= TRACES, "a decision for every trace")
        time.sleep(1)
        assert total(gateways, TRACES_SAMPLED) == TRACES
        assert total(gateways, TRACES_SAMPLED, sampled="true") == len(kept), {
            p: total(gateways, "otelcol_processor_tail_sampling_count_traces_sampled", policy=p, sampled="true")
            for p in ("errors", "bad-stream-endings", "slow-traces", "slow-first-chunk-or-stall", "low-confidence-usage")}

    finally:
        for service in reversed(services):
            service.stop()

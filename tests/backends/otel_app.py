"""A small application for the export tests, run as its own process (global OpenTelemetry state is
per process): real openai SDK streams against the loopback devserver, ``steer.instrument()`` called
with no providers, so what gets exported is whatever ``steer.otel_setup`` decided from OTEL_*.

    python tests/backends/otel_app.py --streams 3 [--own-providers] [--configure-after] [--wait-go]

Prints one JSON line at the end: what steer configured, what the application's own in-memory
exporter saw (when it configured one), and which threads the OpenTelemetry exporters logged from.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from typing import Any, Dict, List


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: List[Dict[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append({"logger": record.name, "thread": record.threadName, "level": record.levelname})


def _own_providers() -> Any:
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return exporter, reader


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=2)
    parser.add_argument("--own-providers", action="store_true", help="the app configures OTel before steer.instrument()")
    parser.add_argument("--configure-after", action="store_true", help="the app configures OTel after steer.instrument()")
    parser.add_argument("--wait-go", action="store_true", help="after the first stream, print 'ready' and wait for a line on stdin")
    args = parser.parse_args()

    capture = _Capture()
    logging.getLogger("opentelemetry").addHandler(capture)
    logging.getLogger("opentelemetry").setLevel(logging.DEBUG)

    import openai

    import steer
    from steer import otel_setup
    from steer.tools.devserver import DevServer

    own = _own_providers() if args.own_providers else None
    steer.instrument()
    configured = {"describe": dict(otel_setup.describe()), "tracing_configured": otel_setup.tracing_configured(),
                  "metrics_configured": otel_setup.metrics_configured()}
    if args.configure_after:
        own = _own_providers()
    completed = 0
    with DevServer(chunk_delay=0.001) as server:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="sk-test", max_retries=0)
        for i in range(args.streams):
            stream = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"hello {i}"}],
                                                    stream=True, stream_options={"include_usage": True})
            for _ in stream:
                pass
            completed += 1
            if i == 0 and args.wait_go:
                print("ready", flush=True)
                sys.stdin.readline()
    result: Dict[str, Any] = {**configured, "completed": completed,
                              "exporter_log_threads": sorted({r["thread"] for r in capture.records if r["logger"].startswith("opentelemetry.exporter")}),
                              "main_thread": threading.current_thread().name}
    if own is not None:
        steer.flush()  # the calls' ends are recorded on steer's background thread
        exporter, reader = own
        result["own_spans"] = [{"name": s.name, "attributes": dict(s.attributes or {})} for s in exporter.get_finished_spans()]
        data = reader.get_metrics_data()
        result["own_metrics"] = sorted({m.name for rm in (data.resource_metrics if data else ()) for sm in rm.scope_metrics for m in sm.metrics})
    print(json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

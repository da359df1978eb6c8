"""Another GenAI instrumentation in the same service, for the dashboards' scope filter: records
gen_ai.client.operation.duration (the name steer records too) under its own instrumentation scope and
exports it over OTLP as the OTEL_* variables say.

    python tests/backends/other_instrumentation.py --calls 5
"""

from __future__ import annotations

import argparse

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

SCOPE = "opentelemetry.instrumentation.openai_v2"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()
    provider = MeterProvider(metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())], resource=Resource.create())
    duration = provider.get_meter(SCOPE).create_histogram("gen_ai.client.operation.duration", unit="s")
    for _ in range(args.calls):
        duration.record(0.5, {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini"})
    provider.shutdown()  # exports what was recorded
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

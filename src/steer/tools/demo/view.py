"""What `steer demo` shows: a live progress line per call, then a table of the spans and the metrics.

Telemetry goes to in-memory OpenTelemetry SDK providers (read back here) and, when an endpoint is
given, to OTLP as well.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from steer.events import StreamDeltaEvent, StreamEvent
from steer.tools.metrics_text import metric_lines


class DemoTelemetry:
    """In-memory providers, plus OTLP/HTTP export to ``otlp_endpoint`` when given: traces, and metrics
    unless ``export_metrics`` is False (Phoenix takes traces only: it answers metrics with 405).
    ``resource`` adds resource attributes (Phoenix files spans under ``openinference.project.name``)."""

    def __init__(self, otlp_endpoint: Optional[str] = None, export_metrics: bool = True,
                 resource: Optional[Dict[str, str]] = None) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader, PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        resource = Resource.create({"service.name": "steer-demo", **(resource or {})})
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        readers: List[Any] = [self.reader]
        if otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            base = otlp_endpoint.rstrip("/")
            self.tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces")))
            if export_metrics:
                readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{base}/v1/metrics"),
                                                             export_interval_millis=5000))
        self.meter_provider = MeterProvider(resource=resource, metric_readers=readers)

    def flush(self) -> None:
        self.tracer_provider.force_flush()
        self.meter_provider.force_flush()

    def shutdown(self) -> None:
        """Export what is left and stop the exporters' threads (nothing retries after the demo)."""
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()

    def spans(self) -> List[Any]:
        return [s for s in self.exporter.get_finished_spans() if "gen_ai.operation.name" in (s.attributes or {})]

    def metric_lines(self) -> List[str]:
        return metric_lines(self.reader.get_metrics_data())


class DemoView:
    def __init__(self, out: Any) -> None:
        self.out = out
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self.label = ""
        self.chars = 0
        self.deltas = 0

    # -- live progress ---------------------------------------------------------------------------
    def begin(self, label: str) -> None:
        self.label, self.chars, self.deltas = label, 0, 0
        if self.tty:
            self.out.write(f"  … {label}")
            self.out.flush()

    def on_delta(self, event: StreamDeltaEvent) -> None:
        self.deltas += 1
        self.chars += len(event.delta)
        if self.tty and self.deltas % 3 == 0:
            self.out.write(f"\r  {'|/-'[self.deltas // 3 % 3]} {self.label}: {self.deltas} deltas, {self.chars} chars")
            self.out.flush()

    def on_end(self, event: StreamEvent) -> None:
        status = "error" if type(event).__name__ == "StreamErrorEvent" else "ok"
        line = f"  ✓ {self.label}: {self.deltas} deltas, {self.chars} chars ({status})"
        self.out.write(("\r" + line + " " * 8 + "\n") if self.tty else line + "\n")
        self.out.flush()

    def skipped(self, label: str, why: str) -> None:
        self.out.write(f"  - {label}: skipped ({why})\n")

    def failed(self, label: str, exc: BaseException) -> None:
        self.out.write(f"\n  ✗ {label}: {type(exc).__name__}: {exc}\n")

    # -- summary ---------------------------------------------------------------------------------
    def summary(self, telemetry: DemoTelemetry) -> None:
        w = self.out.write
        spans = sorted(telemetry.spans(), key=lambda s: s.start_time)
        w(f"\nTraces: {len(spans)} spans (one per call)\n")
        header = ["span", "provider", "model", "ttfc ms", "chunks", "tokens in/out (source)", "ms", "end"]
        rows = [header] + [_row(s) for s in spans]
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        for i, row in enumerate(rows):
            w("  " + "  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)) + "\n")
            if i == 0:
                w("  " + "  ".join("-" * n for n in widths) + "\n")
        if spans:
            sample = next((s for s in spans if s.attributes.get("steer.usage.source") == "estimated"), spans[0])
            w(f"\nAttributes of one span ({sample.name}):\n")
            for key, value in sorted(sample.attributes.items()):
                w(f"  {key} = {_short(value)}\n")
        w("\nMetrics (percentiles from the histogram buckets):\n")
        for line in telemetry.metric_lines():
            w(f"  {line}\n")


def _row(span: Any) -> List[str]:
    a = span.attributes
    source = a.get("steer.usage.source", "none")
    if source == "reported":
        tokens = f"{a.get('gen_ai.usage.input_tokens', '?')}/{a.get('gen_ai.usage.output_tokens', '?')} (reported)"
    elif source == "estimated":
        tokens = (f"~{a.get('steer.usage.estimated.input_tokens', '?')}/~{a.get('steer.usage.estimated.output_tokens', '?')}"
                  f" (estimated, conf {a.get('steer.usage.confidence', 0):.2f})")
    else:
        tokens = "-"
    ttfc = a.get("gen_ai.response.time_to_first_chunk")
    end = a.get("steer.stream.end", "complete")
    if a.get("error.type"):
        end = f"error: {a['error.type']}"
    return [span.name, str(a.get("gen_ai.provider.name")), str(a.get("gen_ai.response.model") or a.get("gen_ai.request.model")),
            f"{ttfc * 1e3:.1f}" if ttfc is not None else "-", str(a.get("steer.stream.chunks", "-")), tokens,
            f"{(span.end_time - span.start_time) / 1e6:.1f}", end]


def _short(value: Any) -> str:
    text = str(list(value)) if isinstance(value, tuple) else str(value)
    return text if len(text) <= 100 else text[:100] + "…"

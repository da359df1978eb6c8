"""What `steer replay` reports: steer instrumented against in-memory OpenTelemetry providers for one
replayed call, then one JSON-safe summary built from the span, the metrics and the events."""

from __future__ import annotations

from collections import Counter
from typing import Any, Dict, List, Optional

from steer.events import StreamCompleteEvent, StreamErrorEvent, StreamEvent, StreamUsageEvent
from steer.tools.metrics_text import metric_lines


class ReplayCapture:
    def __init__(self, recording: Dict[str, Any], **options: Any) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        self.recording = recording
        self.options = options
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.events: List[StreamEvent] = []
        self.chunks: Optional[int] = None
        self.raised: Optional[BaseException] = None

    def __enter__(self) -> "ReplayCapture":
        import steer

        record = self.events.append
        steer.instrument(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider,
            on_start=record, on_delta=record, on_usage=record, on_complete=record, on_error=record,
            **self.options,
        )
        return self

    def __exit__(self, *exc: Any) -> None:
        import gc

        import steer

        gc.collect()  # a stream the SDK left unclosed ends here, as "abandoned"
        steer.uninstrument()

    def summary(self) -> Dict[str, Any]:
        spans = [s for s in self.exporter.get_finished_spans() if "gen_ai.operation.name" in (s.attributes or {})]
        span = spans[-1] if spans else None
        attrs = dict(span.attributes or {}) if span is not None else {}
        done = next((e for e in self.events if isinstance(e, StreamCompleteEvent)), None)
        failed = next((e for e in self.events if isinstance(e, StreamErrorEvent)), None)
        ended = done or failed  # a failed stream reports what it received before the failure too
        out: Dict[str, Any] = {
            "provider": self.recording.get("provider"),
            "api": self.recording.get("api"),
            "text": ended.text if ended else "",
            "tool_calls": [c.as_dict() for c in ended.tool_calls] if ended else [],
            "finish_reasons": list(ended.finish_reasons) if ended else [],
            "chunks": attrs.get("steer.stream.chunks", self.chunks or 0),
            "usage": _usage(next((e for e in self.events if isinstance(e, StreamUsageEvent)), None)),
            "cost": _cost(attrs),
            "json": _json(attrs, done),
            "span": _span(span, attrs, len(spans)),
            "metrics": sorted(self._metric_names()),
            "events": dict(Counter(type(e).__name__ for e in self.events)),
        }
        if ended is not None and ended.reasoning:
            out["reasoning"] = ended.reasoning
        if ended is not None and len(ended.choice_texts) > 1:
            out["choices"] = list(ended.choice_texts)
        if failed is not None:
            out["error"] = {"type": failed.error_type, "message": failed.message, "retryable": failed.is_retryable}
        elif self.raised is not None:  # the SDK failed and steer saw no call: say so, never hide it
            out["error"] = {"type": type(self.raised).__name__, "message": str(self.raised)[:512], "retryable": None}
        return out

    def metric_lines(self) -> List[str]:
        """Each metric with its value and unit, as ``steer replay`` prints it."""
        return metric_lines(self.reader.get_metrics_data())

    def _metric_names(self) -> List[str]:
        data = self.reader.get_metrics_data()
        names = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    points = metric.data.data_points
                    if any(getattr(p, "count", None) or getattr(p, "value", None) not in (None,) for p in points):
                        names.append(metric.name)
        return names


def _usage(event: Optional[StreamUsageEvent]) -> Dict[str, Any]:
    usage = event.usage if event is not None else None
    if usage is None:
        return {"input_tokens": None, "output_tokens": None, "source": "none", "confidence": None}
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "source": usage.source, "confidence": usage.confidence}


def _cost(attrs: Dict[str, Any]) -> Dict[str, Any]:
    """The call's USD cost from genai-prices' data (steer.usage.cost*), or why there is none."""
    return {"usd": attrs.get("steer.usage.cost"), "source": attrs.get("steer.usage.cost.source"),
            "prices_version": attrs.get("steer.usage.cost.prices_version"),
            "unpriced": attrs.get("steer.usage.cost.unpriced")}


def _json(attrs: Dict[str, Any], done: Optional[StreamCompleteEvent]) -> Dict[str, Any]:
    """JSON seen in the output: JSON-mode objects plus tool-call argument objects, each once."""
    calls = done.tool_calls if done is not None else []
    objects = attrs.get("steer.json.objects", 0) + sum(1 for c in calls if isinstance(c.arguments, dict))
    checks = [c.valid_json for c in calls]
    if "steer.json.valid" in attrs:
        checks.append(bool(attrs["steer.json.valid"]))
    return {"objects": objects, "duplicates_dropped": attrs.get("steer.json.duplicates_dropped", 0),
            "valid": all(checks) if checks else None}


def _span(span: Any, attrs: Dict[str, Any], count: int) -> Dict[str, Any]:
    if span is None:
        return {"name": None, "status": None, "attributes": {}, "count": 0}
    safe = {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.items()}
    return {"name": span.name, "status": span.status.status_code.name, "attributes": safe, "count": count}

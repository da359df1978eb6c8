"""What every reliability test checks about the telemetry steer produced.

Read back from the OpenTelemetry SDK (in-memory exporter and reader of ``tests/conftest.Telemetry``),
never from steer's own state: a span that was never ended, a stream still counted as active or an
internal error shows up here exactly as it would on a dashboard.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Dict, List, Optional

import pytest
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

# The full-size runs: `make test-heavy` (`pytest -m heavy`); CI runs the smaller size of each test.
HEAVY = [pytest.mark.heavy, pytest.mark.timeout(3600)]


def points(telemetry: Any, name: str) -> List[Any]:
    return telemetry.metrics().get(name, [])


def histogram_count(telemetry: Any, name: str) -> int:
    return sum(p.count for p in points(telemetry, name))


def histogram_sum(telemetry: Any, name: str) -> float:
    return sum(p.sum for p in points(telemetry, name))


def counter_total(telemetry: Any, name: str) -> int:
    return sum(p.value for p in points(telemetry, name))


def internal_errors(telemetry: Any) -> int:
    return counter_total(telemetry, "steer.internal.errors")


def seam_errors(telemetry: Any) -> Dict[str, int]:
    """Internal errors anywhere but in a provider decoder reading one malformed chunk.

    A decoder that cannot read a chunk (fuzzed fields of the wrong type) is contained per chunk: the
    chunk is skipped, counted on the span (``steer.decode.errors``) and in ``steer.internal.errors``
    under ``steer.where=decode:<api>`` (or ``decode_finish:``). Everything else — the proxies, the tee, the framers, the
    Session's start and finish — must never fail, whatever the input."""
    out: Dict[str, int] = {}
    for p in points(telemetry, "steer.internal.errors"):
        where = str(p.attributes.get("steer.where"))
        if not where.startswith("decode") and p.value:  # decode:, decode_finish:, decode_response:
            out[where] = out.get(where, 0) + p.value
    return out


def active_streams(telemetry: Any) -> int:
    return counter_total(telemetry, "steer.client.streams.active")


def otel_complaints(records: List[logging.LogRecord]) -> List[str]:
    """Log lines that mean a span was ended twice or a context was detached in the wrong place."""
    bad = ("ended span", "failed to detach", "detach context", "already ended")
    return [r.getMessage() for r in records if any(b in r.getMessage().lower() for b in bad)]


def otlp_complaints(telemetry: Any) -> List[str]:
    """Encode everything steer emitted with the real OTLP protobuf encoders, as the exporters do: what
    they log (an attribute they cannot encode is logged and dropped) or raise."""
    from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import encode_metrics
    from opentelemetry.exporter.otlp.proto.common._internal.trace_encoder import encode_spans

    records: List[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("opentelemetry.exporter.otlp.proto.common")
    logger.addHandler(handler)
    try:
        encode_spans(telemetry.spans())
        data = telemetry.reader.get_metrics_data()
        if data is not None:  # None: no instrument recorded anything yet
            encode_metrics(data)
    except Exception as exc:  # e.g. UnicodeEncodeError from a span status description
        records.append(logging.makeLogRecord({"msg": repr(exc)}))
    finally:
        logger.removeHandler(handler)
    return [r.getMessage() for r in records]


class CountingProcessor(SpanProcessor):
    """Keeps counts, not spans: memory stays flat however many calls run (for the load tests).

    ``by_end`` counts ``steer.stream.end`` values; ``ids`` keeps each span's ``gen_ai.response.id``
    when ``keep_ids`` is on (the load tests match every call to its span by that id).
    """

    def __init__(self, keep_ids: bool = False) -> None:
        self.lock = threading.Lock()
        self.started = 0
        self.ended = 0
        self.by_end: Dict[str, int] = {}
        self.chunks = 0
        self.keep_ids = keep_ids
        self.ids: List[Optional[str]] = []
        self.errors = 0

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        with self.lock:
            self.started += 1

    def on_end(self, span: ReadableSpan) -> None:
        attrs = span.attributes or {}
        with self.lock:
            self.ended += 1
            end = str(attrs.get("steer.stream.end"))
            self.by_end[end] = self.by_end.get(end, 0) + 1
            self.chunks += int(attrs.get("steer.stream.chunks", 0))
            self.errors += span.status.status_code.name == "ERROR"
            if self.keep_ids:
                self.ids.append(attrs.get("gen_ai.response.id"))

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

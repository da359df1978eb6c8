"""Shared fixtures: in-memory OpenTelemetry SDK providers and steer instrumented against them.

Hundreds of tests need ``gc.collect()`` (an abandoned stream ends when it is collected). With the
provider SDKs and every test module imported, one full collection walks ~250,000 long-lived objects;
freezing them once per session (``gc.freeze``) makes each collection cost microseconds without
changing what is collected among the objects the tests create.
"""

from __future__ import annotations

import gc
from typing import Any, Dict, List

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import steer


@pytest.fixture(scope="session", autouse=True)
def frozen_heap() -> Any:
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture(autouse=True)
def leaves_no_span_current() -> Any:
    """No test may leave a span current, nor steer's in-call flag set, in the thread that runs the
    tests: every later test there would nest under it (a Ctrl-C landing while steer set its context
    could do that: tests/test_signal_safety.py)."""
    from opentelemetry import trace

    from steer.wrapping.calls import IN_CALL

    before = (trace.get_current_span(), IN_CALL.get())
    yield
    assert trace.get_current_span() is before[0], "the test left a span current"
    assert IN_CALL.get() is before[1], "the test left steer's in-call flag set"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: Any) -> Any:
    """After each test's teardown, what survives a collection is frozen too: the SDKs, recordings and
    replay caches that tests import or build lazily would otherwise stay in the oldest generation,
    and every later ``gc.collect()`` (a few hundred tests, and each ``instrumented`` teardown) would
    walk ~300,000 of them again (~0.2 s each). Only survivors are frozen: a test's own garbage,
    abandoned streams included, is collected here at the latest, as before."""
    try:
        return (yield)
    finally:
        gc.collect()
        gc.freeze()


class Telemetry:
    """What steer emitted: finished spans and metric points, read back from the SDK."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self) -> List[Any]:
        steer.flush(120)  # calls that ended are recorded on steer's background thread (slow under load)
        return list(self.exporter.get_finished_spans())

    def genai_spans(self) -> List[Any]:
        return [s for s in self.spans() if "gen_ai.operation.name" in (s.attributes or {})]

    def metrics(self, flush: bool = True) -> Dict[str, List[Any]]:
        """metric name -> data points (cumulative since the start of the test); ``flush=False`` reads
        them without waiting for steer's background worker to record the calls that ended."""
        out: Dict[str, List[Any]] = {}
        if flush:
            steer.flush(120)
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out

    def active_streams(self, flush: bool = True) -> int:
        return sum(p.value for p in self.metrics(flush).get("steer.client.streams.active", []))

    def clear(self) -> None:
        self.exporter.clear()


@pytest.fixture
def telemetry() -> Any:
    t = Telemetry()
    yield t
    t.tracer_provider.shutdown()
    t.meter_provider.shutdown()


@pytest.fixture
def instrumented(telemetry: Telemetry) -> Any:
    """Call ``instrumented(**options)`` to instrument against ``telemetry``; undone after the test."""

    def apply(**options: Any) -> Telemetry:
        options.setdefault("tracer_provider", telemetry.tracer_provider)
        options.setdefault("meter_provider", telemetry.meter_provider)
        steer.instrument(**options)
        return telemetry

    yield apply
    steer.uninstrument()
    gc.collect()

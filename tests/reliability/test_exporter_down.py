"""An OTLP endpoint that refuses connections or accepts and never answers must not slow the
application's streams nor grow memory without bound.

The providers are the ones steer builds itself (``otel_setup.build_tracer_provider`` /
``build_meter_provider``: BatchSpanProcessor, PeriodicExportingMetricReader, OTLP/HTTP exporters),
pointed at a dead endpoint. No wall-clock assertion: for the hanging endpoint the test shows by
ordering that streams finish while the exporter is stuck inside an export (the endpoint has the
request and has not answered). The per-stream time next to a healthy in-memory pipeline is printed
(``pytest -s``) and recorded in docs/reliability.md.
"""

from __future__ import annotations

import gc
import os
import socket
import threading
import time
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import steer
from steer import otel_setup

from .checks import HEAVY, CountingProcessor
from .surfaces import USER, openai_client

QUEUE = 128  # OTEL_BSP_MAX_QUEUE_SIZE: small, so the queue overflows in the CI-size run too


class HangingEndpoint:
    """Accepts connections and reads requests; never answers (until closed)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.requests = threading.Event()  # set once an export request has arrived
        self.conns: List[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        try:
            while conn.recv(65536):
                self.requests.set()
        except OSError:
            pass

    def close(self) -> None:
        self.closed = True
        self.sock.close()
        for conn in self.conns:
            conn.close()


def refused_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connections are refused
    return port


@pytest.fixture
def otel_env(monkeypatch: Any) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")  # only the explicit (dead) endpoint
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", str(QUEUE))
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "64")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "100")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "30")  # a hanging export blocks its thread 30 s


def rss_mb() -> float:
    import psutil

    return psutil.Process(os.getpid()).memory_info().rss / 2**20


def run_streams(srv: Any, n: int) -> List[float]:
    """``n`` streams, each read to the end; the wall time of each (create + every chunk), in ms."""
    client = openai_client(srv, False, 60.0)
    times: List[float] = []
    try:
        for _ in range(n):
            start = time.perf_counter()
            for _chunk in client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True):
                pass
            times.append(1e3 * (time.perf_counter() - start))
    finally:
        client.close()
    return times


def summary(times: List[float]) -> Dict[str, float]:
    ordered = sorted(times)
    return {"streams": len(ordered), "median_ms": round(ordered[len(ordered) // 2], 3),
            "p95_ms": round(ordered[int(len(ordered) * 0.95)], 3)}


def healthy_pipeline() -> Tuple[Any, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(CountingProcessor())
    return tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()])


@pytest.fixture
def endpoint(request: Any) -> Iterator[Any]:
    if request.param == "hanging":
        hang = HangingEndpoint()
        yield hang
        hang.close()
    else:
        yield refused_port()


@pytest.mark.parametrize("n", [400, pytest.param(5000, marks=HEAVY)], ids=["ci", "full"])
@pytest.mark.parametrize("endpoint", ["refusing", "hanging"], indirect=True)
def test_dead_exporter_does_not_slow_streams_or_grow_memory(endpoint: Any, n: int, otel_env: None,
                                                            devserver_process: Any) -> None:
    hanging = isinstance(endpoint, HangingEndpoint)
    url = f"http://127.0.0.1:{endpoint.port if hanging else endpoint}"
    counted, reader = CountingProcessor(), InMemoryMetricReader()
    tracer_provider = otel_setup.build_tracer_provider([counted], otlp_endpoint=url)
    meter_provider = otel_setup.build_meter_provider([reader], otlp_endpoint=url)
    healthy = healthy_pipeline()
    dead_times: List[float] = []
    healthy_times: List[float] = []
    rounds, batch = 10, n // 10
    try:
        steer.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
        run_streams(devserver_process, 2 * QUEUE)  # warm-up, and more spans than the queue holds
        if hanging:  # from here on the exporter thread is stuck inside an export that never returns
            assert endpoint.requests.wait(30), "the exporter never reached the endpoint"
        gc.collect()
        rss_before = rss_mb()
        # Interleaved with a healthy in-memory pipeline, batch by batch, so both see the same machine.
        for _ in range(rounds):
            steer.instrument(tracer_provider=healthy[0], meter_provider=healthy[1])
            healthy_times += run_streams(devserver_process, batch)
            steer.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
            dead_times += run_streams(devserver_process, batch)
        gc.collect()
        rss_after = rss_mb()
        if hanging:
            assert not endpoint.closed and endpoint.conns  # still hanging: the streams did not wait for it
    finally:
        steer.uninstrument()
    total = rounds * batch + 2 * QUEUE
    assert counted.ended == total and counted.by_end == {"complete": total}  # every span ended, on time
    data = reader.get_metrics_data()
    values = {m.name: m.data.data_points for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert sum(p.count for p in values["gen_ai.client.operation.duration"]) == total
    assert sum(p.value for p in values["steer.client.streams.active"]) == 0
    figures = summary(dead_times)
    baseline = summary(healthy_times)
    growth = rss_after - rss_before
    print(f"\nexporter {'hanging' if hanging else 'refusing'}: {figures}; healthy pipeline: {baseline}; "
          f"RSS {rss_before:.1f} -> {rss_after:.1f} MB (+{growth:.1f})")
    # Bounded: the span queue holds at most QUEUE spans (the rest are dropped by the SDK), metrics
    # are cumulative per attribute set; a per-span leak of even 4 KB would show over 5,000 streams.
    assert growth < 20, growth
    # Shut down without waiting out the hanging export (the SDK's own shutdown would block on it).
    for provider in (tracer_provider, meter_provider):
        threading.Thread(target=_quiet_shutdown, args=(provider,), daemon=True).start()


def _quiet_shutdown(provider: Any) -> None:
    try:
        provider.shutdown()
    except Exception:  # the SDK reports the export it could not finish: expected, the endpoint is dead
        pass

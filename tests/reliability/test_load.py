"""Load: many concurrent async streams, many threads of sync streams, and memory over many streams,
all against the devserver in its own process (real sockets), through every SDK surface at once.

Every call is told apart by its model name (``load-<n>``, which the span carries as
``gen_ai.request.model``): each call must have exactly one ended span, nothing lost or duplicated,
and the chunk counts on spans and metrics must add up to what the callers read. While every stream
is open, ``steer.client.streams.active`` must read the number of open streams; afterwards, zero.

CI runs a smaller, still meaningful size; ``-m heavy`` (``make test-heavy``) runs the full size.
Figures are printed (``pytest -s``) and recorded in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from collections import Counter
from typing import Any, Callable, Dict, List, Tuple

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

import steer

from .checks import HEAVY, CountingProcessor, active_streams, histogram_count, histogram_sum, internal_errors
from .surfaces import USER, anthropic_client, close_client, gemini_client, openai_client

TIMEOUT = 120.0  # 1,000 streams on a 2-core box: the SDK side queues; a generous read timeout
KINDS = ["chat", "responses", "messages", "gemini", "httpx"]


def rss_mb() -> float:
    import psutil

    return psutil.Process(os.getpid()).memory_info().rss / 2**20


# -- one streamed call per kind, on shared clients ------------------------------------------------------
def make_clients(srv: Any, is_async: bool) -> Dict[str, Any]:
    import httpx

    return {
        "chat": openai_client(srv, is_async, TIMEOUT), "responses": openai_client(srv, is_async, TIMEOUT),
        "messages": anthropic_client(srv, is_async, TIMEOUT),
        # The SDKs' pools allow 1,000 connections; google-genai's httpx default allows 100.
        "gemini": gemini_client(srv, is_async, TIMEOUT, max_connections=2000),
        "httpx": (httpx.AsyncClient if is_async else httpx.Client)(timeout=TIMEOUT, limits=httpx.Limits(max_connections=2000)),
    }


async def close_clients(clients: Dict[str, Any], is_async: bool) -> None:
    for client in clients.values():
        await close_client(client, is_async)


def _raw_request(srv: Any, model: str) -> Tuple[str, Dict[str, Any]]:
    return srv.openai_base_url + "/chat/completions", {"model": model, "messages": USER, "stream": True}


def _is_chunk(item: Any) -> bool:
    """A raw line that is one decoded frame (what steer counts for raw httpx)."""
    return isinstance(item, str) and item.startswith("data: {")


async def stream_async(srv: Any, clients: Dict[str, Any], kind: str, model: str, opened: Callable[[], Any]) -> int:
    """One streamed call; ``opened`` is awaited after the first item (the concurrency barrier).
    Returns the number of items steer should have counted."""
    c = clients[kind]
    if kind == "httpx":
        url, body = _raw_request(srv, model)
        n, first = 0, True
        async with c.stream("POST", url, json=body) as response:
            async for line in response.aiter_lines():
                n += _is_chunk(line)
                if first and _is_chunk(line):
                    first = False
                    await opened()
        return n
    if kind == "chat":
        stream = await c.chat.completions.create(model=model, messages=USER, stream=True, stream_options={"include_usage": True})
    elif kind == "responses":
        stream = await c.responses.create(model=model, input="Say something", stream=True)
    elif kind == "messages":
        stream = await c.messages.create(model=model, max_tokens=100, messages=USER, stream=True)
    else:
        stream = await c.aio.models.generate_content_stream(model=model, contents="Say something")
    n = 0
    async for _ in stream:
        n += 1
        if n == 1:
            await opened()
    return n


def stream_sync(srv: Any, clients: Dict[str, Any], kind: str, model: str, opened: Callable[[], Any]) -> int:
    c = clients[kind]
    if kind == "httpx":
        url, body = _raw_request(srv, model)
        n, first = 0, True
        with c.stream("POST", url, json=body) as response:
            for line in response.iter_lines():
                n += _is_chunk(line)
                if first and _is_chunk(line):
                    first = False
                    opened()
        return n
    if kind == "chat":
        stream = c.chat.completions.create(model=model, messages=USER, stream=True, stream_options={"include_usage": True})
    elif kind == "responses":
        stream = c.responses.create(model=model, input="Say something", stream=True)
    elif kind == "messages":
        stream = c.messages.create(model=model, max_tokens=100, messages=USER, stream=True)
    else:
        stream = c.models.generate_content_stream(model=model, contents="Say something")
    n = 0
    for _ in stream:
        n += 1
        if n == 1:
            opened()
    return n


# -- checks ---------------------------------------------------------------------------------------------
def check_every_call_one_span(telemetry: Any, models: List[str], chunks_read: int) -> Dict[str, Any]:
    spans = telemetry.genai_spans()
    seen = Counter(s.attributes.get("gen_ai.request.model") for s in spans)
    missing = [m for m in models if seen[m] == 0]
    duplicated = [m for m, k in seen.items() if k > 1]
    assert not missing and not duplicated, (missing[:5], duplicated[:5])
    assert len(spans) == len(models) == len(set(models))
    assert all(s.end_time is not None for s in spans)
    assert Counter(s.attributes["steer.stream.end"] for s in spans) == {"complete": len(models)}
    span_chunks = sum(s.attributes["steer.stream.chunks"] for s in spans)
    assert span_chunks == chunks_read
    assert histogram_count(telemetry, "gen_ai.client.operation.duration") == len(models)
    assert histogram_count(telemetry, "steer.client.stream.chunks") == len(models)
    assert histogram_sum(telemetry, "steer.client.stream.chunks") == chunks_read
    assert active_streams(telemetry) == 0
    assert internal_errors(telemetry) == 0
    return {"streams": len(models), "spans_ended": len(spans), "chunks": span_chunks}


# -- 1: concurrent async streams -----------------------------------------------------------------------
async def run_async_load(srv: Any, telemetry: Any, n: int) -> Dict[str, Any]:
    clients = make_clients(srv, True)
    models = [f"load-{i}" for i in range(n)]
    open_now, peak = 0, {"active": 0}
    all_open = asyncio.Event()

    async def opened() -> None:
        nonlocal open_now
        open_now += 1
        if open_now == n:
            peak["active"] = active_streams(telemetry)  # every stream is open at this moment
            all_open.set()
        await asyncio.wait_for(all_open.wait(), TIMEOUT)

    try:
        counts = await asyncio.gather(*(stream_async(srv, clients, KINDS[i % len(KINDS)], m, opened)
                                        for i, m in enumerate(models)))
    finally:
        await close_clients(clients, True)
    gc.collect()
    figures = check_every_call_one_span(telemetry, models, sum(counts))
    assert peak["active"] == n, peak  # a dashboard saw all n streams open at once
    return {**figures, "peak_active": peak["active"]}


@pytest.mark.parametrize("n", [200, pytest.param(1000, marks=HEAVY)], ids=["ci", "full"])
async def test_concurrent_async_streams(n: int, devserver_process: Any, instrumented: Any) -> None:
    telemetry = instrumented()
    figures = await run_async_load(devserver_process, telemetry, n)
    print(f"\nasync load: {figures}")


# -- 2: threads of sync streams ------------------------------------------------------------------------
def run_thread_load(srv: Any, telemetry: Any, threads: int, per_thread: int) -> Dict[str, Any]:
    clients = make_clients(srv, False)
    peak = {"active": 0}
    barrier = threading.Barrier(threads, action=lambda: peak.update(active=active_streams(telemetry)), timeout=TIMEOUT)
    counts: List[int] = []
    errors: List[BaseException] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        try:
            for j in range(per_thread):
                i = t * per_thread + j
                # The first stream of every thread waits for all the others: `threads` open at once.
                opened = barrier.wait if j == 0 else (lambda: None)
                n = stream_sync(srv, clients, KINDS[i % len(KINDS)], f"load-{i}", opened)
                with lock:
                    counts.append(n)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    asyncio.run(close_clients(clients, False))
    assert not errors, errors[:3]
    gc.collect()
    models = [f"load-{i}" for i in range(threads * per_thread)]
    figures = check_every_call_one_span(telemetry, models, sum(counts))
    assert peak["active"] == threads, peak
    return {**figures, "peak_active": peak["active"]}


@pytest.mark.parametrize("threads,per_thread", [(4, 25), pytest.param(16, 100, marks=HEAVY)], ids=["ci", "full"])
def test_threads_of_sync_streams(threads: int, per_thread: int, devserver_process: Any, instrumented: Any) -> None:
    telemetry = instrumented()
    figures = run_thread_load(devserver_process, telemetry, threads, per_thread)
    print(f"\nthread load ({threads} threads x {per_thread}): {figures}")


# -- 3: memory over many streams -----------------------------------------------------------------------
async def run_memory(srv: Any, total: int, batch: int = 50, samples: int = 10) -> Dict[str, Any]:
    """``total`` streams in concurrent batches; RSS sampled after warm-up and at each tenth.
    Spans are counted, not kept, and metric attributes are bounded: what is measured is steer's and
    the SDKs' own memory, not the test's."""
    spans = CountingProcessor()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(spans)
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    steer.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    clients = make_clients(srv, True)
    read = 0

    async def batch_of(k: int) -> None:
        nonlocal read
        counts = await asyncio.gather(*(stream_async(srv, clients, KINDS[i % len(KINDS)], "memory", _noop)
                                        for i in range(k)))
        read += sum(counts)

    try:
        await batch_of(4 * batch)  # warm-up: SDK caches, encodings, connection pools, first allocations
        gc.collect()
        rss = [rss_mb()]
        step = total // samples
        done = 0
        while done < total:
            await batch_of(min(batch, total - done))
            done += min(batch, total - done)
            if done % step == 0:
                gc.collect()
                rss.append(rss_mb())
    finally:
        await close_clients(clients, True)
        steer.uninstrument()
    gc.collect()
    metrics: Dict[str, int] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                metrics[m.name] = sum(getattr(p, "count", None) or getattr(p, "value", 0) for p in m.data.data_points)
    warm = 4 * batch
    assert spans.started == spans.ended == total + warm
    assert spans.by_end == {"complete": total + warm}
    assert spans.chunks == read
    assert metrics["gen_ai.client.operation.duration"] == total + warm
    assert metrics["steer.client.streams.active"] == 0
    assert metrics.get("steer.internal.errors", 0) == 0
    tracer_provider.shutdown()
    meter_provider.shutdown()
    return {"streams": total, "spans_ended": spans.ended - warm, "rss_before_mb": round(rss[0], 1),
            "rss_after_mb": round(rss[-1], 1), "growth_mb": round(rss[-1] - rss[0], 1),
            "second_half_growth_mb": round(rss[-1] - rss[len(rss) // 2], 1), "samples_mb": [round(r, 1) for r in rss]}


async def _noop() -> None:
    return None


@pytest.mark.parametrize("total,bound_mb", [(1000, 40), pytest.param(20000, 40, marks=HEAVY)], ids=["ci", "full"])
async def test_memory_stays_bounded(total: int, bound_mb: float, devserver_process: Any) -> None:
    figures = await run_memory(devserver_process, total)
    print(f"\nmemory over {total} streams: {figures}")
    # Bounded: a per-stream leak of even 2 KB would add 40 MB over 20,000 streams, and the second
    # half of the run (after every cache and pool reached its size) must stay flat.
    assert figures["growth_mb"] < bound_mb, figures
    assert figures["second_half_growth_mb"] < bound_mb / 2, figures

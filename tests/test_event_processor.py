"""The EventProcessor: filters, transformers, correlation, timestamps, metrics, batching, background
mode — and isolation: a slow or failing handler never stalls or breaks the caller's stream, overflow is
bounded and counted, accepted events are delivered at flush(), shutdown() and interpreter exit.

Most tests feed events straight into ``process`` (the Session's entry point); the integration tests at
the end run real SDK streams. No test asserts a duration: waits are on events, with generous bounds.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, List

import pytest

import steer
from recordings import Served, load, request_kwargs
from steer.event_processor import EventProcessor, ProcessorMetrics
from steer.events import (
    StreamCompleteEvent,
    StreamDeltaEvent,
    StreamErrorEvent,
    StreamStartEvent,
    StreamUsageEvent,
    Usage,
)

ROOT = Path(__file__).resolve().parents[1]


def call_events(rid: str = "r1", deltas: int = 3, provider: str = "openai") -> List[Any]:
    common = dict(provider=provider, model="m", request_id=rid, stream_id=rid, timestamp=1.0)
    return [StreamStartEvent(**common),
            *[StreamDeltaEvent(**common, delta=f"{rid}:{i}", chunk_index=i) for i in range(deltas)],
            StreamUsageEvent(**common, usage=Usage(input_tokens=1, output_tokens=deltas, source="reported")),
            StreamCompleteEvent(**common, total_chunks=deltas)]


def feed(p: EventProcessor, events: List[Any]) -> None:
    for e in events:
        p.process(e)


@pytest.fixture
def processors() -> Any:
    made: List[EventProcessor] = []

    def make(**options: Any) -> EventProcessor:
        made.append(steer.create_event_processor(**options))
        return made[-1]

    yield make
    for p in made:
        p.shutdown(timeout=10)


# -- filters ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [[StreamDeltaEvent], ["StreamDeltaEvent"], ["delta"]])
def test_type_filter(spec: Any, processors: Any) -> None:
    got: List[Any] = []
    p = processors(event_types=spec, handler=got.append)
    feed(p, call_events())
    assert [type(e) for e in got] == [StreamDeltaEvent] * 3
    assert p.metrics.filtered == 3 and p.metrics.emitted == 3 and p.metrics.events_in == 6


def test_unknown_event_type_is_refused() -> None:
    with pytest.raises(ValueError):
        steer.create_event_processor(event_types=["deltas"])


def test_provider_filter(processors: Any) -> None:
    got: List[Any] = []
    p = processors(providers=["anthropic"], handler=got.append)
    feed(p, call_events("a", provider="openai") + call_events("b", provider="anthropic"))
    assert {e.provider for e in got} == {"anthropic"} and len(got) == 6


def test_predicate_filter_and_a_raising_predicate(processors: Any, caplog: Any) -> None:
    got: List[Any] = []
    p = processors(predicate=lambda e: e.delta.endswith("1"), handler=got.append)  # raises on non-deltas
    with caplog.at_level(logging.WARNING, logger="steer"):
        feed(p, call_events() + call_events("r2"))
    assert [e.delta for e in got] == ["r1:1", "r2:1"]
    m = p.metrics
    assert m.handler_errors == 6 and m.filtered == 10  # a raising predicate rejects (fail closed)
    assert len([r for r in caplog.records if "AttributeError" in r.getMessage()]) == 1
    p.add_filter(steer.PredicateFilter(lambda e: e.request_id == "r3"))
    feed(p, call_events("r2"))
    assert len(got) == 2


def test_async_predicate_is_refused() -> None:
    async def pred(event: Any) -> bool:
        return True

    with pytest.raises(TypeError):
        steer.PredicateFilter(pred)


# -- transformers ----------------------------------------------------------------------------------------
class Upper(steer.EventTransformer):
    def transform(self, event: Any) -> Any:
        if isinstance(event, StreamDeltaEvent):
            event.delta = event.delta.upper()
        return event


class DropUsage(steer.EventTransformer):
    def transform(self, event: Any) -> Any:
        return None if isinstance(event, StreamUsageEvent) else event


class Broken(steer.EventTransformer):
    def transform(self, event: Any) -> Any:
        raise RuntimeError("transformer bug")


class SlowAsync(steer.EventTransformer):
    async def transform(self, event: Any) -> Any:
        await asyncio.sleep(0)
        event.metadata["thread"] = threading.current_thread().name
        return event


def test_transformers_run_in_order_and_may_drop(processors: Any) -> None:
    got: List[Any] = []
    p = processors(transformers=[Upper(), DropUsage(), lambda e: e], handler=got.append)
    feed(p, call_events())
    assert [type(e) for e in got] == [StreamStartEvent, StreamDeltaEvent, StreamDeltaEvent, StreamDeltaEvent, StreamCompleteEvent]
    assert [e.delta for e in got if isinstance(e, StreamDeltaEvent)] == ["R1:0", "R1:1", "R1:2"]
    m = p.metrics
    assert (m.filtered, m.transformed, m.emitted) == (1, 5, 5)


def test_a_raising_transformer_passes_the_event_on(processors: Any, caplog: Any) -> None:
    got: List[Any] = []
    p = processors(transformers=[Broken(), Upper()], handler=got.append)
    with caplog.at_level(logging.WARNING, logger="steer"):
        feed(p, call_events())
    assert len(got) == 6 and got[1].delta == "R1:0"
    assert p.metrics.handler_errors == 6
    assert len([r for r in caplog.records if "transformer bug" in r.getMessage()]) == 1


def test_async_transformer_keeps_every_stream_in_order(processors: Any) -> None:
    got: List[Any] = []
    p = processors(transformers=[Upper(), SlowAsync()], handler=got.append)
    calls = [call_events(f"r{i}", deltas=20) for i in range(5)]
    for step in range(len(calls[0])):  # five calls interleaved, as concurrent streams would be
        for events in calls:
            p.process(events[step])
    assert p.flush(timeout=30)
    assert len(got) == 5 * 23
    for i in range(5):
        mine = [e for e in got if e.request_id == f"r{i}"]
        assert mine == calls[i]  # each exactly once, in its stream's order
        assert [e.metadata["sequence"] for e in mine] == list(range(23))
    assert {e.metadata["thread"] for e in got} == {"steer-event-processor"}  # never the caller's thread


def test_plain_function_returning_a_coroutine_is_an_error_not_a_hang(processors: Any) -> None:
    async def later(event: Any) -> None:
        pass

    got: List[Any] = []
    p = processors(handler=lambda e: later(e))
    p.add_handler(got.append)
    feed(p, call_events())
    assert len(got) == 6 and p.metrics.handler_errors == 6


# -- correlation, timestamps, metrics --------------------------------------------------------------------
def test_correlation_sequence_per_call(processors: Any) -> None:
    got: List[Any] = []
    p = processors(event_types=["delta", "complete"], handler=got.append)
    a, b = call_events("a"), call_events("b")
    for x, y in zip(a, b):
        p.process(x)
        p.process(y)
    seq = {(e.request_id, e.metadata["sequence"]) for e in got}
    assert seq == {(r, n) for r in "ab" for n in (1, 2, 3, 5)}  # gaps: the filtered start and usage
    assert not p._seqs  # a finished call leaves no state behind


def test_without_correlation_or_timestamps_metadata_is_untouched(processors: Any) -> None:
    got: List[Any] = []
    p = processors(add_correlation=False, handler=got.append)
    feed(p, call_events())
    assert all(e.metadata == {} for e in got)


def test_timestamps(processors: Any) -> None:
    got: List[Any] = []
    p = processors(add_timestamp=True, background=True, handler=got.append)
    feed(p, call_events())
    assert p.flush(timeout=30)
    assert all(isinstance(e.metadata["processed_at"], float) for e in got)


def test_metrics_add_up(processors: Any) -> None:
    p = processors(event_types=["delta"], handler=lambda e: None)
    feed(p, call_events(deltas=10))
    m = p.metrics
    assert isinstance(m, ProcessorMetrics) and m.events_in == m.filtered + m.emitted + m.dropped
    assert p.get_metrics()["emitted"] == 10


def test_metrics_off_keeps_the_safety_counters(processors: Any) -> None:
    p = processors(add_metrics=False, handler=lambda e: 1 / 0)
    feed(p, call_events())
    m = p.metrics
    assert (m.emitted, m.filtered) == (0, 0) and m.handler_errors == 6 and m.events_in == 6


# -- batching --------------------------------------------------------------------------------------------
def test_batches_by_size_then_the_rest_at_flush(processors: Any) -> None:
    batches: List[List[Any]] = []
    p = processors(event_types=["delta"], batch_size=4, batch_timeout_ms=60_000, batch_handler=batches.append)
    feed(p, call_events(deltas=10))
    assert p.flush(timeout=30)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert [e.delta for b in batches for e in b] == [f"r1:{i}" for i in range(10)]
    assert p.metrics.batches == 3


def test_a_partial_batch_goes_out_on_its_timeout(processors: Any) -> None:
    delivered = threading.Event()
    batches: List[List[Any]] = []

    def handler(batch: List[Any]) -> None:
        batches.append(batch)
        delivered.set()

    p = processors(batch_size=1000, batch_timeout_ms=20, batch_handler=handler)
    feed(p, call_events())
    assert delivered.wait(30)  # nobody flushed: the timeout did
    assert len(batches[0]) == 6


@pytest.mark.parametrize("background", [False, True])
def test_async_batch_handler_and_a_failing_one(background: bool, processors: Any, caplog: Any) -> None:
    batches: List[int] = []

    async def handler(batch: List[Any]) -> None:
        await asyncio.sleep(0)
        if len(batches) == 1:
            batches.append(-1)
            raise ValueError("batch handler bug")
        batches.append(len(batch))

    p = processors(batch_size=3, batch_handler=handler, background=background)
    with caplog.at_level(logging.WARNING, logger="steer"):
        feed(p, call_events(deltas=7))  # 10 events: 3 + 3 + 3 + 1
        assert p.flush(timeout=30)
    assert batches == [3, -1, 3, 1] and p.metrics.handler_errors == 1 and p.metrics.batches == 3
    assert len([r for r in caplog.records if "batch handler bug" in r.getMessage()]) == 1


def test_batch_options_need_a_handler() -> None:
    with pytest.raises(ValueError):
        steer.create_event_processor(batch_size=10)
    with pytest.raises(ValueError):
        steer.create_event_processor(batch_size=0, batch_handler=print)


# -- background mode and isolation -----------------------------------------------------------------------
def test_background_mode_runs_handlers_off_the_callers_thread(processors: Any) -> None:
    threads: List[str] = []
    got: List[Any] = []

    def handler(event: Any) -> None:
        threads.append(threading.current_thread().name)
        got.append(event)

    p = processors(background=True, handler=handler)
    events = call_events("a", deltas=50) + call_events("b", deltas=50)
    feed(p, events)
    assert p.flush(timeout=30)
    assert got == events and set(threads) == {"steer-event-processor"}


@pytest.mark.parametrize("background", [False, True])
def test_a_stuck_handler_never_stalls_the_caller(background: bool, processors: Any) -> None:
    gate = threading.Event()
    batches: List[List[Any]] = []

    def stuck(batch: List[Any]) -> None:
        gate.wait(60)
        batches.append(batch)

    p = processors(batch_size=10, batch_handler=stuck, background=background, max_queue_size=50)
    calls = [call_events(f"r{i}", deltas=300) for i in range(10)]
    for events in calls:
        feed(p, events)  # returns although the handler is blocked: the caller never waits for it
    assert not gate.is_set()
    m = p.metrics
    assert m.dropped > 0 and m.queued <= 100
    gate.set()
    assert p.flush(timeout=60)
    delivered = [e for b in batches for e in b]
    m = p.metrics
    if background:  # dropped at the queue, before the pipeline
        assert len(delivered) == m.emitted and m.events_in == m.emitted + m.dropped + m.filtered
    else:  # inline, the pipeline ran; whole batches were dropped at the queue
        assert len(delivered) + m.dropped == m.emitted == m.events_in and m.dropped % 10 == 0
    assert len(set(map(id, delivered))) == len(delivered)  # each exactly once
    if background:  # lifecycle events have their reserve: every call's end got through
        assert sum(isinstance(e, StreamCompleteEvent) for e in delivered) == 10


def test_flush_from_inside_a_handler_does_not_deadlock(processors: Any) -> None:
    answers: List[bool] = []
    holder: List[EventProcessor] = []
    p = processors(background=True, handler=lambda e: answers.append(holder[0].flush(timeout=1)))
    holder.append(p)
    feed(p, call_events(deltas=1))
    assert p.flush(timeout=30) and answers == [False, False, False, False]


def test_after_shutdown_events_are_dropped_and_counted() -> None:
    got: List[Any] = []
    p = steer.create_event_processor(background=True, handler=got.append)
    feed(p, call_events())
    assert p.shutdown(timeout=30) and len(got) == 6
    feed(p, call_events("late"))
    assert len(got) == 6 and p.metrics.dropped == 6 and p.flush()


def test_accepted_events_are_delivered_at_interpreter_exit(tmp_path: Path) -> None:
    out = tmp_path / "delivered.txt"
    script = textwrap.dedent(f"""
        import time, steer
        from steer.events import StreamDeltaEvent
        sink = open({str(out)!r}, "w")
        def slow(batch):
            time.sleep(0.001)
            sink.write("".join(e.delta + "\\n" for e in batch)); sink.flush()
        p = steer.create_event_processor(background=True, batch_size=7, batch_timeout_ms=60_000, batch_handler=slow)
        for i in range(500):
            p.process(StreamDeltaEvent(provider="openai", model="m", request_id="r", stream_id="r", timestamp=0.0, delta=str(i)))
        # no flush(), no shutdown(): the atexit hook delivers what was accepted
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120, cwd=ROOT)
    assert out.read_text().split() == [str(i) for i in range(500)]


def test_an_unused_processor_can_be_collected() -> None:
    import gc
    import weakref

    p = steer.create_event_processor(background=True, handler=lambda e: None)
    feed(p, call_events())
    assert p.flush(timeout=30)
    ref = weakref.ref(p)
    del p
    gc.collect()
    assert ref() is None  # the worker thread holds only a weak reference


# -- behind real streams -----------------------------------------------------------------------------------
TEXT = load("openai/chat_gpt4_include_usage.json")


def chat_stream(is_async: bool) -> Any:
    import openai
    import openai.resources.chat.completions as completions

    served = Served(TEXT)
    kwargs = request_kwargs(TEXT, completions.Completions.create)
    if is_async:
        client = openai.AsyncOpenAI(api_key="x", http_client=served.async_client(), max_retries=0)
    else:
        client = openai.OpenAI(api_key="x", http_client=served.client(), max_retries=0)
    return client.chat.completions.create(**kwargs)


@pytest.mark.parametrize("background", [False, True])
async def test_async_handler_on_an_async_stream_runs_on_the_processors_loop(background: bool, instrumented: Any,
                                                                            processors: Any) -> None:
    caller_loop = asyncio.get_running_loop()
    gate = threading.Event()
    seen: List[Any] = []

    async def handler(event: Any) -> None:
        assert asyncio.get_running_loop() is not caller_loop
        await asyncio.get_running_loop().run_in_executor(None, gate.wait, 60)  # stuck until the stream is over
        seen.append(event)

    p = processors(handler=handler, background=background)
    instrumented(event_processor=p)
    chunks = [c async for c in await chat_stream(is_async=True)]
    assert chunks and not seen  # the stream finished while the handler was still stuck
    gate.set()
    assert await p.aflush(timeout=60)
    assert [type(e) for e in seen][0] is StreamStartEvent and type(seen[-1]) is StreamCompleteEvent
    assert [e.metadata["sequence"] for e in seen] == list(range(len(seen)))


def test_a_sync_stream_with_a_failing_processor_handler_is_unchanged(instrumented: Any, processors: Any) -> None:
    reference = [c.model_dump() for c in chat_stream(is_async=False)]
    p = processors(handler=lambda e: 1 / 0, batch_size=2, batch_handler=lambda b: 1 / 0)
    telemetry = instrumented(event_processor=p)
    assert [c.model_dump() for c in chat_stream(is_async=False)] == reference
    assert p.flush(timeout=30)
    m = p.metrics
    assert m.emitted == m.events_in and m.handler_errors == m.emitted + -(-m.emitted // 2)
    (span,) = telemetry.genai_spans()
    assert span.attributes["steer.stream.end"] == "complete"


def test_instrument_refuses_something_that_is_not_a_processor() -> None:
    with pytest.raises(TypeError):
        steer.instrument(event_processor=lambda e: None)
    steer.uninstrument()
    assert isinstance(steer.EventProcessor(), steer.EventProcessor)
    assert steer.create_event_processor().metrics.events_in == 0
    assert StreamErrorEvent  # the error event goes through the same pipeline (see test_callbacks)

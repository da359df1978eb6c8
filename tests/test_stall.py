"""Live stall detection: a stream silent for longer than ``stall_after`` is visible while it is still open
(gauge, StreamStallEvent, on_stall), and its span says how long each silence lasted — through the real
SDKs against the devserver's ``stall`` fault (first chunk, then silence) and a slow-paced stream."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any, Dict, List

import anthropic
import openai
import pytest

import steer
from steer.config import load_settings
from steer.tools.devserver import DevServer
from steer.events import StreamStallEvent
from steer.watchdog import WATCHDOG

USER = [{"role": "user", "content": "Say something"}]
STALL_AFTER = 0.3
READ_TIMEOUT = 2.0  # the stalled server never answers: the SDK's read timeout ends the call


def stalled_gauge(telemetry: Any) -> int:
    return sum(p.value for p in telemetry.metrics().get("steer.client.streams.stalled", []))


def stall_events(span: Any) -> List[Dict[str, Any]]:
    return [dict(e.attributes) for e in span.events if e.name == "steer.stream.stall"]


def test_a_stalled_sync_stream_is_seen_while_open(instrumented: Any) -> None:
    seen_while_open: List[Any] = []

    def on_stall(event: StreamStallEvent) -> None:  # runs on the watchdog's thread while the caller waits
        seen_while_open.append((event, stalled_gauge(telemetry), len(telemetry.genai_spans()), threading.current_thread().name))

    telemetry = instrumented(stall_after=STALL_AFTER, on_stall=on_stall)
    with DevServer(chunk_delay=0) as server:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0, timeout=READ_TIMEOUT)
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True,
                                                extra_headers={"x-steer-fault": "stall"})
        with pytest.raises(openai.APITimeoutError):
            for _ in stream:
                pass
    # The last one is the stall fault's silence (a loaded machine may add one before the first chunk).
    event, gauge, spans_ended, thread = seen_while_open[-1]
    assert (gauge, spans_ended, thread) == (1, 0, "steer-stall-watchdog")  # live: the call had not ended
    assert event.silent_ms >= STALL_AFTER * 1e3 and event.stall_after_ms == STALL_AFTER * 1e3
    assert event.total_chunks >= 1 and event.stall_count == len(seen_while_open) and event.provider == "openai"
    assert event.metadata["trace_id"]
    (span,) = telemetry.genai_spans()
    assert span.attributes["steer.stream.stalls"] == len(seen_while_open) and span.attributes["steer.stream.end"] == "error"
    stall = stall_events(span)[-1]
    assert stall["steer.stream.stall.resumed"] is False  # the call ended (timed out) while silent
    assert READ_TIMEOUT * 0.9 <= stall["steer.stream.stall.gap"] < READ_TIMEOUT + 2
    assert stalled_gauge(telemetry) == 0  # over: the series goes back to 0


async def test_a_stalled_async_stream_shows_on_the_gauge_while_open(instrumented: Any) -> None:
    events: List[Any] = []
    processed: List[Any] = []
    processor = steer.create_event_processor(event_types=["stall"], handler=processed.append)
    telemetry = instrumented(stall_after=STALL_AFTER, on_stall=events.append, event_processor=processor)
    with DevServer(chunk_delay=0) as server:
        client = anthropic.AsyncAnthropic(base_url=server.anthropic_base_url, api_key="x", max_retries=0, timeout=30)

        async def read() -> None:
            stream = await client.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=USER, stream=True,
                                                  extra_headers={"x-steer-fault": "stall"})
            async for _ in stream:
                pass

        task = asyncio.create_task(read())
        for _ in range(100):  # the gauge is read from the open streams when collected; the event comes on
            await asyncio.sleep(0.05)  # the watchdog's next look (within stall_after / 4)
            if stalled_gauge(telemetry) and events:
                break
        assert stalled_gauge(telemetry) == 1 and not task.done() and events
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await client.close()
    assert [type(e) for e in processed] == [StreamStallEvent]
    (span,) = telemetry.genai_spans()
    assert span.attributes["steer.stream.stalls"] == len(events) >= 1
    assert stall_events(span)[-1]["steer.stream.stall.resumed"] is False
    assert stalled_gauge(telemetry) == 0


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_silences_that_end_are_measured_exactly(is_async: bool, instrumented: Any) -> None:
    events: List[Any] = []
    telemetry = instrumented(stall_after=STALL_AFTER, on_stall=events.append)
    pace = {"x-steer-chunk-delay": "0.6", "x-steer-chunks": "3"}  # every gap between content chunks is a stall
    with DevServer(chunk_delay=0) as server:
        if is_async:
            client = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0)
            async for _ in await client.chat.completions.create(model="gpt-4o", messages=USER, stream=True, extra_headers=pace):
                pass
            await client.close()
        else:
            client = openai.OpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0)
            for _ in client.chat.completions.create(model="gpt-4o", messages=USER, stream=True, extra_headers=pace):
                pass
    (span,) = telemetry.genai_spans()
    stalls = stall_events(span)
    assert span.attributes["steer.stream.stalls"] == len(stalls) == len(events) >= 2
    assert all(s["steer.stream.stall.resumed"] for s in stalls)
    paced = [s["steer.stream.stall.gap"] for s in stalls if s["steer.stream.stall.gap"] >= 0.55]
    assert len(paced) == 2  # (a loaded machine may add a silence before the first chunk)
    assert max(paced) == span.attributes["steer.stream.max_chunk_gap"]  # the same clock readings, not a tick's
    assert [e.stall_count for e in events] == list(range(1, len(events) + 1))
    times = [e.timestamp for e in span.events]
    assert times == sorted(times)  # each at the time its silence began


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_silences_the_watchdog_did_not_see_still_count(is_async: bool, instrumented: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """On a busy machine the watchdog's thread may get no core (or no GIL) while a silence lasts, or look
    only after it ended. The stream's own clock readings still make it a stall: the chunk that ends the
    silence (or the end of the call) records it and sends its StreamStallEvent. Here the watchdog never
    looks at all: two paced silences that resumed, then one the call ended in (the read timeout)."""
    monkeypatch.setattr(WATCHDOG, "add", lambda session: None)
    events: List[Any] = []
    telemetry = instrumented(stall_after=STALL_AFTER, on_stall=events.append)
    pace = {"x-steer-chunk-delay": "0.6", "x-steer-chunks": "3"}
    timeout = 1.0
    with DevServer(chunk_delay=0) as server:
        if is_async:
            client = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0, timeout=timeout)
            async for _ in await client.chat.completions.create(model="gpt-4o", messages=USER, stream=True, extra_headers=pace):
                pass
            with pytest.raises(openai.APITimeoutError):
                async for _ in await client.chat.completions.create(model="gpt-4o", messages=USER, stream=True,
                                                                     extra_headers={"x-steer-fault": "stall"}):
                    pass
            await client.close()
        else:
            client = openai.OpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0, timeout=timeout)
            for _ in client.chat.completions.create(model="gpt-4o", messages=USER, stream=True, extra_headers=pace):
                pass
            with pytest.raises(openai.APITimeoutError):
                for _ in client.chat.completions.create(model="gpt-4o", messages=USER, stream=True,
                                                        extra_headers={"x-steer-fault": "stall"}):
                    pass
    paced, stalled = telemetry.genai_spans()
    stalls = stall_events(paced)
    gaps = [s["steer.stream.stall.gap"] for s in stalls if s["steer.stream.stall.gap"] >= 0.55]
    assert len(gaps) == 2 and all(s["steer.stream.stall.resumed"] for s in stalls)  # (+ maybe one before chunk 1)
    assert paced.attributes["steer.stream.stalls"] == len(stalls)
    assert max(gaps) == paced.attributes["steer.stream.max_chunk_gap"]  # the chunks' own clock readings
    (last,) = stall_events(stalled)[-1:]
    assert last["steer.stream.stall.resumed"] is False and timeout * 0.9 <= last["steer.stream.stall.gap"] < timeout + 2
    assert stalled.attributes["steer.stream.stalls"] == len(stall_events(stalled))
    assert len(events) == len(stalls) + len(stall_events(stalled))  # each also reached on_stall, in order
    assert [e.stall_count for e in events] == list(range(1, len(stalls) + 1)) + list(range(1, len(stall_events(stalled)) + 1))
    assert all(e.silent_ms >= STALL_AFTER * 1e3 for e in events)


def test_a_gap_shorter_than_stall_after_is_no_stall(instrumented: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(WATCHDOG, "add", lambda session: None)
    telemetry = instrumented(stall_after=5.0)
    with DevServer(chunk_delay=0) as server:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0)
        for _ in client.chat.completions.create(model="gpt-4o", messages=USER, stream=True,
                                                extra_headers={"x-steer-chunk-delay": "0.2", "x-steer-chunks": "3"}):
            pass
    (span,) = telemetry.genai_spans()
    assert span.attributes["steer.stream.max_chunk_gap"] >= 0.15
    assert span.attributes["steer.stream.stalls"] == 0 and not stall_events(span)


def test_healthy_streams_have_no_stall_and_the_watchdog_stops(instrumented: Any) -> None:
    telemetry = instrumented(stall_after=STALL_AFTER)
    before = len(WATCHDOG.watched())  # (streams another test left to the garbage collector may be there)
    WATCHDOG.stop()
    assert not WATCHDOG.running  # nothing open: no thread
    with DevServer(chunk_delay=0) as server:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0)
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
        assert WATCHDOG.running  # started by the first open stream
        for _ in stream:
            pass
    (span,) = telemetry.genai_spans()
    assert span.attributes["steer.stream.stalls"] == 0 and not stall_events(span)
    assert len(WATCHDOG.watched()) == before
    steer.uninstrument()
    assert not WATCHDOG.running


def test_stall_detection_off(instrumented: Any) -> None:
    telemetry = instrumented(stall_after=0)
    before = len(WATCHDOG.watched())
    with DevServer(chunk_delay=0) as server:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0)
        for _ in client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True):
            assert len(WATCHDOG.watched()) == before
    (span,) = telemetry.genai_spans()
    assert "steer.stream.stalls" not in span.attributes


def test_a_forked_child_forgets_the_parents_watchdog(instrumented: Any) -> None:
    instrumented(stall_after=STALL_AFTER)
    with DevServer(chunk_delay=0) as server:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0)
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
        assert WATCHDOG.running and stream._self_session in WATCHDOG.watched()
        pid = os.fork()
        if pid == 0:  # the child: no parent thread, no parent streams; its own stream starts its own watchdog
            code = 1
            try:
                if not WATCHDOG.running and not WATCHDOG.watched():
                    child = openai.OpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0)
                    child_stream = child.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
                    code = 0 if WATCHDOG.running and len(WATCHDOG.watched()) == 1 else 2
                    child_stream.close()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        stream.close()
    assert os.waitstatus_to_exitcode(status) == 0


def test_stall_after_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STEER_STALL_AFTER", raising=False)
    assert load_settings().stall_after == 30.0
    monkeypatch.setenv("STEER_STALL_AFTER", "2.5")
    assert load_settings().stall_after == 2.5
    assert load_settings(stall_after=1).stall_after == 1.0  # the argument wins
    assert load_settings(stall_after=None).stall_after is None
    for off in ("0", "off"):
        monkeypatch.setenv("STEER_STALL_AFTER", off)
        assert load_settings().stall_after is None
    monkeypatch.setenv("STEER_STALL_AFTER", "soon")
    with pytest.raises(ValueError):
        load_settings()

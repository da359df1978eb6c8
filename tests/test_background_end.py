"""The end of a call is recorded on steer's one background thread (issue 15): the caller's loop ends
as soon as the SDK's, and nothing is lost — flushed by steer.flush(), provider force_flush()/shutdown(),
uninstrument() and exit; a full queue records inline; listeners keep the end on the caller's thread."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List

import openai
import openai.resources.chat.completions as chat_completions
import pytest

import steer
from recordings import Served, load, request_kwargs
from steer.telemetry import background

CHAT = load("openai/chat_gpt4_include_usage.json")


def openai_client() -> Any:
    return openai.OpenAI(api_key="x", http_client=Served(CHAT).client(), max_retries=0)


def chat_kwargs() -> Dict[str, Any]:
    return request_kwargs(CHAT, chat_completions.Completions.create)


class Blocked:
    """Holds steer's worker inside a job until released: whatever ends meanwhile waits in the queue."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        assert background.WORKER.submit(self._job)
        assert self.entered.wait(5)

    def _job(self) -> None:
        self.entered.set()
        self.release.wait(10)


def test_the_caller_does_not_wait_for_the_end_of_call_work(instrumented: Any) -> None:
    telemetry = instrumented()
    blocked = Blocked()
    try:
        for _ in openai_client().chat.completions.create(**chat_kwargs()):
            pass
        loop_ended = time.time_ns()
        assert not telemetry.exporter.get_finished_spans()  # the span ends on the worker, later
        # steer's own count: the stream ended on the caller's thread (read without a flush, which would
        # wait for the blocked worker)
        assert telemetry.active_streams(flush=False) == 0
    finally:
        blocked.release.set()
    assert steer.flush(5)
    (span,) = telemetry.exporter.get_finished_spans()
    assert span.end_time <= loop_ended  # the end time was taken when the stream ended, not when recorded
    assert span.attributes["steer.stream.end"] == "complete" and span.attributes["gen_ai.usage.output_tokens"]


def test_the_worker_leaves_the_gil_to_the_caller_whose_loop_is_ending(instrumented: Any, monkeypatch: Any) -> None:
    """A caller that releases the GIL right after its loop ended (an event loop's select, a socket close)
    does not find steer's worker recording the call then: the worker waits DEFER_S first (lengthened
    here so that the test sees it), then records; a flush does not wait for the deferral."""
    monkeypatch.setattr(background, "DEFER_S", 30.0)
    telemetry = instrumented()
    for _ in openai_client().chat.completions.create(**chat_kwargs()):
        pass
    for _ in range(20):
        time.sleep(0.001)  # the GIL released, as an event loop would between two steps
    assert not telemetry.exporter.get_finished_spans()
    flushed_at = time.monotonic()
    assert steer.flush(20) and time.monotonic() - flushed_at < 20  # the flush cut the 30 s deferral short
    (span,) = telemetry.exporter.get_finished_spans()
    assert span.attributes["steer.stream.end"] == "complete"


def test_provider_force_flush_and_shutdown_drain_steer_first(instrumented: Any) -> None:
    telemetry = instrumented()
    blocked = Blocked()
    threading.Timer(0.2, blocked.release.set).start()
    list(openai_client().chat.completions.create(**chat_kwargs()))
    telemetry.tracer_provider.force_flush()  # an application's own flush, no steer call
    assert len(telemetry.exporter.get_finished_spans()) == 1
    blocked = Blocked()
    threading.Timer(0.2, blocked.release.set).start()
    list(openai_client().chat.completions.create(**chat_kwargs()))
    telemetry.meter_provider.force_flush()
    data = telemetry.reader.get_metrics_data()
    durations = [p for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
                 if m.name == "gen_ai.client.operation.duration" for p in m.data.data_points]
    assert sum(p.count for p in durations) == 2


def test_uninstrument_records_every_ended_call(instrumented: Any) -> None:
    telemetry = instrumented()
    blocked = Blocked()
    threading.Timer(0.2, blocked.release.set).start()
    list(openai_client().chat.completions.create(**chat_kwargs()))
    steer.uninstrument()
    assert len(telemetry.exporter.get_finished_spans()) == 1


def test_a_full_queue_records_inline(instrumented: Any, monkeypatch: Any) -> None:
    telemetry = instrumented()
    blocked = Blocked()
    try:
        monkeypatch.setattr(background, "MAX_QUEUED", 0)
        list(openai_client().chat.completions.create(**chat_kwargs()))
        assert len(telemetry.exporter.get_finished_spans()) == 1  # recorded before the loop ended
    finally:
        blocked.release.set()


@pytest.mark.parametrize("options", [{"finish_in_background": False}, {"on_complete": lambda event: None}],
                         ids=["inline-option", "listener"])
def test_inline_when_asked_or_when_a_listener_waits_for_the_end(instrumented: Any, options: Dict[str, Any]) -> None:
    telemetry = instrumented(**options)
    blocked = Blocked()
    try:
        list(openai_client().chat.completions.create(**chat_kwargs()))
        assert len(telemetry.exporter.get_finished_spans()) == 1
    finally:
        blocked.release.set()


def test_on_complete_runs_before_the_callers_loop_ends_in_event_order(instrumented: Any) -> None:
    seen: List[str] = []
    instrumented(on_start=lambda e: seen.append("start"), on_usage=lambda e: seen.append("usage"),
                 on_complete=lambda e: seen.append("complete"))
    for _ in openai_client().chat.completions.create(**chat_kwargs()):
        pass
    assert seen == ["start", "usage", "complete"]


def test_streams_active_is_observed_from_steers_count_and_returns_to_zero(instrumented: Any) -> None:
    telemetry = instrumented()
    stream = openai_client().chat.completions.create(**chat_kwargs())
    other = openai_client().chat.completions.create(**chat_kwargs())
    assert telemetry.active_streams() == 2
    list(stream)
    assert telemetry.active_streams() == 1
    other.close()
    points = telemetry.metrics()["steer.client.streams.active"]
    assert [p.value for p in points] == [0] and points[0].attributes["gen_ai.provider.name"] == "openai"


CHILD = r"""
import os, sys, threading
sys.path.insert(0, {tests!r})
from test_background_end import openai_client, chat_kwargs
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import steer
exporter = InMemorySpanExporter(); tp = TracerProvider(); tp.add_span_processor(SimpleSpanProcessor(exporter))
steer.instrument(providers=["openai"], tracer_provider=tp)
list(openai_client().chat.completions.create(**chat_kwargs()))  # starts the parent's worker
steer.flush(5)
pid = os.fork()
if pid == 0:
    names = [t.name for t in threading.enumerate()]
    list(openai_client().chat.completions.create(**chat_kwargs()))
    steer.flush(5)
    print("child", "steer-end-of-call" in names, len(exporter.get_finished_spans()), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
steer.flush(5)
print("parent", len(exporter.get_finished_spans()), flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() only")
def test_a_forked_child_starts_its_own_worker() -> None:
    code = CHILD.format(tests=os.path.dirname(__file__))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # The child inherits no worker thread, records its own call (plus the parent's, ended before the
    # fork and copied with the exporter's memory), and the parent loses nothing.
    assert "child False 2" in out.stdout and "parent 1" in out.stdout, out.stdout + out.stderr

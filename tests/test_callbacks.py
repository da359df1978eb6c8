"""User callbacks and the event sequence they see.

Every recording of every provider steer instruments gives the same shape of events, through the real
SDK: Start, Delta+ (when the call produced output), Usage (when reported or estimated), then exactly one
Complete or Error — all with the call's request_id/stream_id and its span's trace/span ids. Callbacks may
be plain or coroutine functions, never block or break the stream, and a raising one is logged once and
counted. ``StreamErrorEvent.is_retryable`` and the span's ``error.type`` come from one classification.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import threading
from typing import Any, Awaitable, Callable, Dict, List, Optional

import anthropic
import httpx
import httpx2
import openai
import openai.resources.chat.completions
import openai.resources.responses
import pytest
from google import genai
from google.genai import types as genai_types
from google.oauth2.credentials import Credentials

import steer
from recordings import Served, all_recordings, ids, request_kwargs
from steer import instrumentation
from steer.events import StreamCompleteEvent, StreamDeltaEvent, StreamErrorEvent, StreamStartEvent, StreamUsageEvent
from steer.processing import errors as error_rules
from steer.wrapping.registry import all_targets

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")

BASE_URLS = {
    "openai": "https://api.openai.com/v1", "xai": "https://api.x.ai/v1", "openrouter": "https://openrouter.ai/api/v1",
    "groq": "https://api.groq.com/openai/v1", "mistral": "https://api.mistral.ai/v1", "deepseek": "https://api.deepseek.com",
    "together": "https://api.together.xyz/v1",
}


# -- how to make each recorded call with its real SDK --------------------------------------------------
def _openai_client(rec: Dict[str, Any], is_async: bool) -> Any:
    served = Served(rec)
    http = served.async_client() if is_async else served.client()
    if rec["provider"] == "azure_openai":
        cls = openai.AsyncAzureOpenAI if is_async else openai.AzureOpenAI
        return cls(api_key="x", api_version="2024-02-01", azure_endpoint="https://r.openai.azure.com", http_client=http, max_retries=0)
    cls = openai.AsyncOpenAI if is_async else openai.OpenAI
    return cls(api_key="x", base_url=BASE_URLS[rec["provider"]], http_client=http, max_retries=0)


def _openai_call(resource: str, method: Any, defaults: Dict[str, Any]) -> Callable[..., Any]:
    def call(rec: Dict[str, Any], is_async: bool) -> Any:
        client = _openai_client(rec, is_async)
        kwargs = request_kwargs(rec, method)
        for key, value in defaults.items():
            kwargs.setdefault(key, value)
        kwargs.setdefault("model", rec["model"])
        kwargs["stream"] = True
        target = client.chat.completions if resource == "chat" else client.responses
        return target.create(**kwargs)

    return call


def _anthropic_call(rec: Dict[str, Any], is_async: bool) -> Any:
    served = Served(rec, httpx2)
    cls = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
    client = cls(api_key="x", http_client=served.async_client() if is_async else served.client(), max_retries=0,
                 open_telemetry=False)
    res = client.beta.messages if "beta=true" in rec["request"]["path"] else client.messages
    body = {k: v for k, v in (rec["request"]["body"] or {}).items() if k != "stream"}
    return res.create(stream=True, **request_kwargs({"request": {"body": body}}, type(res).create))


def _google_call(stream: bool) -> Callable[..., Any]:
    def call(rec: Dict[str, Any], is_async: bool) -> Any:
        served = Served(rec)
        options = genai_types.HttpOptions(httpx_client=served.client(), httpx_async_client=served.async_client())
        parts = rec["request"]["path"].split("/")
        if "projects" in parts:
            client = genai.Client(vertexai=True, project=parts[parts.index("projects") + 1],
                                  location=parts[parts.index("locations") + 1], credentials=Credentials(token="t"),
                                  http_options=options)
        else:
            client = genai.Client(api_key="k", http_options=options)
        body = rec["request"]["body"] or {}
        config = dict(body.get("generationConfig") or {})
        for wire, name in (("systemInstruction", "system_instruction"), ("tools", "tools"), ("safetySettings", "safety_settings")):
            if body.get(wire):
                config[name] = body[wire]
        kwargs = {"model": rec["model"], "contents": body.get("contents") or "hi", "config": config or None}
        models = client.aio.models if is_async else client.models
        return (models.generate_content_stream if stream else models.generate_content)(**kwargs)

    return call


CALLS: Dict[str, Callable[..., Any]] = {
    "openai.chat.completions": _openai_call("chat", openai.resources.chat.completions.Completions.create,
                                            {"messages": [{"role": "user", "content": "hi"}]}),
    "openai.responses": _openai_call("responses", openai.resources.responses.Responses.create, {"input": "hi"}),
    "anthropic.messages": _anthropic_call,
    "google.generate_content_stream": _google_call(stream=True),
    "google.generate_content": _google_call(stream=False),
}


async def drain(result: Any) -> None:
    """Await and iterate whatever the SDK call gave back (a stream, a coroutine of one, a response)."""
    if inspect.iscoroutine(result):  # not asyncio.iscoroutine: that one also accepts generators
        result = await result
    if hasattr(result, "__aiter__"):
        async for _ in result:
            pass
    elif hasattr(result, "__iter__") and not isinstance(result, (dict, str, bytes)) and not hasattr(result, "model_dump"):
        for _ in result:
            pass


async def run_recording(rec: Dict[str, Any], is_async: bool) -> Optional[BaseException]:
    try:
        await drain(CALLS[rec["api"]](rec, is_async))
    except Exception as exc:  # the SDK's own error for error recordings: the events say the same
        return exc
    return None


class Recorder:
    """Every event, through all five callbacks, in arrival order."""

    def __init__(self) -> None:
        self.events: List[Any] = []

    def options(self) -> Dict[str, Callable[[Any], None]]:
        slots = ("on_start", "on_delta", "on_usage", "on_complete", "on_error")
        return {slot: self.events.append for slot in slots}


REGISTERED = {t.spec.api for t in all_targets() if t.spec is not None}
RECORDINGS = all_recordings()


def assert_sequence_shape(events: List[Any]) -> None:
    kinds = [type(e) for e in events]
    assert kinds[0] is StreamStartEvent and kinds.count(StreamStartEvent) == 1
    terminal = [k for k in kinds if k in (StreamCompleteEvent, StreamErrorEvent)]
    assert len(terminal) == 1 and kinds[-1] is terminal[0], kinds
    assert kinds.count(StreamUsageEvent) <= 1
    if StreamUsageEvent in kinds:
        assert kinds[-2] is StreamUsageEvent  # usage right before the end
    middle = kinds[1:len(kinds) - 1 - kinds.count(StreamUsageEvent)]
    assert all(k is StreamDeltaEvent for k in middle)
    indexes = [e.chunk_index for e in events if isinstance(e, StreamDeltaEvent)]
    assert indexes == sorted(indexes)
    assert events[0].request_id and len({(e.request_id, e.stream_id) for e in events}) == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("rec", RECORDINGS, ids=ids(RECORDINGS))
async def test_every_recording_gives_the_same_event_shape(rec: Dict[str, Any], mode: str, instrumented: Any) -> None:
    if rec["api"] not in REGISTERED:
        pytest.skip(f"{rec['api']}: no steer patch target in wrapping/registry.py yet")
    if rec["api"] not in CALLS:
        pytest.skip(f"{rec['api']}: this test does not know how to call that SDK yet")
    recorder = Recorder()
    processed: List[Any] = []
    processor = steer.create_event_processor(handler=processed.append)
    telemetry = instrumented(event_processor=processor, **recorder.options())
    error = await run_recording(rec, mode == "async")
    events = recorder.events

    assert_sequence_shape(events)
    assert processed == events  # the processor saw the very same events, in the same order
    assert [e.metadata["sequence"] for e in processed] == list(range(len(events)))
    end = events[-1]
    if isinstance(end, StreamCompleteEvent):
        assert error is None
        if end.text or end.reasoning or end.tool_calls:
            assert any(isinstance(e, StreamDeltaEvent) for e in events), "output without a single delta event"
        assert (end.final_usage is not None and end.final_usage.source != "none") == isinstance(events[-2], StreamUsageEvent)
    else:
        assert rec["response"]["status"] != 200 or error is not None or end.error is None  # SDK error, or in-stream
        if error is not None:
            assert end.error is error  # the very exception the caller got

    (span,) = telemetry.genai_spans()
    ids_ = {"trace_id": format(span.context.trace_id, "032x"), "span_id": format(span.context.span_id, "016x")}
    assert all(e.metadata["trace_id"] == ids_["trace_id"] and e.metadata["span_id"] == ids_["span_id"] for e in events)
    if isinstance(end, StreamErrorEvent):
        assert span.attributes["error.type"] == end.error_type
    else:
        assert "error.type" not in span.attributes
    processor.shutdown()


def test_http_error_recordings_say_whether_to_retry(instrumented: Any) -> None:
    expected = {404: False, 400: False, 429: True}
    errors: List[StreamErrorEvent] = []
    instrumented(on_error=errors.append)
    checked = 0
    for rec in RECORDINGS:
        status = rec["response"]["status"]
        if status == 200 or rec["api"] not in REGISTERED or rec["api"] not in CALLS:
            continue
        asyncio.run(run_recording(rec, False))
        assert errors[-1].is_retryable is expected[status], rec["_name"]
        checked += 1
    assert checked >= 2


def test_in_stream_error_is_an_error_event(instrumented: Any) -> None:
    rec = next(r for r in RECORDINGS if r["_name"] == "groq/groq_midstream_error_event_tool_use_failed.json")
    recorder = Recorder()
    instrumented(**recorder.options())
    asyncio.run(run_recording(rec, False))
    end = recorder.events[-1]
    # The SDK raises APIError for the `event: error`; its body says invalid_request_error: not retryable.
    assert isinstance(end, StreamErrorEvent) and isinstance(end.error, openai.APIError) and not end.is_retryable


# -- the classification itself, with the real SDKs' exceptions -----------------------------------------
def _status_client(status: int, body: Dict[str, Any], sdk: str = "openai") -> Any:
    mod = httpx2 if sdk == "anthropic" else httpx
    transport = mod.MockTransport(lambda request: mod.Response(status, json=body))
    if sdk == "anthropic":
        return anthropic.Anthropic(api_key="x", http_client=mod.Client(transport=transport), max_retries=0, open_telemetry=False)
    return openai.OpenAI(api_key="x", http_client=mod.Client(transport=transport), max_retries=0)


def _call(client: Any) -> None:
    if isinstance(client, anthropic.Anthropic):
        client.messages.create(model="claude-3-5-haiku", max_tokens=5, messages=[{"role": "user", "content": "hi"}], stream=True)
    else:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True)


@pytest.mark.parametrize("status,retryable", [
    (400, False), (401, False), (403, False), (404, False), (422, False),
    (408, True), (409, True), (429, True), (500, True), (502, True), (503, True), (504, True),
])
def test_http_status_classification(status: int, retryable: bool, instrumented: Any) -> None:
    errors: List[StreamErrorEvent] = []
    telemetry = instrumented(on_error=errors.append)
    with pytest.raises(openai.APIStatusError) as caught:
        _call(_status_client(status, {"error": {"message": "no"}}))
    (event,) = errors
    assert event.error is caught.value and event.is_retryable is retryable
    assert telemetry.genai_spans()[0].attributes["error.type"] == event.error_type == type(caught.value).__name__


@pytest.mark.parametrize("status,kind,retryable", [
    (529, "overloaded_error", True), (500, "api_error", True), (429, "rate_limit_error", True),
    (401, "authentication_error", False), (403, "permission_error", False), (400, "invalid_request_error", False),
    (404, "not_found_error", False),
])
def test_anthropic_error_types(status: int, kind: str, retryable: bool, instrumented: Any) -> None:
    errors: List[StreamErrorEvent] = []
    instrumented(on_error=errors.append)
    with pytest.raises(anthropic.APIStatusError):
        _call(_status_client(status, {"type": "error", "error": {"type": kind, "message": "x"}}, sdk="anthropic"))
    assert errors[-1].is_retryable is retryable


def test_anthropic_overloaded_error_inside_the_stream(instrumented: Any) -> None:
    body = (b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","type":"message","role":"assistant",'
            b'"model":"claude-3-5-haiku","content":[],"stop_reason":null,"usage":{"input_tokens":3,"output_tokens":1}}}\n\n'
            b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n')
    transport = httpx2.MockTransport(lambda r: httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body))
    client = anthropic.Anthropic(api_key="x", http_client=httpx2.Client(transport=transport), max_retries=0, open_telemetry=False)
    errors: List[StreamErrorEvent] = []
    telemetry = instrumented(on_error=errors.append)
    with pytest.raises(anthropic.APIStatusError):
        list(client.messages.create(model="claude-3-5-haiku", max_tokens=5, stream=True,
                                    messages=[{"role": "user", "content": "hi"}]))
    assert errors[-1].is_retryable is True
    assert telemetry.genai_spans()[0].attributes["error.type"] == errors[-1].error_type


@pytest.mark.parametrize("exc", [httpx.ReadTimeout("slow"), httpx.ConnectError("reset"), httpx.RemoteProtocolError("peer closed")])
def test_timeouts_and_connection_resets_are_retryable(exc: Exception, instrumented: Any) -> None:
    def fail(request: Any) -> Any:
        raise exc

    client = openai.OpenAI(api_key="x", http_client=httpx.Client(transport=httpx.MockTransport(fail)), max_retries=0)
    errors: List[StreamErrorEvent] = []
    instrumented(on_error=errors.append)
    with pytest.raises((openai.APIConnectionError, type(exc))):
        _call(client)
    assert errors[-1].is_retryable is True


@pytest.mark.parametrize("exc,retryable", [
    (TimeoutError("t"), True), (ConnectionResetError("r"), True), (BrokenPipeError("p"), True),
    (ValueError("v"), False), (KeyError("k"), False),
])
def test_plain_exceptions(exc: Exception, retryable: bool) -> None:
    info = error_rules.classify_exception(exc)
    assert info.retryable is retryable and info.error_type == type(exc).__name__


def test_in_stream_error_shapes() -> None:
    assert error_rules.classify_stream_error({"type": "overloaded_error", "message": "m"}).retryable
    assert error_rules.classify_stream_error({"code": "rate_limit_exceeded"}).retryable
    assert error_rules.classify_stream_error({"status_code": 503, "message": "m"}).retryable
    assert not error_rules.classify_stream_error({"type": "invalid_request_error"}).retryable
    assert not error_rules.classify_stream_error({"message": "unknown"}).retryable


# -- callbacks: plain, coroutine, failing --------------------------------------------------------------
TEXT = next(r for r in RECORDINGS if r["_name"] == "openai/chat_gpt4_include_usage.json")


def chat(is_async: bool = False) -> Any:
    return CALLS["openai.chat.completions"](TEXT, is_async)


def test_raising_callbacks_never_break_the_stream(instrumented: Any, caplog: Any) -> None:
    expected = [c.model_dump() for c in chat()]  # the reference, before instrumenting
    seen: List[Any] = []

    def boom(event: Any) -> None:
        seen.append(event)
        raise RuntimeError("callback bug")

    instrumented(on_start=boom, on_delta=boom, on_complete=boom)
    with caplog.at_level(logging.WARNING, logger="steer"):
        got = [c.model_dump() for c in chat()]
        got_again = [c.model_dump() for c in chat()]
    assert got == expected == got_again
    deltas = sum(isinstance(e, StreamDeltaEvent) for e in seen)
    assert deltas > 2
    listeners = instrumentation.current_runtime().listeners
    assert listeners.errors == len(seen)  # every failure counted
    warnings = [r for r in caplog.records if "callback bug" in r.getMessage()]
    assert len(warnings) == 1  # one callback object, logged once


async def test_async_callbacks_on_an_async_stream_run_on_the_callers_loop(instrumented: Any) -> None:
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")
    seen: List[Any] = []
    loop = asyncio.get_running_loop()

    async def on_delta(event: Any) -> None:
        assert asyncio.get_running_loop() is loop
        seen.append((event.chunk_index, marker.get()))

    done = asyncio.Event()

    async def on_complete(event: Any) -> None:
        done.set()

    instrumented(on_delta=on_delta, on_complete=on_complete)
    marker.set("caller")
    async for _ in await chat(is_async=True):
        pass
    await asyncio.wait_for(done.wait(), 30)
    assert seen and all(m == "caller" for _, m in seen)
    assert [i for i, _ in seen] == sorted(i for i, _ in seen)  # started in event order


def test_async_callbacks_on_a_sync_stream_do_not_block_it(instrumented: Any) -> None:
    gate = threading.Event()
    finished = threading.Event()
    threads: List[str] = []

    async def on_complete(event: Any) -> None:
        threads.append(threading.current_thread().name)
        await asyncio.get_running_loop().run_in_executor(None, gate.wait, 30)
        finished.set()

    instrumented(on_complete=on_complete)
    chunks = list(chat())  # returns while the callback still waits on the gate
    assert chunks and not finished.is_set()
    gate.set()
    assert finished.wait(30)
    assert threads == ["steer-callbacks"]


def test_failing_async_callback_is_counted(instrumented: Any, caplog: Any) -> None:
    async def on_delta(event: Any) -> None:
        raise ValueError("async bug")

    instrumented(on_delta=on_delta)
    with caplog.at_level(logging.WARNING, logger="steer"):
        list(chat())
        listeners = instrumentation.current_runtime().listeners
        assert listeners.flush(timeout=30)
    assert listeners.errors >= 3
    assert len([r for r in caplog.records if "async bug" in r.getMessage()]) == 1


async def test_pending_coroutine_callbacks_are_bounded(instrumented: Any, monkeypatch: Any) -> None:
    from steer import callbacks

    monkeypatch.setattr(callbacks, "MAX_PENDING", 2)
    gate = asyncio.Event()
    ran: List[int] = []

    async def on_delta(event: Any) -> None:
        await gate.wait()
        ran.append(event.chunk_index)

    instrumented(on_delta=on_delta)
    chunks = [c async for c in await chat(is_async=True)]  # never waits for the stuck callbacks
    listeners = instrumentation.current_runtime().listeners
    deltas = sum(1 for c in chunks if c.choices and c.choices[0].delta.content)
    assert listeners.dropped == deltas - 2
    gate.set()
    for _ in range(100):
        if len(ran) == 2:
            break
        await asyncio.sleep(0.01)
    assert len(ran) == 2


def test_bad_callback_arguments_are_refused() -> None:
    with pytest.raises(TypeError):
        steer.instrument(on_delta="not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        steer.instrument(event_processor=object())
    steer.uninstrument()

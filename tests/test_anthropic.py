"""Anthropic Messages through the real anthropic SDK (2.x, on httpx2), over every recording of the wire
format: steer's assembly equals what the SDK's own ``MessageStream.get_final_message()`` builds from the
same bytes, the span follows the schema, and each call gives exactly one span — the SDK's own span is
taken over (see docs/providers/anthropic.md) — that ends once on every path."""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
from typing import Any, Dict, List, Optional, Tuple

import anthropic
import httpx2
import pytest
from anthropic.lib.streaming import AsyncMessageStream, AsyncMessageStreamManager, MessageStream, MessageStreamManager

import steer
from recordings import Served, all_recordings, body_pieces, ids, request_kwargs

# The recordings name models the SDK now warns about; that warning is not what these tests are about.
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")

ALL = all_recordings("anthropic.messages")
STREAMS = [r for r in ALL if r["response"]["status"] == 200]
HTTP_ERRORS = [r for r in ALL if r["response"]["status"] != 200]
TEXT = next(r for r in STREAMS if r["_name"] == "anthropic/messages_text_claude3_haiku.json")
TOOLS = next(r for r in STREAMS if r["_name"] == "anthropic/messages_tool_use_input_json_delta.json")
CACHE = next(r for r in STREAMS if r["_name"] == "anthropic/messages_prompt_cache_creation.json")
WEB_SEARCH = next(r for r in STREAMS if r["_name"] == "anthropic/messages_server_web_search.json")

FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}
SDK_SCOPE = "com.anthropic.sdk.python"


# -- helpers -------------------------------------------------------------------------------------------
def make_client(recording: Dict[str, Any], telemetry: Any = None, is_async: bool = False,
                served: Optional[Served] = None, **otel: Any) -> Tuple[Any, Served]:
    """The real client over the recording. The SDK's own tracing is ON and exports to the test's
    provider (unless ``telemetry`` is None), so a second span per call would be seen."""
    served = served or Served(recording, httpx2)  # the SDK (2.x) builds on httpx2
    option: Any = False if telemetry is None else {"tracer_provider": telemetry.tracer_provider, **otel}
    cls = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
    http = served.async_client() if is_async else served.client()
    return cls(api_key="x", http_client=http, max_retries=0, open_telemetry=option), served


def resource(client: Any, recording: Dict[str, Any]) -> Any:
    """``client.beta.messages`` for the recordings made against ``/v1/messages?beta=true``."""
    return client.beta.messages if "beta=true" in recording["request"]["path"] else client.messages


def kwargs_for(recording: Dict[str, Any], res: Any, method: str) -> Dict[str, Any]:
    """The recorded body as keyword arguments of ``method`` (``stream`` left out: each test says it)."""
    body = {k: v for k, v in (recording["request"]["body"] or {}).items() if k != "stream"}
    return request_kwargs({"request": {"body": body}}, getattr(type(res), method))


def sdk_reference(recording: Dict[str, Any]) -> Tuple[Any, int]:
    """Without steer: the SDK's own final Message from its stream helper, and the raw event count."""
    client, _ = make_client(recording)
    res = resource(client, recording)
    with res.stream(**kwargs_for(recording, res, "stream")) as stream:
        final = stream.get_final_message()
    raw = list(res.create(stream=True, **kwargs_for(recording, res, "create")))
    return final, len(raw)


def expected(final: Any) -> Dict[str, Any]:
    blocks, u = final.content, final.usage
    cached = (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0)
    return {
        "text": "".join(b.text for b in blocks if b.type == "text"),
        "reasoning": "".join(b.thinking for b in blocks if b.type == "thinking"),
        "tool_calls": [(b.id, b.name, b.input) for b in blocks if b.type == "tool_use"],
        "finish": [FINISH[final.stop_reason]],
        "input": u.input_tokens + cached,  # semconv: the TOTAL input, cache read and creation included
        "output": u.output_tokens,
        "cache_read": u.cache_read_input_tokens,
        "cache_creation": u.cache_creation_input_tokens,
    }


def only_span(telemetry: Any) -> Any:
    """Exactly one span for the call, in all: steer's (the SDK's own would be a second GenAI span)."""
    spans = telemetry.spans()
    assert [(s.name, s.instrumentation_scope.name) for s in spans] == [(spans[0].name, "steer")], spans
    assert len(telemetry.genai_spans()) == 1
    return spans[0]


# -- every recording, every surface ----------------------------------------------------------------------
@pytest.mark.parametrize("recording", STREAMS, ids=ids(STREAMS))
@pytest.mark.parametrize("surface", ["create", "stream"])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_recording_assembles_like_the_sdk(recording: Dict[str, Any], surface: str, mode: str, instrumented: Any) -> None:
    final, raw_count = sdk_reference(recording)
    completed: List[steer.StreamCompleteEvent] = []
    deltas: List[steer.StreamDeltaEvent] = []
    telemetry = instrumented(on_complete=completed.append, on_delta=deltas.append)
    client, served = make_client(recording, telemetry, is_async=mode == "async")
    res = resource(client, recording)
    if surface == "create":
        kw = kwargs_for(recording, res, "create")
        stream = res.create(stream=True, **kw) if mode == "sync" else await res.create(stream=True, **kw)
        assert isinstance(stream, anthropic.Stream if mode == "sync" else anthropic.AsyncStream)
        events = list(stream) if mode == "sync" else [e async for e in stream]
        assert len(events) == raw_count
    else:
        kw = kwargs_for(recording, res, "stream")
        if mode == "sync":
            with res.stream(**kw) as helper:
                got = helper.get_final_message()
        else:
            async with res.stream(**kw) as helper:
                got = await helper.get_final_message()
        assert got.to_dict() == final.to_dict()  # the helper works unchanged through steer's proxy

    want = expected(final)
    span = only_span(telemetry)
    attrs = dict(span.attributes)
    assert span.name == f"chat {recording['model']}"
    assert attrs["gen_ai.provider.name"] == "anthropic" and attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.stream"] is True
    assert (attrs["server.address"], attrs["server.port"]) == ("api.anthropic.com", 443)
    assert attrs["gen_ai.response.id"] == final.id and attrs["gen_ai.response.model"] == final.model
    assert attrs["gen_ai.response.finish_reasons"] == tuple(want["finish"])
    assert attrs["steer.stream.end"] == "complete"
    assert attrs["steer.stream.chunks"] == raw_count  # each wire event once, whichever helper drained it
    assert attrs["gen_ai.usage.input_tokens"] == want["input"]
    assert attrs["gen_ai.usage.output_tokens"] == want["output"]
    for key, name in (("cache_read", "gen_ai.usage.cache_read.input_tokens"),
                      ("cache_creation", "gen_ai.usage.cache_creation.input_tokens")):
        assert attrs.get(name) == want[key]
    assert span.status.status_code.name == "UNSET"

    (event,) = completed
    assert event.text == want["text"]
    assert event.reasoning == want["reasoning"]
    assert [(c.id, c.name, c.arguments) for c in event.tool_calls] == want["tool_calls"]
    assert event.finish_reasons == want["finish"]
    usage = event.final_usage
    assert (usage.source, usage.input_tokens, usage.output_tokens) == ("reported", want["input"], want["output"])
    assert usage.total_tokens == want["input"] + want["output"]
    reported = recording["reported_usage"]  # the recording's own note of what the stream carried
    assert usage.input_tokens == reported["input_tokens"] + (reported["cache_read_input_tokens"] or 0) + (
        reported["cache_creation_input_tokens"] or 0)
    assert usage.cache_creation_input_tokens == reported["cache_creation_input_tokens"]

    # Thinking arrives as reasoning deltas, never as output text; tool input as tool-call fragments.
    by_kind: Dict[str, str] = {}
    for d in deltas:
        by_kind[d.kind] = by_kind.get(d.kind, "") + d.delta
    assert by_kind.get("text", "") == want["text"]
    assert by_kind.get("reasoning", "") == want["reasoning"]
    assert "".join(d.get_text() for d in deltas) == want["text"]
    if want["tool_calls"]:
        assert [json.loads(raw) for raw in _fragments_by_call(deltas)] == [c[2] for c in want["tool_calls"]]
    # beta.messages posts to the same path (SDK 2.x keeps `beta=true` as call metadata, not in the URL).
    assert [r.url.path for r in served.requests] == ["/v1/messages"]
    assert telemetry.active_streams() == 0


def _fragments_by_call(deltas: List[steer.StreamDeltaEvent]) -> List[str]:
    joined: Dict[Any, str] = {}
    for d in deltas:
        if d.kind == "tool_call":
            joined[d.tool_call_id] = joined.get(d.tool_call_id, "") + d.delta
    return list(joined.values())


def test_prompt_cache_tokens_follow_semconv(instrumented: Any) -> None:
    telemetry = instrumented()
    client, _ = make_client(CACHE, telemetry)
    for _ in client.messages.create(stream=True, **kwargs_for(CACHE, client.messages, "create")):
        pass
    attrs = only_span(telemetry).attributes
    # Anthropic: input_tokens 4, cache_creation_input_tokens 1165, cache_read_input_tokens 0.
    assert attrs["gen_ai.usage.input_tokens"] == 4 + 1165 + 0
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == 1165
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 0
    assert attrs["gen_ai.usage.output_tokens"] == 201
    points = telemetry.metrics()["gen_ai.client.token.usage"]
    assert sorted((p.attributes["gen_ai.token.type"], p.sum) for p in points) == [("input", 1169), ("output", 201)]


# -- the SDK's own span: taken over, one span per call ----------------------------------------------------
def test_the_sdks_own_span_is_taken_over(instrumented: Any, telemetry: Any) -> None:
    client, _ = make_client(TEXT, telemetry)
    kw = kwargs_for(TEXT, client.messages, "create")
    for _ in client.messages.create(stream=True, **kw):
        pass
    (sdk_span,) = telemetry.spans()  # without steer, the SDK traces the call itself...
    assert sdk_span.instrumentation_scope.name == SDK_SCOPE
    assert sdk_span.attributes["gen_ai.operation.name"] == "chat"
    telemetry.clear()

    instrumented()  # ...with steer, steer's span is the only one
    for _ in client.messages.create(stream=True, **kw):
        pass
    only_span(telemetry)
    telemetry.clear()

    steer.uninstrument()  # and the SDK's own span is back once steer lets go
    for _ in client.messages.create(stream=True, **kw):
        pass
    assert [s.instrumentation_scope.name for s in telemetry.spans()] == [SDK_SCOPE]


@pytest.mark.parametrize("propagation", [True, False])
def test_sdk_propagation_carries_steers_span(propagation: bool, instrumented: Any) -> None:
    telemetry = instrumented()
    client, served = make_client(TEXT, telemetry, propagation=propagation)
    for _ in client.messages.create(stream=True, **kwargs_for(TEXT, client.messages, "create")):
        pass
    span = only_span(telemetry)
    header = served.requests[-1].headers.get("traceparent")
    if not propagation:  # the SDK's own option decides; steer never adds headers itself
        assert header is None
        return
    context = span.get_span_context()
    assert header.split("-")[1:3] == [f"{context.trace_id:032x}", f"{context.span_id:016x}"]


def test_other_endpoints_keep_the_sdks_span(instrumented: Any) -> None:
    telemetry = instrumented()
    counted = {"request": {"body": None}, "response": {"status": 200, "content_type": "application/json",
                                                       "body": '{"input_tokens": 12}'}}
    client, _ = make_client(counted, telemetry)
    assert client.messages.count_tokens(model="claude-3-haiku-20240307", messages=[{"role": "user", "content": "hi"}]).input_tokens == 12
    assert [s.instrumentation_scope.name for s in telemetry.spans()] == [SDK_SCOPE]  # not a Messages call: not steer's


def test_the_seams_steer_relies_on(instrumented: Any) -> None:
    """Fails loudly when an SDK upgrade moves the seams (instead of silently losing spans)."""
    from anthropic._base_client import AsyncAPIClient, SyncAPIClient

    from steer.instrumentation import instrumentation_status

    instrumented()
    status = instrumentation_status()
    for name in ("anthropic._base_client.SyncAPIClient.request", "anthropic._base_client.AsyncAPIClient.request",
                 "anthropic._base_client.start_api_call_span"):
        assert status[name] == "patched", (name, status.get(name))
    for cls in (SyncAPIClient, AsyncAPIClient):
        assert list(inspect.signature(cls.request).parameters) == ["self", "cast_to", "options", "stream", "stream_cls"]
    steer.uninstrument()
    assert "start_api_call_span" in anthropic._base_client.SyncAPIClient.request.__code__.co_names


# -- errors ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("recording", HTTP_ERRORS, ids=ids(HTTP_ERRORS))
@pytest.mark.parametrize("surface", ["create", "stream"])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_http_error(recording: Dict[str, Any], surface: str, mode: str, instrumented: Any) -> None:
    errors: List[steer.StreamErrorEvent] = []
    telemetry = instrumented(on_error=errors.append)
    client, _ = make_client(recording, telemetry, is_async=mode == "async")
    res = resource(client, recording)
    with pytest.raises(anthropic.NotFoundError) as info:
        if surface == "create":
            call = res.create(stream=True, **kwargs_for(recording, res, "create"))
            if mode == "async":
                await call
        elif mode == "sync":
            with res.stream(**kwargs_for(recording, res, "stream")):
                pass
        else:
            async with res.stream(**kwargs_for(recording, res, "stream")):
                pass
    span = only_span(telemetry)
    assert span.status.status_code.name == "ERROR"
    # One rule for every provider: an exception's error.type is its class name (the API body's own
    # "not_found_error" still decides retryability).
    assert info.value.type == "not_found_error"
    assert span.attributes["error.type"] == "NotFoundError" == type(info.value).__name__
    assert any(e.name == "exception" for e in span.events)
    (error,) = errors
    assert error.error is info.value and error.error_type == "NotFoundError" and not error.is_retryable
    (duration,) = telemetry.metrics()["gen_ai.client.operation.duration"]
    assert duration.attributes["error.type"] == "NotFoundError"
    assert telemetry.active_streams() == 0


OVERLOADED = 'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
# Hand-made (no public recording has one): the start of a real stream, then Anthropic's mid-stream error.
MIDSTREAM = {**TEXT, "_name": "handmade/midstream_overloaded", "response": {
    "status": 200, "content_type": "text/event-stream",
    "body": b"".join(body_pieces(TEXT)[:6]).decode() + OVERLOADED}}


@pytest.mark.parametrize("surface", ["create", "text_stream"])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_midstream_error_event(surface: str, mode: str, instrumented: Any) -> None:
    errors: List[steer.StreamErrorEvent] = []
    telemetry = instrumented(on_error=errors.append)
    client, _ = make_client(MIDSTREAM, telemetry, is_async=mode == "async")
    got: List[Any] = []
    with pytest.raises(anthropic.APIStatusError) as info:
        if surface == "create":
            kw = kwargs_for(MIDSTREAM, client.messages, "create")
            if mode == "sync":
                got.extend(client.messages.create(stream=True, **kw))
            else:
                got.extend([e async for e in await client.messages.create(stream=True, **kw)])
        elif mode == "sync":
            with client.messages.stream(**kwargs_for(MIDSTREAM, client.messages, "stream")) as helper:
                got.extend(helper.text_stream)
        else:
            async with client.messages.stream(**kwargs_for(MIDSTREAM, client.messages, "stream")) as helper:
                got.extend([t async for t in helper.text_stream])
    assert info.value.type == "overloaded_error"  # the SDK's exception, passed through
    span = only_span(telemetry)
    attrs = span.attributes
    assert span.status.status_code.name == "ERROR"
    assert attrs["error.type"] == type(info.value).__name__ and attrs["steer.stream.end"] == "error"
    assert attrs["steer.stream.chunks"] == 5  # message_start, content_block_start, three deltas (ping skipped)
    assert attrs["gen_ai.usage.input_tokens"] == 17 and "gen_ai.usage.output_tokens" not in attrs
    (error,) = errors
    assert error.error is info.value and error.is_retryable


# -- the helpers stay what they are ------------------------------------------------------------------------
async def test_helpers_keep_their_types(instrumented: Any) -> None:
    final, raw_count = sdk_reference(TEXT)
    telemetry = instrumented()
    sync_client, _ = make_client(TEXT, telemetry)
    async_client, _ = make_client(TEXT, telemetry, is_async=True)
    kw = kwargs_for(TEXT, sync_client.messages, "stream")
    manager = async_client.messages.stream(**kw)  # not awaited: an async context manager, not a coroutine
    assert type(manager) is AsyncMessageStreamManager and not inspect.isawaitable(manager)
    async with manager as helper:
        assert type(helper) is AsyncMessageStream
        text = "".join([t async for t in helper.text_stream])
    sync_manager = sync_client.messages.stream(**kw)
    assert type(sync_manager) is MessageStreamManager
    with sync_manager as sync_helper:
        assert type(sync_helper) is MessageStream
        assert "".join(sync_helper.text_stream) == text
    assert text == expected(final)["text"]
    spans = telemetry.genai_spans()
    assert [s.attributes["steer.stream.chunks"] for s in spans] == [raw_count, raw_count]
    assert [s.attributes["steer.stream.end"] for s in spans] == ["complete", "complete"]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_non_streaming_create(mode: str, instrumented: Any) -> None:
    final, _ = sdk_reference(TOOLS)
    whole = {**TOOLS, "response": {"status": 200, "content_type": "application/json", "body": final.to_json()}}
    completed: List[steer.StreamCompleteEvent] = []
    telemetry = instrumented(on_complete=completed.append)
    client, _ = make_client(whole, telemetry, is_async=mode == "async")
    kw = kwargs_for(TOOLS, client.messages, "create")
    message = client.messages.create(**kw) if mode == "sync" else await client.messages.create(**kw)
    assert type(message) is anthropic.types.Message
    attrs = only_span(telemetry).attributes
    assert attrs["gen_ai.request.stream"] is False and "steer.stream.chunks" not in attrs
    assert attrs["gen_ai.response.finish_reasons"] == ("tool_calls",)
    want = expected(final)
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (want["input"], want["output"])
    (event,) = completed
    assert event.text == want["text"]
    assert [(c.id, c.name, c.arguments) for c in event.tool_calls] == want["tool_calls"]


def test_with_raw_response_stream(instrumented: Any) -> None:
    telemetry = instrumented()
    client, _ = make_client(TEXT, telemetry)
    raw = client.messages.with_raw_response.create(stream=True, **kwargs_for(TEXT, client.messages, "create"))
    assert raw.http_response.status_code == 200 and "x-request-id" in raw.headers
    events = list(raw.parse())
    attrs = only_span(telemetry).attributes
    assert attrs["steer.stream.end"] == "complete" and attrs["steer.stream.chunks"] == len(events)


def test_content_capture(instrumented: Any) -> None:
    beta = next(r for r in STREAMS if "beta=true" in r["request"]["path"])
    telemetry = instrumented(capture_content=True)
    client, _ = make_client(beta, telemetry)
    with client.beta.messages.stream(**kwargs_for(beta, client.beta.messages, "stream")) as helper:
        text = helper.get_final_text()
    attrs = only_span(telemetry).attributes
    assert json.loads(attrs["gen_ai.system_instructions"]) == [{"type": "text", "content": beta["request"]["body"]["system"]}]
    assert json.loads(attrs["gen_ai.input.messages"])[0]["role"] == "user"
    assert json.loads(attrs["gen_ai.output.messages"])[0]["parts"] == [{"type": "text", "content": text}]


# -- the decoder, sans-IO: SDK models and raw wire JSON read alike; server tools kept apart ---------------
def _decode(events: List[Any]) -> Any:
    from steer.providers.anthropic import MessagesDecoder
    from steer.providers.base import Assembly

    decoder, asm = MessagesDecoder(), Assembly()
    for event in events:
        decoder.decode(event, asm)
    decoder.finish(asm)
    return asm


def _wire_events(recording: Dict[str, Any]) -> List[Any]:
    from steer.providers.base import view
    from steer.sse import SSEDecoder

    sse = SSEDecoder()
    found = sse.feed(recording["response"]["body"].encode()) + sse.flush()
    return [view(json.loads(e.data)) for e in found if e.data and e.event != "ping"]


@pytest.mark.parametrize("recording", STREAMS, ids=ids(STREAMS))
def test_decoder_reads_sdk_models_and_wire_json_alike(recording: Dict[str, Any]) -> None:
    client, _ = make_client(recording)
    res = resource(client, recording)
    sdk = _decode(list(res.create(stream=True, **kwargs_for(recording, res, "create"))))
    wire = _decode(_wire_events(recording))
    for asm in (sdk, wire):
        assert asm.decode_errors == 0
    assert (wire.all_text(), wire.joined_reasoning(), wire.finish_reasons()) == (sdk.all_text(), sdk.joined_reasoning(), sdk.finish_reasons())
    assert wire.raw_tool_calls() == sdk.raw_tool_calls()
    assert wire.usage == sdk.usage and wire.extra == sdk.extra


def test_server_tools_are_kept_apart_from_client_tool_calls() -> None:
    asm = _decode(_wire_events(WEB_SEARCH))
    assert asm.raw_tool_calls() == []  # web_search ran at Anthropic: nothing for the application to answer
    (server,) = asm.extra["server_tool_calls"]
    assert server["name"] == "web_search" and json.loads(server["arguments"]) == {"query": "San Francisco weather today"}
    assert "encrypted_content" not in asm.all_text()  # the web_search_tool_result block is not output text


def test_wire_error_event_is_recorded() -> None:
    asm = _decode(_wire_events(MIDSTREAM))
    assert asm.error == {"type": "overloaded_error", "message": "Overloaded"}


# -- lifecycle: exactly one ended span on every path, sync and async ---------------------------------------
class Dropped(Served):
    """Serves the first pieces of a recording, then fails the read like a dropped connection."""

    def __init__(self, recording: Dict[str, Any], keep: int) -> None:
        super().__init__(recording, httpx2)
        self.pieces = body_pieces(recording)[:keep]
        self.error = httpx2.ReadError("connection dropped")

    def _handle(self, request: Any) -> Any:
        pieces, error = self.pieces, self.error

        class Body(httpx2.SyncByteStream):
            def __iter__(self) -> Any:
                yield from pieces
                raise error

        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, stream=Body(), request=request)

    async def _ahandle(self, request: Any) -> Any:
        pieces, error = self.pieces, self.error

        class Body(httpx2.AsyncByteStream):
            async def __aiter__(self) -> Any:
                for piece in pieces:
                    yield piece
                raise error

        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, stream=Body(), request=request)


def _sync_paths(res: Any, kw: Dict[str, Any], hkw: Dict[str, Any], dropped: Any, boom: BaseException) -> Dict[str, Any]:
    def drained() -> None:
        for _ in res.create(stream=True, **kw):
            pass

    def helper_until_done() -> None:
        with res.stream(**hkw) as helper:
            helper.until_done()

    def break_in_with() -> None:
        with res.create(stream=True, **kw) as stream:
            for _ in stream:
                break

    def helper_break_in_with() -> None:
        with res.stream(**hkw) as helper:
            for _ in helper:
                break

    def close_without_with() -> None:
        stream = res.create(stream=True, **kw)
        next(stream)
        stream.close()

    def helper_close_without_with() -> None:
        helper = res.stream(**hkw).__enter__()
        next(helper)
        helper.close()

    def exception_mid_stream() -> None:
        with pytest.raises(httpx2.ReadError) as info:
            for _ in dropped.create(stream=True, **kw):
                pass
        assert info.value is boom  # the transport's own exception object, untouched

    def exception_in_loop_body() -> None:
        with pytest.raises(KeyError):
            with res.create(stream=True, **kw) as stream:
                for _ in stream:
                    raise KeyError("user code")

    def helper_exception_in_loop_body() -> None:
        with pytest.raises(KeyError):
            with res.stream(**hkw) as helper:
                for _ in helper.text_stream:
                    raise KeyError("user code")

    def abandoned() -> None:
        stream = res.create(stream=True, **kw)
        next(stream)
        del stream  # the test collects after the path

    def helper_abandoned() -> None:
        helper = res.stream(**hkw).__enter__()
        next(helper)
        del helper

    def never_iterated() -> None:
        stream = res.create(stream=True, **kw)
        del stream  # the test collects after the path

    def never_iterated_in_with() -> None:
        with res.create(stream=True, **kw):
            pass

    def helper_never_iterated() -> None:
        with res.stream(**hkw):
            pass

    return {f.__name__: f for f in (
        drained, helper_until_done, break_in_with, helper_break_in_with, close_without_with, helper_close_without_with,
        exception_mid_stream, exception_in_loop_body, helper_exception_in_loop_body, abandoned, helper_abandoned,
        never_iterated, never_iterated_in_with, helper_never_iterated)}


async def _settle() -> None:
    # An async generator dropped mid-iteration is closed by a task the loop schedules: let it run,
    # then collect what it let go. (Full collections are slow with tokenizer tables loaded: two only.)
    gc.collect()
    for _ in range(3):
        await asyncio.sleep(0)
    gc.collect()


def _async_paths(res: Any, kw: Dict[str, Any], hkw: Dict[str, Any], dropped: Any, boom: BaseException) -> Dict[str, Any]:
    async def drained() -> None:
        async for _ in await res.create(stream=True, **kw):
            pass

    async def helper_until_done() -> None:
        async with res.stream(**hkw) as helper:
            await helper.until_done()

    async def break_in_with() -> None:
        async with await res.create(stream=True, **kw) as stream:
            async for _ in stream:
                break

    async def helper_break_in_with() -> None:
        async with res.stream(**hkw) as helper:
            async for _ in helper:
                break

    async def close_without_with() -> None:
        stream = await res.create(stream=True, **kw)
        await stream.__anext__()
        await stream.close()

    async def helper_close_without_with() -> None:
        helper = await res.stream(**hkw).__aenter__()
        await helper.__anext__()
        await helper.close()

    async def exception_mid_stream() -> None:
        with pytest.raises(httpx2.ReadError) as info:
            async for _ in await dropped.create(stream=True, **kw):
                pass
        assert info.value is boom

    async def exception_in_loop_body() -> None:
        with pytest.raises(KeyError):
            async with await res.create(stream=True, **kw) as stream:
                async for _ in stream:
                    raise KeyError("user code")

    async def helper_exception_in_loop_body() -> None:
        with pytest.raises(KeyError):
            async with res.stream(**hkw) as helper:
                async for _ in helper.text_stream:
                    raise KeyError("user code")

    async def abandoned() -> None:
        stream = await res.create(stream=True, **kw)
        await stream.__anext__()
        del stream  # the test settles (collects) after the path

    async def helper_abandoned() -> None:
        helper = await res.stream(**hkw).__aenter__()
        await helper.__anext__()
        del helper

    async def never_iterated() -> None:
        stream = await res.create(stream=True, **kw)
        del stream  # the test settles (collects) after the path

    async def never_iterated_in_with() -> None:
        async with await res.create(stream=True, **kw):
            pass

    async def helper_never_iterated() -> None:
        async with res.stream(**hkw):
            pass

    return {f.__name__: f for f in (
        drained, helper_until_done, break_in_with, helper_break_in_with, close_without_with, helper_close_without_with,
        exception_mid_stream, exception_in_loop_body, helper_exception_in_loop_body, abandoned, helper_abandoned,
        never_iterated, never_iterated_in_with, helper_never_iterated)}


LIFECYCLE = {
    "drained": "complete", "helper_until_done": "complete",
    "break_in_with": "closed_early", "helper_break_in_with": "closed_early",
    "close_without_with": "closed_early", "helper_close_without_with": "closed_early",
    "exception_mid_stream": "error",
    "exception_in_loop_body": "closed_early", "helper_exception_in_loop_body": "closed_early",
    "abandoned": "abandoned", "helper_abandoned": "abandoned",
    "never_iterated": "abandoned", "never_iterated_in_with": "closed_early", "helper_never_iterated": "closed_early",
}


@pytest.mark.parametrize("path", list(LIFECYCLE))
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_lifecycle_ends_one_span(path: str, mode: str, instrumented: Any) -> None:
    telemetry = instrumented()
    is_async = mode == "async"
    client, _ = make_client(TEXT, telemetry, is_async=is_async)
    broken = Dropped(TEXT, keep=5)
    dropped, _ = make_client(TEXT, telemetry, is_async=is_async, served=broken)
    res = client.messages
    kw, hkw = kwargs_for(TEXT, res, "create"), kwargs_for(TEXT, res, "stream")
    if is_async:
        await _async_paths(res, kw, hkw, dropped.messages, broken.error)[path]()
        await _settle()
    else:
        _sync_paths(res, kw, hkw, dropped.messages, broken.error)[path]()
        gc.collect()
    span = only_span(telemetry)
    assert span.attributes["steer.stream.end"] == LIFECYCLE[path]
    assert span.status.status_code.name == ("ERROR" if path == "exception_mid_stream" else "UNSET")
    assert telemetry.active_streams() == 0
    del client, dropped, res
    gc.collect()
    assert len(telemetry.spans()) == 1  # nothing ends it a second time later

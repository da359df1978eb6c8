"""Google Gemini through the real google-genai SDK (Gemini API and Vertex AI clients, sync and async,
httpx and httpx2), served every ``google.*`` recording: steer's assembly equals what the SDK's own
chunks give in an uninstrumented run, the span follows the schema, and every way a generator can end
ends exactly one span."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import json
import logging
import types as pytypes
from typing import Any, Dict, List, Optional, Tuple

import httpx
import httpx2
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import models as genai_models
from google.genai import types
from google.oauth2.credentials import Credentials
from opentelemetry import trace

import steer
from recordings import Served, all_recordings, body_pieces, ids, load
from steer.providers.base import Assembly, AttrView
from steer.providers.google_genai import GenerateContentDecoder
from steer.sse import SSEDecoder
from steer.wrapping.calls import IN_CALL

STREAMS = all_recordings("google.generate_content_stream")
SSE_STREAMS = [r for r in STREAMS if "json_array_stream" not in r["features"]]
JSON_ARRAY = load("google/gemini_json_array_stream_no_alt_sse.json")
VERTEX_400 = load("google/error_400_vertex_invalid_argument.json")

# The expected normalisation, written out independently of the decoder.
FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter"}
BACKENDS = {"httpx": httpx, "httpx2": httpx2}


# --- clients and requests ------------------------------------------------------------------------
def vertex_place(recording: Dict[str, Any]) -> Optional[Tuple[str, str]]:
    parts = recording["request"]["path"].split("/")
    if "projects" not in parts:
        return None
    return parts[parts.index("projects") + 1], parts[parts.index("locations") + 1]


def make_client(served: Served) -> genai.Client:
    options = types.HttpOptions(httpx_client=served.client(), httpx_async_client=served.async_client())
    place = vertex_place(served.recording)
    if place is None:
        return genai.Client(api_key="test-key", http_options=options)
    project, location = place
    return genai.Client(vertexai=True, project=project, location=location, credentials=Credentials(token="test-token"),
                        http_options=options)


def expected_endpoint(recording: Dict[str, Any]) -> Tuple[str, str]:
    place = vertex_place(recording)
    if place is None:
        return "gcp.gemini", "generativelanguage.googleapis.com"
    return "gcp.vertex_ai", f"{place[1]}-aiplatform.googleapis.com"


def sdk_kwargs(recording: Dict[str, Any]) -> Dict[str, Any]:
    """The recorded REST body as ``generate_content[_stream]`` keyword arguments."""
    body = recording["request"]["body"] or {}
    config = dict(body.get("generationConfig") or {})
    for wire, name in (("systemInstruction", "system_instruction"), ("tools", "tools"), ("safetySettings", "safety_settings")):
        if body.get(wire):
            config[name] = body[wire]
    return {"model": recording["model"], "contents": body.get("contents") or "hi", "config": config or None}


def stream_sync(client: genai.Client, kwargs: Dict[str, Any]) -> List[Any]:
    return list(client.models.generate_content_stream(**kwargs))


async def stream_async(client: genai.Client, kwargs: Dict[str, Any]) -> List[Any]:
    return [chunk async for chunk in await client.aio.models.generate_content_stream(**kwargs)]


async def run_stream(recording: Dict[str, Any], mode: str, backend: str = "httpx") -> List[Any]:
    client = make_client(Served(recording, BACKENDS[backend]))
    if mode == "sync":
        return stream_sync(client, sdk_kwargs(recording))
    return await stream_async(client, sdk_kwargs(recording))


# --- what the SDK's chunks say, joined by hand ---------------------------------------------------
def sdk_view(chunks: List[Any]) -> Dict[str, Any]:
    text: Dict[int, str] = {}
    reasoning: Dict[int, str] = {}
    calls: List[Tuple[Any, Any, Any]] = []
    finish: Dict[int, str] = {}
    called: set = set()
    response = None
    usage = None
    for chunk in chunks:
        if chunk.response_id != response:
            response, called = chunk.response_id, set()
        for position, candidate in enumerate(chunk.candidates or []):
            index = position if candidate.index is None else candidate.index
            for part in (candidate.content.parts if candidate.content and candidate.content.parts else []):
                if part.text:
                    target = reasoning if part.thought else text
                    target[index] = target.get(index, "") + part.text
                if part.function_call:
                    calls.append((part.function_call.id, part.function_call.name, part.function_call.args))
                    called.add(index)
            if candidate.finish_reason:
                finish[index] = FINISH[candidate.finish_reason.value]
        meta = chunk.usage_metadata
        if meta is not None and meta.prompt_token_count is not None:
            usage = meta
    for index in called:
        if finish.get(index) == "stop":
            finish[index] = "tool_calls"
    return {"text": "".join(text[i] for i in sorted(text)), "reasoning": "".join(reasoning[i] for i in sorted(reasoning)),
            "tool_calls": calls, "finish": [finish[i] for i in sorted(finish)], "usage": usage,
            "response_id": response, "model": chunks[-1].model_version if chunks else None}


def expected_usage(meta: Any) -> Dict[str, Any]:
    """Output counts the thoughts (semconv: reasoning tokens are part of the output)."""
    output = (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0)
    return {"input_tokens": meta.prompt_token_count, "output_tokens": output,
            "reasoning_tokens": meta.thoughts_token_count, "cache_read_input_tokens": meta.cached_content_token_count}


def dumps(chunks: List[Any]) -> List[Dict[str, Any]]:
    return [c.model_dump(exclude={"sdk_http_response"}) for c in chunks]


# --- every streaming recording through the SDK ---------------------------------------------------
@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("recording", SSE_STREAMS, ids=ids(SSE_STREAMS))
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_recording_assembles_like_the_sdk(recording: Dict[str, Any], mode: str, backend: str, instrumented: Any) -> None:
    bare = await run_stream(recording, mode, backend)  # uninstrumented: the reference
    expected = sdk_view(bare)
    if all(c.candidates is None or len(c.candidates) <= 1 for c in bare):
        assert expected["text"] == "".join(c.text or "" for c in bare)  # the SDK's own join agrees

    completed: List[steer.StreamCompleteEvent] = []
    telemetry = instrumented(on_complete=completed.append)
    chunks = await run_stream(recording, mode, backend)
    assert dumps(chunks) == dumps(bare)  # the caller sees exactly the same chunks

    (event,) = completed
    assert event.text == expected["text"]
    assert event.reasoning == expected["reasoning"]
    assert [(c.id, c.name, c.arguments) for c in event.tool_calls] == expected["tool_calls"]
    assert event.finish_reasons == expected["finish"]
    assert event.total_chunks == len(chunks)
    usage = event.final_usage
    assert usage.source == "reported"
    assert {k: getattr(usage, k) for k in expected_usage(expected["usage"])} == expected_usage(expected["usage"])
    reported = recording["reported_usage"]  # the recording's own normalisation agrees
    assert usage.input_tokens == reported["input_tokens"]
    assert usage.output_tokens == reported["output_tokens"] + (reported["reasoning_tokens"] or 0)
    assert usage.reasoning_tokens == reported["reasoning_tokens"]
    assert usage.total_tokens == reported["total_tokens"]

    (span,) = telemetry.genai_spans()
    attrs = dict(span.attributes)
    provider, host = expected_endpoint(recording)
    assert span.name == f"generate_content {recording['model']}"
    assert span.kind == trace.SpanKind.CLIENT
    assert attrs["gen_ai.operation.name"] == "generate_content"
    assert attrs["gen_ai.provider.name"] == provider
    assert attrs["gen_ai.request.model"] == recording["model"]
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["server.address"] == host and attrs["server.port"] == 443
    assert attrs["gen_ai.response.model"] == expected["model"]
    assert attrs["gen_ai.response.id"] == expected["response_id"]
    assert attrs["gen_ai.response.finish_reasons"] == tuple(expected["finish"])
    assert attrs["gen_ai.usage.input_tokens"] == usage.input_tokens
    assert attrs["gen_ai.usage.output_tokens"] == usage.output_tokens
    assert attrs.get("gen_ai.usage.reasoning.output_tokens") == usage.reasoning_tokens
    assert attrs["steer.usage.source"] == "reported"
    assert attrs["steer.stream.chunks"] == len(chunks)
    assert attrs["steer.stream.end"] == "complete"
    assert attrs["gen_ai.response.time_to_first_chunk"] >= 0
    assert span.status.status_code.name == "UNSET"
    if "json_schema" in recording["features"]:
        assert attrs["gen_ai.output.type"] == "json" and attrs["steer.json.valid"] is True

    metrics = telemetry.metrics()
    for name in ("gen_ai.client.operation.duration", "gen_ai.client.operation.time_to_first_chunk", "steer.client.stream.chunks"):
        assert sum(p.count for p in metrics[name]) == 1, name
    assert {p.attributes["gen_ai.token.type"] for p in metrics["gen_ai.client.token.usage"]} == {"input", "output"}
    for point in metrics["gen_ai.client.operation.duration"]:
        assert point.attributes["gen_ai.provider.name"] == provider
        assert point.attributes["gen_ai.operation.name"] == "generate_content"
    assert telemetry.active_streams() == 0


# --- the raw JSON path (httpx hook, no SDK objects) decodes the same --------------------------------
def raw_objects(recording: Dict[str, Any]) -> List[Dict[str, Any]]:
    if "json_array_stream" in recording["features"]:
        return json.loads(recording["response"]["body"])
    decoder, events = SSEDecoder(), []
    for piece in body_pieces(recording):
        events.extend(decoder.feed(piece))
    events.extend(decoder.flush())
    return [e.json() for e in events if e.data]


@pytest.mark.parametrize("recording", STREAMS, ids=ids(STREAMS))
def test_raw_json_decodes_like_the_sdk_models(recording: Dict[str, Any]) -> None:
    """The SDK cannot read the no-``alt=sse`` JSON-array form (it always asks for ``alt=sse``; see
    ``test_json_array_body_is_refused_by_the_sdk``), so that recording is checked here: its parsed
    array elements go through ``AttrView``, as the raw httpx path feeds them, and the expectation is
    built from the SDK's own models of the same elements."""
    objects = raw_objects(recording)
    # _from_response is how the SDK turns each parsed response object into the chunk it yields.
    expected = sdk_view([types.GenerateContentResponse._from_response(response=o, kwargs={}) for o in objects])
    asm, decoder = Assembly(), GenerateContentDecoder()
    for obj in objects:
        decoder.decode(AttrView(obj), asm)
    decoder.finish(asm)
    assert asm.all_text() == expected["text"]
    assert asm.joined_reasoning() == expected["reasoning"]
    assert [(i, n, w) for _, i, n, w, _ in asm.raw_tool_calls()] == expected["tool_calls"]
    assert asm.finish_reasons() == expected["finish"]
    assert asm.response_id == expected["response_id"] and asm.response_model == expected["model"]
    reported = recording["reported_usage"]
    assert asm.usage.input_tokens == reported["input_tokens"]
    assert asm.usage.output_tokens == reported["output_tokens"] + (reported["reasoning_tokens"] or 0)
    assert asm.usage.reasoning_tokens == reported["reasoning_tokens"]


def test_json_array_stream_over_raw_httpx(instrumented: Any) -> None:
    """The no-``alt=sse`` form end to end, as a raw HTTP client reads it: steer's httpx layer frames
    the array and this decoder reads each element, giving what the SDK's models of them say."""
    expected = sdk_view([types.GenerateContentResponse._from_response(response=o, kwargs={}) for o in raw_objects(JSON_ARRAY)])
    completed: List[steer.StreamCompleteEvent] = []
    telemetry = instrumented(on_complete=completed.append)
    url = "https://generativelanguage.googleapis.com" + JSON_ARRAY["request"]["path"]
    with Served(JSON_ARRAY).client() as http:
        with http.stream("POST", url, json=JSON_ARRAY["request"]["body"]) as response:
            body = b"".join(response.iter_bytes())
    assert len(json.loads(body)) == 3
    (event,) = completed
    assert (event.text, event.reasoning, event.finish_reasons) == (expected["text"], expected["reasoning"], expected["finish"])
    (span,) = telemetry.genai_spans()
    attrs = span.attributes
    assert attrs["gen_ai.provider.name"] == "gcp.gemini" and attrs["gen_ai.request.model"] == "gemini-flash-latest"
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (11, 2 + 291)
    assert attrs["steer.stream.chunks"] == 3 and attrs["steer.stream.end"] == "complete"


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_json_array_body_is_refused_by_the_sdk(mode: str, instrumented: Any) -> None:
    """google-genai always requests ``?alt=sse`` and cannot parse a JSON-array body: the SDK's error
    reaches the caller untouched and the span records it."""
    errors: List[steer.StreamErrorEvent] = []
    telemetry = instrumented(on_error=errors.append)
    served = Served(JSON_ARRAY)
    with pytest.raises(genai_errors.UnknownApiResponseError) as info:
        await (stream_async if mode == "async" else _as_coro(stream_sync))(make_client(served), sdk_kwargs(JSON_ARRAY))
    assert "alt=sse" in str(served.requests[0].url)
    assert errors[0].error is info.value
    (span,) = telemetry.genai_spans()
    assert span.attributes["steer.stream.end"] == "error"
    assert span.attributes["error.type"] == "UnknownApiResponseError"
    assert span.status.status_code.name == "ERROR"


def _as_coro(fn: Any) -> Any:
    async def run(*args: Any) -> Any:
        return fn(*args)

    return run


# --- non-streaming generate_content --------------------------------------------------------------
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_vertex_http_400_on_generate_content(mode: str, instrumented: Any) -> None:
    kwargs = sdk_kwargs(VERTEX_400)
    bare_client = make_client(Served(VERTEX_400))
    with pytest.raises(genai_errors.ClientError) as bare:
        if mode == "sync":
            bare_client.models.generate_content(**kwargs)
        else:
            await bare_client.aio.models.generate_content(**kwargs)

    errors: List[steer.StreamErrorEvent] = []
    telemetry = instrumented(on_error=errors.append)
    client = make_client(Served(VERTEX_400))
    with pytest.raises(genai_errors.ClientError) as info:
        if mode == "sync":
            client.models.generate_content(**kwargs)
        else:
            await client.aio.models.generate_content(**kwargs)
    assert type(info.value) is type(bare.value) and str(info.value) == str(bare.value)
    assert info.value.code == 400 and info.value.status == "INVALID_ARGUMENT"
    assert errors[0].error is info.value and errors[0].is_retryable is False

    (span,) = telemetry.genai_spans()
    attrs = dict(span.attributes)
    assert span.name == "generate_content gemini-2.5-pro"
    assert attrs["gen_ai.provider.name"] == "gcp.vertex_ai"
    assert attrs["gen_ai.operation.name"] == "generate_content"
    assert attrs["gen_ai.request.stream"] is False
    assert attrs["gen_ai.request.temperature"] == 1000.0
    assert attrs["server.address"] == "us-central1-aiplatform.googleapis.com"
    assert attrs["error.type"] == "ClientError"
    assert "steer.stream.end" not in attrs
    assert span.status.status_code.name == "ERROR" and "INVALID_ARGUMENT" in span.status.description
    (recorded,) = [e for e in span.events if e.name == "exception"]
    assert "temperature value of 1000" in recorded.attributes["exception.message"]
    (duration,) = telemetry.metrics()["gen_ai.client.operation.duration"]
    assert duration.attributes["error.type"] == "ClientError"
    assert telemetry.active_streams() == 0


def as_unary(recording: Dict[str, Any]) -> Dict[str, Any]:
    """A recorded one-event stream served as the ``generateContent`` JSON body it is."""
    (obj,) = raw_objects(recording)
    return {**recording, "api": "google.generate_content",
            "response": {"status": 200, "content_type": "application/json", "body": json.dumps(obj)}}


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_generate_content_response(mode: str, instrumented: Any) -> None:
    recording = as_unary(load("google/gemini20_flash_function_call.json"))
    completed: List[steer.StreamCompleteEvent] = []
    telemetry = instrumented(on_complete=completed.append)
    client = make_client(Served(recording))
    if mode == "sync":
        response = client.models.generate_content(**sdk_kwargs(recording))
    else:
        response = await client.aio.models.generate_content(**sdk_kwargs(recording))
    assert type(response) is types.GenerateContentResponse  # never proxied: a finished response
    (event,) = completed
    (call,) = response.function_calls
    assert [(c.name, c.arguments) for c in event.tool_calls] == [(call.name, call.args)]
    assert event.finish_reasons == ["tool_calls"]
    (span,) = telemetry.genai_spans()
    attrs = dict(span.attributes)
    assert attrs["gen_ai.request.stream"] is False and "steer.stream.chunks" not in attrs
    assert attrs["gen_ai.usage.input_tokens"] == 63 and attrs["gen_ai.usage.output_tokens"] == 6
    assert attrs["gen_ai.response.finish_reasons"] == ("tool_calls",)


# --- multiple candidates, automatic function calling, content capture -----------------------------
def sse_recording(*objects: Dict[str, Any], model: str = "gemini-2.0-flash") -> Dict[str, Any]:
    body = "".join(f"data: {json.dumps(o)}\r\n\r\n" for o in objects)
    return {"provider": "google", "api": "google.generate_content_stream", "model": model, "features": [],
            "request": {"method": "POST", "path": f"/v1beta/models/{model}:streamGenerateContent?alt=sse", "body": None},
            "response": {"status": 200, "content_type": "text/event-stream", "body": body}}


def two_candidates() -> Dict[str, Any]:
    def chunk(a: str, b: str, fa: Optional[str] = None, fb: Optional[str] = None, out: int = 2) -> Dict[str, Any]:
        cands = [{"content": {"parts": [{"text": t}], "role": "model"}, "index": i, **({"finishReason": f} if f else {})}
                 for i, (t, f) in enumerate(((a, fa), (b, fb)))]
        return {"candidates": cands, "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": out, "totalTokenCount": 5 + out},
                "modelVersion": "gemini-2.0-flash", "responseId": "r-1"}

    return sse_recording(chunk("Hello", "Hi"), chunk(" there", " you", "STOP", "MAX_TOKENS", out=4))


async def test_candidates_are_choices(instrumented: Any) -> None:
    recording = two_candidates()
    deltas: List[steer.StreamDeltaEvent] = []
    completed: List[steer.StreamCompleteEvent] = []
    telemetry = instrumented(on_delta=deltas.append, on_complete=completed.append, capture_content=True)
    kwargs = {"model": "gemini-2.0-flash", "contents": "Greet me", "config": {"candidate_count": 2}}
    chunks = [c async for c in await make_client(Served(recording)).aio.models.generate_content_stream(**kwargs)]
    assert len(chunks) == 2
    assert [(d.choice_index, d.delta) for d in deltas] == [(0, "Hello"), (1, "Hi"), (0, " there"), (1, " you")]
    (event,) = completed
    assert event.finish_reasons == ["stop", "length"]
    (span,) = telemetry.genai_spans()
    assert span.attributes["gen_ai.request.choice.count"] == 2
    output = json.loads(span.attributes["gen_ai.output.messages"])
    assert [(m["parts"][0]["content"], m["finish_reason"]) for m in output] == [("Hello there", "stop"), ("Hi you", "length")]
    assert json.loads(span.attributes["gen_ai.input.messages"]) == [{"role": "user", "parts": [{"type": "text", "content": "Greet me"}]}]


class Sequence(Served):
    """Serves one recording per request, in order (automatic function calling makes two)."""

    def __init__(self, recordings: List[Dict[str, Any]]) -> None:
        super().__init__(recordings[0])
        self.queue = list(recordings)

    def _handle(self, request: Any) -> Any:
        self.recording = self.queue[len(self.requests)]
        return super()._handle(request)


def test_automatic_function_calling_is_one_span(instrumented: Any) -> None:
    calls: List[str] = []

    def get_weather(location: str) -> str:
        """Get current weather information for a given location."""
        calls.append(location)
        return "sunny, 20 C"

    first, second = load("google/gemini20_flash_function_call.json"), load("google/gemini20_flash_text_sse.json")
    completed: List[steer.StreamCompleteEvent] = []
    telemetry = instrumented(on_complete=completed.append)
    served = Sequence([first, second])
    kwargs = {"model": "gemini-2.0-flash", "contents": "Weather in San Francisco?", "config": {"tools": [get_weather]}}
    chunks = list(make_client(served).models.generate_content_stream(**kwargs))
    assert calls == ["San Francisco"] and len(served.requests) == 2
    (event,) = completed
    (span,) = telemetry.genai_spans()
    assert event.total_chunks == len(chunks) == 13
    assert [(c.name, c.arguments) for c in event.tool_calls] == [("get_weather", {"location": "San Francisco"})]
    assert event.finish_reasons == ["stop"]  # how the last response ended
    # Each response reports its own running totals; the call's usage adds the two responses up.
    assert span.attributes["gen_ai.usage.input_tokens"] == 63 + 9
    assert span.attributes["gen_ai.usage.output_tokens"] == 6 + 527
    assert span.attributes["gen_ai.response.id"] == chunks[-1].response_id


def test_content_capture(instrumented: Any) -> None:
    recording = load("google/gemini20_flash_function_call.json")
    telemetry = instrumented(capture_content=True)
    stream_sync(make_client(Served(recording)), sdk_kwargs(recording))
    attrs = telemetry.genai_spans()[0].attributes
    assert json.loads(attrs["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "What's the weather like in San Francisco?"}]}]
    assert json.loads(attrs["gen_ai.system_instructions"])[0]["content"].startswith("You are a helpful assistant")
    output = json.loads(attrs["gen_ai.output.messages"])
    assert output == [{"role": "assistant", "finish_reason": "tool_calls", "parts": [
        {"type": "tool_call", "id": None, "name": "get_weather", "arguments": {"location": "San Francisco"}}]}]


# --- transparency and context ---------------------------------------------------------------------
async def test_generators_keep_their_shape(instrumented: Any) -> None:
    recording = load("google/gemini20_flash_text_sse.json")
    instrumented()
    client = make_client(Served(recording))
    stream = client.models.generate_content_stream(**sdk_kwargs(recording))
    assert isinstance(stream, pytypes.GeneratorType) and inspect.isgenerator(stream)
    assert stream.send(None).text  # send(None) is next()
    stream.close()
    pending = client.aio.models.generate_content_stream(**sdk_kwargs(recording))
    assert inspect.isawaitable(pending)
    astream = await pending
    assert isinstance(astream, pytypes.AsyncGeneratorType) and inspect.isasyncgen(astream)
    assert (await astream.__anext__()).text
    await astream.aclose()


def test_uninstrument_restores_the_methods(instrumented: Any) -> None:
    originals = {name: genai_models.Models.__dict__[name] for name in ("generate_content_stream", "generate_content")}
    instrumented()
    assert genai_models.Models.__dict__["generate_content_stream"] is not originals["generate_content_stream"]
    steer.uninstrument()
    for name, original in originals.items():
        assert genai_models.Models.__dict__[name] is original


class Observing(Served):
    """Remembers which span was current, and whether steer's in-call flag was set, at each request."""

    seen: List[Tuple[int, bool]]

    def _handle(self, request: Any) -> Any:
        self.seen = getattr(self, "seen", []) + [(trace.get_current_span().get_span_context().span_id, IN_CALL.get() is not None)]
        return super()._handle(request)

    async def _ahandle(self, request: Any) -> Any:
        self.seen = getattr(self, "seen", []) + [(trace.get_current_span().get_span_context().span_id, IN_CALL.get() is not None)]
        return await super()._ahandle(request)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_span_is_current_for_the_request_not_the_loop_body(mode: str, instrumented: Any) -> None:
    recording = load("google/gemini20_flash_text_sse.json")
    telemetry = instrumented()
    served = Observing(recording)
    client = make_client(served)
    in_body: List[Tuple[Any, bool]] = []
    # The loop body sees the caller's own context, unchanged (not steer's span, not the in-call flag). Compared
    # with what the caller had before the call rather than with "no span", so a span another test on the same
    # xdist worker left current does not decide this test.
    caller = (trace.get_current_span(), IN_CALL.get() is not None)
    if mode == "sync":
        for _ in client.models.generate_content_stream(**sdk_kwargs(recording)):
            in_body.append((trace.get_current_span(), IN_CALL.get() is not None))
    else:
        async for _ in await client.aio.models.generate_content_stream(**sdk_kwargs(recording)):
            in_body.append((trace.get_current_span(), IN_CALL.get() is not None))
    (span,) = telemetry.genai_spans()
    assert served.seen == [(span.context.span_id, True)]  # layers below nest under steer's span
    assert in_body and all((current, flag) == caller for current, flag in in_body)
    assert all(current.get_span_context().span_id != span.context.span_id for current, _ in in_body)


# --- every way a stream ends, sync and async ------------------------------------------------------
LIFECYCLE = load("google/gemini20_flash_text_sse.json")
KWARGS = sdk_kwargs(LIFECYCLE)


class Boom(Exception):
    pass


def failing(recording: Dict[str, Any], after: int, tail: Optional[str] = None) -> Dict[str, Any]:
    """The recording cut after ``after`` events: then an in-stream error event (``tail``), or a
    broken connection (``tail`` None, see ``Breaking``)."""
    pieces = body_pieces(recording)[:after]
    body = b"".join(pieces).decode() + (tail or "")
    return {**recording, "response": {**recording["response"], "body": body}, "_break": tail is None}


class Breaking(Served):
    """Serves the body, then fails the read as a reset connection would."""

    def _handle(self, request: Any) -> Any:
        response = super()._handle(request)
        inner = response.stream

        class Body(httpx.SyncByteStream):
            def __iter__(self) -> Any:
                yield from inner
                raise httpx.ReadError("connection reset by peer")

        return httpx.Response(200, headers=response.headers, stream=Body(), request=request)

    async def _ahandle(self, request: Any) -> Any:
        response = await super()._ahandle(request)
        inner = response.stream

        class Body(httpx.AsyncByteStream):
            async def __aiter__(self) -> Any:
                async for piece in inner:
                    yield piece
                raise httpx.ReadError("connection reset by peer")

        return httpx.Response(200, headers=response.headers, stream=Body(), request=request)


OVERLOADED = 'data: {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}\r\n\r\n'
RECORDINGS = {"ok": LIFECYCLE, "reset": failing(LIFECYCLE, 3), "error_event": failing(LIFECYCLE, 3, OVERLOADED)}


def sync_path(path: str, client: genai.Client) -> None:
    models = client.models
    if path in ("drained", "reset", "error_event"):
        for _ in models.generate_content_stream(**KWARGS):
            pass
    elif path == "break_then_close":
        stream = models.generate_content_stream(**KWARGS)
        for _ in stream:
            break
        stream.close()
    elif path == "break_and_gc":
        stream = models.generate_content_stream(**KWARGS)
        for _ in stream:
            break
        del stream
        gc.collect()
    elif path == "exception_in_body":
        for _ in models.generate_content_stream(**KWARGS):
            raise Boom("user code failed")
    elif path == "exception_in_closing_body":
        with contextlib.closing(models.generate_content_stream(**KWARGS)) as stream:
            for _ in stream:
                raise Boom("user code failed")
    elif path == "never_iterated":
        stream = models.generate_content_stream(**KWARGS)
        del stream
        gc.collect()


async def async_path(path: str, client: genai.Client) -> None:
    models = client.aio.models
    if path in ("drained", "reset", "error_event"):
        async for _ in await models.generate_content_stream(**KWARGS):
            pass
    elif path == "break_then_close":
        stream = await models.generate_content_stream(**KWARGS)
        async for _ in stream:
            break
        await stream.aclose()
    elif path == "break_and_gc":
        stream = await models.generate_content_stream(**KWARGS)
        async for _ in stream:
            break
        del stream
        gc.collect()
        await asyncio.sleep(0)  # lets the loop's async-generator finaliser close the SDK's generator
    elif path == "exception_in_body":
        async for _ in await models.generate_content_stream(**KWARGS):
            raise Boom("user code failed")
    elif path == "exception_in_closing_body":
        async with contextlib.aclosing(await models.generate_content_stream(**KWARGS)) as stream:
            async for _ in stream:
                raise Boom("user code failed")
    elif path == "never_iterated":
        stream = await models.generate_content_stream(**KWARGS)
        del stream
        gc.collect()


# path -> (served recording, steer.stream.end, exception the caller sees)
PATHS: Dict[str, Tuple[str, str, Any]] = {
    "drained": ("ok", "complete", None),
    "break_then_close": ("ok", "closed_early", None),
    "break_and_gc": ("ok", "abandoned", None),
    "reset": ("reset", "error", httpx.ReadError),
    "error_event": ("error_event", "error", genai_errors.ServerError),
    "exception_in_body": ("ok", "abandoned", Boom),
    "exception_in_closing_body": ("ok", "closed_early", Boom),
    "never_iterated": ("ok", "abandoned", None),
}


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_every_path_ends_one_span_once(mode: str, path: str, instrumented: Any, caplog: Any) -> None:
    which, end, exc_type = PATHS[path]
    recording = RECORDINGS[which]
    telemetry = instrumented()
    caplog.set_level(logging.WARNING)
    served = (Breaking if recording.get("_break") else Served)(recording)
    raised: Optional[type] = None
    try:
        if mode == "sync":
            sync_path(path, make_client(served))
        else:
            await async_path(path, make_client(served))
    except BaseException as exc:  # noqa: BLE001 - the test checks what the caller sees
        raised = type(exc)
    gc.collect()  # the traceback of an exception in the loop body held the stream until now
    await asyncio.sleep(0)
    assert raised is exc_type
    spans = telemetry.genai_spans()
    assert len(spans) == 1, [s.attributes for s in spans]
    (span,) = spans
    assert span.attributes["steer.stream.end"] == end
    if end == "error":
        assert span.status.status_code.name == "ERROR"
        assert span.attributes["error.type"] == exc_type.__name__
        assert [e for e in span.events if e.name == "exception"]
        assert span.attributes["steer.stream.chunks"] == 3
    else:
        assert span.status.status_code.name == "UNSET"
    if path == "never_iterated":
        assert not served.requests and span.attributes["steer.stream.chunks"] == 0
    assert not [r for r in caplog.records if "ended span" in r.getMessage() or "detach" in r.getMessage().lower()]
    assert telemetry.active_streams() == 0
    assert sum(p.value for p in telemetry.metrics().get("steer.internal.errors", [])) == 0


async def test_sdk_exception_reaches_the_caller_untouched(instrumented: Any) -> None:
    recording = RECORDINGS["error_event"]
    bare = []
    for attempt in range(2):
        if attempt:
            instrumented(on_error=bare.append)
        try:
            stream_sync(make_client(Served(recording)), KWARGS)
        except genai_errors.ServerError as exc:
            bare.append(exc)
    plain, event, seen = bare
    assert type(plain) is type(seen) and str(plain) == str(seen) and seen.code == 503
    assert event.error is seen and event.is_retryable is True


def test_chat_stream_is_one_span(instrumented: Any) -> None:
    """``chats`` calls ``generate_content_stream`` on the client's models: covered, once, and the
    chat's history is what it is without steer."""
    recording = load("google/gemini20_flash_text_sse.json")
    prompt = "Tell me a short story about a cat."
    bare = make_client(Served(recording)).chats.create(model="gemini-2.0-flash")
    bare_text = "".join(chunk.text or "" for chunk in bare.send_message_stream(prompt))
    completed: List[steer.StreamCompleteEvent] = []
    telemetry = instrumented(on_complete=completed.append)
    chat = make_client(Served(recording)).chats.create(model="gemini-2.0-flash")
    text = "".join(chunk.text or "" for chunk in chat.send_message_stream(prompt))
    (span,) = telemetry.genai_spans()
    assert completed[0].text == text == bare_text and span.attributes["steer.stream.end"] == "complete"
    assert [c.model_dump() for c in chat.get_history()] == [c.model_dump() for c in bare.get_history()]


@pytest.mark.parametrize("base_url,host,port", [
    ("http://127.0.0.1:8081", "127.0.0.1", 8081),
    ("https://gemini-proxy.example.com/", "gemini-proxy.example.com", 443),
])
def test_server_from_base_url(base_url: str, host: str, port: int, instrumented: Any) -> None:
    recording = load("google/gemini20_flash_text_sse.json")
    telemetry = instrumented()
    served = Served(recording)
    client = genai.Client(api_key="test-key", http_options=types.HttpOptions(base_url=base_url, httpx_client=served.client()))
    stream_sync(client, sdk_kwargs(recording))
    attrs = telemetry.genai_spans()[0].attributes
    assert served.requests[0].url.host == host
    assert (attrs["server.address"], attrs["server.port"]) == (host, port)
    assert attrs["gen_ai.provider.name"] == "gcp.gemini"  # the client's backend, not the host, decides


@pytest.mark.parametrize("model,name", [
    ("gemini-2.5-flash", "gemini-2.5-flash"),
    ("models/gemini-2.5-flash", "gemini-2.5-flash"),
    ("projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro", "gemini-2.5-pro"),
    ("tunedModels/1234567890", "tunedModels/1234567890"),
    ("projects/p/locations/l/endpoints/42", "projects/p/locations/l/endpoints/42"),
])
def test_request_model_name(model: str, name: str) -> None:
    from steer.providers.google_genai import model_name

    assert model_name(model) == name


@pytest.mark.parametrize("config", [
    {"temperature": 0.2, "topP": 0.9, "max_output_tokens": 64, "stopSequences": ["END"], "responseMimeType": "application/json"},
    types.GenerateContentConfig(temperature=0.2, top_p=0.9, max_output_tokens=64, stop_sequences=["END"],
                                response_mime_type="application/json"),
])
def test_request_parameters(config: Any, instrumented: Any) -> None:
    recording = load("google/gemini3_flash_json_schema_output.json")
    telemetry = instrumented()
    stream_sync(make_client(Served(recording)), {"model": recording["model"], "contents": "hi", "config": config})
    attrs = telemetry.genai_spans()[0].attributes
    assert attrs["gen_ai.request.temperature"] == 0.2 and attrs["gen_ai.request.top_p"] == 0.9
    assert attrs["gen_ai.request.max_tokens"] == 64 and attrs["gen_ai.request.stop_sequences"] == ("END",)
    assert attrs["gen_ai.output.type"] == "json" and attrs["steer.json.objects"] == 1

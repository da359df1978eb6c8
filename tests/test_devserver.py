"""steer.tools.devserver: the loopback fake provider, driven by the REAL provider SDKs.

Every wire format is read by the real openai / anthropic / google-genai client
(sync and async, streaming and not); every fault is checked for what each SDK
actually raises. The exception table in `FAULT_EXPECTATIONS` records observed
SDK behaviour (openai 3.54, anthropic 2.12, google-genai 3.4 on httpx2).
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pydantic
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types
from google.oauth2.credentials import Credentials

from steer.tools.devserver import FAULTS, DevServer
from steer.tools.devserver.fake_model import text_pieces

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "streams"
EXPECTED_TEXT = "".join(text_pieces(0, 12))  # what the default knobs (seed 0, 12 chunks) answer

WEATHER_SCHEMA = {"type": "object", "properties": {"location": {"type": "string"},
                                                   "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                  "required": ["location"]}
CHAT_TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}]
USER = [{"role": "user", "content": "Say something"}]
WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]

# httpx2 is what the SDKs use now; httpx is what users may pass in. Accept both.
try:
    import httpx2

    RemoteProtocolError: tuple[type[BaseException], ...] = (httpx.RemoteProtocolError, httpx2.RemoteProtocolError)
    ReadError: tuple[type[BaseException], ...] = (httpx.ReadError, httpx2.ReadError)
    ReadTimeout: tuple[type[BaseException], ...] = (httpx.ReadTimeout, httpx2.ReadTimeout)
except ImportError:  # pragma: no cover
    RemoteProtocolError, ReadError, ReadTimeout = (httpx.RemoteProtocolError,), (httpx.ReadError,), (httpx.ReadTimeout,)


@pytest.fixture(scope="module")
def srv():
    with DevServer(chunk_delay=0) as server:
        yield server


def oai(srv: DevServer, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.openai_base_url, api_key="x", max_retries=0, **kw)


def ant(srv: DevServer, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=srv.anthropic_base_url, api_key="x", max_retries=0, **kw)


def gem(srv: DevServer, **kw: Any) -> genai.Client:
    return genai.Client(api_key="x", http_options=genai_types.HttpOptions(base_url=srv.gemini_base_url, **kw))


def sse_events(text: str) -> list[tuple[str | None, str]]:
    """(event, data) of each SSE event in a raw body (LF or CRLF)."""
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            out.append((event, "\n".join(data)))
    return out


def raw_post(srv: DevServer, path: str, body: dict, **headers: str) -> httpx.Response:
    return httpx.post(srv.base_url + path, json=body, headers=headers, timeout=10)


def fixture(name: str) -> dict:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"recording {name} not available")
    return json.loads(path.read_text())


# -- OpenAI Chat Completions ----------------------------------------------------------


def test_openai_chat_stream_with_usage(srv):
    chunks = list(oai(srv).chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True,
                                                   stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == EXPECTED_TEXT
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    assert chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + 12
    assert all(c.id == chunks[0].id and c.model == "gpt-4o-mini" for c in chunks)


def test_openai_chat_wire_shape_matches_recording(srv):
    body = raw_post(srv, "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": USER, "stream": True,
                                                  "stream_options": {"include_usage": True}}).text
    ours = [json.loads(d) for _, d in sse_events(body)[:-1]]
    assert body.endswith("data: [DONE]\n\n")
    real = [json.loads(d) for _, d in sse_events(fixture("openai/chat_strict_tool_call_obfuscation.json")
                                                 ["response"]["body"])[:-1]]
    assert set(ours[0]) == set(real[0])  # id, object, created, model, ..., usage, obfuscation
    assert ours[-1]["choices"] == [] and set(ours[-1]["usage"]) == set(real[-1]["usage"])
    assert all(c["usage"] is None for c in ours[:-1])
    # Without include_usage: no usage-only chunk and no `usage` key at all.
    plain = raw_post(srv, "/chat/completions", {"model": "m", "messages": USER, "stream": True}).text
    assert all("usage" not in json.loads(d) for _, d in sse_events(plain)[:-1])


def test_openai_chat_non_streaming(srv):
    r = oai(srv).chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert r.object == "chat.completion" and r.choices[0].message.content == EXPECTED_TEXT
    assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens == 12


def test_openai_chat_tool_call_streamed_in_fragments(srv):
    client = oai(srv)
    chunks = list(client.chat.completions.create(model="m", messages=WEATHER, tools=CHAT_TOOLS, stream=True))
    fragments = [c.choices[0].delta.tool_calls[0].function.arguments for c in chunks
                 if c.choices and c.choices[0].delta.tool_calls]
    assert len(fragments) > 3
    with client.chat.completions.stream(model="m", messages=WEATHER, tools=CHAT_TOOLS) as stream:
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert final.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris, France", "unit": "celsius"}
    # Tools offered but no "weather" in the prompt: a plain text answer.
    r = client.chat.completions.create(model="m", messages=USER, tools=CHAT_TOOLS)
    assert r.choices[0].message.content == EXPECTED_TEXT and not r.choices[0].message.tool_calls


class Location(pydantic.BaseModel):
    city: str
    temperature: float
    units: str


def test_openai_chat_json_modes(srv):
    client = oai(srv)
    chunks = list(client.chat.completions.create(model="m", messages=USER, stream=True,
                                                 response_format={"type": "json_object"}))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 3 and isinstance(json.loads("".join(pieces)), dict)
    parsed = client.chat.completions.parse(model="m", messages=USER, response_format=Location)
    assert isinstance(parsed.choices[0].message.parsed, Location)
    with client.chat.completions.stream(model="m", messages=USER, response_format=Location) as stream:
        assert isinstance(stream.get_final_completion().choices[0].message.parsed, Location)


def test_openai_max_tokens_gives_length(srv):
    r = oai(srv).chat.completions.create(model="m", messages=USER, max_tokens=4)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 4


async def test_openai_async_chat_and_responses(srv):
    client = openai.AsyncOpenAI(base_url=srv.openai_base_url, api_key="x", max_retries=0)
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream]) == EXPECTED_TEXT
    async with client.responses.stream(model="m", input="hello") as rs:
        final = await rs.get_final_response()
    assert final.output_text == EXPECTED_TEXT and final.usage.output_tokens == 12
    await client.close()


def test_openai_legacy_completions(srv):
    client = oai(srv)
    chunks = list(client.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi", stream=True,
                                            stream_options={"include_usage": True}))
    assert all(c.object == "text_completion" for c in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == EXPECTED_TEXT
    assert chunks[-1].usage.completion_tokens == 12
    r = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi")
    assert r.choices[0].text == EXPECTED_TEXT and r.usage.completion_tokens == 12


# -- OpenAI Responses -----------------------------------------------------------------


RESPONSES_ORDER = ["response.created", "response.in_progress", "response.output_item.added",
                   "response.content_part.added", "response.output_text.delta", "response.output_text.done",
                   "response.content_part.done", "response.output_item.done", "response.completed"]


def test_responses_stream_events_and_shapes(srv):
    body = raw_post(srv, "/v1/responses", {"model": "gpt-4o-mini", "input": "hello", "stream": True}).text
    events = sse_events(body)
    types_seen = [e for e, _ in events]
    assert [t for i, t in enumerate(types_seen) if i == 0 or t != types_seen[i - 1]] == RESPONSES_ORDER
    datas = [json.loads(d) for _, d in events]
    assert [d["sequence_number"] for d in datas] == list(range(len(datas)))
    assert all(d["type"] == e for (e, _), d in zip(events, datas))
    real = {d["type"]: d for d in (json.loads(x) for _, x in
                                    sse_events(fixture("openai/responses_basic_gpt4o_mini.json")["response"]["body"]))}
    for d in datas:  # same fields as the real API, event by event
        assert set(d) == set(real[d["type"]]), d["type"]
        if "response" in d:
            assert set(d["response"]) == set(real[d["type"]]["response"])
    assert set(datas[-1]["response"]["usage"]) == set(real["response.completed"]["response"]["usage"])


def test_responses_sdk_stream_and_non_stream(srv):
    client = oai(srv)
    with client.responses.stream(model="m", input=[{"role": "user", "content": "hello"}]) as stream:
        final = stream.get_final_response()
    assert final.output_text == EXPECTED_TEXT and final.status == "completed"
    assert final.usage.total_tokens == final.usage.input_tokens + 12
    r = client.responses.create(model="m", input="hello", instructions="be brief")
    assert r.output_text == EXPECTED_TEXT and r.instructions == "be brief"


def test_responses_function_call(srv):
    tools = [{"type": "function", "name": "get_weather", "parameters": WEATHER_SCHEMA}]
    events = list(oai(srv).responses.create(model="m", input="weather in Paris?", tools=tools, stream=True))
    deltas = [e for e in events if e.type == "response.function_call_arguments.delta"]
    assert len(deltas) > 3
    done = events[-1].response.output[0]
    assert done.type == "function_call" and done.name == "get_weather"
    assert json.loads("".join(d.delta for d in deltas)) == json.loads(done.arguments) == {
        "location": "Paris, France", "unit": "celsius"}


# -- Anthropic Messages ---------------------------------------------------------------


def test_anthropic_stream_helper_and_raw_events(srv):
    client = ant(srv)
    with client.messages.stream(model="claude-test", max_tokens=100, messages=USER) as stream:
        message = stream.get_final_message()
    assert message.content[0].text == EXPECTED_TEXT and message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 12 and message.usage.input_tokens > 0
    body = raw_post(srv, "/v1/messages", {"model": "m", "max_tokens": 100, "messages": USER, "stream": True}).text
    kinds = [e for e, _ in sse_events(body)]
    assert kinds[:3] == ["message_start", "content_block_start", "ping"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    real = {e: json.loads(d) for e, d in sse_events(fixture("anthropic/messages_text_claude3_haiku.json")
                                                      ["response"]["body"])}
    for e, d in sse_events(body):
        assert set(json.loads(d)) == set(real[e]), e


def test_anthropic_tool_use_input_json_delta(srv):
    tools = [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}]
    client = ant(srv)
    with client.messages.stream(model="m", max_tokens=100, messages=WEATHER, tools=tools) as stream:
        events = list(stream)
        message = stream.get_final_message()
    partial = [e.delta.partial_json for e in events
               if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
    assert partial[0] == "" and len(partial) > 3
    tool = message.content[-1]
    assert message.stop_reason == "tool_use" and tool.type == "tool_use" and tool.name == "get_weather"
    assert tool.input == json.loads("".join(partial)) == {"location": "Paris, France", "unit": "celsius"}


def test_anthropic_non_streaming_and_json_output(srv):
    client = ant(srv)
    m = client.messages.create(model="m", max_tokens=100, messages=USER, system="be kind")
    assert m.content[0].text == EXPECTED_TEXT and m.usage.output_tokens == 12
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}
    body = raw_post(srv, "/v1/messages", {"model": "m", "max_tokens": 100, "messages": USER, "stream": True,
                                          "output_config": {"format": {"type": "json_schema", "schema": schema}}})
    text = "".join(json.loads(d)["delta"]["text"] for e, d in sse_events(body.text) if e == "content_block_delta")
    assert json.loads(text) == {"name": "example name", "age": 42}
    short = client.messages.create(model="m", max_tokens=3, messages=USER)
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 3


async def test_anthropic_async_stream(srv):
    client = anthropic.AsyncAnthropic(base_url=srv.anthropic_base_url, api_key="x", max_retries=0)
    async with client.messages.stream(model="m", max_tokens=100, messages=USER) as stream:
        text = "".join([t async for t in stream.text_stream])
    assert text == EXPECTED_TEXT
    m = await client.messages.create(model="m", max_tokens=100, messages=USER)
    assert m.content[0].text == EXPECTED_TEXT
    await client.close()


# -- Gemini / Vertex ------------------------------------------------------------------


def test_gemini_stream_sse_crlf_and_running_usage(srv):
    client = gem(srv)
    chunks = list(client.models.generate_content_stream(model="gemini-2.0-flash", contents="Say something"))
    assert "".join(c.text for c in chunks) == EXPECTED_TEXT
    counts = [c.usage_metadata.candidates_token_count for c in chunks]
    assert counts == sorted(counts) and counts[-1] == 12
    assert chunks[-1].candidates[0].finish_reason == genai_types.FinishReason.STOP
    assert all(c.candidates[0].finish_reason is None for c in chunks[:-1])
    path = srv.requests[-1].path
    assert path == "/v1/models/gemini-2.0-flash:streamGenerateContent?alt=sse"  # google-genai 3.x: api v1
    raw = raw_post(srv, "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
                   {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.text.count("\r\n\r\n") == 12 and "\n\n" not in raw.text.replace("\r\n\r\n", "")
    real = json.loads(sse_events(fixture("google/gemini20_flash_text_sse.json")["response"]["body"])[-1][1])
    assert set(json.loads(sse_events(raw.text)[-1][1])) == set(real)


def test_gemini_non_streaming_tools_and_json(srv):
    client = gem(srv, api_version="v1beta")
    r = client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert r.text == EXPECTED_TEXT and r.usage_metadata.candidates_token_count == 12
    tool = genai_types.Tool(function_declarations=[genai_types.FunctionDeclaration(
        name="get_weather", parameters={"type": "OBJECT", "properties": {"location": {"type": "STRING"}}})])
    calls = [c for chunk in client.models.generate_content_stream(
        model="gemini-2.5-flash", contents="weather in Paris?", config=genai_types.GenerateContentConfig(tools=[tool]))
        for c in chunk.function_calls or []]
    assert calls[0].name == "get_weather" and calls[0].args == {"location": "Paris, France"}
    cfg = genai_types.GenerateContentConfig(response_mime_type="application/json", response_schema=Location)
    parsed = client.models.generate_content(model="gemini-2.5-flash", contents="hi", config=cfg).parsed
    assert isinstance(parsed, Location)


async def test_gemini_async_stream(srv):
    client = gem(srv)
    stream = await client.aio.models.generate_content_stream(model="gemini-2.0-flash", contents="hi")
    assert "".join([c.text async for c in stream]) == EXPECTED_TEXT
    r = await client.aio.models.generate_content(model="gemini-2.0-flash", contents="hi")
    assert r.text == EXPECTED_TEXT


def test_gemini_vertex_paths_via_sdk(srv):
    client = genai.Client(vertexai=True, project="p", location="us-central1",
                          credentials=Credentials(token="fake-token"),
                          http_options=genai_types.HttpOptions(base_url=srv.gemini_base_url))
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"))
    assert "".join(c.text for c in chunks) == EXPECTED_TEXT
    assert srv.requests[-1].path == ("/v1beta1/projects/p/locations/us-central1/publishers/google/models/"
                                     "gemini-2.5-flash:streamGenerateContent?alt=sse")


def test_gemini_json_array_stream_without_alt_sse(srv):
    pieces = []
    with httpx.stream("POST", srv.base_url + "/v1beta/models/gemini-flash-latest:streamGenerateContent",
                      json={"contents": [{"parts": [{"text": "hi"}]}]}) as response:
        assert response.headers["content-type"].startswith("application/json")
        pieces = list(response.iter_raw())
    assert len(pieces) > 1  # streamed incrementally, not one document
    array = json.loads(b"".join(pieces))
    assert "".join(o["candidates"][0]["content"]["parts"][0]["text"] for o in array) == EXPECTED_TEXT
    assert array[-1]["candidates"][0]["finishReason"] == "STOP"


# -- Replay ---------------------------------------------------------------------------


def test_replay_openai_recording_to_sdk():
    rec = fixture("openai/chat_gpt4_include_usage.json")
    with DevServer(recording=FIXTURES / "openai/chat_gpt4_include_usage.json", chunk_delay=0) as srv:
        chunks = list(oai(srv).chat.completions.create(model="gpt-4", messages=USER, stream=True))
        raw = raw_post(srv, "/anything", {})
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == '"This is a test."'
    assert chunks[-1].usage.total_tokens == rec["reported_usage"]["total_tokens"]
    assert raw.text == rec["response"]["body"] and raw.headers["content-type"] == rec["response"]["content_type"]


def test_replay_anthropic_and_gemini_recordings():
    rec = fixture("anthropic/messages_tool_use_input_json_delta.json")
    with DevServer(recording=rec, chunk_delay=0) as srv:
        with ant(srv).messages.stream(model="m", max_tokens=10, messages=USER) as stream:
            message = stream.get_final_message()
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[1].input == {"location": "San Francisco, CA", "unit": "celsius"}
    rec = fixture("google/gemini20_flash_text_sse.json")  # no recorded content type
    with DevServer(recording=rec, chunk_delay=0) as srv:
        client = gem(srv)  # keep a reference: a collected genai client closes its HTTP client
        chunks = list(client.models.generate_content_stream(model="gemini-2.0-flash", contents="hi"))
        assert raw_post(srv, "/x", {}).headers["content-type"] == "text/event-stream"
    assert chunks[-1].usage_metadata.total_token_count == rec["reported_usage"]["total_tokens"]


def test_replay_json_array_and_error_recordings():
    rec = fixture("google/gemini_json_array_stream_no_alt_sse.json")
    with DevServer(recording=rec, chunk_delay=0, replay_chunk_bytes=100) as srv:
        with httpx.stream("POST", srv.base_url + "/x", json={}) as response:
            pieces = list(response.iter_raw())
    assert len(pieces) == -(-len(rec["response"]["body"].encode()) // 100)
    assert b"".join(pieces).decode() == rec["response"]["body"]
    with DevServer(recording=fixture("openai/error_404_model_not_found_stream_request.json")) as srv:
        with pytest.raises(openai.NotFoundError) as info:
            oai(srv).chat.completions.create(model="m", messages=USER, stream=True)
    assert info.value.code == "model_not_found"


def test_replay_reproduces_every_recording_byte_for_byte():
    if not FIXTURES.exists():
        pytest.skip("shared/fixtures/streams not available")
    paths = sorted(FIXTURES.glob("*/*.json"))
    assert paths
    with httpx.Client(timeout=10) as client:
        for path in paths:
            rec = json.loads(path.read_text())
            with DevServer(recording=rec, chunk_delay=0) as srv:
                with client.stream("POST", srv.base_url + rec["request"]["path"], json={}) as response:
                    pieces = list(response.iter_raw())
            assert response.status_code == rec["response"]["status"], path.name
            assert b"".join(pieces).decode() == rec["response"]["body"], path.name
            if rec["response"]["content_type"]:
                assert response.headers["content-type"] == rec["response"]["content_type"], path.name
            if rec["response"]["status"] == 200 and rec["response"]["body"].count("\n\n") > 2:
                assert len(pieces) > 1, path.name  # streamed, not one write


# -- Faults: what each SDK raises -----------------------------------------------------

# Observed behaviour of the real SDKs, streaming calls. Notable: anthropic and
# google-genai let httpx2 transport errors out of a stream unwrapped (openai
# wraps them in APIConnectionError / APITimeoutError); the Responses API
# `error` event is yielded as a ResponseErrorEvent, not raised; anthropic's raw
# iterator skips unnamed SSE events, so its invalid-JSON frame is a named one.
FAULT_EXPECTATIONS: dict[str, dict[str, Any]] = {
    "malformed_sse": {"openai": json.JSONDecodeError, "anthropic": json.JSONDecodeError,
                      "gemini": genai_errors.UnknownApiResponseError},
    "truncate": {"openai": openai.APIConnectionError, "anthropic": RemoteProtocolError,
                 "gemini": RemoteProtocolError},
    "reset": {"openai": openai.APIConnectionError, "anthropic": ReadError, "gemini": ReadError},
    "error_event": {"openai": openai.APIError, "anthropic": anthropic.APIStatusError,
                    "gemini": genai_errors.ServerError},
    "http_400": {"openai": openai.BadRequestError, "anthropic": anthropic.BadRequestError,
                 "gemini": genai_errors.ClientError},
    "http_401": {"openai": openai.AuthenticationError, "anthropic": anthropic.AuthenticationError,
                 "gemini": genai_errors.ClientError},
    "http_404": {"openai": openai.NotFoundError, "anthropic": anthropic.NotFoundError,
                 "gemini": genai_errors.ClientError},
    "http_429": {"openai": openai.RateLimitError, "anthropic": anthropic.RateLimitError,
                 "gemini": genai_errors.ClientError},
    "http_500": {"openai": openai.InternalServerError, "anthropic": anthropic.InternalServerError,
                 "gemini": genai_errors.ServerError},
    "stall": {"openai": openai.APITimeoutError, "anthropic": ReadTimeout, "gemini": ReadTimeout},
}


def consume(sdk: str, srv: DevServer, fault: str, limit: int = 10_000) -> int:
    """Stream one answer with the given fault; returns the number of items read."""
    headers = {"x-steer-fault": fault}
    if sdk == "openai":
        stream = oai(srv, timeout=0.3).chat.completions.create(model="m", messages=USER, stream=True,
                                                               extra_headers=headers)
    elif sdk == "anthropic":
        stream = ant(srv, timeout=0.3).messages.create(model="m", max_tokens=100, messages=USER, stream=True,
                                                       extra_headers=headers)
    else:
        client = gem(srv, timeout=300)  # referenced until the stream is drained (see above)
        stream = client.models.generate_content_stream(
            model="gemini-2.0-flash", contents="hi",
            config=genai_types.GenerateContentConfig(http_options=genai_types.HttpOptions(headers=headers)))
    n = 0
    for _ in stream:
        n += 1
        if n >= limit:
            stream.close()
            break
    return n


@pytest.mark.parametrize("sdk", ["openai", "anthropic", "gemini"])
@pytest.mark.parametrize("fault", sorted(FAULT_EXPECTATIONS))
def test_fault_seen_by_sdk(srv, sdk, fault):
    expected = FAULT_EXPECTATIONS[fault][sdk]
    with pytest.raises(expected) as info:
        consume(sdk, srv, fault)
    if fault == "http_429" and sdk != "gemini":
        assert info.value.status_code == 429
    if fault == "error_event" and sdk == "anthropic":
        assert info.value.body["error"]["type"] == "overloaded_error"
    if fault == "http_404" and sdk == "gemini":
        assert info.value.code == 404 and info.value.status == "NOT_FOUND"


def test_fault_error_event_responses_api_is_an_event(srv):
    events = list(oai(srv).responses.create(model="m", input="hi", stream=True,
                                            extra_headers={"x-steer-fault": "error_event"}))
    assert events[-1].type == "error" and events[-1].code == "server_error"
    assert not any(e.type == "response.completed" for e in events)


def test_fault_malformed_sse_wire_and_tolerant_reader(srv):
    body = raw_post(srv, "/v1/chat/completions", {"model": "m", "messages": USER, "stream": True},
                    **{"x-steer-fault": "malformed_sse"}).text
    assert "this line is not server-sent events" in body and "event: steer.unknown_event" in body
    assert 'data: {"invalid": json,' in body and body.endswith("data: [DONE]\n\n")  # still ends normally
    # anthropic's raw iterator passes the garbage line, unknown event and the chunk
    # missing its `index`; the stream helper trips over that chunk.
    with pytest.raises(TypeError):
        with ant(srv).messages.stream(model="m", max_tokens=10, messages=USER,
                                      extra_headers={"x-steer-fault": "malformed_sse"}) as stream:
            stream.get_final_message()


def test_fault_truncate_and_reset_deliver_partial_content(srv):
    received = []
    with pytest.raises(openai.APIConnectionError):
        for c in oai(srv).chat.completions.create(model="m", messages=USER, stream=True,
                                                  extra_headers={"x-steer-fault": "truncate"}):
            received.append(c.choices[0].delta.content or "")
    assert 0 < len("".join(received)) < len(EXPECTED_TEXT)
    # reset: the SDK sees ECONNRESET (an RST, not a FIN).
    with pytest.raises(openai.APIConnectionError) as info:
        consume("openai", srv, "reset")
    assert isinstance(info.value.__cause__, ReadError)
    assert "reset" in str(info.value.__cause__).lower()


@pytest.mark.parametrize("fault,expected", [
    ("truncate", openai.APIConnectionError), ("reset", openai.APIConnectionError),
    ("error_event", openai.InternalServerError), ("stall", openai.APITimeoutError),
])
def test_faults_on_non_streaming_openai(srv, fault, expected):
    with pytest.raises(expected):
        oai(srv, timeout=0.3).chat.completions.create(model="m", messages=USER,
                                                      extra_headers={"x-steer-fault": fault})


def test_non_streaming_faults_anthropic_and_gemini(srv):
    h = {"x-steer-fault": "error_event"}
    with pytest.raises(anthropic.OverloadedError):  # 529 overloaded_error
        ant(srv).messages.create(model="m", max_tokens=10, messages=USER, extra_headers=h)
    with pytest.raises(anthropic.APIConnectionError):
        ant(srv).messages.create(model="m", max_tokens=10, messages=USER, extra_headers={"x-steer-fault": "reset"})
    client = gem(srv)
    with pytest.raises(genai_errors.ServerError) as info:  # 503 UNAVAILABLE "model is overloaded"
        client.models.generate_content(model="g", contents="hi", config={"http_options": {"headers": h}})
    assert info.value.code == 503


async def test_async_faults(srv):
    client = openai.AsyncOpenAI(base_url=srv.openai_base_url, api_key="x", max_retries=0, timeout=0.3)
    aclient = anthropic.AsyncAnthropic(base_url=srv.anthropic_base_url, api_key="x", max_retries=0, timeout=0.3)
    for fault, expected, aexpected in [("reset", openai.APIConnectionError, ReadError),
                                       ("truncate", openai.APIConnectionError, RemoteProtocolError),
                                       ("stall", openai.APITimeoutError, ReadTimeout),
                                       ("http_429", openai.RateLimitError, anthropic.RateLimitError)]:
        h = {"x-steer-fault": fault}
        with pytest.raises(expected):
            async for _ in await client.chat.completions.create(model="m", messages=USER, stream=True,
                                                                extra_headers=h):
                pass
        with pytest.raises(aexpected):
            async for _ in await aclient.messages.create(model="m", max_tokens=10, messages=USER, stream=True,
                                                         extra_headers=h):
                pass
    await client.close()
    await aclient.close()


def test_stall_does_not_block_others_and_ends_on_stop():
    server = DevServer(chunk_delay=0, fault="stall").start()
    outcome: dict[str, Any] = {}
    hanging = threading.Event()

    def stalled_reader():
        try:
            consume("openai", server, "stall")  # would wait 0.3 s; uses a fresh client
        except Exception as exc:
            outcome["short"] = exc
        client = oai(server, timeout=30)
        stream = client.chat.completions.create(model="m", messages=USER, stream=True)
        hanging.set()  # the stalled stream's headers are in: it now hangs in the body
        start = time.monotonic()
        try:
            for _ in stream:
                pass
        except Exception as exc:
            outcome["error"] = exc
        outcome["waited"] = time.monotonic() - start

    thread = threading.Thread(target=stalled_reader)
    thread.start()
    # Wait for the stalled stream to be open (a fixed sleep lost this race on a loaded machine).
    assert hanging.wait(60)
    # While that stream hangs, the same server answers a normal request.
    r = oai(server).chat.completions.create(model="m", messages=USER, extra_headers={"x-steer-fault": "none"})
    assert r.choices[0].message.content == EXPECTED_TEXT
    assert thread.is_alive()
    server.stop()  # shutdown ends the stalled stream instead of hanging
    thread.join(25)  # the client's read timeout is 30 s: still alive here means stop() left it hanging
    assert not thread.is_alive()
    assert isinstance(outcome["short"], openai.APITimeoutError)
    assert isinstance(outcome["error"], openai.APIConnectionError)


def test_endless_streams_until_client_leaves(srv):
    for sdk in ("openai", "anthropic", "gemini"):
        assert consume(sdk, srv, "endless", limit=300) == 300
    # The server keeps serving afterwards.
    assert oai(srv).chat.completions.create(model="m", messages=USER).choices[0].message.content == EXPECTED_TEXT


def test_fault_names_and_validation(srv):
    # *_then_ok faults are the flaky server of the retry tests (below, and tests/test_retries.py).
    assert set(FAULT_EXPECTATIONS) | {"endless"} == {f for f in FAULTS if not f.endswith("_then_ok")}
    with pytest.raises(ValueError):
        DevServer(fault="nope")
    r = raw_post(srv, "/v1/chat/completions", {"model": "m", "messages": USER}, **{"x-steer-fault": "nope"})
    assert r.status_code == 400 and "unknown steer devserver fault" in r.json()["error"]["message"]
    assert raw_post(srv, "/v1/chat/completions", {}, **{"x-steer-fault": "http_503"}).status_code == 503
    assert raw_post(srv, "/nowhere", {}).status_code == 404


# -- Knobs, plumbing, load ------------------------------------------------------------


def test_pacing_knobs():
    with DevServer(ttft=0.15, tokens_per_second=50, chunks=6) as srv:
        start = time.monotonic()
        stream = oai(srv).chat.completions.create(model="m", messages=USER, stream=True)
        times = []
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                times.append(time.monotonic() - start)
    assert len(times) == 6
    assert times[0] >= 0.14
    assert times[-1] - times[0] >= 5 * 0.02 * 0.9  # 5 gaps of 1/50 s


def test_per_request_knobs_and_seed(srv):
    h = {"x-steer-chunks": "3", "x-steer-seed": "7"}
    r = oai(srv).chat.completions.create(model="m", messages=USER, extra_headers=h)
    assert r.choices[0].message.content == "".join(text_pieces(7, 3)) != "".join(text_pieces(0, 3))
    with DevServer(chunks=5, seed=7, chunk_delay=0) as other:
        assert oai(other).chat.completions.create(model="m", messages=USER).choices[0].message.content == \
            "".join(text_pieces(7, 5))


def test_request_log_and_keep_alive():
    with DevServer(chunk_delay=0) as srv:
        client = ant(srv)
        for _ in range(5):
            list(client.messages.create(model="m", max_tokens=10, messages=USER, stream=True))
        client.messages.create(model="m", max_tokens=10, messages=USER)
        assert srv.connection_count == 1  # chunked streams keep the connection reusable
        method, path, headers, body = srv.requests[0]
        assert (method, path) == ("POST", "/v1/messages")
        assert headers["authorization"] == "Bearer x" and body["messages"] == USER and body["stream"] is True
        assert len(srv.requests) == 6
        srv.clear_requests()
        assert srv.requests == []
        # The sync openai Stream stops reading at `data: [DONE]` and closes the
        # response before the terminating chunk, so httpx drops that connection:
        # each sync openai stream costs a new connection (the async one drains).
        openai_client = oai(srv)
        for _ in range(3):
            list(openai_client.chat.completions.create(model="m", messages=USER, stream=True))
        assert srv.connection_count == 4
        assert [r.path for r in srv.requests] == ["/v1/chat/completions"] * 3


def test_expect_continue_and_chunked_request_body(srv):
    payload = json.dumps({"model": "m", "messages": USER}).encode()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(payload))
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(payload)
        time.sleep(0.05)
        assert b"HTTP/1.1 200 OK" in sock.recv(65536)
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Connection: close\r\n\r\n" + chunked)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK") and EXPECTED_TEXT.encode() in data


async def test_200_concurrent_async_streams():
    with DevServer(chunk_delay=0, chunks=20) as srv:
        client = openai.AsyncOpenAI(base_url=srv.openai_base_url, api_key="x", max_retries=0)

        async def one() -> str:
            stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
            return "".join([c.choices[0].delta.content or "" async for c in stream])

        texts = await asyncio.gather(*(one() for _ in range(200)))
        await client.close()
    # No wall-clock bound (a loaded machine failed one): every one of the 200 interleaved streams is whole.
    assert texts == ["".join(text_pieces(0, 20))] * 200


def test_standalone_module_prints_base_urls():
    proc = subprocess.Popen([sys.executable, "-m", "steer.tools.devserver", "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        lines = [proc.stdout.readline() for _ in range(3)]
        assert first.startswith("steer devserver listening on http://127.0.0.1:")
        base = first.split()[-1]
        assert f"base_url={base}/v1" in lines[0]
        assert httpx.get(base + "/health").json()["status"] == "ok"
    finally:
        proc.terminate()
        proc.wait(5)
        proc.stdout.close()


def test_then_ok_faults_fail_k_times_then_answer_and_start_again(srv):
    """``http_NNN[xK]_then_ok``: K requests carrying it get HTTP NNN (with ``retry-after-ms`` when asked
    for), the next one the normal answer; then the count starts again."""
    body = {"model": "m", "messages": USER}
    headers = {"x-steer-fault": "http_503x2_then_ok", "x-steer-retry-after-ms": "7"}
    statuses = [raw_post(srv, "/v1/chat/completions", body, **headers) for _ in range(4)]
    assert [r.status_code for r in statuses] == [503, 503, 200, 503]
    assert statuses[0].headers["retry-after-ms"] == "7"
    assert statuses[2].json()["choices"][0]["message"]["content"] == EXPECTED_TEXT
    once = [raw_post(srv, "/v1/chat/completions", body, **{"x-steer-fault": "http_500_then_ok"}) for _ in range(2)]
    assert [r.status_code for r in once] == [500, 200] and "retry-after-ms" not in once[0].headers

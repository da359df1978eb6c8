"""Nothing received is lost when a stream fails half-way (issue 19, item 4).

The recorded Groq stream (shared/fixtures/streams/groq) sends deltas, then ``event: error``; here its
first content delta carries the text "maybe", as in the report. The real openai SDK hands the caller
that text before raising; steer's span (captured output), its ``StreamErrorEvent`` and ``steer replay
--json`` must all still show it — and the reasoning received before the error — sync, async and on
the raw httpx path.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Dict, List

import openai
import pytest

from recordings import load
from steer.events import StreamErrorEvent
from steer.tools.replay import replay
from steer.tools.replay.transport import RecordingTransport


def groq_text_then_error() -> Dict[str, Any]:
    recording = copy.deepcopy(load("groq/groq_midstream_error_event_tool_use_failed.json"))
    events = recording["response"]["body"].split("\n\n")
    first = json.loads(events[0][len("data: "):])
    first["choices"][0]["delta"]["content"] = "maybe"
    events[0] = "data: " + json.dumps(first)
    recording["response"]["body"] = "\n\n".join(events)
    return recording


RECORDING = groq_text_then_error()
KWARGS = dict(RECORDING["request"]["body"])


def check(telemetry: Any, ended: List[Any]) -> None:
    (event,) = ended
    assert isinstance(event, StreamErrorEvent) and event.error_type  # the SDK's APIError, or the wire's error type (raw)
    assert event.text == "maybe" and event.get_text() == "maybe"
    assert event.reasoning.startswith("We need to call the tool")
    assert event.end == "error" and event.total_chunks > 1 and event.response_model == "openai/gpt-oss-120b"
    (span,) = telemetry.genai_spans()
    assert span.attributes["steer.stream.end"] == "error"
    output = json.loads(span.attributes["gen_ai.output.messages"])
    parts = output[0]["parts"]  # the reasoning received (a reasoning part, issue 14), then the text
    assert {"type": "text", "content": "maybe"} in parts
    assert any(p["type"] == "reasoning" and p["content"].startswith("We need to call the tool") for p in parts)


@pytest.mark.parametrize("is_async", [False, True])
async def test_sdk_stream_that_fails_keeps_what_it_received(is_async: bool, instrumented: Any) -> None:
    ended: List[Any] = []
    telemetry = instrumented(capture_content=True, on_complete=ended.append, on_error=ended.append)
    transport = RecordingTransport(RECORDING)
    seen = ""
    with pytest.raises(openai.APIError):
        if is_async:
            client = openai.AsyncOpenAI(api_key="x", base_url="https://api.groq.com/openai/v1",
                                        http_client=transport.async_client(), max_retries=0)
            async for chunk in await client.chat.completions.create(**KWARGS):
                seen += chunk.choices[0].delta.content or "" if chunk.choices else ""
        else:
            client = openai.OpenAI(api_key="x", base_url="https://api.groq.com/openai/v1",
                                   http_client=transport.client(), max_retries=0)
            for chunk in client.chat.completions.create(**KWARGS):
                seen += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert seen == "maybe"  # what the SDK handed the caller before raising
    check(telemetry, ended)


@pytest.mark.parametrize("is_async", [False, True])
async def test_raw_stream_that_fails_keeps_what_it_received(is_async: bool, instrumented: Any) -> None:
    ended: List[Any] = []
    telemetry = instrumented(capture_content=True, on_complete=ended.append, on_error=ended.append)
    transport = RecordingTransport(RECORDING)
    url = "https://api.groq.com/openai/v1/chat/completions"
    if is_async:
        async with transport.async_client() as client:
            async with client.stream("POST", url, json=KWARGS) as response:
                lines = [line async for line in response.aiter_lines()]
    else:
        with transport.client() as client:
            with client.stream("POST", url, json=KWARGS) as response:
                lines = list(response.iter_lines())
    assert any('"maybe"' in line for line in lines)
    check(telemetry, ended)


def test_replay_json_reports_what_was_received_before_the_error() -> None:
    out = replay(RECORDING)
    assert out["text"] == "maybe"
    assert out["reasoning"].startswith("We need to call the tool")
    assert out["error"]["type"] == "APIError" and out["span"]["status"] == "ERROR"

"""OpenAI Chat Completions through the real openai SDK, over every recording of the wire format
(OpenAI and the OpenAI-compatible providers): steer's assembly equals the SDK's own accumulator,
usage equals what the stream reported, and the span follows the schema."""

from __future__ import annotations

import json
from typing import Any, Dict, List

import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState

import steer
from recordings import Served, all_recordings, ids, request_kwargs

CHAT = all_recordings("openai.chat.completions")
STREAMS = [r for r in CHAT if r["response"]["status"] == 200]
HTTP_ERRORS = [r for r in CHAT if r["response"]["status"] != 200]

# Where each recorded provider lives: the provider name is decided from the client's base URL.
BASE_URLS = {
    "openai": ("https://api.openai.com/v1", "openai"),
    "xai": ("https://api.x.ai/v1", "x_ai"),
    "openrouter": ("https://openrouter.ai/api/v1", "openrouter"),
    "groq": ("https://api.groq.com/openai/v1", "groq"),
    "mistral": ("https://api.mistral.ai/v1", "mistral_ai"),
    "deepseek": ("https://api.deepseek.com", "deepseek"),
    "together": ("https://api.together.xyz/v1", "together"),
}


def make_client(recording: Dict[str, Any], is_async: bool = False) -> Any:
    served = Served(recording)
    http = served.async_client() if is_async else served.client()
    if recording["provider"] == "azure_openai":
        cls = openai.AsyncAzureOpenAI if is_async else openai.AzureOpenAI
        return cls(api_key="x", api_version="2024-02-01", azure_endpoint="https://myres.openai.azure.com", http_client=http)
    cls = openai.AsyncOpenAI if is_async else openai.OpenAI
    return cls(api_key="x", base_url=BASE_URLS[recording["provider"]][0], http_client=http, max_retries=0)


def expected_provider(recording: Dict[str, Any]) -> str:
    return "azure.ai.openai" if recording["provider"] == "azure_openai" else BASE_URLS[recording["provider"]][1]


def call_kwargs(recording: Dict[str, Any]) -> Dict[str, Any]:
    kwargs = request_kwargs(recording, openai.resources.chat.completions.Completions.create)
    kwargs.setdefault("model", recording["model"])
    kwargs.setdefault("messages", [{"role": "user", "content": "hi"}])
    kwargs["stream"] = True
    return kwargs


def sdk_assembly(chunks: List[Any]) -> Dict[str, Any]:
    """What the SDK's own accumulator builds from the same chunks."""
    state = ChatCompletionStreamState()
    try:
        for chunk in chunks:
            state.handle_chunk(chunk)
    except RuntimeError:  # the SDK refuses OpenRouter's index-less `reasoning_details` lists
        return plain_join(chunks)
    final = state.current_completion_snapshot  # get_final_completion() refuses finish_reason "length"
    out: Dict[str, Any] = {"texts": [], "tool_calls": [], "finish": []}
    for choice in sorted(final.choices, key=lambda c: c.index):
        if choice.message.content:
            out["texts"].append(choice.message.content)
        for call in choice.message.tool_calls or []:
            out["tool_calls"].append((call.id, call.function.name, json.loads(call.function.arguments or "{}")))
        if choice.finish_reason:
            out["finish"].append(choice.finish_reason)
    return out


def plain_join(chunks: List[Any]) -> Dict[str, Any]:
    text: Dict[int, str] = {}
    calls: Dict[Any, List[Any]] = {}
    finish: Dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            text[choice.index] = text.get(choice.index, "") + (choice.delta.content or "")
            for call in choice.delta.tool_calls or []:
                entry = calls.setdefault((choice.index, call.index), [call.id, call.function.name, ""])
                entry[2] += call.function.arguments or ""
            if choice.finish_reason:
                finish[choice.index] = choice.finish_reason
    return {"texts": [text[i] for i in sorted(text) if text[i]],
            "tool_calls": [(i, n, json.loads(a or "{}")) for i, n, a in calls.values()],
            "finish": [finish[i] for i in sorted(finish)]}


@pytest.mark.parametrize("recording", STREAMS, ids=ids(STREAMS))
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_recording_assembles_like_the_sdk(recording: Dict[str, Any], mode: str, instrumented: Any) -> None:
    completed: List[steer.StreamCompleteEvent] = []
    errors: List[steer.StreamErrorEvent] = []
    telemetry = instrumented(on_complete=completed.append, on_error=errors.append)
    client = make_client(recording, is_async=mode == "async")
    chunks: List[Any] = []
    raised = None
    try:
        if mode == "sync":
            for chunk in client.chat.completions.create(**call_kwargs(recording)):
                chunks.append(chunk)
        else:
            async for chunk in await client.chat.completions.create(**call_kwargs(recording)):
                chunks.append(chunk)
    except openai.APIError as exc:
        raised = exc

    (span,) = telemetry.genai_spans()
    attrs = dict(span.attributes)
    assert span.name == f"chat {call_kwargs(recording)['model']}"
    assert attrs["gen_ai.provider.name"] == expected_provider(recording)
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["steer.stream.chunks"] == len(chunks)
    assert attrs["gen_ai.response.time_to_first_chunk"] > 0

    if raised is not None:  # Groq's mid-stream `event: error`: the SDK raises, steer records
        assert "error_event" in recording["features"]
        assert errors and errors[0].error is raised and not completed
        assert attrs["steer.stream.end"] == "error" and attrs["error.type"] == "APIError"
        assert span.status.status_code.name == "ERROR"
        return

    (event,) = completed
    sdk = sdk_assembly(chunks)
    assert event.choice_texts == sdk["texts"]
    assert event.text == (sdk["texts"][0] if sdk["texts"] else "")
    assert [(c.id, c.name, c.arguments) for c in event.tool_calls] == sdk["tool_calls"]
    assert event.finish_reasons == sdk["finish"]
    assert attrs["steer.stream.end"] == "complete"
    assert attrs["gen_ai.response.finish_reasons"] == tuple(sdk["finish"])

    reported = recording.get("reported_usage")
    if reported:
        assert event.final_usage.source == "reported"
        assert event.final_usage.input_tokens == reported["input_tokens"]
        assert event.final_usage.output_tokens == reported["output_tokens"]
        assert attrs["gen_ai.usage.input_tokens"] == reported["input_tokens"]
        assert attrs["gen_ai.usage.output_tokens"] == reported["output_tokens"]
        assert attrs["steer.usage.source"] == "reported"
    else:  # no usage in the stream: estimated, and labelled as such, never in gen_ai.usage.*
        assert event.final_usage.source == "estimated"
        assert "gen_ai.usage.output_tokens" not in attrs
        assert attrs["steer.usage.source"] == "estimated"
        assert attrs["steer.usage.estimated.output_tokens"] > 0
        assert 0 < attrs["steer.usage.confidence"] <= 1

    metrics = telemetry.metrics()
    for name in ("gen_ai.client.operation.duration", "gen_ai.client.operation.time_to_first_chunk",
                 "gen_ai.client.operation.time_per_output_chunk", "steer.client.stream.chunks"):
        assert sum(p.count for p in metrics[name]) == 1, name
    token_points = metrics.get("gen_ai.client.token.usage" if reported else "steer.client.token.usage.estimated", [])
    assert {p.attributes["gen_ai.token.type"] for p in token_points} >= {"output"}
    for points in metrics.values():
        for point in points:
            assert set(point.attributes) <= {
                "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.response.model",
                "server.address", "server.port", "error.type", "gen_ai.token.type", "steer.json.valid",
                "steer.stream.end",  # on the duration metric of streaming calls (bounded: 5 values)
                "steer.usage.cost.source", "steer.usage.cost.unpriced",  # steer.client.cost(.unpriced): a few fixed values
                "steer.decode.reason"}  # steer.decode.errors: four fixed reasons
    assert telemetry.active_streams() == 0


@pytest.mark.parametrize("recording", HTTP_ERRORS, ids=ids(HTTP_ERRORS))
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_http_error_recordings(recording: Dict[str, Any], mode: str, instrumented: Any) -> None:
    errors: List[steer.StreamErrorEvent] = []
    telemetry = instrumented(on_error=errors.append)
    client = make_client(recording, is_async=mode == "async")
    with pytest.raises(openai.APIStatusError) as info:
        if mode == "sync":
            client.chat.completions.create(**call_kwargs(recording))
        else:
            await client.chat.completions.create(**call_kwargs(recording))
    assert info.value.status_code == recording["response"]["status"]
    (span,) = telemetry.genai_spans()
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["error.type"] == type(info.value).__name__
    assert any(e.name == "exception" for e in span.events)
    assert errors[0].error is info.value
    assert errors[0].is_retryable == (recording["response"]["status"] == 429)
    (duration,) = telemetry.metrics()["gen_ai.client.operation.duration"]
    assert duration.attributes["error.type"] == type(info.value).__name__
    assert telemetry.active_streams() == 0


@pytest.mark.parametrize("url,name", [
    ("https://api.openai.com/v1", "openai"),
    ("https://my-res.openai.azure.com/openai/", "azure.ai.openai"),
    ("https://api.x.ai/v1", "x_ai"),
    ("https://openrouter.ai/api/v1", "openrouter"),
    ("https://api.groq.com/openai/v1", "groq"),
    ("https://api.mistral.ai/v1", "mistral_ai"),
    ("https://api.deepseek.com", "deepseek"),
    ("https://api.together.xyz/v1", "together"),
    ("http://localhost:8000/v1", "openai"),
    ("https://evil-api.openai.com.example.net/v1", "openai"),
])
def test_provider_from_base_url(url: str, name: str) -> None:
    from steer.providers.openai import provider_from_url

    assert provider_from_url(url)[0] == name


def test_provider_override(instrumented: Any) -> None:
    recording = next(r for r in STREAMS if r["_name"] == "openai/chat_gpt4_include_usage.json")
    telemetry = instrumented(provider_name="vllm")
    for _ in make_client(recording).chat.completions.create(**call_kwargs(recording)):
        pass
    assert telemetry.genai_spans()[0].attributes["gen_ai.provider.name"] == "vllm"


def test_a_choice_index_that_is_not_a_number_is_kept_and_ordered_last(instrumented: Any) -> None:
    """A corrupted stream puts a string in a choice's ``index``: the decoder keeps that choice's text
    under what the wire said, and what orders choices at the end of the call (usage estimation over
    every choice's reasoning, the captured output messages, the events) puts it after the numbered
    ones instead of failing on a mix of keys — the full-size fuzz run found ``sorted()`` raising in
    usage estimation on Groq's mid-stream error recording mutated this way."""
    import re

    from recordings import load

    recording = load("groq/groq_midstream_error_event_tool_use_failed.json")  # reasoning, then an error event
    body = recording["response"]["body"]
    second = body.index('"reasoning"', body.index('"reasoning"') + 1)
    line_start = body.rindex("data:", 0, second)
    mutated, n = re.subn(r'"index":\s*0', '"index":"x"', body[line_start:second], count=1)
    assert n == 1
    recording = {**recording, "response": {**recording["response"], "body": body[:line_start] + mutated + body[second:]}}
    ended: List[Any] = []
    telemetry = instrumented(capture_content=True, on_error=ended.append, on_complete=ended.append)
    chunks: List[Any] = []
    with pytest.raises(openai.APIError):  # the provider's error event, raised by the SDK as without steer
        for chunk in make_client(recording).chat.completions.create(**call_kwargs(recording)):
            chunks.append(chunk)

    assert any(c.choices and c.choices[0].index == "x" for c in chunks)  # the SDK passes the index through
    (span,) = telemetry.genai_spans()
    attrs = span.attributes
    assert attrs["steer.stream.end"] == "error"
    assert attrs["steer.usage.source"] == "estimated"  # from the reasoning of choice 0 and choice "x"
    assert json.loads(attrs["gen_ai.output.messages"])  # the captured output, ordered without failing
    assert [type(e).__name__ for e in ended] == ["StreamErrorEvent"]
    seam = [p for p in telemetry.metrics().get("steer.internal.errors", [])
            if not str(p.attributes.get("steer.where")).startswith("decode") and p.value]
    assert seam == []

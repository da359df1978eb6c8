"""Captured content follows the GenAI conventions (semantic-conventions v1.41 message schemas), through
the real SDKs over the recordings: where instructions go, service tiers, tool definitions, reasoning and
server tool parts, finish reasons of calls that never finished, and truncation that keeps valid JSON
(issue 14, item 1)."""

from __future__ import annotations

import json
from typing import Any, Dict, List

import anthropic
import httpx2
import openai
import pytest

import test_anthropic as anth
import test_google_genai as gem
import test_openai_chat as chat
import test_openai_responses as resp
from recordings import Served, load

pytestmark = [pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::UserWarning")]  # the SDKs' own pydantic serializer noise


def attrs_of(telemetry: Any) -> Dict[str, Any]:
    (span,) = telemetry.genai_spans()
    return dict(span.attributes)


def content(attrs: Dict[str, Any], name: str) -> Any:
    return json.loads(attrs[f"gen_ai.{name}"])


def run_chat(name: str, **options: Any) -> Dict[str, Any]:
    recording = load(name)
    return list(chat.make_client(recording).chat.completions.create(**chat.call_kwargs(recording)))


def run_responses(name: str) -> None:
    recording = load(name)
    list(resp.client(recording).responses.create(stream=True, **resp.kwargs_for(recording)))


def run_anthropic(name: str) -> None:
    recording = load(name)
    client, _ = anth.make_client(recording)
    res = anth.resource(client, recording)
    list(res.create(stream=True, **anth.kwargs_for(recording, res, "create")))


def run_gemini(name: str) -> None:
    recording = load(name)
    gem.stream_sync(gem.make_client(Served(recording, httpx2)), gem.sdk_kwargs(recording))


# -- 1. instructions: in the history they stay there; given apart they are system instructions --------
def test_chat_system_message_stays_in_the_input_messages(instrumented: Any) -> None:
    telemetry = instrumented(capture_content=True)
    run_chat("openai/chat_two_tool_calls_include_usage.json")
    attrs = attrs_of(telemetry)
    assert content(attrs, "input.messages")[0] == {"role": "system", "parts": [{"type": "text", "content": "You're a helpful assistant."}]}
    assert "gen_ai.system_instructions" not in attrs


def test_responses_developer_item_stays_and_instructions_are_apart(instrumented: Any) -> None:
    telemetry = instrumented(capture_content=True)
    run_responses("openai/responses_o4_mini_reasoning_summary.json")
    attrs = attrs_of(telemetry)
    assert [m["role"] for m in content(attrs, "input.messages")] == ["developer", "user"]
    assert "gen_ai.system_instructions" not in attrs
    telemetry.clear()
    run_responses("openai/responses_web_search_reasoning_gpt5.json")
    assert content(attrs_of(telemetry), "system_instructions") == [{"type": "text", "content": "You are a helpful assistant."}]


def test_system_instructions_hold_text_parts_only(instrumented: Any) -> None:
    from steer.providers.anthropic import input_messages

    system = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
              {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]
    assert input_messages({"system": system, "messages": []})["system"] == [{"type": "text", "content": "Be brief."}]


# -- 2. service tiers ------------------------------------------------------------------------------------
def test_chat_service_tiers_requested_and_answered(instrumented: Any) -> None:
    telemetry = instrumented()
    run_chat("openai/chat_all_client_options.json")  # service_tier="default" requested; chunks carry it
    attrs = attrs_of(telemetry)
    assert attrs["openai.request.service_tier"] == "default"
    assert attrs["openai.response.service_tier"] == "default"
    assert attrs["openai.response.system_fingerprint"].startswith("fp_")


def test_auto_service_tier_is_not_reported_as_requested(instrumented: Any) -> None:
    from steer.providers.openai import chat_call_info

    info = chat_call_info({"model": "m", "service_tier": "auto"}, provider="openai", address=None, port=None)
    assert "request_service_tier" not in info.extra


# -- 3. tool definitions (opt-in, with content) ------------------------------------------------------------
WEATHER = {"type": "function", "name": "get_current_weather", "description": "Get the current weather in a given location"}


def test_tool_definitions_per_provider(instrumented: Any) -> None:
    telemetry = instrumented(capture_content=True)
    run_chat("openai/chat_two_tool_calls_include_usage.json")
    (tool,) = content(attrs_of(telemetry), "tool.definitions")
    assert {k: tool[k] for k in WEATHER} == WEATHER and tool["parameters"]["required"] == ["location"]
    telemetry.clear()
    run_responses("openai/responses_web_search_reasoning_gpt5.json")
    assert content(attrs_of(telemetry), "tool.definitions") == [{"type": "web_search", "name": "web_search"}]
    telemetry.clear()
    run_anthropic("anthropic/messages_server_web_search.json")
    assert content(attrs_of(telemetry), "tool.definitions") == [{"type": "web_search_20250305", "name": "web_search"}]
    telemetry.clear()
    run_anthropic("anthropic/messages_tool_use_input_json_delta.json")
    tools = content(attrs_of(telemetry), "tool.definitions")
    assert tools and all(t["type"] == "function" and t["name"] and "parameters" in t for t in tools)
    telemetry.clear()
    run_gemini("google/gemini20_flash_function_call.json")
    tools = content(attrs_of(telemetry), "tool.definitions")
    assert tools and all(t["type"] == "function" and t["name"] for t in tools)
    telemetry.clear()
    run_gemini("google/gemini25_flash_code_execution.json")
    assert content(attrs_of(telemetry), "tool.definitions") == [{"type": "codeExecution", "name": "codeExecution"}]


def test_no_tool_definitions_without_content_capture(instrumented: Any) -> None:
    telemetry = instrumented(capture_content=False)
    run_chat("openai/chat_two_tool_calls_include_usage.json")
    assert not [k for k in attrs_of(telemetry) if k.startswith("gen_ai.tool.") or "messages" in k]


# -- 4. reasoning and server tools in the output messages ----------------------------------------------------
@pytest.mark.parametrize("name,run", [
    ("anthropic/messages_thinking_claude37.json", run_anthropic),
    ("openai/responses_o4_mini_reasoning_summary.json", run_responses),
    ("google/gemini25_pro_thinking.json", run_gemini),
    ("openrouter/openrouter_claude_reasoning.json", run_chat),
])
def test_reasoning_is_a_reasoning_part(name: str, run: Any, instrumented: Any) -> None:
    events: List[Any] = []
    telemetry = instrumented(capture_content=True, on_complete=events.append)
    run(name)
    (message,) = content(attrs_of(telemetry), "output.messages")
    kinds = [p["type"] for p in message["parts"]]
    assert kinds[0] == "reasoning" and "text" in kinds
    assert message["parts"][0]["content"] == events[0].reasoning  # all of it, as the events assemble it


def test_server_tool_calls_are_server_tool_parts(instrumented: Any) -> None:
    telemetry = instrumented(capture_content=True)
    run_anthropic("anthropic/messages_server_web_search.json")
    (message,) = content(attrs_of(telemetry), "output.messages")
    kinds = [p["type"] for p in message["parts"]]
    assert "server_tool_call" in kinds and "server_tool_call_response" in kinds and "tool_call" not in kinds
    call = next(p for p in message["parts"] if p["type"] == "server_tool_call")
    assert call["name"] == "web_search" and call["server_tool_call"]["arguments"]["query"]
    assert next(p for p in message["parts"] if p["type"] == "server_tool_call_response")["id"] == call["id"]

    telemetry.clear()
    run_responses("openai/responses_web_search_reasoning_gpt5.json")
    (message,) = content(attrs_of(telemetry), "output.messages")
    searches = [p for p in message["parts"] if p["type"] == "server_tool_call"]
    assert searches and all(p["name"] == "web_search" and p["server_tool_call"]["type"] == "web_search_call" for p in searches)

    telemetry.clear()
    run_gemini("google/gemini25_flash_code_execution.json")
    (message,) = content(attrs_of(telemetry), "output.messages")
    kinds = [p["type"] for p in message["parts"]]
    assert kinds.count("server_tool_call") == kinds.count("server_tool_call_response") >= 1
    code = next(p for p in message["parts"] if p["type"] == "server_tool_call")
    assert code["server_tool_call"]["language"] == "PYTHON" and "prime" in code["server_tool_call"]["code"].lower()


# -- 5. calls that never finished: "error" where a finish reason was expected ---------------------------------
def test_stream_failing_mid_way_reports_error_finish(instrumented: Any) -> None:
    recording = load(resp.BASIC)
    telemetry = instrumented(capture_content=True)
    with pytest.raises(openai.APIConnectionError):
        list(resp.client(recording, served=resp.Failing(recording, 8)).responses.create(stream=True, **resp.kwargs_for(recording)))
    attrs = attrs_of(telemetry)
    assert attrs["steer.stream.end"] == "error"
    assert attrs["gen_ai.response.finish_reasons"] == ("error",)
    (message,) = content(attrs, "output.messages")
    assert message["finish_reason"] == "error" and message["parts"][0]["type"] == "text"


def test_failed_call_has_error_finish_and_no_empty_message(instrumented: Any) -> None:
    recording = load("anthropic/error_404_anthropic_not_found.json")
    telemetry = instrumented(capture_content=True)
    client, _ = anth.make_client(recording)
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(stream=True, **anth.kwargs_for(recording, client.messages, "create"))
    attrs = attrs_of(telemetry)
    assert attrs["gen_ai.response.finish_reasons"] == ("error",)
    assert "gen_ai.output.messages" not in attrs and "gen_ai.input.messages" in attrs


def test_closed_early_reports_error_for_each_requested_choice(instrumented: Any) -> None:
    recording = load("openai/chat_n2_include_usage.json")
    completed: List[Any] = []
    telemetry = instrumented(capture_content=True, on_complete=completed.append)
    with chat.make_client(recording).chat.completions.create(**chat.call_kwargs(recording)) as stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
    attrs = attrs_of(telemetry)
    assert attrs["steer.stream.end"] == "closed_early"
    assert attrs["gen_ai.response.finish_reasons"] == ("error", "error")
    messages = content(attrs, "output.messages")
    assert [m["finish_reason"] for m in messages] == ["error"] and messages[0]["parts"]  # the choice that produced text
    assert completed[0].finish_reasons == []  # events report what arrived


def test_a_complete_stream_keeps_its_own_finish_reasons(instrumented: Any) -> None:
    telemetry = instrumented(capture_content=True)
    run_chat("openai/chat_n2_include_usage.json")
    attrs = attrs_of(telemetry)
    assert attrs["gen_ai.response.finish_reasons"] == ("stop", "stop")
    assert [m["finish_reason"] for m in content(attrs, "output.messages")] == ["stop", "stop"]


# -- 7. truncation inside the messages: every content attribute still parses ---------------------------------
@pytest.mark.parametrize("cap", [340, 500])  # the output messages are 341 characters
def test_truncated_content_is_valid_json_in_the_message_shapes(cap: int, instrumented: Any) -> None:
    telemetry = instrumented(capture_content=True, content_max_chars=cap)
    run_chat("openai/chat_two_tool_calls_include_usage.json")
    attrs = attrs_of(telemetry)
    for name in ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.tool.definitions"):
        value = json.loads(attrs[name])  # parses, whatever the cap
        assert isinstance(value, list) and value and len(attrs[name]) <= cap
        if name != "gen_ai.tool.definitions":
            assert all(isinstance(m["role"], str) and isinstance(m["parts"], list) for m in value)
    output = json.loads(attrs["gen_ai.output.messages"])
    assert [m["finish_reason"] for m in output] == list(attrs["gen_ai.response.finish_reasons"])  # never dropped
    calls = [p for p in output[0]["parts"] if p["type"] == "tool_call"]
    assert len(calls) == 2 and all(p["name"] == "get_current_weather" for p in calls)
    if cap < 341:
        assert "…[truncated]" in attrs["gen_ai.output.messages"]


def test_a_cap_below_the_structure_still_gives_json_within_the_cap(instrumented: Any) -> None:
    telemetry = instrumented(capture_content=True, content_max_chars=40)
    run_chat("openai/chat_two_tool_calls_include_usage.json")
    attrs = attrs_of(telemetry)
    for name in ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.tool.definitions"):
        if name in attrs:
            assert isinstance(json.loads(attrs[name]), list) and len(attrs[name]) <= 40
    assert attrs["gen_ai.response.finish_reasons"] == ("tool_calls",)  # truncation never changes them


def test_truncation_cuts_the_longest_content_and_marks_it() -> None:
    from steer.telemetry.content import TRUNCATED, prepare

    messages = [{"role": "user", "parts": [{"type": "text", "content": "short"}, {"type": "text", "content": "x" * 500}]}]
    structure, text = prepare(messages, 120, None, droppable=True)
    assert len(text) <= 120 and json.loads(text) == structure
    assert structure[0]["parts"][0]["content"] == "short" and structure[0]["parts"][1]["content"].endswith(TRUNCATED)
    assert messages[0]["parts"][1]["content"] == "x" * 500  # the caller's messages are not cut


def test_redaction_still_applies_before_truncation(instrumented: Any) -> None:
    telemetry = instrumented(capture_content=True, content_max_chars=120, redact=lambda s: s.replace("Seattle", "[city]"))
    run_chat("openai/chat_two_tool_calls_include_usage.json")
    attrs = attrs_of(telemetry)
    joined = "".join(v for k, v in attrs.items() if k.startswith("gen_ai.") and isinstance(v, str))
    assert "Seattle" not in joined and json.loads(attrs["gen_ai.input.messages"])

"""``gen_ai.output.type`` from the request, per provider (issue 14 leftovers): ``json`` for JSON mode and
structured output, ``image`` / ``speech`` when the request asks for image or audio output, ``text``
otherwise. Real SDKs over the recordings (``steer replay``) and, for the modalities no recording has,
against the loopback devserver."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from google import genai
from google.genai import types as genai_types

from recordings import load
from steer.tools.devserver import DevServer
from steer.tools.replay import replay


@pytest.mark.parametrize("name,expected", [
    ("openai/chat_gpt4_include_usage.json", "text"),  # no response_format: the API's default, text
    ("openai/chat_json_object_mode.json", "json"),
    ("openai/chat_json_schema_structured_output.json", "json"),
    ("openai/responses_basic_gpt4o_mini.json", "text"),
    ("anthropic/messages_text_claude3_haiku.json", "text"),
    ("anthropic/messages_json_schema_output.json", "json"),
    ("google/gemini20_flash_text_sse.json", "text"),
    ("google/gemini3_flash_json_schema_output.json", "json"),
])
def test_output_type_of_recorded_requests(name: str, expected: str) -> None:
    attrs = replay(load(name))["span"]["attributes"]
    assert attrs["gen_ai.output.type"] == expected


@pytest.mark.parametrize("modalities,audio,expected", [
    (["text", "audio"], {"voice": "alloy", "format": "pcm16"}, "speech"),
    (None, {"voice": "alloy", "format": "pcm16"}, "speech"),
    (["text"], None, "text"),
])
def test_openai_audio_output_is_speech(modalities: Any, audio: Any, expected: str, instrumented: Any) -> None:
    telemetry = instrumented()
    extra = {k: v for k, v in (("modalities", modalities), ("audio", audio)) if v is not None}
    with DevServer(chunk_delay=0) as srv:
        client = openai.OpenAI(base_url=srv.openai_base_url, api_key="x", max_retries=0)
        client.chat.completions.create(model="gpt-4o-audio-preview", messages=[{"role": "user", "content": "hi"}], **extra)
    (span,) = telemetry.genai_spans()
    assert span.attributes["gen_ai.output.type"] == expected


@pytest.mark.parametrize("modalities,expected", [(["TEXT", "IMAGE"], "image"), (["AUDIO"], "speech"), (["TEXT"], "text")])
def test_gemini_response_modalities(modalities: Any, expected: str, instrumented: Any) -> None:
    telemetry = instrumented()
    with DevServer(chunk_delay=0) as srv:
        client = genai.Client(api_key="x", http_options=genai_types.HttpOptions(base_url=srv.gemini_base_url))
        client.models.generate_content(model="gemini-2.0-flash", contents="hi",
                                       config=genai_types.GenerateContentConfig(response_modalities=modalities))
    (span,) = telemetry.genai_spans()
    assert span.attributes["gen_ai.output.type"] == expected


def _output_modalities(telemetry: Any) -> Any:
    """(output counter's modality, input counter's modality) of the newest conventions' usage counters."""
    found = {}
    for name, points in telemetry.metrics().items():
        if name in ("gen_ai.client.inference.usage.output_tokens", "gen_ai.client.inference.usage.input_tokens"):
            (point,) = points
            found[name.rsplit(".", 1)[1]] = point.attributes["gen_ai.token.modality"]
    return found["output_tokens"], found["input_tokens"]


@pytest.mark.parametrize("provider,options,expected", [
    ("openai", {}, "text"),
    ("openai", {"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "pcm16"}}, "unknown"),
    ("anthropic", {}, "text"),
    ("gemini", {}, "unknown"),  # a model's default modalities may include images: not determined
    ("gemini", {"response_modalities": ["TEXT"]}, "text"),
    ("gemini", {"response_mime_type": "application/json"}, "text"),
])
def test_newest_token_counters_name_text_output_only_when_the_request_determines_it(
        provider: str, options: Any, expected: str, instrumented: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import anthropic

    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    telemetry = instrumented()
    with DevServer(chunk_delay=0) as srv:
        if provider == "openai":
            openai.OpenAI(base_url=srv.openai_base_url, api_key="x", max_retries=0).chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}], **options)
        elif provider == "anthropic":
            anthropic.Anthropic(base_url=srv.anthropic_base_url, api_key="x", max_retries=0).messages.create(
                model="claude-test", max_tokens=20, messages=[{"role": "user", "content": "hi"}])
        else:
            client = genai.Client(api_key="x", http_options=genai_types.HttpOptions(base_url=srv.gemini_base_url))
            client.models.generate_content(model="gemini-2.0-flash", contents="hi",
                                           config=genai_types.GenerateContentConfig(**options))
    assert _output_modalities(telemetry) == (expected, "unknown")

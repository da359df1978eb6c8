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

"""Which raw HTTP requests are LLM calls: POSTs to a provider's known endpoint shapes, by path.

Matching is a method check and a few suffix tests on the path, so every other request an
application sends through httpx pays next to nothing. A route's provider module (its decoder and
request reading) is imported on the route's first use: ``instrument(providers=["openai"])`` patches
httpx for the SDK's attempts but never loads the anthropic or google-genai decoders.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Dict, Optional
from urllib.parse import urlsplit

from steer.call import CallInfo
from steer.providers.base import Decoder

_GEMINI = re.compile(r"/models/(?P<model>[^/:]+):(?P<method>streamGenerateContent|generateContent)$")


@dataclass(frozen=True)
class Route:
    api: str
    module: str  # the provider module: imported on the route's first use, never before
    decoder_class: str
    info: Callable[[ModuleType, Dict[str, Any], Any, bool], CallInfo]  # (module, body, url, streaming) -> CallInfo
    streaming: Callable[[Dict[str, Any], Any], bool]

    def provider(self) -> ModuleType:
        return sys.modules.get(self.module) or importlib.import_module(self.module)

    def decoder(self) -> Decoder:
        return getattr(self.provider(), self.decoder_class)()  # type: ignore[no-any-return]

    def call_info(self, body: Dict[str, Any], url: Any, streaming: bool) -> CallInfo:
        return self.info(self.provider(), body, url, streaming)


def _endpoint(url: Any) -> Any:
    from steer.providers.openai import provider_from_url

    return provider_from_url(url)


def _chat(openai: ModuleType, body: Dict[str, Any], url: Any, streaming: bool) -> CallInfo:
    name, host, port = _endpoint(url)
    return openai.chat_call_info(body, provider=name, address=host, port=port)


def _completions(openai: ModuleType, body: Dict[str, Any], url: Any, streaming: bool) -> CallInfo:
    name, host, port = _endpoint(url)
    return openai.chat_call_info(body, provider=name, address=host, port=port, operation="text_completion",
                                 api="openai.completions")


def _responses(responses: ModuleType, body: Dict[str, Any], url: Any, streaming: bool) -> CallInfo:
    name, host, port = _endpoint(url)
    return responses.responses_call_info(body, provider=name, address=host, port=port)


def _messages(anthropic: ModuleType, body: Dict[str, Any], url: Any, streaming: bool) -> CallInfo:
    host, port = anthropic.endpoint(url)
    return anthropic.messages_call_info(body, streaming=streaming, address=host, port=port)


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _gemini(google_genai: ModuleType, body: Dict[str, Any], url: Any, streaming: bool) -> CallInfo:
    parts = urlsplit(str(url))
    match = _GEMINI.search(parts.path)
    vertex = "aiplatform.googleapis.com" in (parts.hostname or "") or "/projects/" in parts.path
    host, port = google_genai.server_from_url(url)
    config = {_snake(k): v for k, v in (body.get("generationConfig") or {}).items()}
    for wire, name in (("systemInstruction", "system_instruction"), ("tools", "tools")):
        if body.get(wire):
            config[name] = body[wire]  # estimation and content capture see the whole request
    kwargs = {"model": match.group("model") if match else None, "contents": body.get("contents"), "config": config}
    return google_genai.call_info(kwargs, provider=google_genai.provider_name(vertex), address=host, port=port,
                                  streaming=streaming,
                                  api="google.generate_content_stream" if streaming else "google.generate_content")


def _stream_flag(body: Dict[str, Any], url: Any) -> bool:
    return body.get("stream") is True


def _gemini_streaming(body: Dict[str, Any], url: Any) -> bool:
    return ":streamGenerateContent" in str(url)


CHAT = Route("openai.chat.completions", "steer.providers.openai", "ChatDecoder", _chat, _stream_flag)
COMPLETIONS = Route("openai.completions", "steer.providers.openai", "CompletionDecoder", _completions, _stream_flag)
RESPONSES = Route("openai.responses", "steer.providers.openai_responses", "ResponsesDecoder", _responses, _stream_flag)
MESSAGES = Route("anthropic.messages", "steer.providers.anthropic", "MessagesDecoder", _messages, _stream_flag)
GEMINI = Route("google.generate_content", "steer.providers.google_genai", "GenerateContentDecoder", _gemini,
               _gemini_streaming)


def match(method: str, path: str) -> Optional[Route]:
    if method != "POST":
        return None
    if path.endswith("/chat/completions"):
        return CHAT
    if path.endswith("/completions"):
        return COMPLETIONS
    if path.endswith("/responses"):
        return RESPONSES
    if path.endswith("/v1/messages"):
        return MESSAGES
    if path.endswith("enerateContent"):
        return GEMINI if _GEMINI.search(path) else None
    return None


def request_body(content: bytes) -> Optional[Dict[str, Any]]:
    try:
        body = json.loads(content or b"null")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None

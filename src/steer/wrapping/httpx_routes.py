"""Which raw HTTP requests are LLM calls: POSTs to a provider's known endpoint shapes, by path.

Matching is a method check and a few suffix tests on the path, so every other request an
application sends through httpx pays next to nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional
from urllib.parse import urlsplit

from steer.call import CallInfo
from steer.providers import anthropic, google_genai, openai, openai_responses
from steer.providers.base import Decoder

_GEMINI = re.compile(r"/models/(?P<model>[^/:]+):(?P<method>streamGenerateContent|generateContent)$")


@dataclass(frozen=True)
class Route:
    api: str
    decoder: Callable[[], Decoder]
    call_info: Callable[[Dict[str, Any], Any, bool], CallInfo]  # (body, url, streaming) -> CallInfo
    streaming: Callable[[Dict[str, Any], Any], bool]


def _endpoint(url: Any) -> Any:
    return openai.provider_from_url(url)


def _chat(body: Dict[str, Any], url: Any, streaming: bool) -> CallInfo:
    name, host, port = _endpoint(url)
    return openai.chat_call_info(body, provider=name, address=host, port=port)


def _completions(body: Dict[str, Any], url: Any, streaming: bool) -> CallInfo:
    name, host, port = _endpoint(url)
    return openai.chat_call_info(body, provider=name, address=host, port=port, operation="text_completion",
                                 api="openai.completions")


def _responses(body: Dict[str, Any], url: Any, streaming: bool) -> CallInfo:
    name, host, port = _endpoint(url)
    return openai_responses.responses_call_info(body, provider=name, address=host, port=port)


def _messages(body: Dict[str, Any], url: Any, streaming: bool) -> CallInfo:
    host, port = anthropic.endpoint(url)
    return anthropic.messages_call_info(body, streaming=streaming, address=host, port=port)


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _gemini(body: Dict[str, Any], url: Any, streaming: bool) -> CallInfo:
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


CHAT = Route("openai.chat.completions", openai.ChatDecoder, _chat, _stream_flag)
COMPLETIONS = Route("openai.completions", openai.CompletionDecoder, _completions, _stream_flag)
RESPONSES = Route("openai.responses", openai_responses.ResponsesDecoder, _responses, _stream_flag)
MESSAGES = Route("anthropic.messages", anthropic.MessagesDecoder, _messages, _stream_flag)
GEMINI = Route("google.generate_content", google_genai.GenerateContentDecoder, _gemini, _gemini_streaming)


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

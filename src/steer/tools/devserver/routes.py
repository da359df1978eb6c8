"""Which wire format answers a request, decided from its method and path.

Paths are matched by suffix so the same server answers clients whose base URL
carries a prefix (`/v1`, OpenRouter's `/api/v1`, Azure deployments) and both
Gemini API (`/v1beta/models/...`) and Vertex AI (`/v1beta1/projects/.../models/...`)
paths, whatever API version the google-genai client is configured with.
"""

from __future__ import annotations

import re
from typing import Any, Optional
from urllib.parse import parse_qs, unquote, urlsplit

from .anthropic_messages import Messages
from .gemini import Gemini
from .openai_responses import Responses
from .openai_wire import ChatCompletions, Completions
from .plan import Knobs, WireFormat

_GEMINI = re.compile(r"/models/([^/]+?):(streamGenerateContent|generateContent)$")

ENDPOINTS = (
    "POST /v1/chat/completions",
    "POST /v1/completions",
    "POST /v1/responses",
    "POST /v1/messages",
    "POST /{v1,v1beta}/models/{model}:streamGenerateContent[?alt=sse]",
    "POST /{v1,v1beta}/models/{model}:generateContent",
    "POST /v1beta1/projects/{p}/locations/{l}/publishers/google/models/{model}:streamGenerateContent",
)


def route(method: str, target: str, body: dict[str, Any], knobs: Knobs, salt: int) -> Optional[WireFormat]:
    if method != "POST":
        return None
    url = urlsplit(target)
    path = url.path.rstrip("/")
    if path.endswith("/chat/completions") or path == "/chat/completions":
        return ChatCompletions(body, knobs, salt)
    if path.endswith("/completions"):
        return Completions(body, knobs, salt)
    if path.endswith("/responses"):
        return Responses(body, knobs, salt)
    if path.endswith("/messages"):
        return Messages(body, knobs, salt)
    match = _GEMINI.search(path)
    if match:
        sse = "sse" in parse_qs(url.query).get("alt", [])
        return Gemini(body, knobs, salt, model=unquote(match.group(1)),
                      stream=match.group(2) == "streamGenerateContent", sse=sse)
    return None

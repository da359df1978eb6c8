"""Serving a recording (shared/fixtures/streams format) to a real SDK: an in-process httpx (or
httpx2) transport under the provider's real base URL (so provider detection is exercised as in
production), the body handed out one SSE event per read, like a server that flushes per token."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

# Recorded provider -> (base URL the client is given, SDK family).
BASE_URLS: Dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "azure_openai": "https://myresource.openai.azure.com",
    "xai": "https://api.x.ai/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "groq": "https://api.groq.com/openai/v1",
    "mistral": "https://api.mistral.ai/v1",
    "deepseek": "https://api.deepseek.com",
    "together": "https://api.together.xyz/v1",
    "anthropic": "https://api.anthropic.com",
    "google": "https://generativelanguage.googleapis.com",
}


def load_recording(source: Union[str, Path, Dict[str, Any]]) -> Dict[str, Any]:
    if isinstance(source, dict):
        return source
    data = json.loads(Path(source).read_text(encoding="utf-8"))
    for key in ("api", "provider", "request", "response"):
        if key not in data:
            raise ValueError(f"not a recording: missing {key!r} (see shared/fixtures/streams/README.md)")
    return data


def body_pieces(recording: Dict[str, Any]) -> List[bytes]:
    """The body split where a server would flush: after each SSE event, or in 512-byte reads."""
    raw = str(recording["response"].get("body") or "").encode()
    if content_type(recording).startswith("application/json"):
        return [raw[i:i + 512] for i in range(0, len(raw), 512)] or [b""]
    sep = b"\r\n\r\n" if b"\r\n\r\n" in raw else b"\n\n"
    pieces, start = [], 0
    while start < len(raw):
        end = raw.find(sep, start)
        stop = len(raw) if end < 0 else end + len(sep)
        pieces.append(raw[start:stop])
        start = stop
    return pieces


def content_type(recording: Dict[str, Any]) -> str:
    ctype = recording["response"].get("content_type")
    if ctype:
        return str(ctype)
    body = str(recording["response"].get("body") or "").lstrip()
    return "application/json" if body.startswith(("{", "[")) else "text/event-stream"


class RecordingTransport:
    """httpx/httpx2 clients whose every request gets the recorded response; requests are kept."""

    def __init__(self, recording: Dict[str, Any], httpx_mod: Any = None) -> None:
        import httpx

        self.recording = recording
        self.httpx = httpx_mod or httpx
        self.requests: List[Any] = []

    def _response(self, request: Any, is_async: bool) -> Any:
        self.requests.append(request)
        pieces = body_pieces(self.recording)
        hx = self.httpx
        if is_async:
            class ABody(hx.AsyncByteStream):  # type: ignore[name-defined,misc]
                async def __aiter__(self) -> Any:
                    for piece in pieces:
                        yield piece

            stream: Any = ABody()
        else:
            class Body(hx.SyncByteStream):  # type: ignore[name-defined,misc]
                def __iter__(self) -> Iterator[bytes]:
                    yield from pieces

            stream = Body()
        headers = {"content-type": content_type(self.recording), "x-request-id": "req_recorded"}
        return hx.Response(int(self.recording["response"]["status"]), headers=headers, stream=stream, request=request)

    def _handle(self, request: Any) -> Any:
        return self._response(request, False)

    async def _ahandle(self, request: Any) -> Any:
        return self._response(request, True)

    def client(self) -> Any:
        return self.httpx.Client(transport=self.httpx.MockTransport(self._handle))

    def async_client(self) -> Any:
        return self.httpx.AsyncClient(transport=self.httpx.MockTransport(self._ahandle))


def sdk_kwargs(method: Callable[..., Any], body: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The recorded request body as keyword arguments of ``method``; what it does not name goes in
    ``extra_body`` (provider extensions such as OpenRouter's ``reasoning``)."""
    body = dict(body or {})
    names = set(inspect.signature(method).parameters)
    known = {k: v for k, v in body.items() if k in names}
    extra = {k: v for k, v in body.items() if k not in names}
    if extra and "extra_body" in names:
        known["extra_body"] = extra
    return known

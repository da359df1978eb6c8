"""`steer replay`: serve one recorded response to the REAL provider SDK making the recorded request,
with steer instrumenting it, and summarise what steer saw.

The recording is served through an in-process httpx transport under the provider's real base URL
(so provider detection is exercised as in production), one SSE event per read, like a server that
flushes per token. Telemetry goes to in-memory OpenTelemetry SDK providers and is read back.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import warnings
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

    def __init__(self, recording: Dict[str, Any], httpx_module: Any = None) -> None:
        import httpx

        self.recording = recording
        self.httpx = httpx_module or httpx
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
        headers = {"content-type": content_type(self.recording), "x-request-id": "req_replayed"}
        return hx.Response(int(self.recording["response"]["status"]), headers=headers, stream=stream, request=request)

    def client(self) -> Any:
        return self.httpx.Client(transport=self.httpx.MockTransport(lambda r: self._response(r, False)))

    def async_client(self) -> Any:
        async def handle(request: Any) -> Any:
            return self._response(request, True)

        return self.httpx.AsyncClient(transport=self.httpx.MockTransport(handle))


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


# --- one caller per api: make the recorded request with the real SDK and drain what it returns ------
def _openai_client(recording: Dict[str, Any], transport: RecordingTransport, is_async: bool) -> Any:
    import openai

    http = transport.async_client() if is_async else transport.client()
    if recording["provider"] == "azure_openai":
        cls = openai.AsyncAzureOpenAI if is_async else openai.AzureOpenAI
        return cls(api_key="replay", api_version="2024-02-01", azure_endpoint=BASE_URLS["azure_openai"],
                   http_client=http, max_retries=0)
    cls = openai.AsyncOpenAI if is_async else openai.OpenAI
    return cls(api_key="replay", base_url=BASE_URLS.get(recording["provider"], BASE_URLS["openai"]),
               http_client=http, max_retries=0)


async def _openai_chat(recording: Dict[str, Any], transport: RecordingTransport, is_async: bool) -> int:
    client = _openai_client(recording, transport, is_async)
    resource = client.chat.completions if recording["api"] == "openai.chat.completions" else client.completions
    kwargs = sdk_kwargs(type(resource).create, recording["request"].get("body"))
    kwargs.setdefault("model", recording.get("model") or "unknown")
    if recording["api"] == "openai.chat.completions":
        kwargs.setdefault("messages", [{"role": "user", "content": ""}])
    else:
        kwargs.setdefault("prompt", "")
    kwargs["stream"] = True
    return await _drain(resource.create(**kwargs))


async def _drain(result: Any) -> int:
    if inspect.isawaitable(result):
        result = await result
    count = 0
    if hasattr(result, "__aiter__"):
        async for _ in result:
            count += 1
    else:
        for _ in result:
            count += 1
    return count


CALLERS: Dict[str, Callable[..., Any]] = {
    "openai.chat.completions": _openai_chat,
    "openai.completions": _openai_chat,
}


def register(api: str, caller: Callable[..., Any]) -> None:
    CALLERS[api] = caller


def replay(source: Union[str, Path, Dict[str, Any]], *, is_async: bool = False, **options: Any) -> Dict[str, Any]:
    """Replay one recording; returns the summary `steer replay --json` prints (contract in DESIGN).
    ``options`` go to ``steer.instrument`` (e.g. ``capture_content=True``)."""
    from steer.replay_report import ReplayCapture

    recording = load_recording(source)
    _load_provider_callers()
    caller = CALLERS.get(recording["api"])
    if caller is None:
        raise ValueError(f"steer replay: no replay for api {recording['api']!r} (known: {sorted(CALLERS)})")
    transport = RecordingTransport(recording)
    with ReplayCapture(recording, **options) as capture:
        try:
            with warnings.catch_warnings():  # the SDKs' "model deprecated" notices are noise in a replay
                warnings.simplefilter("ignore", DeprecationWarning)
                capture.chunks = _run(caller(recording, transport, is_async))
        except Exception as exc:  # the SDK's error for an error recording: part of the summary
            capture.raised = exc
    return capture.summary()


def _run(coro: Any) -> Any:
    """Run a caller to completion, also when the caller of replay() already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _load_provider_callers() -> None:
    """Callers for the other SDKs live beside their tests' knowledge of each SDK's request shape."""
    from steer import replay_callers  # noqa: F401  (registers anthropic, google, responses callers)


__all__ = ["replay", "register", "RecordingTransport", "load_recording", "sdk_kwargs", "body_pieces"]

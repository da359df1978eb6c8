"""Replay callers beyond OpenAI Chat: how each real SDK makes the recorded request.

Each caller builds the SDK's client on the recording transport, makes the call the recording was
made with, and drains what comes back. Where the SDK itself cannot make the recorded request (the
Gemini JSON-array response form, which google-genai never asks for), the raw-httpx path replays it:
the same decoders, fed from the bytes.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict
from urllib.parse import urlsplit

from steer.tools.replay.transport import BASE_URLS, RecordingTransport, sdk_kwargs


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


async def openai_chat(recording: Dict[str, Any], transport: RecordingTransport, is_async: bool) -> int:
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


async def openai_responses(recording: Dict[str, Any], transport: RecordingTransport, is_async: bool) -> int:
    client = _openai_client(recording, transport, is_async)
    kwargs = sdk_kwargs(type(client.responses).create, recording["request"].get("body"))
    kwargs.setdefault("model", recording.get("model") or "unknown")
    kwargs["stream"] = True
    return await _drain(client.responses.create(**kwargs))


async def anthropic_messages(recording: Dict[str, Any], transport: RecordingTransport, is_async: bool) -> int:
    import anthropic

    transport = _sdk_transport(transport, anthropic)
    cls = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
    client = cls(api_key="replay", base_url=BASE_URLS["anthropic"], max_retries=0,
                 http_client=transport.async_client() if is_async else transport.client())
    resource = client.beta.messages if "beta=true" in recording["request"]["path"] else client.messages
    body = dict(recording["request"].get("body") or {})
    kwargs = sdk_kwargs(type(resource).create, body)
    kwargs.setdefault("model", recording.get("model") or "unknown")
    kwargs.setdefault("max_tokens", 1024)
    kwargs.setdefault("messages", [{"role": "user", "content": "hi"}])
    kwargs["stream"] = body.get("stream", True) if recording["response"]["status"] == 200 else True
    return await _drain(resource.create(**kwargs))


def _sdk_transport(transport: RecordingTransport, sdk: Any) -> RecordingTransport:
    """The Anthropic SDK 2.x only takes clients of its own HTTP package (httpx2)."""
    try:
        import httpx2
    except ImportError:
        return transport
    uses_httpx2 = "httpx2" in getattr(sdk, "_base_client").__dict__ if hasattr(sdk, "_base_client") else False
    return RecordingTransport(transport.recording, httpx2) if uses_httpx2 else transport


def _gemini_kwargs(recording: Dict[str, Any]) -> Dict[str, Any]:
    body = recording["request"].get("body") or {}
    config = dict(body.get("generationConfig") or {})
    for wire, name in (("systemInstruction", "system_instruction"), ("tools", "tools"), ("safetySettings", "safety_settings")):
        if body.get(wire):
            config[name] = body[wire]
    return {"model": recording.get("model") or "gemini", "contents": body.get("contents") or "hi", "config": config or None}


def _gemini_client(recording: Dict[str, Any], transport: RecordingTransport) -> Any:
    from google import genai
    from google.genai import types

    options = types.HttpOptions(httpx_client=transport.client(), httpx_async_client=transport.async_client())
    parts = recording["request"]["path"].split("/")
    if "projects" not in parts:
        return genai.Client(api_key="replay", http_options=options)
    from google.oauth2.credentials import Credentials

    return genai.Client(vertexai=True, project=parts[parts.index("projects") + 1],
                        location=parts[parts.index("locations") + 1], credentials=Credentials(token="replay"),
                        http_options=options)


async def google_generate_content(recording: Dict[str, Any], transport: RecordingTransport, is_async: bool) -> int:
    if not str(recording["response"].get("body") or "").lstrip().startswith(("data:", "event:", ":")) \
            and recording["response"]["status"] == 200:
        return await raw_httpx(recording, transport, is_async)
    client = _gemini_client(recording, transport)
    kwargs = _gemini_kwargs(recording)
    if recording["api"] == "google.generate_content":
        models = client.aio.models if is_async else client.models
        result = models.generate_content(**kwargs)
        if is_async:
            await result
        return 0
    if is_async:
        return await _drain(await client.aio.models.generate_content_stream(**kwargs))
    return await _drain(client.models.generate_content_stream(**kwargs))


async def raw_httpx(recording: Dict[str, Any], transport: RecordingTransport, is_async: bool) -> int:
    """POST the recorded body with plain httpx and read the response as an application would."""
    base = urlsplit(BASE_URLS.get(recording["provider"], BASE_URLS["openai"]))
    url = f"{base.scheme}://{base.netloc}{recording['request']['path']}"
    body = recording["request"].get("body") or {}
    pieces = 0
    if is_async:
        async with transport.async_client() as client:
            async with client.stream("POST", url, json=body) as response:
                async for _ in response.aiter_bytes():
                    pieces += 1
        return pieces
    with transport.client() as client:
        with client.stream("POST", url, json=body) as response:
            for _ in response.iter_bytes():
                pieces += 1
    return pieces


CALLERS: Dict[str, Callable[..., Any]] = {
    "openai.chat.completions": openai_chat,
    "openai.completions": openai_chat,
    "openai.responses": openai_responses,
    "anthropic.messages": anthropic_messages,
    "google.generate_content_stream": google_generate_content,
    "google.generate_content": google_generate_content,
}

"""Every instrumented call surface, driven the way an application drives it, sync and async.

A surface makes one call against the loopback devserver (real sockets) with the REAL provider SDK
(or raw httpx / httpx2), reads what comes back and reports what the caller saw: each chunk as
plain data (``model_dump``) and the exception, if any. The fault matrix runs each surface twice —
bare and instrumented — and compares the two reports; the load and security tests reuse them.

Per-request ids and timestamps come from the devserver: ids are reproducible per server (each run
gets a fresh server, so the same request number gives the same ids); wall-clock fields (``created``,
HTTP ``date``) are dropped before comparing.
"""

from __future__ import annotations

import gc
import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

import anthropic
import httpx
import httpx2
import openai
from google import genai
from google.genai import types as genai_types

from steer.tools.devserver import DevServer

USER = [{"role": "user", "content": "Say something"}]
STALL_TIMEOUT_S = 0.25  # the read timeout the `stall` fault runs into (a stalled server never answers)
TIMEOUT_S = 60.0  # every other call: generous, the box may be busy
VOLATILE = frozenset({"created", "created_at", "completed_at", "sdk_http_response", "date"})
_CLOCK = re.compile(r'"(created|created_at|completed_at)": ?\d+')


@dataclass
class Seen:
    """What the caller saw: chunks as plain data, and the exception (type and message) if any."""

    items: List[Any] = field(default_factory=list)
    error: Optional[BaseException] = None

    def comparable(self) -> Any:
        err = None if self.error is None else (type(self.error), _plain(str(self.error)))
        return [_plain(i) for i in self.items], err


def _plain(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        obj = obj.model_dump(mode="json")
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, str):  # raw lines and messages carry the same fields as text
        return _CLOCK.sub(r'"\1":0', obj)
    return obj


# -- clients -----------------------------------------------------------------------------------------
# Loopback is plain http, so certificate loading is skipped (verify=False): building a client then
# costs microseconds instead of a CA-bundle parse, and a client can be made per call.
def openai_client(srv: DevServer, is_async: bool, timeout: float, api_key: str = "x", **kw: Any) -> Any:
    cls, http = (openai.AsyncOpenAI, openai.DefaultAsyncHttpxClient) if is_async else (openai.OpenAI, openai.DefaultHttpxClient)
    return cls(base_url=srv.openai_base_url, api_key=api_key, max_retries=0, timeout=timeout,
               http_client=http(verify=False), **kw)


def anthropic_client(srv: DevServer, is_async: bool, timeout: float, api_key: str = "x", **kw: Any) -> Any:
    cls, http = (anthropic.AsyncAnthropic, anthropic.DefaultAsyncHttpxClient) if is_async \
        else (anthropic.Anthropic, anthropic.DefaultHttpxClient)
    return cls(base_url=srv.anthropic_base_url, api_key=api_key, max_retries=0, timeout=timeout,
               http_client=http(verify=False), **kw)


def gemini_client(srv: DevServer, is_async: bool, timeout: float, api_key: str = "x", max_connections: int = 100,
                  **kw: Any) -> Any:
    args = {"verify": False, "limits": httpx2.Limits(max_connections=max_connections)}  # httpx2: google-genai's client
    options = genai_types.HttpOptions(base_url=srv.gemini_base_url, timeout=int(timeout * 1000),  # milliseconds
                                      client_args=args, async_client_args=args, **kw)
    return genai.Client(api_key=api_key, http_options=options)


async def close_client(client: Any, is_async: bool) -> None:
    if isinstance(client, genai.Client):
        await client.aio.aclose()
        client.close()
        return
    await _aclose(client) if is_async else client.close()


# -- one call per surface ----------------------------------------------------------------------------
# A call function gets (server, headers, is_async, timeout) and returns (client, what the SDK returns
# for the call): a stream (iterated by `drive`) or a whole response. Raw-httpx surfaces return
# (client, request) and are read line by line.
Call = Callable[[DevServer, Dict[str, str], bool, float], Tuple[Any, Any]]


@dataclass(frozen=True)
class Surface:
    name: str
    streaming: bool
    call: Call
    raw: bool = False  # raw httpx / httpx2: reads lines; HTTP errors are responses, not exceptions
    manager: bool = False  # a `.stream()` helper: a context manager whose events are the helper's own


def _chat(srv: DevServer, h: Dict[str, str], is_async: bool, timeout: float, stream: bool = True) -> Any:
    c = openai_client(srv, is_async, timeout)
    extra = {"stream_options": {"include_usage": True}} if stream else {}
    return c, c.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=stream, extra_headers=h, **extra)


def _legacy(srv: DevServer, h: Dict[str, str], is_async: bool, timeout: float) -> Any:
    c = openai_client(srv, is_async, timeout)
    return c, c.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say something", stream=True, extra_headers=h)


def _responses(srv: DevServer, h: Dict[str, str], is_async: bool, timeout: float, stream: bool = True) -> Any:
    c = openai_client(srv, is_async, timeout)
    return c, c.responses.create(model="gpt-4o-mini", input="Say something", stream=stream, extra_headers=h)


def _messages(srv: DevServer, h: Dict[str, str], is_async: bool, timeout: float, stream: bool = True) -> Any:
    c = anthropic_client(srv, is_async, timeout)
    return c, c.messages.create(model="claude-test", max_tokens=100, messages=USER, stream=stream, extra_headers=h)


def _gemini(srv: DevServer, h: Dict[str, str], is_async: bool, timeout: float, stream: bool = True) -> Any:
    c = gemini_client(srv, is_async, timeout)
    models = c.aio.models if is_async else c.models
    method = models.generate_content_stream if stream else models.generate_content
    config = genai_types.GenerateContentConfig(http_options=genai_types.HttpOptions(headers=h))
    return c, method(model="gemini-2.0-flash", contents="Say something", config=config)


def _anthropic_helper(srv: DevServer, h: Dict[str, str], is_async: bool, timeout: float) -> Any:
    c = anthropic_client(srv, is_async, timeout)
    return c, c.messages.stream(model="claude-test", max_tokens=100, messages=USER, extra_headers=h)


def _chat_helper(srv: DevServer, h: Dict[str, str], is_async: bool, timeout: float) -> Any:
    c = openai_client(srv, is_async, timeout)
    return c, c.chat.completions.stream(model="gpt-4o-mini", messages=USER, extra_headers=h)


def _unary(fn: Callable[..., Any]) -> Call:
    return lambda srv, h, is_async, timeout: fn(srv, h, is_async, timeout, stream=False)


RAW_BODIES = {
    "chat": ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": USER, "stream": True}),
    "messages": ("/v1/messages", {"model": "claude-test", "max_tokens": 100, "messages": USER, "stream": True}),
    "gemini": ("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
               {"contents": [{"role": "user", "parts": [{"text": "Say something"}]}]}),
}


def _raw(module: Any, api: str) -> Call:
    path, body = RAW_BODIES[api]

    def call(srv: DevServer, h: Dict[str, str], is_async: bool, timeout: float) -> Any:
        client = (module.AsyncClient if is_async else module.Client)(timeout=timeout)
        return client, client.build_request("POST", srv.base_url + path, json=body, headers=h)

    return call


STREAMING: List[Surface] = [
    Surface("openai.chat", True, _chat),
    Surface("openai.completions", True, _legacy),
    Surface("openai.responses", True, _responses),
    Surface("anthropic.messages", True, _messages),
    Surface("gemini.generate_content_stream", True, _gemini),
    Surface("anthropic.messages.stream_helper", True, _anthropic_helper, manager=True),
    Surface("openai.chat.stream_helper", True, _chat_helper, manager=True),
    Surface("httpx.chat", True, _raw(httpx, "chat"), raw=True),
    Surface("httpx2.messages", True, _raw(httpx2, "messages"), raw=True),
    Surface("httpx.gemini", True, _raw(httpx, "gemini"), raw=True),
]
UNARY: List[Surface] = [
    Surface("openai.chat.unary", False, _unary(_chat)),
    Surface("openai.responses.unary", False, _unary(_responses)),
    Surface("anthropic.messages.unary", False, _unary(_messages)),
    Surface("gemini.generate_content", False, _unary(_gemini)),
]
SURFACES = {s.name: s for s in STREAMING + UNARY}


# -- driving a call as an application does ------------------------------------------------------------
def _timeout(headers: Dict[str, str]) -> float:
    return STALL_TIMEOUT_S if headers.get("x-steer-fault") == "stall" else TIMEOUT_S


def drive_sync(surface: Surface, srv: DevServer, headers: Dict[str, str], limit: int = 0, stop: str = "close") -> Seen:
    """Make the call and read it; with ``limit``, stop after that many items (``stop``: "close" the
    stream, or "drop" it without closing, as a caller that loses interest does)."""
    seen, client = Seen(), None
    try:
        client, result = surface.call(srv, headers, False, _timeout(headers))
        if surface.raw:
            result = client.send(result, stream=True)
            seen.items.append(("status", result.status_code))
            result, reader = result, result.iter_lines()
        elif surface.manager:
            with result as reader:
                for item in reader:
                    seen.items.append(item)
                    if limit and len(seen.items) >= limit:
                        break  # leaving the `with` closes the stream
            result = reader = None
        elif not surface.streaming:
            seen.items.append(result)
            result = reader = None
        else:
            reader = result
        for item in reader or ():
            seen.items.append(item)
            if limit and len(seen.items) >= limit:
                break
        if result is not None and (stop == "close" or not limit):
            result.close()
        del result, reader
    except Exception as exc:  # what the caller sees is the point of the test
        seen.error = exc
    if stop == "drop":
        gc.collect()  # the dropped stream sits in reference cycles (SDK stream <-> its generator)
    if client is not None:
        client.close()
    return seen


async def drive_async(surface: Surface, srv: DevServer, headers: Dict[str, str], limit: int = 0, stop: str = "close") -> Seen:
    seen, client = Seen(), None
    try:
        client, result = surface.call(srv, headers, True, _timeout(headers))
        if surface.raw:
            result = await client.send(result, stream=True)
            seen.items.append(("status", result.status_code))
            reader = result.aiter_lines()
        elif surface.manager:
            async with result as reader:
                async for item in reader:
                    seen.items.append(item)
                    if limit and len(seen.items) >= limit:
                        break
            result = reader = None
        elif not surface.streaming:
            seen.items.append(await result)
            result = reader = None
        else:
            result = reader = await result
        if reader is not None:
            async for item in reader:
                seen.items.append(item)
                if limit and len(seen.items) >= limit:
                    break
        if result is not None and (stop == "close" or not limit):
            await _aclose(result)
        del result, reader
    except Exception as exc:
        seen.error = exc
    if stop == "drop":
        gc.collect()
    if client is not None:
        await close_client(client, True)
    return seen


async def _aclose(obj: Any) -> None:
    close: Callable[[], Awaitable[Any]] = getattr(obj, "aclose", None) or obj.close
    result = close()
    if inspect.isawaitable(result):
        await result

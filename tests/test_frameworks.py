"""Frameworks on top of the SDKs (issue 19): LangChain (langchain-openai, langchain-anthropic) and
pydantic-ai, over the real openai / anthropic SDKs against the devserver on loopback.

Each logical call is one span with the end that truly happened, the chunk count the SDK yielded for
that very request (the framework's request body is captured on the wire and sent again through the
bare SDK: same devserver, same answer shape), usage, and the caller sees exactly what it sees without
steer (same result, same exception type and message).

instructor, llama-index-llms-openai and LiteLLM are in tests/test_frameworks_isolated.py, in a venv of
their own (docs/reliability.md "Frameworks"): instructor and llama-index pin the openai SDK below the
version steer's tests pin and bring aiohttp; LiteLLM brings aiohttp, through which google-genai then
sends its async requests (tests/test_retries.py relies on httpx for google-genai's retries).
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
from typing import Any, Dict, Iterator, List, Optional

import pytest

from reliability.surfaces import anthropic_client, openai_client
from steer.tools.devserver import DevServer

from test_cancellation import assert_cancelled

langchain_openai = pytest.importorskip("langchain_openai", reason="langchain-openai is in the test extra; it did not install")
langchain_anthropic = pytest.importorskip("langchain_anthropic", reason="langchain-anthropic is in the test extra; it did not install")
pydantic_ai = pytest.importorskip("pydantic_ai", reason="pydantic-ai-slim is in the test extra; it did not install")

REQUEST_ID = re.compile(r"req_\w+")
SLOW_START = {"x-steer-ttft": "30"}  # the response headers, then 30 s before the first chunk


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with DevServer(chunk_delay=0, chunks=8) as srv:
        yield srv


class Wire:
    """SDK clients whose HTTP client keeps the JSON body of every request sent (the framework's own call)."""

    def __init__(self) -> None:
        self.bodies: List[Dict[str, Any]] = []
        self.sent: Optional[asyncio.Event] = None  # set when an async request goes out

    def keep(self, request: Any) -> None:
        self.bodies.append(json.loads(request.content))

    async def akeep(self, request: Any) -> None:
        self.keep(request)
        if self.sent is not None:
            self.sent.set()

    def http(self, module: Any, is_async: bool) -> Any:
        """The SDK module's own default HTTP client class (httpx for openai, httpx2 for anthropic)."""
        cls = module.DefaultAsyncHttpxClient if is_async else module.DefaultHttpxClient
        return cls(event_hooks={"request": [self.akeep if is_async else self.keep]})

    def sdk(self, api: str, srv: DevServer, is_async: bool, headers: Optional[Dict[str, str]] = None) -> Any:
        import anthropic
        import openai

        if api == "openai":
            cls: Any = openai.AsyncOpenAI if is_async else openai.OpenAI
            return cls(base_url=srv.openai_base_url, api_key="x", max_retries=0, timeout=60, default_headers=headers,
                       http_client=self.http(openai, is_async))
        cls = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
        return cls(base_url=srv.anthropic_base_url, api_key="x", max_retries=0, timeout=60, default_headers=headers,
                   http_client=self.http(anthropic, is_async))


def sdk_items(api: str, srv: DevServer, body: Dict[str, Any]) -> int:
    """How many items the bare SDK yields for the same request body."""
    if api == "openai":
        client = openai_client(srv, False, 60)
        stream = client.chat.completions.create(**body)
    else:
        client = anthropic_client(srv, False, 60)
        stream = client.messages.create(**body)
    try:
        return sum(1 for _ in stream)
    finally:
        client.close()


def chat_model(api: str, srv: DevServer, wire: Wire, is_async: bool, headers: Optional[Dict[str, str]] = None) -> Any:
    if api == "openai":
        import openai

        return langchain_openai.ChatOpenAI(model="gpt-4o-mini", base_url=srv.openai_base_url, api_key="x", max_retries=0,
                                           default_headers=headers,
                                           **{"http_async_client" if is_async else "http_client": wire.http(openai, is_async)})
    model = langchain_anthropic.ChatAnthropic(model="claude-test", api_key="x")
    # ChatAnthropic takes no HTTP client: its cached SDK client is set to ours (same SDK, same defaults)
    model.__dict__["_async_client" if is_async else "_client"] = wire.sdk(api, srv, is_async, headers)
    return model


def reset(telemetry: Any) -> None:
    telemetry.spans()  # flushes steer's end-of-call queue first
    telemetry.clear()


def the_span(telemetry: Any) -> Any:
    spans = telemetry.genai_spans()
    assert len(spans) == 1, [(s.name, dict(s.attributes)) for s in spans]
    (span,) = spans
    return dict(span.attributes), span


# -- LangChain -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_langchain_stream_and_invoke(api: str, mode: str, server: DevServer, instrumented: Any) -> None:
    telemetry = instrumented()
    wire = Wire()
    model = chat_model(api, server, wire, mode == "async")
    if mode == "sync":
        chunks = list(model.stream("hi"))
    else:
        chunks = [c async for c in model.astream("hi")]
    attrs, span = the_span(telemetry)
    assert attrs["steer.stream.end"] == "complete" and span.status.status_code.name == "UNSET"
    counted = attrs["steer.stream.chunks"]
    usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    if usage:  # the usage LangChain handed the caller is the usage on the span
        assert attrs["gen_ai.usage.output_tokens"] == sum(u["output_tokens"] for u in usage)
    else:
        assert "gen_ai.usage.output_tokens" not in attrs
    telemetry.clear()

    answer = model.invoke("hi") if mode == "sync" else await model.ainvoke("hi")
    attrs, span = the_span(telemetry)
    assert "steer.stream.end" not in attrs and span.status.status_code.name == "UNSET"
    assert attrs["gen_ai.usage.output_tokens"] == answer.usage_metadata["output_tokens"]
    assert attrs["gen_ai.usage.input_tokens"] == answer.usage_metadata["input_tokens"]
    assert counted == sdk_items(api, server, wire.bodies[0])  # what the SDK yields for the same request


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_langchain_break_ends_as_the_framework_left_the_stream(api: str, server: DevServer, instrumented: Any) -> None:
    """A ``break`` out of ``model.stream()``: langchain-openai reads the SDK stream inside ``with``, so
    the framework's generator, dropped by the ``for`` loop, closes it (``closed_early``);
    langchain-anthropic does not close it: the SDK stream is collected (``abandoned``). Either way the
    chunks counted are the ones the SDK handed over before the break."""
    telemetry = instrumented()
    model = chat_model(api, server, Wire(), False)
    for i, _ in enumerate(model.stream("hi")):
        if i == 2:
            break
    gc.collect()
    attrs, span = the_span(telemetry)
    assert attrs["steer.stream.end"] == ("closed_early" if api == "openai" else "abandoned")
    assert span.status.status_code.name == "UNSET" and "error.type" not in attrs
    assert 1 <= attrs["steer.stream.chunks"] <= 4


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_langchain_astream_cancelled(api: str, server: DevServer, instrumented: Any) -> None:
    """The task reading ``model.astream()`` is cancelled while the SDK waits for the first chunk.
    (Cancelled while LangChain's own code runs between two chunks, the cancellation is swallowed by
    LangChain itself, with or without steer: the task goes on reading. Not steer's to change.)"""
    ended: List[Any] = []
    telemetry = instrumented(on_complete=ended.append, on_error=ended.append)
    wire = Wire()
    wire.sent = asyncio.Event()
    model = chat_model(api, server, wire, True, SLOW_START)

    async def read() -> None:
        async for _ in model.astream("hi"):
            pass

    task = asyncio.ensure_future(read())
    await wire.sent.wait()  # from here the reader waits on the socket: headers, then 30 s for the first chunk
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_cancelled(telemetry, ended)


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_langchain_error_reaches_the_caller_unchanged(api: str, server: DevServer, instrumented: Any) -> None:
    failing = {"x-steer-fault": "http_500"}

    def call() -> BaseException:
        with pytest.raises(Exception) as caught:
            list(chat_model(api, server, Wire(), False, failing).stream("hi"))
        return caught.value

    bare = call()
    telemetry = instrumented()
    seen = call()
    # LangChain wraps the SDK's exception; the same wrapper, the same SDK exception inside, the same
    # message but for the request id the devserver makes up per request
    assert type(seen) is type(bare) and type(seen.__cause__) is type(bare.__cause__)
    assert REQUEST_ID.sub("", str(seen)) == REQUEST_ID.sub("", str(bare))
    attrs, span = the_span(telemetry)
    assert attrs["steer.stream.end"] == "error" and attrs["error.type"] == type(seen.__cause__ or seen).__name__
    assert span.status.status_code.name == "ERROR"


# -- pydantic-ai ------------------------------------------------------------------------------------
def usage_of(result: Any) -> Any:
    """pydantic-ai's ``usage``: a method in older releases, a property (still callable, deprecated) now."""
    usage = result.usage
    return usage if hasattr(usage, "output_tokens") else usage()


def agent(api: str, srv: DevServer, wire: Wire, headers: Optional[Dict[str, str]] = None) -> Any:
    client = wire.sdk(api, srv, True, headers)
    if api == "openai":
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider

        model: Any = OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(openai_client=client))
    else:
        from pydantic_ai.models.anthropic import AnthropicModel
        from pydantic_ai.providers.anthropic import AnthropicProvider

        model = AnthropicModel("claude-test", provider=AnthropicProvider(anthropic_client=client))
    return pydantic_ai.Agent(model)


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_pydantic_ai_run_and_run_stream(api: str, server: DevServer, instrumented: Any) -> None:
    telemetry = instrumented()
    wire = Wire()
    a = agent(api, server, wire)
    result = await a.run("hi")
    attrs, span = the_span(telemetry)
    assert "steer.stream.end" not in attrs and span.status.status_code.name == "UNSET"
    assert attrs["gen_ai.usage.output_tokens"] == usage_of(result).output_tokens
    reset(telemetry)

    async with a.run_stream("hi") as streamed:
        text = await streamed.get_output()
    attrs, span = the_span(telemetry)
    assert attrs["steer.stream.end"] == "complete" and span.status.status_code.name == "UNSET"
    assert attrs["steer.stream.chunks"] == sdk_items(api, server, wire.bodies[-1])
    assert text and attrs.get("gen_ai.usage.output_tokens") in (None, usage_of(streamed).output_tokens)


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_pydantic_ai_run_stream_cancelled(api: str, server: DevServer, instrumented: Any) -> None:
    ended: List[Any] = []
    telemetry = instrumented(on_complete=ended.append, on_error=ended.append)
    wire = Wire()
    wire.sent = asyncio.Event()
    a = agent(api, server, wire, SLOW_START)

    async def read() -> None:
        async with a.run_stream("hi") as streamed:
            async for _ in streamed.stream_text(delta=True, debounce_by=None):
                pass

    task = asyncio.ensure_future(read())
    await wire.sent.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_cancelled(telemetry, ended)

"""`steer demo`: real SDK clients (openai, anthropic, google-genai) call the loopback fake provider
under ``steer.instrument()``; the terminal shows each call as it streams, then the spans and metrics.

No API key and no network: everything talks to 127.0.0.1. With ``--otlp`` (or
``OTEL_EXPORTER_OTLP_ENDPOINT``) the same telemetry is also exported over OTLP; with ``--phoenix`` the
traces go to a private Arize Phoenix (``make phoenix`` installs it), project ``steer-demo``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from steer.tools.phoenix import PROJECT_ATTRIBUTE as PHOENIX_PROJECT_ATTRIBUTE
from steer.tools.phoenix import PhoenixNotInstalled, start_phoenix

DEMO_PROJECT = "steer-demo"  # the Phoenix project `steer demo --phoenix` files its traces under


@dataclass
class DemoCall:
    label: str
    sdk: str  # distribution that must be importable
    run: Callable[[Any], Any]  # (server) -> None; may be a coroutine function
    is_async: bool = False


def _openai(srv: Any, is_async: bool = False) -> Any:
    import openai

    cls = openai.AsyncOpenAI if is_async else openai.OpenAI
    return cls(api_key="demo", base_url=srv.openai_base_url, max_retries=0)


def _chat_stream(srv: Any) -> None:
    stream = _openai(srv).chat.completions.create(
        model="gpt-4o-mini", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Tell me how streaming observability works."}])
    for _ in stream:
        pass


def _chat_tool_call(srv: Any) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    for _ in _openai(srv).chat.completions.create(
            model="gpt-4o", stream=True, tools=tools,
            messages=[{"role": "user", "content": "What's the weather in Paris?"}]):
        pass


def _chat_json_no_usage(srv: Any) -> None:
    # No include_usage: the provider reports nothing, steer estimates (and says so).
    for _ in _openai(srv).chat.completions.create(
            model="gpt-4o-mini", stream=True, response_format={"type": "json_object"},
            messages=[{"role": "user", "content": "Give me a JSON profile of a cat."}]):
        pass


async def _chat_async(srv: Any) -> None:
    async with _openai(srv, is_async=True) as client:  # closes its connections before the loop ends
        async with await client.chat.completions.create(
                model="gpt-4o-mini", stream=True, stream_options={"include_usage": True},
                messages=[{"role": "user", "content": "Say something asynchronous."}]) as stream:
            async for _ in stream:
                pass


def _chat_early_break(srv: Any) -> None:
    with _openai(srv).chat.completions.create(
            model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "A long story, please."}]) as stream:
        for index, _ in enumerate(stream):
            if index == 3:
                break


def _responses_stream(srv: Any) -> None:
    for _ in _openai(srv).responses.create(model="gpt-4.1-mini", input="Explain time to first chunk.", stream=True):
        pass


def _anthropic_stream(srv: Any) -> None:
    import anthropic

    client = anthropic.Anthropic(api_key="demo", base_url=srv.anthropic_base_url, max_retries=0)
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=256,
                                messages=[{"role": "user", "content": "Hello, Claude."}]) as stream:
        for _ in stream.text_stream:
            pass


def _gemini_stream(srv: Any) -> None:
    from google import genai
    from google.genai import types

    client = genai.Client(api_key="demo", http_options=types.HttpOptions(base_url=srv.gemini_base_url))
    for _ in client.models.generate_content_stream(model="gemini-2.5-flash", contents="Hello, Gemini."):
        pass


def _rate_limited(srv: Any) -> None:
    import openai

    client = openai.OpenAI(api_key="demo", base_url=srv.openai_base_url, max_retries=0,
                           default_headers={"x-steer-fault": "http_429"})
    try:
        client.chat.completions.create(model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "hi"}])
    except openai.RateLimitError:
        pass  # expected: the span records it as an error, retryable


CALLS: List[DemoCall] = [
    DemoCall("openai chat (stream)", "openai", _chat_stream),
    DemoCall("openai chat tool call", "openai", _chat_tool_call),
    DemoCall("openai chat JSON, no usage", "openai", _chat_json_no_usage),
    DemoCall("openai chat (async)", "openai", _chat_async, is_async=True),
    DemoCall("openai chat, break after 4", "openai", _chat_early_break),
    DemoCall("openai responses (stream)", "openai", _responses_stream),
    DemoCall("anthropic messages.stream", "anthropic", _anthropic_stream),
    DemoCall("gemini generate_content_stream", "google.genai", _gemini_stream),
    DemoCall("openai chat, HTTP 429", "openai", _rate_limited),
]


def run_demo(otlp: Optional[str] = None, phoenix: bool = False, rounds: int = 1, fast: bool = False,
             out: Any = None) -> int:
    from steer.tools.demo.view import DemoView, DemoTelemetry
    from steer.tools.devserver import DevServer

    out = out or sys.stdout
    endpoint = otlp or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    phoenix_handle = None
    if phoenix:
        try:
            phoenix_handle = start_phoenix()
        except PhoenixNotInstalled as exc:
            print(f"steer demo: {exc}", file=sys.stderr)
            return 2
        endpoint = phoenix_handle.otlp_endpoint
        print(f"Phoenix is up at {phoenix_handle.url}; its data lives in {phoenix_handle.working_dir}"
              " (deleted when it stops)", file=out)
    # Phoenix takes traces only (it answers OTLP metrics with 405), filed under a named project.
    telemetry = DemoTelemetry(otlp_endpoint=endpoint, export_metrics=phoenix_handle is None,
                              resource={PHOENIX_PROJECT_ATTRIBUTE: DEMO_PROJECT} if phoenix_handle else None)
    view = DemoView(out)

    import steer

    steer.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider,
                     on_delta=view.on_delta, on_complete=view.on_end, on_error=view.on_end)
    knobs: Dict[str, Any] = {"chunk_delay": 0, "chunks": 40} if fast else {"ttft": 0.25, "tokens_per_second": 80, "chunks": 60}
    failures = 0
    try:
        with DevServer(**knobs) as srv:
            for _ in range(rounds):
                for call in CALLS:
                    failures += _run_one(call, srv, view)
        telemetry.flush()
        view.summary(telemetry)
    finally:
        steer.uninstrument()
        telemetry.shutdown()  # exported, exporters stopped: nothing retries once the demo is over
        if phoenix_handle is not None and sys.exc_info()[0] is not None:  # Ctrl-C or a failure mid-demo
            phoenix_handle.cleanup()
    if phoenix_handle is not None:
        print(f"\nSent the traces (not the metrics: Phoenix takes traces only) to Phoenix, project {DEMO_PROJECT!r}:"
              f"\n  {phoenix_handle.project_url(DEMO_PROJECT, wait=15)}\nCtrl-C stops Phoenix.", file=out)
        out.flush()
        phoenix_handle.wait()
    elif endpoint:
        print(f"\nExported the traces and metrics over OTLP/HTTP to {endpoint}.", file=out)
    return 1 if failures else 0


def _run_one(call: DemoCall, srv: Any, view: Any) -> int:
    try:
        __import__(call.sdk)
    except ImportError:
        view.skipped(call.label, f"{call.sdk} not installed")
        return 0
    view.begin(call.label)
    try:
        result = call.run(srv)
        if asyncio.iscoroutine(result):
            asyncio.run(result)
    except Exception as exc:  # a demo call failing is shown, not hidden
        view.failed(call.label, exc)
        return 1
    return 0

"""``steer.wrap(client_or_stream, **options)``: one client or one stream observed with its own options,
through the real SDKs, with nothing patched globally and nothing written onto SDK objects."""

from __future__ import annotations

import gc
from typing import Any, Dict, List

import anthropic
import httpx2
import openai
import openai.resources.chat.completions as chat_completions
import pytest
from google import genai
from google.genai import models as genai_models
from google.genai import types as genai_types

import steer
from recordings import Served, load, request_kwargs
from steer.events import StreamCompleteEvent, StreamDeltaEvent, StreamStartEvent
from steer.wrapping.proxies import AsyncStreamProxy, SyncStreamProxy

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")

CHAT = load("openai/chat_gpt4_include_usage.json")
MESSAGES = load("anthropic/messages_text_claude3_haiku.json")
GEMINI = load("google/gemini20_flash_text_sse.json")


def openai_client(is_async: bool = False) -> Any:
    served = Served(CHAT)
    if is_async:
        return openai.AsyncOpenAI(api_key="x", http_client=served.async_client(), max_retries=0)
    return openai.OpenAI(api_key="x", http_client=served.client(), max_retries=0)


def chat_kwargs() -> Dict[str, Any]:
    return request_kwargs(CHAT, chat_completions.Completions.create)


def anthropic_client(is_async: bool = False) -> Any:
    served = Served(MESSAGES, httpx2)
    cls = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
    http = served.async_client() if is_async else served.client()
    return cls(api_key="x", http_client=http, max_retries=0, open_telemetry=False)


def messages_kwargs() -> Dict[str, Any]:
    body = {k: v for k, v in MESSAGES["request"]["body"].items() if k != "stream"}
    return body


def options(telemetry: Any, events: List[Any]) -> Dict[str, Any]:
    return dict(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider,
                on_start=events.append, on_delta=events.append, on_complete=events.append, on_error=events.append)


def text_of(chunks: List[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def class_state() -> Dict[str, Any]:
    """Every attribute of the SDK classes steer could patch, by identity."""
    classes = [chat_completions.Completions, chat_completions.AsyncCompletions, anthropic._base_client.SyncAPIClient,
               anthropic._base_client.AsyncAPIClient, genai_models.Models, genai_models.AsyncModels]
    return {f"{c.__qualname__}.{k}": v for c in classes for k, v in vars(c).items()}


def no_steer_objects(obj: Any) -> None:
    for key, value in vars(obj).items():
        assert not key.startswith("_self_") and "steer" not in type(value).__module__, (key, value)


# -- clients ---------------------------------------------------------------------------------------------
def test_wrapped_openai_client_is_observed_and_nothing_global_changes(telemetry: Any) -> None:
    before = class_state()
    plain = openai_client()
    reference = list(plain.chat.completions.create(**chat_kwargs()))
    events: List[Any] = []
    raw = openai_client()
    client = steer.wrap(raw, **options(telemetry, events))

    assert isinstance(client, openai.OpenAI) and isinstance(client.chat.completions, chat_completions.Completions)
    chunks = list(client.chat.completions.create(**chat_kwargs()))
    assert [c.model_dump() for c in chunks] == [c.model_dump() for c in reference]
    assert [type(e) for e in events][0] is StreamStartEvent and isinstance(events[-1], StreamCompleteEvent)
    assert events[-1].text == text_of(reference)
    (span,) = telemetry.genai_spans()
    assert span.attributes["steer.stream.end"] == "complete"

    list(plain.chat.completions.create(**chat_kwargs()))  # another client: not observed
    assert len(telemetry.genai_spans()) == 1
    assert class_state() == before  # no class attribute was patched
    for obj in (raw, raw.chat, raw.chat.completions):
        no_steer_objects(obj)


async def test_wrapped_async_openai_client(telemetry: Any) -> None:
    events: List[Any] = []
    client = steer.wrap(openai_client(is_async=True), **options(telemetry, events))
    stream = await client.chat.completions.create(**chat_kwargs())
    assert isinstance(stream, AsyncStreamProxy) and isinstance(stream, openai.AsyncStream)
    chunks = [c async for c in stream]
    assert chunks and isinstance(events[-1], StreamCompleteEvent) and events[-1].text == text_of(chunks)
    assert len(telemetry.genai_spans()) == 1


def test_helpers_raw_responses_and_copies_stay_observed(telemetry: Any) -> None:
    events: List[Any] = []
    client = steer.wrap(openai_client(), **options(telemetry, events))
    kwargs = {k: v for k, v in chat_kwargs().items() if k not in ("stream", "stream_options")}
    with client.chat.completions.stream(**kwargs) as helper:  # calls self.create() inside the SDK
        assert helper.get_final_completion().choices
    raw = client.chat.completions.with_raw_response.create(**chat_kwargs())
    assert list(raw.parse())
    assert list(client.with_options(timeout=30).chat.completions.create(**chat_kwargs()))
    ends = [e for e in events if isinstance(e, StreamCompleteEvent)]
    assert len(ends) == 3 and len(telemetry.genai_spans()) == 3


def test_each_wrap_has_its_own_options(telemetry: Any) -> None:
    first: List[Any] = []
    second: List[Any] = []
    a = steer.wrap(openai_client(), on_complete=first.append, tracer_provider=telemetry.tracer_provider)
    b = steer.wrap(openai_client(), on_complete=second.append, tracer_provider=telemetry.tracer_provider)
    list(a.chat.completions.create(**chat_kwargs()))
    list(b.chat.completions.create(**chat_kwargs()))
    list(b.chat.completions.create(**chat_kwargs()))
    assert (len(first), len(second)) == (1, 2)


def test_wrap_and_instrument_together_give_one_span(instrumented: Any, telemetry: Any) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    global_events: List[Any] = []
    instrumented(on_complete=global_events.append)
    own_spans, own_provider = InMemorySpanExporter(), TracerProvider()
    own_provider.add_span_processor(SimpleSpanProcessor(own_spans))
    wrapped_events: List[Any] = []
    client = steer.wrap(openai_client(), tracer_provider=own_provider, on_complete=wrapped_events.append)
    list(client.chat.completions.create(**chat_kwargs()))
    assert len(own_spans.get_finished_spans()) == 1 and not telemetry.genai_spans()  # the wrap's options, once
    assert len(wrapped_events) == 1 and not global_events
    list(openai_client().chat.completions.create(**chat_kwargs()))  # the global patch still works
    assert len(telemetry.genai_spans()) == 1 and len(global_events) == 1


def test_wrapped_anthropic_client(telemetry: Any) -> None:
    before = class_state()
    events: List[Any] = []
    raw = anthropic_client()
    client = steer.wrap(raw, **options(telemetry, events))
    assert isinstance(client, anthropic.Anthropic)
    list(client.messages.create(stream=True, **messages_kwargs()))
    with client.messages.stream(**messages_kwargs()) as helper:
        text = helper.get_final_text()
    ends = [e for e in events if isinstance(e, StreamCompleteEvent)]
    assert len(ends) == 2 and ends[1].text == text and text
    assert len(telemetry.genai_spans()) == 2
    assert class_state() == before
    no_steer_objects(raw)


async def test_wrapped_async_anthropic_client(telemetry: Any) -> None:
    events: List[Any] = []
    client = steer.wrap(anthropic_client(is_async=True), **options(telemetry, events))
    async with client.messages.stream(**messages_kwargs()) as helper:
        text = await helper.get_final_text()
    assert isinstance(events[-1], StreamCompleteEvent) and events[-1].text == text


@pytest.mark.parametrize("is_async", [False, True])
async def test_wrapped_google_client(is_async: bool, telemetry: Any) -> None:
    before = class_state()
    served = Served(GEMINI)
    raw = genai.Client(api_key="k", http_options=genai_types.HttpOptions(
        httpx_client=served.client(), httpx_async_client=served.async_client()))
    events: List[Any] = []
    client = steer.wrap(raw, **options(telemetry, events))
    if is_async:
        chunks = [c async for c in await client.aio.models.generate_content_stream(model=GEMINI["model"], contents="hi")]
    else:
        chunks = list(client.models.generate_content_stream(model=GEMINI["model"], contents="hi"))
    assert isinstance(events[-1], StreamCompleteEvent) and events[-1].text == "".join(c.text or "" for c in chunks)
    assert len(telemetry.genai_spans()) == 1 and class_state() == before


# -- streams ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_wrap_an_existing_stream(sdk: str, telemetry: Any) -> None:
    if sdk == "openai":
        raw = openai_client().chat.completions.create(**chat_kwargs())
    else:
        raw = anthropic_client().messages.create(stream=True, **messages_kwargs())
    events: List[Any] = []
    stream = steer.wrap(raw, **options(telemetry, events))
    assert isinstance(stream, SyncStreamProxy) and isinstance(stream, type(raw))
    chunks = list(stream)
    assert chunks and any(isinstance(e, StreamDeltaEvent) for e in events) and isinstance(events[-1], StreamCompleteEvent)
    (span,) = telemetry.genai_spans()
    assert span.attributes["gen_ai.request.model"] == (CHAT if sdk == "openai" else MESSAGES)["request"]["body"]["model"]
    assert "gen_ai.response.time_to_first_chunk" in span.attributes  # counted from wrap()


async def test_wrap_an_existing_async_stream(telemetry: Any) -> None:
    raw = await openai_client(is_async=True).chat.completions.create(**chat_kwargs())
    events: List[Any] = []
    stream = steer.wrap(raw, **options(telemetry, events))
    assert isinstance(stream, AsyncStreamProxy)
    assert [c async for c in stream] and isinstance(events[-1], StreamCompleteEvent)


def test_a_wrapped_stream_abandoned_still_ends_its_span(telemetry: Any) -> None:
    stream = steer.wrap(openai_client().chat.completions.create(**chat_kwargs()), tracer_provider=telemetry.tracer_provider)
    next(iter(stream))
    del stream
    gc.collect()
    (span,) = telemetry.genai_spans()
    assert span.attributes["steer.stream.end"] == "abandoned"


def test_wrap_refuses_what_it_cannot_observe(instrumented: Any) -> None:
    with pytest.raises(TypeError):
        steer.wrap(object())
    instrumented()
    observed = openai_client().chat.completions.create(**chat_kwargs())
    with pytest.raises(ValueError):
        steer.wrap(observed)  # already observed by instrument(): wrapping again would count it twice
    list(observed)

"""What the SDK returns keeps its type and surface; patches apply once and come off exactly."""

from __future__ import annotations

import gc
from typing import Any

import openai
import pytest
from openai.resources.chat.completions import completions as chat_module

import steer
from recordings import Served, load

RECORDING = load("openai/chat_two_tool_calls_include_usage.json")
KWARGS = dict(RECORDING["request"]["body"])


def make(is_async: bool = False) -> Any:
    served = Served(RECORDING)
    if is_async:
        return openai.AsyncOpenAI(api_key="x", http_client=served.async_client())
    return openai.OpenAI(api_key="x", http_client=served.client())


def test_stream_keeps_type_and_surface(instrumented: Any) -> None:
    telemetry = instrumented()
    stream = make().chat.completions.create(**KWARGS)
    assert isinstance(stream, openai.Stream)
    assert stream.response.status_code == 200
    with stream as bound:
        assert bound is stream  # `with s as x` binds the proxy, so iteration stays observed
        chunks = list(bound)
    assert len(chunks) == telemetry.genai_spans()[0].attributes["steer.stream.chunks"]


async def test_async_stream_keeps_type_and_surface(instrumented: Any) -> None:
    instrumented()
    stream = await make(True).chat.completions.create(**KWARGS)
    assert isinstance(stream, openai.AsyncStream)
    async with stream as bound:
        assert bound is stream
        assert [c async for c in bound]


def test_nothing_is_written_onto_sdk_objects(instrumented: Any) -> None:
    bare_stream = make().chat.completions.create(**KWARGS)
    list(bare_stream)
    bare_keys = set(vars(bare_stream))
    bare_response_keys = set(vars(bare_stream.response))
    instrumented()
    stream = make().chat.completions.create(**KWARGS)
    list(stream)
    assert set(vars(stream.__wrapped__)) == bare_keys
    assert set(vars(stream.response)) == bare_response_keys


def test_with_raw_response_parse(instrumented: Any) -> None:
    telemetry = instrumented()
    raw = make().chat.completions.with_raw_response.create(**KWARGS)
    assert raw.http_response.status_code == 200
    stream = raw.parse()
    assert isinstance(stream, openai.Stream)
    assert raw.parse() is stream  # the SDK caches parse(); the proxy does too
    text = [c for c in stream]
    assert text
    (span,) = telemetry.genai_spans()
    assert span.attributes["steer.stream.end"] == "complete"
    assert span.attributes["steer.tool_calls"] == 2


def test_stream_helper_get_final_completion(instrumented: Any) -> None:
    bare = make().chat.completions.stream(**{k: v for k, v in KWARGS.items() if k != "stream"})
    with bare as s:
        expected = s.get_final_completion()
    telemetry = instrumented()
    with make().chat.completions.stream(**{k: v for k, v in KWARGS.items() if k != "stream"}) as s:
        final = s.get_final_completion()
    assert final.model_dump() == expected.model_dump()
    (span,) = telemetry.genai_spans()
    assert span.attributes["steer.stream.end"] == "complete"
    assert span.attributes["steer.stream.chunks"] == 18


async def test_async_stream_helper(instrumented: Any) -> None:
    telemetry = instrumented()
    async with make(True).chat.completions.stream(**{k: v for k, v in KWARGS.items() if k != "stream"}) as s:
        final = await s.get_final_completion()
    assert len(final.choices[0].message.tool_calls) == 2
    assert len(telemetry.genai_spans()) == 1


def test_non_streaming_create_and_parse(instrumented: Any) -> None:
    import httpx

    body = {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "{\"a\": 1}"}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, json=body)))
    client = openai.OpenAI(api_key="x", http_client=http)
    telemetry = instrumented()
    resp = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert type(resp) is openai.types.chat.ChatCompletion
    parsed = client.chat.completions.parse(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                           response_format={"type": "json_object"})
    assert parsed.choices[0].message.content == "{\"a\": 1}"
    first, second = telemetry.genai_spans()
    for span in (first, second):
        assert span.attributes["gen_ai.request.stream"] is False
        assert span.attributes["gen_ai.usage.output_tokens"] == 3
        assert span.attributes["gen_ai.response.finish_reasons"] == ("stop",)
        assert "steer.stream.chunks" not in span.attributes
    assert telemetry.active_streams() == 0


def test_instrument_is_idempotent_and_uninstrument_restores() -> None:
    originals = {name: chat_module.Completions.__dict__[name] for name in ("create", "parse")}
    async_original = chat_module.AsyncCompletions.__dict__["create"]
    steer.instrument()
    steer.instrument()
    patched = chat_module.Completions.__dict__["create"]
    assert patched is not originals["create"]
    assert patched.__wrapped__ is originals["create"]  # patched once, not wrapped twice
    steer.uninstrument()
    steer.uninstrument()
    for name, original in originals.items():
        assert chat_module.Completions.__dict__[name] is original
    assert chat_module.AsyncCompletions.__dict__["create"] is async_original


def test_every_target_found_in_installed_sdks(instrumented: Any) -> None:
    """Fails loudly when an SDK upgrade moves a seam steer patches."""
    import importlib

    from steer.instrumentation import instrumentation_status
    from steer.wrapping.registry import all_targets

    for target in all_targets():  # every SDK is installed in the test environment
        importlib.import_module(target.module)
    instrumented()
    status = instrumentation_status()
    assert status, "no targets"
    assert {name: s for name, s in status.items() if s != "patched"} == {}


def test_instrument_imports_no_sdk() -> None:
    """instrument() patches SDKs as they are imported; it never imports one itself (seconds each)."""
    import subprocess
    import sys

    code = ("import sys, steer; steer.instrument(); "
            "print(sorted(m for m in ('anthropic', 'google.genai', 'openai') if m in sys.modules)); "
            "import openai; from openai.resources.chat.completions import completions as c; "
            "print(type(c.Completions.__dict__['create']).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[]", "FunctionWrapper"]


def test_in_flight_stream_survives_uninstrument(instrumented: Any) -> None:
    telemetry = instrumented()
    stream = make().chat.completions.create(**KWARGS)
    next(stream)
    steer.uninstrument()
    rest = list(stream)
    assert rest
    (span,) = telemetry.genai_spans()
    assert span.attributes["steer.stream.end"] == "complete"
    assert span.attributes["steer.stream.chunks"] == len(rest) + 1
    gc.collect()


@pytest.mark.parametrize("bad", [{"providers": ["nope"]}, {"chunk_gap_metric": "sometimes"}])
def test_bad_options_are_clear_errors(bad: Any) -> None:
    with pytest.raises(ValueError, match="steer"):
        steer.instrument(**bad)
    steer.uninstrument()

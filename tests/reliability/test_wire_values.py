"""Values from the wire reach OTLP only in a form it can carry (issue 19 item 5).

Recorded streams are mutated the way a broken or hostile server sends them — a lone surrogate
(JSON's ``"\\ud800"`` escape) in the model, the response id, the finish reason, a provider extra;
token counts of ``1e30``, ``1.5e300``, ``-5``, ``"12"`` — served by the loopback devserver to the
REAL SDK under ``steer.instrument()``, and everything steer emitted is encoded with the real OTLP
protobuf encoders: no encoder error is logged, nothing invalid is in the result, and what was left
out is counted in ``steer.decode.errors`` (span attribute and metric, by ``steer.decode.reason``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable, Dict, List

import anthropic
import openai
import pytest
from google import genai
from google.genai import types as genai_types
from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common._internal.trace_encoder import encode_spans

from recordings import load
from steer.tools.devserver import DevServer
from steer.events import StreamCompleteEvent

from .checks import otlp_complaints

BAD = "\ud800"  # a lone surrogate: what json.loads gives for the escape "\ud800"
INT64_MAX = 2**63 - 1


def _mutated(name: str, change: Callable[[Dict[str, Any]], None]) -> Dict[str, Any]:
    """The recording with ``change`` applied to every JSON event of its SSE body (written back with
    ASCII escapes, as JSON carries a lone surrogate)."""
    rec = load(name)
    lines = []
    for line in rec["response"]["body"].split("\n"):
        if line.startswith("data:") and line[5:].strip().startswith("{"):
            data = json.loads(line[5:])
            change(data)
            line = "data: " + json.dumps(data)
        lines.append(line)
    rec["response"]["body"] = "\n".join(lines)
    return rec


def _openai_change(counts: Dict[str, Any]) -> Callable[[Dict[str, Any]], None]:
    def change(chunk: Dict[str, Any]) -> None:
        chunk["model"] = "gpt-4" + BAD
        chunk["id"] = "chatcmpl-" + BAD
        chunk["system_fingerprint"] = "fp_" + BAD
        for choice in chunk.get("choices") or ():
            if choice.get("finish_reason"):
                choice["finish_reason"] = "st" + BAD + "op"
        if chunk.get("usage"):
            chunk["usage"].update(counts)

    return change


def _anthropic_change(counts: Dict[str, Any]) -> Callable[[Dict[str, Any]], None]:
    def change(event: Dict[str, Any]) -> None:
        if event.get("type") == "message_start":
            event["message"]["model"] = "claude-3" + BAD
            event["message"]["id"] = "msg_" + BAD
            event["message"]["usage"]["input_tokens"] = counts["prompt_tokens"]
        if event.get("type") == "message_delta":
            event["delta"]["stop_reason"] = "end" + BAD
            event["usage"]["output_tokens"] = counts["completion_tokens"]

    return change


def _gemini_change(counts: Dict[str, Any]) -> Callable[[Dict[str, Any]], None]:
    def change(chunk: Dict[str, Any]) -> None:
        chunk["modelVersion"] = "gemini-2.0" + BAD
        chunk["responseId"] = "r" + BAD
        meta = chunk.get("usageMetadata")
        if meta:
            # google-genai validates its models: a float count past int64 (1e30) fails in the SDK itself
            # before steer sees it; the same number as a JSON integer reaches steer.
            meta["promptTokenCount"] = _integral(counts["prompt_tokens"])
            meta["candidatesTokenCount"] = _integral(counts["completion_tokens"])

    return change


def _integral(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Counts no OTLP int64 can carry or no count can be: a 301-digit int (1.5e300), 1e30, negative, a string.
COUNTS = [
    pytest.param({"prompt_tokens": 1.5e300, "completion_tokens": -5, "total_tokens": "12"}, id="huge-negative-string"),
    pytest.param({"prompt_tokens": 1e30, "completion_tokens": 2**64, "total_tokens": 7.5}, id="beyond-int64-fractional"),
]


def _openai(srv: DevServer, is_async: bool) -> Any:
    cls = openai.AsyncOpenAI if is_async else openai.OpenAI
    client = cls(base_url=srv.openai_base_url, api_key="x", max_retries=0)
    return client, lambda: client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}],
                                                          stream=True, stream_options={"include_usage": True})


def _anthropic(srv: DevServer, is_async: bool) -> Any:
    cls = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
    client = cls(base_url=srv.anthropic_base_url, api_key="x", max_retries=0)
    return client, lambda: client.messages.create(model="claude-3-haiku-20240307", max_tokens=50, stream=True,
                                                  messages=[{"role": "user", "content": "hi"}])


def _gemini(srv: DevServer, is_async: bool) -> Any:
    client = genai.Client(api_key="x", http_options=genai_types.HttpOptions(base_url=srv.gemini_base_url))
    models = client.aio.models if is_async else client.models
    return client, lambda: models.generate_content_stream(model="gemini-2.0-flash", contents="hi")


CASES = {
    "openai": ("openai/chat_gpt4_include_usage.json", _openai_change, _openai),
    "anthropic": ("anthropic/messages_text_claude3_haiku.json", _anthropic_change, _anthropic),
    "gemini": ("google/gemini20_flash_text_sse.json", _gemini_change, _gemini),
}


def _run(rec: Dict[str, Any], make: Callable[..., Any], is_async: bool) -> None:
    with DevServer(recording=rec, chunk_delay=0) as srv:
        client, call = make(srv, is_async)
        if is_async:
            async def main() -> None:
                stream = await call()
                async for _ in stream:
                    pass

            asyncio.run(main())
        else:
            for _ in call():
                pass
        del client


@pytest.mark.parametrize("counts", COUNTS)
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("provider", sorted(CASES))
def test_wire_values_export_cleanly(provider: str, is_async: bool, counts: Dict[str, Any], instrumented: Any) -> None:
    name, change, make = CASES[provider]
    completes: List[StreamCompleteEvent] = []
    telemetry = instrumented(on_complete=completes.append)
    _run(_mutated(name, change(counts)), make, is_async)

    (span,) = telemetry.genai_spans()
    attrs = dict(span.attributes)
    assert otlp_complaints(telemetry) == []
    # Ids and model names that OTLP cannot carry are left out; finish reasons are repaired, not dropped.
    assert "gen_ai.response.id" not in attrs and "gen_ai.response.model" not in attrs
    if provider != "gemini":  # google-genai turns an unknown finishReason into its enum's fallback
        (reason,) = attrs["gen_ai.response.finish_reasons"]
        assert "\ufffd" in reason and reason.encode("utf-8")
    # No token count is negative, fractional, a string or past int64; none is reported as usage.
    for key, value in attrs.items():
        if "tokens" in key:
            assert type(value) is int and 0 <= value <= INT64_MAX, (key, value)
    assert "gen_ai.usage.input_tokens" not in attrs
    assert completes[0].final_usage.input_tokens is None
    assert all(type(v) is int and 0 <= v <= INT64_MAX for v in completes[0].final_usage.values())
    # Each value left out or repaired is counted, on the span and in the metric, by reason.
    reasons = {p.attributes["steer.decode.reason"]: p.value for p in telemetry.metrics()["steer.decode.errors"]}
    assert attrs["steer.decode.errors"] == sum(reasons.values())
    assert reasons["invalid_utf8"] >= 2 and reasons["invalid_token_count"] >= 2
    # The encoded protobuf holds exactly what the SDK had: nothing was dropped by the encoder.
    encoded = encode_spans([span]).resource_spans[0].scope_spans[0].spans[0]
    assert {kv.key for kv in encoded.attributes} == set(attrs)
    metrics_pb = encode_metrics(telemetry.reader.get_metrics_data())
    encoded_metrics = {m.name for rm in metrics_pb.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {"steer.decode.errors", "gen_ai.client.operation.duration"} <= encoded_metrics


def test_a_surrogate_in_an_error_message_is_repaired_for_export(instrumented: Any) -> None:
    """The provider's error message goes into the span status and the recorded exception event."""
    rec = load("openai/error_404_model_not_found_stream_request.json")
    body = json.loads(rec["response"]["body"])
    body["error"]["message"] = "no such model " + BAD
    body["error"]["code"] = "model_" + BAD
    rec["response"]["body"] = json.dumps(body)
    telemetry = instrumented()
    with DevServer(recording=rec, chunk_delay=0) as srv:
        client, call = _openai(srv, False)
        with pytest.raises(openai.NotFoundError) as caught:
            call()
    assert BAD in str(caught.value)  # the caller's exception is untouched
    (span,) = telemetry.genai_spans()
    assert otlp_complaints(telemetry) == []
    assert "\ufffd" in span.status.description and span.status.description.encode("utf-8")
    (event,) = [e for e in span.events if e.name == "exception"]
    assert "\ufffd" in event.attributes["exception.message"]
    assert event.attributes["exception.stacktrace"].encode("utf-8")
    assert span.attributes["error.type"].encode("utf-8")


def test_encoders_reject_what_steer_now_keeps_out(telemetry: Any) -> None:
    """The premise, checked on the encoders themselves: a lone surrogate or a >64-bit int is an error."""
    tracer = telemetry.tracer_provider.get_tracer("t")
    tracer.start_span("s", attributes={"a": "x" + BAD, "b": 10**30}).end()
    assert len(otlp_complaints(telemetry)) == 2
    assert not encode_spans(telemetry.spans()).resource_spans[0].scope_spans[0].spans[0].attributes

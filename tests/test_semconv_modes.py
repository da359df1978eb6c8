"""The two convention versions, through the real SDKs against the loopback devserver: v1.41 by default,
the newest GenAI conventions (semantic-conventions-genai) with
``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental``. Names, units, attributes, modality,
bucket advice and the scope's schema URL are read back from the OpenTelemetry SDK."""

from __future__ import annotations

from typing import Any, Dict, List

import anthropic
import openai
import pytest
from google import genai
from google.genai import types as genai_types

import steer
from steer.config import load_settings
from steer.tools.devserver import DevServer
from steer.telemetry import semconv as sc

DURATION_BOUNDS = tuple(float(b) for b in sc.DURATION_BUCKETS)
TOKEN_BOUNDS = tuple(float(b) for b in sc.TOKEN_BUCKETS)
COUNTERS = (sc.METRIC_INFERENCE_USAGE_INPUT_TOKENS, sc.METRIC_INFERENCE_USAGE_OUTPUT_TOKENS,
            sc.METRIC_INFERENCE_USAGE_CACHE_READ_INPUT_TOKENS, sc.METRIC_INFERENCE_USAGE_CACHE_WRITE_INPUT_TOKENS,
            sc.METRIC_INFERENCE_USAGE_REASONING_OUTPUT_TOKENS)
CHUNKS = 8  # x-steer-chunks: words in the devserver's answer


@pytest.fixture(params=["v1.41", "latest"])
def mode(request: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "latest":
        monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http, gen_ai_latest_experimental")
    else:
        monkeypatch.delenv("OTEL_SEMCONV_STABILITY_OPT_IN", raising=False)
    return request.param


@pytest.fixture
def server() -> Any:
    with DevServer(chunk_delay=0, chunks=CHUNKS) as srv:
        yield srv


def metrics_by_name(telemetry: Any) -> Dict[str, Any]:
    """metric name -> (metric, scope) as the SDK exports them."""
    out: Dict[str, Any] = {}
    steer.flush(120)  # the calls' ends are recorded on steer's background thread
    data = telemetry.reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out[metric.name] = (metric, sm.scope)
    return out


def points(found: Dict[str, Any], name: str) -> List[Any]:
    return list(found[name][0].data.data_points)


def openai_stream(server: Any, **extra: Any) -> int:
    client = openai.OpenAI(base_url=server.openai_base_url, api_key="sk-test", max_retries=0)
    chunks = 0
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True,
                                            stream_options={"include_usage": True}, **extra):
        chunks += 1
    return chunks


def test_opt_in_is_read_like_opentelemetry_python(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, expected in [("", "v1.41"), ("gen_ai_latest_experimental", "latest"),
                            ("http/dup, gen_ai_latest_experimental ,database", "latest"),
                            ("GEN_AI_LATEST_EXPERIMENTAL", "v1.41"), ("gen_ai_latest_experimental/dup", "v1.41"), ("http", "v1.41")]:
        monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", value)
        assert load_settings().semconv == expected, value
    from opentelemetry.instrumentation._semconv import _OpenTelemetrySemanticConventionStability as Stability
    from opentelemetry.instrumentation._semconv import _OpenTelemetryStabilitySignalType, _StabilityMode

    for value in ("http, gen_ai_latest_experimental", "gen_ai_latest_experimental/dup"):
        monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", value)
        monkeypatch.setattr(Stability, "_initialized", False)
        monkeypatch.setattr(Stability, "_OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING", {})
        Stability._initialize()
        theirs = Stability._get_opentelemetry_stability_opt_in_mode(_OpenTelemetryStabilitySignalType.GEN_AI)
        assert (theirs is _StabilityMode.GEN_AI_LATEST_EXPERIMENTAL) == (load_settings().semconv == "latest"), value


def test_streaming_call_metrics(mode: str, server: Any, instrumented: Any) -> None:
    telemetry = instrumented()
    chunks = openai_stream(server)
    found = metrics_by_name(telemetry)
    (span,) = telemetry.genai_spans()
    usage_in, usage_out = span.attributes[sc.USAGE_INPUT_TOKENS], span.attributes[sc.USAGE_OUTPUT_TOKENS]
    schema = sc.LATEST_SCHEMA_URL if mode == "latest" else sc.SCHEMA_URL
    assert span.instrumentation_scope.schema_url == schema
    assert {scope.schema_url for _, scope in found.values()} == {schema}
    if mode == "latest":
        duration, ttfc, per_chunk = (sc.METRIC_INFERENCE_DURATION, sc.METRIC_INFERENCE_TIME_TO_FIRST_CHUNK,
                                     sc.METRIC_INFERENCE_TIME_PER_OUTPUT_CHUNK)
        assert not {sc.METRIC_OPERATION_DURATION, sc.METRIC_TOKEN_USAGE, sc.METRIC_TIME_TO_FIRST_CHUNK} & set(found)
    else:
        duration, ttfc, per_chunk = sc.METRIC_OPERATION_DURATION, sc.METRIC_TIME_TO_FIRST_CHUNK, sc.METRIC_TIME_PER_OUTPUT_CHUNK
        assert not {name for name in found if name.startswith("gen_ai.client.inference.")}
    for name in (duration, ttfc, per_chunk):
        metric = found[name][0]
        assert metric.unit == "s"
        (point,) = points(found, name)
        assert tuple(point.explicit_bounds) == DURATION_BOUNDS
        assert point.attributes[sc.OPERATION_NAME] == "chat" and point.attributes[sc.PROVIDER_NAME] == "openai"
        assert sc.TOKEN_MODALITY not in point.attributes
    (gaps,) = points(found, per_chunk)
    # latest: one point per chunk after the first; v1.41 keeps steer's one mean per stream by default.
    assert gaps.count == (chunks - 1 if mode == "latest" else 1)
    if mode == "latest":
        for name, expected in [(sc.METRIC_INFERENCE_USAGE_INPUT_TOKENS, usage_in), (sc.METRIC_INFERENCE_USAGE_OUTPUT_TOKENS, usage_out),
                               (sc.METRIC_INFERENCE_USAGE_CACHE_READ_INPUT_TOKENS, 0),
                               (sc.METRIC_INFERENCE_USAGE_CACHE_WRITE_INPUT_TOKENS, 0),
                               (sc.METRIC_INFERENCE_USAGE_REASONING_OUTPUT_TOKENS, 0)]:
            metric = found[name][0]
            assert metric.unit == "{token}" and metric.data.is_monotonic, name
            (point,) = points(found, name)
            assert point.value == expected, name
            # A chat call asked for no audio: its output tokens are text; input is not broken down.
            assert point.attributes[sc.TOKEN_MODALITY] == ("text" if ".output_tokens" in name else "unknown"), name
            assert sc.TOKEN_TYPE not in point.attributes
        for name, expected in [(sc.METRIC_INFERENCE_OPERATION_INPUT_TOKENS, usage_in), (sc.METRIC_INFERENCE_OPERATION_OUTPUT_TOKENS, usage_out)]:
            assert found[name][0].unit == "{token}"
            (point,) = points(found, name)
            assert (point.count, point.sum) == (1, expected)
            assert tuple(point.explicit_bounds) == TOKEN_BOUNDS
            assert sc.TOKEN_MODALITY not in point.attributes
    else:
        tokens = points(found, sc.METRIC_TOKEN_USAGE)
        assert found[sc.METRIC_TOKEN_USAGE][0].unit == "{token}"
        assert {(p.attributes[sc.TOKEN_TYPE], p.sum) for p in tokens} == {("input", usage_in), ("output", usage_out)}
        assert all(tuple(p.explicit_bounds) == TOKEN_BOUNDS for p in tokens)


def test_failed_call_counts_zero_tokens_under_unknown(mode: str, server: Any, instrumented: Any) -> None:
    telemetry = instrumented(estimate_usage=False)
    client = openai.OpenAI(base_url=server.openai_base_url, api_key="sk-test", max_retries=0)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True,
                                       extra_headers={"x-steer-fault": "http_500"})
    found = metrics_by_name(telemetry)
    (duration,) = points(found, sc.METRIC_INFERENCE_DURATION if mode == "latest" else sc.METRIC_OPERATION_DURATION)
    assert duration.attributes[sc.ERROR_TYPE] == "InternalServerError"
    if mode == "latest":
        for name in COUNTERS:
            (point,) = points(found, name)
            assert point.value == 0
            assert point.attributes[sc.TOKEN_MODALITY] == "unknown"
            assert point.attributes[sc.ERROR_TYPE] == "InternalServerError"
        # The per-operation histograms describe successful calls only.
        assert sc.METRIC_INFERENCE_OPERATION_INPUT_TOKENS not in found
        assert sc.METRIC_INFERENCE_OPERATION_OUTPUT_TOKENS not in found
    else:
        assert sc.METRIC_TOKEN_USAGE not in found


def test_openai_token_metrics_carry_service_tier(mode: str, server: Any, instrumented: Any) -> None:
    telemetry = instrumented()
    client = openai.OpenAI(base_url=server.openai_base_url, api_key="sk-test", max_retries=0)
    client.responses.create(model="gpt-4o-mini", input="hi", reasoning={"effort": "low"}, previous_response_id="resp_prev123")
    found = metrics_by_name(telemetry)
    (span,) = telemetry.genai_spans()
    if mode == "latest":
        for name in (sc.METRIC_INFERENCE_USAGE_INPUT_TOKENS, sc.METRIC_INFERENCE_OPERATION_OUTPUT_TOKENS):
            (point,) = points(found, name)
            assert point.attributes[sc.OPENAI_SERVICE_TIER] == "default"
        (duration,) = points(found, sc.METRIC_INFERENCE_DURATION)
        assert sc.OPENAI_SERVICE_TIER not in duration.attributes  # the refinement covers the token metrics only
        assert span.attributes[sc.REQUEST_REASONING_LEVEL] == "low"
        assert span.attributes[sc.REQUEST_PREVIOUS_RESPONSE_ID] == "resp_prev123"
    else:
        assert all(sc.OPENAI_SERVICE_TIER not in p.attributes for p in points(found, sc.METRIC_TOKEN_USAGE))
        assert sc.REQUEST_REASONING_LEVEL not in span.attributes
        assert sc.REQUEST_PREVIOUS_RESPONSE_ID not in span.attributes


def test_request_attributes(mode: str, server: Any, instrumented: Any) -> None:
    telemetry = instrumented()
    openai_stream(server, reasoning_effort="minimal")
    client = anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="sk-test", max_retries=0)
    client.messages.create(model="claude-sonnet-4-5", max_tokens=64, output_config={"effort": "high"},
                           messages=[{"role": "user", "content": "hi"}])
    gemini = genai.Client(api_key="sk-test", http_options=genai_types.HttpOptions(base_url=server.gemini_base_url))
    gemini.models.generate_content(model="gemini-2.5-flash", contents="hi", config=genai_types.GenerateContentConfig(
        top_k=40, thinking_config=genai_types.ThinkingConfig(thinking_level=genai_types.ThinkingLevel.LOW)))
    chat, messages, generate = telemetry.genai_spans()
    top_k = generate.attributes[sc.REQUEST_TOP_K]
    if mode == "latest":
        assert chat.attributes[sc.REQUEST_REASONING_LEVEL] == "minimal"
        assert messages.attributes[sc.REQUEST_REASONING_LEVEL] == "high"
        assert generate.attributes[sc.REQUEST_REASONING_LEVEL] == "LOW"
        assert type(top_k) is int and top_k == 40
        assert messages.attributes[sc.USAGE_CACHE_WRITE_INPUT_TOKENS] == 0
        assert sc.USAGE_CACHE_CREATION_INPUT_TOKENS not in messages.attributes
    else:
        assert not any(sc.REQUEST_REASONING_LEVEL in span.attributes for span in (chat, messages, generate))
        assert type(top_k) is float and top_k == 40.0
        assert messages.attributes[sc.USAGE_CACHE_CREATION_INPUT_TOKENS] == 0
        assert sc.USAGE_CACHE_WRITE_INPUT_TOKENS not in messages.attributes


def test_every_newest_name_is_documented() -> None:
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[1] / "docs" / "telemetry.md").read_text()
    names = [value for key, value in vars(sc).items() if isinstance(value, str) and (
        key.startswith(("METRIC_INFERENCE_", "REQUEST_REASONING", "REQUEST_PREVIOUS", "USAGE_CACHE_WRITE", "TOKEN_MODALITY"))
        or key in ("LATEST_SCHEMA_URL", "SEMCONV_OPT_IN_LATEST"))]
    assert len(names) >= 15
    missing = [name for name in names if name not in docs]
    assert not missing, f"docs/telemetry.md does not name {missing}"

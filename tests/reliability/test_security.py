"""Security and privacy: content capture is off by default, capped and redacted when on; credentials
never reach telemetry; attribute sizes and hostile JSON are bounded.

The secrets test plants credentials everywhere an application puts them — the API key, the
``Authorization`` / ``x-api-key`` / ``api-key`` headers, cookies, ``?key=`` / ``?api_key=`` query
parameters — in every recording's request, through every real SDK (sync and async) and through raw
httpx, with content capture ON and every callback listening, then scans everything steer produced:
span names, attributes, events and status; metric names and attributes; every StreamEvent; every log
record of steer and of the OpenTelemetry SDK at DEBUG.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from typing import Any, Dict, List
from urllib.parse import urlsplit

import anthropic
import httpx
import httpx2
import openai
import pytest
from google import genai
from google.genai import types as genai_types
from google.oauth2.credentials import Credentials

from recordings import Served, all_recordings, ids, request_kwargs
from steer.events import event_to_dict
from steer.tools.replay import replay
from steer.tools.replay.transport import BASE_URLS
from steer.telemetry import semconv as sc

from .checks import points

RECORDINGS = all_recordings()
CONTENT_KEYS = ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions", "gen_ai.tool.definitions")
MARK = "s3cr3t"  # in every planted secret: any leak, whole or cut, contains it
KEY, BEARER, XKEY, APIKEY, COOKIE, QKEY, QAPIKEY, CUSTOM = (f"{MARK}-{n}-{i:04d}" for i, n in enumerate(
    ["apikey", "bearer", "x-api-key", "api-key", "cookie", "query-key", "query-api-key", "custom"]))
HEADERS = {"Authorization": f"Bearer {BEARER}", "x-api-key": XKEY, "api-key": APIKEY, "Cookie": f"session={COOKIE}",
           "X-Custom-Token": CUSTOM}
QUERY = {"key": QKEY, "api_key": QAPIKEY}


# -- content capture -----------------------------------------------------------------------------------
@pytest.mark.parametrize("recording", RECORDINGS, ids=ids(RECORDINGS))
def test_content_capture_off_by_default(recording: Dict[str, Any], monkeypatch: Any) -> None:
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    summary = replay(recording)
    attrs = summary["span"]["attributes"]
    assert summary["span"]["count"] == 1
    assert not [k for k in attrs if k in CONTENT_KEYS]
    if summary["text"]:  # the output text is nowhere in the span
        assert not [k for k, v in attrs.items() if isinstance(v, str) and len(summary["text"]) > 8 and summary["text"] in v]


@pytest.mark.parametrize("recording", RECORDINGS, ids=ids(RECORDINGS))
def test_content_capture_on_is_redacted_then_capped(recording: Dict[str, Any]) -> None:
    cap = 300
    seen: List[str] = []

    def redact(text: str) -> str:
        seen.append(text)
        return "[redacted by hook] " + text.replace("e", "*")

    summary = replay(recording, capture_content=True, content_max_chars=cap, redact=redact)
    attrs = summary["span"]["attributes"]
    content = {k: v for k, v in attrs.items() if k in CONTENT_KEYS}
    assert len(content) == len(seen)  # every captured attribute went through the hook, once
    for key, value in content.items():
        assert value.startswith("[redacted by hook] "), key  # nothing left the process unredacted
        assert len(value) <= cap + len("…[truncated]"), (key, len(value))
    if recording["request"]["body"] and recording["response"]["status"] == 200:
        assert "gen_ai.input.messages" in content or "gen_ai.system_instructions" in content


def test_failing_redaction_hook_withholds_content() -> None:
    def broken(text: str) -> str:
        raise RuntimeError("hook bug")

    summary = replay(RECORDINGS[0] if RECORDINGS[0]["response"]["status"] == 200 else RECORDINGS[1],
                     capture_content=True, redact=broken)
    content = [v for k, v in summary["span"]["attributes"].items() if k in CONTENT_KEYS]
    assert content and all(v == "[steer: redaction hook failed; content withheld]" for v in content)


# -- no secret anywhere ----------------------------------------------------------------------------------
def _sdk_clients(recording: Dict[str, Any], is_async: bool) -> Dict[str, Any]:
    served = Served(recording, httpx2)
    http = served.async_client() if is_async else served.client()
    provider = recording["provider"]
    out: Dict[str, Any] = {}
    if recording["api"].startswith("openai"):
        if provider == "azure_openai":
            cls = openai.AsyncAzureOpenAI if is_async else openai.AzureOpenAI
            out["client"] = cls(api_key=KEY, api_version="2024-02-01", azure_endpoint=BASE_URLS["azure_openai"],
                                http_client=http, max_retries=0, default_headers=HEADERS, default_query=QUERY)
        else:
            cls = openai.AsyncOpenAI if is_async else openai.OpenAI
            out["client"] = cls(api_key=KEY, base_url=BASE_URLS.get(provider, BASE_URLS["openai"]), http_client=http,
                                max_retries=0, default_headers=HEADERS, default_query=QUERY)
    elif recording["api"] == "anthropic.messages":
        cls = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
        out["client"] = cls(api_key=KEY, base_url=BASE_URLS["anthropic"], http_client=http, max_retries=0,
                            default_headers=HEADERS, default_query=QUERY)
    else:
        options = genai_types.HttpOptions(headers=HEADERS, httpx_client=served.client(),
                                          httpx_async_client=served.async_client())
        parts = recording["request"]["path"].split("/")
        if "projects" in parts:
            out["client"] = genai.Client(vertexai=True, project=parts[parts.index("projects") + 1],
                                         location=parts[parts.index("locations") + 1],
                                         credentials=Credentials(token=KEY), http_options=options)
        else:
            out["client"] = genai.Client(api_key=KEY, http_options=options)
    out["served"] = served
    return out


async def _call(recording: Dict[str, Any], is_async: bool) -> None:
    made = _sdk_clients(recording, is_async)
    client, api = made["client"], recording["api"]
    per_call = {"extra_headers": {"X-Per-Call-Key": f"{MARK}-per-call"}, "extra_query": {"token": f"{MARK}-per-call-q"}}
    if api.startswith("google"):
        body = recording["request"]["body"] or {}
        config: Dict[str, Any] = dict(body.get("generationConfig") or {})
        for wire, name in (("systemInstruction", "system_instruction"), ("tools", "tools")):
            if body.get(wire):
                config[name] = body[wire]
        config["http_options"] = {"headers": {"X-Per-Call-Key": f"{MARK}-per-call"}}
        models = client.aio.models if is_async else client.models
        kwargs = {"model": recording["model"] or "gemini", "contents": body.get("contents") or "hi", "config": config}
        method = models.generate_content if api == "google.generate_content" else models.generate_content_stream
        make = lambda: method(**kwargs)  # noqa: E731
    else:
        if api == "anthropic.messages":
            resource = client.beta.messages if "beta=true" in recording["request"]["path"] else client.messages
        else:
            resource = {"openai.chat.completions": lambda: client.chat.completions, "openai.completions": lambda: client.completions,
                        "openai.responses": lambda: client.responses}[api]()
        kwargs = request_kwargs(recording, resource.__class__.create)
        kwargs.setdefault("model", recording.get("model") or "m")
        if api == "anthropic.messages":
            kwargs.setdefault("max_tokens", 100)
            kwargs.setdefault("messages", [{"role": "user", "content": "hi"}])
        elif api == "openai.chat.completions":
            kwargs.setdefault("messages", [{"role": "user", "content": "hi"}])
        elif api == "openai.completions":
            kwargs.setdefault("prompt", "hi")
        kwargs["stream"] = True
        make = lambda: resource.create(**kwargs, **per_call)  # noqa: E731
    try:
        result = make()
        if is_async:
            result = await result
            if hasattr(result, "__aiter__"):
                async for _ in result:
                    pass
        elif hasattr(result, "__iter__") and not isinstance(result, (dict, str)):
            for _ in result:
                pass
    except Exception:  # error recordings: the SDK raises; what matters is the telemetry
        pass
    finally:
        if is_async and isinstance(client, genai.Client):
            await client.aio.aclose()
    assert made["served"].requests, "the request went out"
    sent = made["served"].requests[0]
    assert MARK in str(sent.url) + str(dict(sent.headers)), "the secrets were really planted"


def _raw_call(recording: Dict[str, Any]) -> None:
    served = Served(recording, httpx)
    host = urlsplit(BASE_URLS.get(recording["provider"], BASE_URLS["openai"]))
    path = recording["request"]["path"]
    url = f"{host.scheme}://{host.netloc}{path}{'&' if '?' in path else '?'}key={QKEY}&api_key={QAPIKEY}"
    with served.client() as client:
        with client.stream("POST", url, json=recording["request"]["body"] or {}, headers=HEADERS) as response:
            for _ in response.iter_bytes():
                pass


def _telemetry_text(telemetry: Any, events: List[Any], records: List[logging.LogRecord]) -> str:
    parts = [span.to_json() for span in telemetry.spans()]
    data = telemetry.reader.get_metrics_data()
    parts.append(data.to_json() if data is not None else "")
    for event in events:
        parts.append(repr(event))
        parts.append(json.dumps(event_to_dict(event)))
    for record in records:
        if record.name.startswith(("steer", "opentelemetry")):
            parts.append(record.getMessage())
            if record.exc_info:
                parts.append("".join(traceback.format_exception(*record.exc_info)))
    return "\n".join(parts)


def test_no_secret_reaches_any_telemetry(instrumented: Any, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    events: List[Any] = []
    telemetry = instrumented(capture_content=True, on_start=events.append, on_delta=events.append,
                             on_usage=events.append, on_complete=events.append, on_error=events.append)
    calls = 0
    for recording in RECORDINGS:
        for is_async in (False, True):
            asyncio.run(_call(recording, is_async))
            calls += 1
        _raw_call(recording)
        calls += 1
    spans = telemetry.genai_spans()
    assert len(spans) == calls  # every call was observed (so every call was scanned)
    assert any("gen_ai.input.messages" in (s.attributes or {}) for s in spans)  # capture was really on
    text = _telemetry_text(telemetry, events, caplog.records)
    assert MARK not in text, text[max(0, text.find(MARK) - 300):text.find(MARK) + 100]
    print(f"\nsecrets scan: {calls} calls, {len(spans)} spans, {len(events)} events, "
          f"{len(caplog.records)} log records, {len(text)} characters of telemetry: no secret")


# -- bounded sizes ------------------------------------------------------------------------------------------
BIG = 1_000_000


def _hostile_chat_body() -> bytes:
    """A chat stream whose server puts megabytes into ids, model names, finish reasons and its error."""
    head = {"id": "i" * BIG, "object": "chat.completion.chunk", "created": 1, "model": "m" * BIG,
            "system_fingerprint": "s" * BIG, "service_tier": "t" * BIG,
            "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}
    lines = [head] + [{"id": "a", "object": "chat.completion.chunk", "created": 1, "model": "m",
                       "choices": [{"index": k, "delta": {}, "finish_reason": "f" * 5000 + str(k)}]} for k in range(3000)]
    tail = {"error": {"message": "e" * BIG, "type": "T" * BIG, "code": "c" * BIG}}
    return "".join(f"data: {json.dumps(x)}\n\n" for x in lines + [tail]).encode()


def _check_bounded(telemetry: Any) -> None:
    limit = sc.MAX_ATTRIBUTE_CHARS + len("…[truncated]")
    for span in telemetry.spans():
        assert len(span.name) <= limit
        for key, value in (span.attributes or {}).items():
            if key in CONTENT_KEYS:
                continue  # captured content has its own cap (content_max_chars), checked by the callers
            if isinstance(value, str):
                assert len(value) <= limit, key
            elif isinstance(value, tuple):
                assert len(value) <= sc.MAX_ATTRIBUTE_ITEMS and all(len(str(v)) <= limit for v in value), key
        assert len(span.status.description or "") <= sc.MAX_EXCEPTION_MESSAGE_CHARS + len("…[truncated]")
        for event in span.events:
            assert len(str(event.attributes.get("exception.message", ""))) <= sc.MAX_EXCEPTION_MESSAGE_CHARS + 20
            assert len(str(event.attributes.get("exception.stacktrace", ""))) <= sc.MAX_EXCEPTION_STACKTRACE_CHARS + 40
    for name, pts in telemetry.metrics().items():
        for p in pts:
            assert all(len(str(v)) <= sc.MAX_METRIC_ATTRIBUTE_CHARS for v in p.attributes.values()), name


@pytest.mark.parametrize("path", ["openai_sdk", "raw_httpx"])
def test_attribute_sizes_are_bounded(path: str, instrumented: Any) -> None:
    telemetry = instrumented(capture_content=True, content_max_chars=2000)
    body = _hostile_chat_body()

    def handler(request: Any) -> Any:
        return type(request).__module__.startswith("httpx2") and httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, content=body) or httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=body)

    huge_prompt = [{"role": "system", "content": "S" * BIG}, {"role": "user", "content": "U" * BIG}]
    if path == "openai_sdk":
        client = openai.OpenAI(api_key="x", http_client=httpx2.Client(transport=httpx2.MockTransport(handler)), max_retries=0)
        with pytest.raises(openai.APIError):
            for _ in client.chat.completions.create(model="m" * BIG, messages=huge_prompt, stream=True):
                pass
    else:
        with httpx.Client(transport=httpx.MockTransport(handler)) as client:
            with client.stream("POST", "https://api.openai.com/v1/chat/completions",
                               json={"model": "m", "messages": huge_prompt, "stream": True}) as response:
                for _ in response.iter_bytes():
                    pass
    assert len(telemetry.genai_spans()) == 1
    _check_bounded(telemetry)
    for key in CONTENT_KEYS:  # captured content: its own cap
        value = telemetry.genai_spans()[0].attributes.get(key)
        assert value is None or len(value) <= 2000 + len("…[truncated]")
    assert not [p for p in points(telemetry, "steer.internal.errors") if p.value]


@pytest.mark.parametrize("content", ["[" * 200_000, '{"a": "' + "x" * (9 * 1024 * 1024) + '"}'], ids=["deep", "huge"])
def test_hostile_json_output_is_bounded(content: str, instrumented: Any) -> None:
    """JSON-mode output that nests 200,000 deep or carries a 9 MB string: flagged, no exception,
    nothing unbounded on the span."""
    telemetry = instrumented()
    text = _json_mode_call(content)
    assert text == content  # the caller got all of it
    (span,) = telemetry.genai_spans()
    assert span.attributes["steer.json.error"] in ("json.depth_exceeded", "json.size_exceeded")
    assert span.attributes["steer.json.valid"] is False
    _check_bounded(telemetry)


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_json_bounds_are_configurable(how: str, instrumented: Any, monkeypatch: Any) -> None:
    """A valid document over the configured depth or size is flagged; under the defaults it is not."""
    deep, big = "[" * 9 + "]" * 9, '{"a": "' + "x" * 2000 + '"}'
    telemetry = instrumented()
    _json_mode_call(deep), _json_mode_call(big)
    assert [s.attributes.get("steer.json.error") for s in telemetry.genai_spans()] == [None, None]
    if how == "argument":
        instrumented(json_max_depth=8, json_max_bytes=1000)
    else:
        monkeypatch.setenv("STEER_JSON_MAX_DEPTH", "8")
        monkeypatch.setenv("STEER_JSON_MAX_BYTES", "1000")
        instrumented()
    telemetry.clear()
    _json_mode_call(deep), _json_mode_call(big)
    assert [s.attributes.get("steer.json.error") for s in telemetry.genai_spans()] == [
        "json.depth_exceeded", "json.size_exceeded"]


def _json_mode_call(content: str) -> str:
    """One streamed OpenAI chat call in JSON mode whose output is `content`; returns the text read."""
    pieces = [content[i:i + 65536] for i in range(0, len(content), 65536)]
    chunks = [{"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces]
    chunks.append({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks).encode() + b"data: [DONE]\n\n"

    def handler(request: Any) -> Any:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    client = openai.OpenAI(api_key="x", http_client=httpx2.Client(transport=httpx2.MockTransport(handler)), max_retries=0)
    return "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "json"}], stream=True, response_format={"type": "json_object"}))

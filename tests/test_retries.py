"""The SDKs' own retries, visible on the call's one span (issue 19 item 2).

The devserver's ``http_NNN[xK]_then_ok`` fault fails the first K requests of a call with HTTP NNN (with a
``retry-after-ms`` header the Stainless SDKs honour), then answers: the REAL openai, anthropic and
google-genai SDKs retry inside one call, over real sockets. steer keeps one span per call and records
``steer.attempts``, one ``steer.retry`` event per failed attempt (status, duration, backoff),
``steer.last_attempt.time_to_first_chunk``, and the ``steer.client.retries`` counter by error.type.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Dict, List, Tuple

import anthropic
import httpx
import httpx2
import openai
import pytest
import wrapt
from google import genai
from google.genai import types as genai_types

import steer
from steer.tools.devserver import DevServer

USER = [{"role": "user", "content": "hi"}]
FAST = {"x-steer-retry-after-ms": "1"}  # the Stainless SDKs wait this long instead of ~0.5 s


def _openai(srv: DevServer, is_async: bool, streaming: bool, headers: Dict[str, str]) -> Tuple[Any, Callable[[], Any]]:
    client = (openai.AsyncOpenAI if is_async else openai.OpenAI)(base_url=srv.openai_base_url, api_key="x", max_retries=3)
    return client, lambda: client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=streaming,
                                                          extra_headers=headers)


def _anthropic(srv: DevServer, is_async: bool, streaming: bool, headers: Dict[str, str]) -> Tuple[Any, Callable[[], Any]]:
    cls = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
    client = cls(base_url=srv.anthropic_base_url, api_key="x", max_retries=3)
    return client, lambda: client.messages.create(model="claude-test", max_tokens=50, messages=USER, stream=streaming,
                                                  extra_headers=headers)


def _gemini(srv: DevServer, is_async: bool, streaming: bool, headers: Dict[str, str]) -> Tuple[Any, Callable[[], Any]]:
    # google-genai retries only with HttpRetryOptions (tenacity); it ignores retry-after, so the waits are set here.
    retry = genai_types.HttpRetryOptions(attempts=4, initial_delay=0.001, max_delay=0.01)
    client = genai.Client(api_key="x", http_options=genai_types.HttpOptions(base_url=srv.gemini_base_url, retry_options=retry))
    models = client.aio.models if is_async else client.models
    method = models.generate_content_stream if streaming else models.generate_content
    config = genai_types.GenerateContentConfig(http_options=genai_types.HttpOptions(headers=headers))
    return client, lambda: method(model="gemini-2.0-flash", contents="hi", config=config)


# provider -> (client + call, a fault that fails then succeeds, its status, failures before success)
PROVIDERS = {
    "openai": (_openai, "http_500_then_ok", "500", 1),
    "anthropic": (_anthropic, "http_529_then_ok", "529", 1),
    "gemini": (_gemini, "http_429x2_then_ok", "429", 2),
}


def _call(make: Callable[..., Any], srv: DevServer, is_async: bool, streaming: bool, headers: Dict[str, str]) -> None:
    if not is_async:
        client, call = make(srv, False, streaming, headers)
        result = call()
        if streaming:
            for _ in result:
                pass
        return

    async def main() -> None:
        client, call = make(srv, True, streaming, headers)
        result = await call()
        if streaming:
            async for _ in result:
                pass

    asyncio.run(main())


@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "unary"])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_a_retried_call_is_one_span_that_tells_its_attempts(provider: str, is_async: bool, streaming: bool,
                                                          instrumented: Any) -> None:
    make, fault, status, failures = PROVIDERS[provider]
    telemetry = instrumented()
    with DevServer(chunk_delay=0, ttft=0.05) as srv:
        _call(make, srv, is_async, streaming, {"x-steer-fault": fault, **FAST})
        assert len(srv.requests) == failures + 1  # the SDK really retried, over the wire

    (span,) = telemetry.genai_spans()  # one span per logical call, not one per attempt
    attrs = span.attributes
    assert span.status.status_code.name == "UNSET"
    assert attrs["steer.attempts"] == failures + 1
    events = [e for e in span.events if e.name == "steer.retry"]
    assert [e.attributes["steer.retry.attempt"] for e in events] == list(range(1, failures + 1))
    for event in events:
        assert event.attributes["error.type"] == status
        assert event.attributes["http.response.status_code"] == int(status)
        assert 0 < event.attributes["steer.retry.attempt_duration"] < 30
        assert 0 <= event.attributes["steer.retry.backoff"] < 30
        assert span.start_time <= event.timestamp <= span.end_time
    if streaming:
        # TTFC counts from the user's request (failed attempts and backoff included); the last attempt's
        # own is beside it, and the difference is at least the failed attempts' time.
        ttfc, own = attrs["gen_ai.response.time_to_first_chunk"], attrs["steer.last_attempt.time_to_first_chunk"]
        spent = sum(e.attributes["steer.retry.attempt_duration"] + e.attributes["steer.retry.backoff"] for e in events)
        assert 0.05 <= own < ttfc
        assert ttfc - own >= spent * 0.99
    else:
        assert "steer.last_attempt.time_to_first_chunk" not in attrs
    points = telemetry.metrics()["steer.client.retries"]
    assert sum(p.value for p in points) == failures
    (point,) = points
    assert point.attributes["error.type"] == status
    assert point.attributes["gen_ai.provider.name"] == span.attributes["gen_ai.provider.name"]
    assert point.attributes["gen_ai.request.model"] == span.attributes["gen_ai.request.model"]
    assert set(point.attributes) <= {"gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model",
                                     "server.address", "server.port", "error.type"}  # bounded: no ids


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_a_call_without_retries_says_one_attempt(provider: str, instrumented: Any) -> None:
    make = PROVIDERS[provider][0]
    telemetry = instrumented()
    with DevServer(chunk_delay=0) as srv:
        _call(make, srv, False, True, {})
    (span,) = telemetry.genai_spans()
    assert span.attributes["steer.attempts"] == 1
    assert not [e for e in span.events if e.name == "steer.retry"]
    assert "steer.last_attempt.time_to_first_chunk" not in span.attributes
    assert "steer.client.retries" not in telemetry.metrics()


def test_retries_exhausted_the_last_failure_is_the_span_error(instrumented: Any) -> None:
    telemetry = instrumented()
    with DevServer(chunk_delay=0) as srv:
        client = openai.OpenAI(base_url=srv.openai_base_url, api_key="x", max_retries=2)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True,
                                           extra_headers={"x-steer-fault": "http_503", **FAST})
    (span,) = telemetry.genai_spans()
    assert span.attributes["steer.attempts"] == 3
    assert [e.attributes["error.type"] for e in span.events if e.name == "steer.retry"] == ["503", "503"]
    assert span.status.status_code.name == "ERROR"  # the third failure is the call's own end
    assert sum(p.value for p in telemetry.metrics()["steer.client.retries"]) == 2


def test_a_connection_failure_is_a_retry_by_exception_name(instrumented: Any) -> None:
    """No response at all (the port refuses): the attempt's error.type is the exception's class name."""
    telemetry = instrumented()
    with DevServer() as srv:
        url = srv.openai_base_url
    client = openai.OpenAI(base_url=url, api_key="x", max_retries=1)
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    (span,) = telemetry.genai_spans()
    (event,) = [e for e in span.events if e.name == "steer.retry"]
    assert event.attributes["error.type"] == "ConnectError"
    assert "http.response.status_code" not in event.attributes


def test_only_sdk_providers_still_see_attempts_and_no_raw_spans(instrumented: Any) -> None:
    """``providers=["openai"]``: httpx's send is patched for the attempts, but raw httpx calls stay unobserved."""
    telemetry = instrumented(providers=["openai"])
    with DevServer(chunk_delay=0) as srv:
        _call(_openai, srv, False, False, {"x-steer-fault": "http_500_then_ok", **FAST})
        httpx.post(srv.openai_base_url + "/chat/completions", json={"model": "m", "messages": USER})
    (span,) = telemetry.genai_spans()
    assert span.attributes["steer.attempts"] == 2


def test_the_attempt_seam_is_where_the_sdks_send() -> None:
    """Fails loudly if an SDK upgrade stops sending through httpx/httpx2 ``Client.send`` (the seam that
    sees each attempt): every SDK's HTTP client is an httpx or httpx2 client whose ``send`` steer patches."""
    steer.instrument(providers=["openai", "anthropic", "google_genai"])
    try:
        for module in (httpx, httpx2):
            for cls in (module.Client, module.AsyncClient):
                assert isinstance(cls.__dict__["send"], wrapt.FunctionWrapper), f"{module.__name__}.{cls.__name__}.send"
        clients = [openai.OpenAI(api_key="x")._client, openai.AsyncOpenAI(api_key="x")._client,
                   anthropic.Anthropic(api_key="x")._client, anthropic.AsyncAnthropic(api_key="x")._client]
        gemini = genai.Client(api_key="x")._api_client
        clients += [gemini._httpx_client, gemini._async_httpx_client]
        for http in clients:
            assert isinstance(http, (httpx.Client, httpx.AsyncClient, httpx2.Client, httpx2.AsyncClient)), type(http)
    finally:
        steer.uninstrument()

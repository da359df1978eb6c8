"""Raw httpx / httpx-sse callers get the same span, decoded from a copy of the bytes they read,
and read exactly the bytes they would read without steer."""

from __future__ import annotations

import gc
import importlib
from typing import Any, Dict, List
from urllib.parse import urlsplit

import httpx
import httpx_sse
import pytest

import steer
from recordings import all_recordings, ids
from steer.tools.replay import replay
from steer.tools.replay.transport import BASE_URLS, RecordingTransport

RAW = [r for r in all_recordings() if r["request"]["body"] is not None or r["api"].startswith("google")]
STREAMS = [r for r in RAW if r["response"]["status"] == 200]


def url_of(recording: Dict[str, Any]) -> str:
    host = urlsplit(BASE_URLS.get(recording["provider"], BASE_URLS["openai"]))
    return f"{host.scheme}://{host.netloc}{recording['request']['path']}"


def body_of(recording: Dict[str, Any]) -> Dict[str, Any]:
    return dict(recording["request"]["body"] or {})


_SDK_VIEWS: Dict[str, Dict[str, Any]] = {}


def sdk_view(recording: Dict[str, Any]) -> Dict[str, Any]:
    """What steer reports for the same recording through the provider's SDK (steer replay; once per
    recording, shared by the four readers)."""
    if recording["_name"] not in _SDK_VIEWS:
        _SDK_VIEWS[recording["_name"]] = replay(recording)
    return _SDK_VIEWS[recording["_name"]]


@pytest.mark.parametrize("recording", STREAMS, ids=ids(STREAMS))
@pytest.mark.parametrize("reader", ["iter_lines", "iter_bytes", "aiter_lines", "httpx_sse"])
async def test_raw_stream_matches_sdk_path(recording: Dict[str, Any], reader: str, instrumented: Any) -> None:
    expected = sdk_view(recording)
    completed: List[Any] = []
    telemetry = instrumented(on_complete=completed.append, on_error=completed.append)
    transport = RecordingTransport(recording)
    read: List[Any] = []
    if reader == "aiter_lines":
        async with transport.async_client() as client:
            async with client.stream("POST", url_of(recording), json=body_of(recording)) as response:
                async for line in response.aiter_lines():
                    read.append(line)
    elif reader == "httpx_sse":
        if "event-stream" not in (recording["response"].get("content_type") or "text/event-stream"):
            pytest.skip("not an SSE body")
        with transport.client() as client:
            with httpx_sse.connect_sse(client, "POST", url_of(recording), json=body_of(recording)) as source:
                read = [sse.data for sse in source.iter_sse()]
    else:
        with transport.client() as client:
            with client.stream("POST", url_of(recording), json=body_of(recording)) as response:
                read = list(getattr(response, reader)())
    assert read, "the caller read its bytes"
    if reader == "iter_bytes":  # exactly the bytes it would read without steer
        assert b"".join(read) == recording["response"]["body"].encode()
    (span,) = telemetry.genai_spans()
    attrs = dict(span.attributes)
    want = expected["span"]["attributes"]
    for key in ("gen_ai.provider.name", "gen_ai.operation.name", "gen_ai.request.model", "gen_ai.response.model",
                "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "steer.usage.source"):
        assert attrs.get(key) == want.get(key), key
    # the span's (an error stream: "error" where a finish reason never arrived), as the SDK path's span says
    assert list(attrs.get("gen_ai.response.finish_reasons", [])) == list(want.get("gen_ai.response.finish_reasons", []))
    # One chunk-counting rule: what the SDK hands the caller (no pings, keep-alives, [DONE] or error
    # events), whichever reader, sync or async (issue 19, item 3).
    assert attrs["steer.stream.chunks"] == expected["chunks"]
    (event,) = completed
    if expected.get("error"):
        assert type(event).__name__ == "StreamErrorEvent"
        return
    assert event.text == expected["text"]
    assert [c.as_dict() for c in event.tool_calls] == expected["tool_calls"]
    assert telemetry.active_streams() == 0


def test_non_streaming_post_and_error_status(instrumented: Any) -> None:
    telemetry = instrumented()
    ok = {"id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
          "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
          "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
    err = {"error": {"type": "invalid_request_error", "message": "bad model", "code": "model_not_found"}}

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=ok) if b"gpt-4o" in request.content else httpx.Response(404, json=err)

    with httpx.Client(transport=httpx.MockTransport(handle)) as client:
        assert client.post("https://api.openai.com/v1/chat/completions", json={"model": "gpt-4o", "messages": []}).json() == ok
        assert client.post("https://api.openai.com/v1/chat/completions", json={"model": "nope", "messages": []}).status_code == 404
        client.get("https://api.openai.com/v1/models")  # not an LLM call: no span
    first, second = telemetry.genai_spans()
    assert first.attributes["gen_ai.usage.output_tokens"] == 1 and first.attributes["gen_ai.request.stream"] is False
    assert second.status.status_code.name == "ERROR" and second.attributes["error.type"] == "invalid_request_error"


def test_sdk_calls_do_not_double_count(instrumented: Any) -> None:
    """The SDK sends through httpx too: inside an instrumented SDK call the raw layer stays silent."""
    import openai

    recording = next(r for r in STREAMS if r["api"] == "openai.chat.completions")
    telemetry = instrumented()
    client = openai.OpenAI(api_key="x", http_client=RecordingTransport(recording).client())
    for _ in client.chat.completions.create(**{**body_of(recording), "stream": True}):
        pass
    assert len(telemetry.genai_spans()) == 1


def test_uninstrument_removes_the_httpx_hook() -> None:
    original = httpx.Client.__dict__["send"]
    steer.instrument(providers=["httpx"])
    assert httpx.Client.__dict__["send"] is not original
    steer.uninstrument()
    assert httpx.Client.__dict__["send"] is original


def test_a_routes_decoder_is_imported_on_its_first_use() -> None:
    """instrument(providers=["openai"]) patches httpx (it sees the SDK's attempts) but loads no other
    provider's decoder; with raw httpx instrumented, a route's decoder arrives with its first request."""
    import subprocess
    import sys

    code = """
import sys, httpx, steer
from steer.tools.devserver import DevServer
others = lambda: sorted(m for m in ("steer.providers.anthropic", "steer.providers.google_genai") if m in sys.modules)
steer.instrument(providers=["openai"])
print(others(), "steer.providers.openai" in sys.modules, "steer.wrapping.httpx_hooks" in sys.modules)
steer.uninstrument()
steer.instrument(providers=["openai", "httpx"])
print(others())
with DevServer(chunk_delay=0) as srv:
    httpx.post(srv.base_url + "/v1/messages", json={"model": "claude-test", "max_tokens": 5,
                                                   "messages": [{"role": "user", "content": "hi"}]})
print(others())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[] True True", "[]", "['steer.providers.anthropic']"]


@pytest.mark.parametrize("hx", ["httpx", "httpx2"])
@pytest.mark.parametrize("is_async", [False, True])
@pytest.mark.parametrize("stop_at, end", [("message_stop", "complete"), ("content_block_delta", "closed_early")])
async def test_raw_reader_that_stops_inside_with(stop_at: str, end: str, is_async: bool, hx: str, instrumented: Any) -> None:
    """A reader that stops at the terminal event (as LiteLLM reads Anthropic) and closes read the whole
    answer: ``complete``; a ``break`` before it, inside ``with client.stream()``: ``closed_early``.
    Same chunk count sync and async, and as the SDK path counts (``ping`` is no chunk)."""
    from steer.tools.devserver import DevServer

    telemetry = instrumented()
    body = {"model": "claude-test", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    module = importlib.import_module(hx)  # httpx2 closes the response itself when its iterator is dropped
    with DevServer(chunk_delay=0) as srv:
        url = srv.base_url + "/v1/messages"
        if is_async:
            async with module.AsyncClient() as client:
                async with client.stream("POST", url, json=body) as response:
                    async for line in response.aiter_lines():
                        if line.startswith("data:") and stop_at in line:
                            break
        else:
            with module.Client() as client:
                with client.stream("POST", url, json=body) as response:
                    for line in response.iter_lines():
                        if line.startswith("data:") and stop_at in line:
                            break
        import anthropic

        sdk = anthropic.Anthropic(base_url=srv.anthropic_base_url, api_key="x", max_retries=0)
        for _ in sdk.messages.create(**body):
            pass
    raw, through_sdk = telemetry.genai_spans()
    assert raw.attributes["steer.stream.end"] == end
    if end == "complete":
        assert raw.attributes["steer.stream.chunks"] == through_sdk.attributes["steer.stream.chunks"]


@pytest.mark.parametrize("hx", ["httpx", "httpx2"])
@pytest.mark.parametrize("then, end", [("close", "closed_early"), ("drop", "abandoned")])
def test_raw_reader_that_breaks_outside_with(then: str, end: str, hx: str, instrumented: Any) -> None:
    """``break`` out of ``response.iter_lines()`` with no ``with``: httpx2 closes the response itself
    when the iterator is dropped (its ``iter_raw`` closes in a ``finally``), httpx does not. Either way
    the caller decides: ``response.close()`` afterwards is ``closed_early``; letting the response go
    unclosed is ``abandoned``."""
    from steer.tools.devserver import DevServer

    telemetry = instrumented()
    body = {"model": "claude-test", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    module = importlib.import_module(hx)
    with DevServer(chunk_delay=0, chunks=40) as srv, module.Client() as client:
        response = client.send(client.build_request("POST", srv.base_url + "/v1/messages", json=body), stream=True)
        for line in response.iter_lines():
            if "content_block_delta" in line:
                break
        if then == "close":
            response.close()
        del response
        gc.collect()
        (span,) = telemetry.genai_spans()
    assert span.attributes["steer.stream.end"] == end
    assert span.status.status_code.name == "UNSET" and "error.type" not in span.attributes

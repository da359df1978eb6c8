"""OpenAI Responses API through the real openai SDK, over the recorded streams (openai/ and deepseek/).

Every expectation comes from the SDK itself: an uninstrumented ``responses.stream()`` run over the
same bytes gives ``get_final_response()``, and steer's assembled text, reasoning, tool calls, finish
reasons and usage must equal it. Streams that exercise error paths or lost deltas are derived from a
real recording by removing or appending events (noted where it happens); nothing imitates the SDK.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import json
from typing import Any, Callable, Dict, List, Optional

import httpx
import openai
import pytest
from openai.resources.responses import Responses

import steer
from steer import instrumentation
from recordings import Served, all_recordings, body_pieces, ids, load, request_kwargs

RECORDINGS = all_recordings("openai.responses")
BASE_URLS = {"openai": "https://api.openai.com/v1", "deepseek": "https://api.deepseek.com/v1"}
PROVIDERS = {"openai": "openai", "deepseek": "deepseek"}
LONG = "openai/responses_longer_text_gpt41_nano.json"
BASIC = "openai/responses_basic_gpt4o_mini.json"
TOOL = "openai/responses_function_call_gpt55.json"

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # the SDK's own pydantic serializer noise (web search)


# -- helpers ------------------------------------------------------------------------------------------
def client(rec: Dict[str, Any], served: Optional[Served] = None, is_async: bool = False, httpx_mod: Any = None) -> Any:
    served = served or Served(rec, httpx_mod)
    base_url = BASE_URLS.get(rec.get("provider"), BASE_URLS["openai"])
    if is_async:
        return openai.AsyncOpenAI(api_key="test", base_url=base_url, http_client=served.async_client())
    return openai.OpenAI(api_key="test", base_url=base_url, http_client=served.client())


def kwargs_for(rec: Dict[str, Any]) -> Dict[str, Any]:
    kw = request_kwargs(rec, Responses.create)
    kw.pop("stream", None)
    return kw


def sdk_final(rec: Dict[str, Any]) -> Any:
    """The SDK's own accumulated response over the same bytes, without steer."""
    assert not instrumentation.patched_targets()
    with client(rec).responses.stream(**kwargs_for(rec)) as stream:
        return stream.get_final_response()


def expected(final: Any) -> Dict[str, Any]:
    reasoning, tools = [], []
    for item in final.output:
        if item.type == "reasoning":
            reasoning += [s.text for s in item.summary or ()] + [c.text for c in item.content or ()]
        elif item.type == "function_call":
            tools.append({"id": item.call_id, "name": item.name, "arguments": json.loads(item.arguments)})
    assert final.status == "completed"
    return {"text": final.output_text, "reasoning": "".join(reasoning), "tool_calls": tools,
            "finish_reasons": ["tool_calls" if tools else "stop"]}


def sse_events(rec: Dict[str, Any]) -> List[Dict[str, Any]]:
    out = []
    for block in rec["response"]["body"].split("\n\n"):
        data = [line[5:].strip() for line in block.splitlines() if line.startswith("data:")]
        if data and data[0] != "[DONE]":
            out.append(json.loads("\n".join(data)))
    return out


def derive(rec: Dict[str, Any], events: List[Dict[str, Any]], note: str) -> Dict[str, Any]:
    """A recording with the same request and a re-framed body of ``events`` (derived from a real one)."""
    new = copy.deepcopy(rec)
    new["response"]["body"] = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
    new["_name"] = f"{rec['_name']} ({note})"
    return new


def expected_duplicates(rec: Dict[str, Any]) -> int:
    """Whole copies the stream repeats after the deltas: each non-empty snapshot counts once."""
    def item_copies(item: Dict[str, Any]) -> int:
        if item["type"] == "message":
            return sum(1 for p in item.get("content") or () if p.get("text") or p.get("refusal"))
        if item["type"] == "reasoning":
            return sum(1 for p in (item.get("summary") or []) + (item.get("content") or []) if p.get("text"))
        if item["type"] == "function_call":
            return 1 if item.get("arguments") else 0
        return 0

    n = 0
    for ev in sse_events(rec):
        kind = ev["type"]
        if kind in ("response.output_text.done", "response.reasoning_summary_text.done", "response.reasoning_text.done"):
            n += bool(ev.get("text"))
        elif kind in ("response.content_part.done", "response.reasoning_summary_part.done"):
            n += bool(ev["part"].get("text") or ev["part"].get("refusal"))
        elif kind == "response.function_call_arguments.done":
            n += bool(ev.get("arguments"))
        elif kind == "response.output_item.done":
            n += item_copies(ev["item"])
        elif kind == "response.completed":
            n += sum(item_copies(i) for i in ev["response"].get("output") or ())
    return n


class Events:
    """steer's event callbacks, collected."""

    def __init__(self) -> None:
        self.deltas: List[Any] = []
        self.complete: List[Any] = []
        self.errors: List[Any] = []

    def options(self) -> Dict[str, Callable[[Any], None]]:
        return {"on_delta": self.deltas.append, "on_complete": self.complete.append, "on_error": self.errors.append}

    def joined(self, kind: str) -> str:
        return "".join(d.delta for d in self.deltas if d.kind == kind)


def only_span(tel: Any) -> Any:
    spans = tel.spans()
    assert len(spans) == 1, [s.name for s in spans]
    assert "gen_ai.operation.name" in spans[0].attributes
    return spans[0]


async def settle(tel: Any, predicate: Callable[[], bool]) -> None:
    """Let the loop finalise abandoned async generators (no wall-clock waits)."""
    for _ in range(50):
        gc.collect()
        if predicate():
            return
        await asyncio.sleep(0)


# -- every recording, every way of streaming ----------------------------------------------------------
async def run(rec: Dict[str, Any], how: str, is_async: bool, httpx_mod: Any = None) -> int:
    """Drains the stream the way ``how`` says; returns the SDK events the user saw."""
    c = client(rec, is_async=is_async, httpx_mod=httpx_mod)
    kw, seen = kwargs_for(rec), 0
    if how == "create" and not is_async:
        for _ in c.responses.create(stream=True, **kw):
            seen += 1
    elif how == "create":
        async for _ in await c.responses.create(stream=True, **kw):
            seen += 1
    elif not is_async:
        with c.responses.stream(**kw) as stream:
            for _ in stream:
                seen += 1
            stream.get_final_response()
    else:
        async with c.responses.stream(**kw) as stream:
            async for _ in stream:
                seen += 1
            await stream.get_final_response()
    return seen


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("how", ["create", "stream"])
@pytest.mark.parametrize("rec", RECORDINGS, ids=ids(RECORDINGS))
async def test_recording_matches_sdk_final_response(rec, how, is_async, instrumented):
    final = sdk_final(rec)
    want = expected(final)
    events = Events()
    tel = instrumented(**events.options())
    await run(rec, how, is_async)

    span = only_span(tel)
    a = span.attributes
    assert span.name == f"chat {rec['request']['body']['model']}"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["openai.api.type"] == "responses"
    assert a["gen_ai.provider.name"] == PROVIDERS[rec["provider"]]
    assert a["gen_ai.request.stream"] is True
    assert a["steer.stream.end"] == "complete"
    assert a["steer.stream.chunks"] == len(sse_events(rec))  # each wire event once, even under the helper
    assert a["gen_ai.response.id"] == final.id
    assert a["gen_ai.response.model"] == final.model
    assert list(a["gen_ai.response.finish_reasons"]) == want["finish_reasons"]
    usage = final.usage
    assert a["steer.usage.source"] == "reported"
    assert a["gen_ai.usage.input_tokens"] == usage.input_tokens
    assert a["gen_ai.usage.output_tokens"] == usage.output_tokens
    assert a["gen_ai.usage.cache_read.input_tokens"] == usage.input_tokens_details.cached_tokens
    assert a["gen_ai.usage.reasoning.output_tokens"] == usage.output_tokens_details.reasoning_tokens
    assert a["steer.json.duplicates_dropped"] == expected_duplicates(rec) > 0
    assert span.status.status_code.name == "UNSET"

    (done,) = events.complete
    assert not events.errors
    assert done.text == want["text"]
    assert done.reasoning == want["reasoning"]
    assert [c.as_dict() for c in done.tool_calls] == want["tool_calls"]
    assert done.finish_reasons == want["finish_reasons"]
    assert done.final_usage.input_tokens == usage.input_tokens
    # Duplicates never become copies in the events: the deltas add up to the output exactly once.
    assert events.joined("text") == want["text"]
    assert events.joined("reasoning") == want["reasoning"]
    assert events.joined("tool_call") == "".join(c.raw_arguments for c in done.tool_calls)
    assert tel.active_streams() == 0


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_httpx2_transport(is_async, instrumented):
    httpx2 = pytest.importorskip("httpx2")
    rec = load(TOOL)
    final = sdk_final(rec)
    tel = instrumented()
    await run(rec, "stream", is_async, httpx_mod=httpx2)
    a = only_span(tel).attributes
    assert a["steer.stream.end"] == "complete"
    assert a["gen_ai.usage.output_tokens"] == final.usage.output_tokens
    assert list(a["gen_ai.response.finish_reasons"]) == ["tool_calls"]


async def test_recording_without_sequence_numbers_stripped(instrumented):
    """A modern recording with every ``sequence_number`` removed (derived) decodes the same."""
    rec = load(LONG)
    stripped = derive(rec, [{k: v for k, v in e.items() if k != "sequence_number"} for e in sse_events(rec)], "no seq")
    final = sdk_final(stripped)
    events = Events()
    tel = instrumented(**events.options())
    await run(stripped, "stream", False)
    assert events.complete[0].text == final.output_text
    assert only_span(tel).attributes["steer.stream.end"] == "complete"


# -- non-streaming create, parse, with_raw_response ---------------------------------------------------
def json_recording(rec: Dict[str, Any]) -> Dict[str, Any]:
    """The ``response.completed`` payload served as the non-streaming body (same Response schema)."""
    completed = next(e for e in sse_events(rec) if e["type"] == "response.completed")["response"]
    new = copy.deepcopy(rec)
    new["request"]["body"]["stream"] = False
    new["response"] = {"status": 200, "content_type": "application/json", "body": json.dumps(completed)}
    return new


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("name", [BASIC, TOOL, "openai/responses_o4_mini_reasoning_summary.json",
                                  "deepseek/deepseek_responses_function_call.json"])
async def test_non_streaming_create(name, is_async, instrumented):
    rec = json_recording(load(name))
    events = Events()
    tel = instrumented(**events.options())
    c = client(rec, is_async=is_async)
    resp = c.responses.create(**kwargs_for(rec))
    if is_async:
        resp = await resp
    want = expected(resp)
    span = only_span(tel)
    a = span.attributes
    assert a["gen_ai.request.stream"] is False
    assert "steer.stream.end" not in a
    assert list(a["gen_ai.response.finish_reasons"]) == want["finish_reasons"]
    assert a["gen_ai.usage.output_tokens"] == resp.usage.output_tokens
    assert "steer.json.duplicates_dropped" not in a  # one copy of everything: nothing to drop
    done = events.complete[0]
    assert (done.text, done.reasoning) == (want["text"], want["reasoning"])
    assert [c.as_dict() for c in done.tool_calls] == want["tool_calls"]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_parse_is_one_span(is_async, instrumented):
    rec = json_recording(load(BASIC))
    tel = instrumented()
    c = client(rec, is_async=is_async)
    parsed = c.responses.parse(**kwargs_for(rec))
    if is_async:
        parsed = await parsed
    a = only_span(tel).attributes
    assert parsed.output_text == "This is a test."
    assert a["gen_ai.request.stream"] is False and a["gen_ai.usage.input_tokens"] == 22


def test_with_raw_response_stream(instrumented):
    rec = load(BASIC)
    tel = instrumented()
    raw = client(rec).responses.with_raw_response.create(stream=True, **kwargs_for(rec))
    assert raw.headers["x-request-id"]  # the raw HTTP response is still there
    assert len(list(raw.parse())) == len(sse_events(rec))
    a = only_span(tel).attributes
    assert a["steer.stream.end"] == "complete" and a["steer.stream.chunks"] == len(sse_events(rec))


def test_content_capture(instrumented):
    rec = load(TOOL)
    tel = instrumented(capture_content=True)
    list(client(rec).responses.create(stream=True, **kwargs_for(rec)))
    a = only_span(tel).attributes
    assert json.loads(a["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "What is 1231 * 2331? Use the multiply tool."}]}]
    (out,) = json.loads(a["gen_ai.output.messages"])
    assert out["finish_reason"] == "tool_calls"
    assert out["parts"][0]["name"] == "multiply" and out["parts"][0]["arguments"] == {"a": 1231, "b": 2331}


# -- lifecycle: every path ends the one span exactly once ---------------------------------------------
class Failing(Served):
    """Serves the first ``after`` SSE events, then the connection drops (a transport error)."""

    def __init__(self, rec: Dict[str, Any], after: int) -> None:
        super().__init__(rec)
        self.pieces = body_pieces(rec)[:after]

    def _handle(self, request: Any) -> Any:
        pieces = self.pieces

        class Body(httpx.SyncByteStream):
            def __iter__(self) -> Any:
                yield from pieces
                raise httpx.ReadError("connection reset by peer", request=request)

        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=Body(), request=request)

    async def _ahandle(self, request: Any) -> Any:
        pieces = self.pieces

        class Body(httpx.AsyncByteStream):
            async def __aiter__(self) -> Any:
                for p in pieces:
                    yield p
                raise httpx.ReadError("connection reset by peer", request=request)

        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=Body(), request=request)


def ended(tel: Any, end: str, chunks: Optional[int] = None) -> Any:
    a = only_span(tel).attributes
    assert a["steer.stream.end"] == end
    if chunks is not None:
        assert a["steer.stream.chunks"] == chunks
    assert tel.active_streams() == 0
    return a


def test_break_inside_stream_helper(instrumented):
    rec = load(LONG)
    tel = instrumented()
    with client(rec).responses.stream(**kwargs_for(rec)) as stream:
        for n, _ in enumerate(stream):
            if n == 4:
                break
        assert tel.spans() == []  # a break alone does not end the call: the with-exit below does
    ended(tel, "closed_early", 5)


async def test_break_inside_stream_helper_async(instrumented):
    rec = load(LONG)
    tel = instrumented()
    async with client(rec, is_async=True).responses.stream(**kwargs_for(rec)) as stream:
        n = 0
        async for _ in stream:
            n += 1
            if n == 5:
                break
    ended(tel, "closed_early", 5)


@pytest.mark.parametrize("how", ["create", "stream"])
def test_break_inside_with_sync(how, instrumented):
    rec = load(LONG)
    tel = instrumented()
    c = client(rec)
    ctx = c.responses.create(stream=True, **kwargs_for(rec)) if how == "create" else c.responses.stream(**kwargs_for(rec))
    with ctx as stream:
        for n, _ in enumerate(stream):
            if n == 2:
                break
    ended(tel, "closed_early", 3)


async def test_break_inside_with_create_async(instrumented):
    rec = load(LONG)
    tel = instrumented()
    async with await client(rec, is_async=True).responses.create(stream=True, **kwargs_for(rec)) as stream:
        async for event in stream:
            if event.type == "response.output_text.delta":
                break
    ended(tel, "closed_early", 5)


def test_explicit_close(instrumented):
    rec = load(LONG)
    tel = instrumented()
    c = client(rec)
    stream = c.responses.create(stream=True, **kwargs_for(rec))
    next(stream)
    stream.close()
    ended(tel, "closed_early", 1)
    tel.clear()
    manager = c.responses.stream(**kwargs_for(rec))
    helper = manager.__enter__()
    next(helper)
    helper.close()
    ended(tel, "closed_early", 1)
    manager.__exit__(None, None, None)  # a second close changes nothing
    ended(tel, "closed_early", 1)


async def test_explicit_close_async(instrumented):
    rec = load(LONG)
    tel = instrumented()
    c = client(rec, is_async=True)
    stream = await c.responses.create(stream=True, **kwargs_for(rec))
    await stream.__anext__()
    await stream.close()
    ended(tel, "closed_early", 1)
    tel.clear()
    manager = c.responses.stream(**kwargs_for(rec))
    helper = await manager.__aenter__()
    await helper.__anext__()
    await helper.close()
    await manager.__aexit__(None, None, None)
    ended(tel, "closed_early", 1)


@pytest.mark.parametrize("how", ["create", "stream"])
def test_exception_mid_stream(how, instrumented):
    rec = load(LONG)
    events = Events()
    tel = instrumented(**events.options())
    c = client(rec, served=Failing(rec, after=6))
    seen = 0
    with pytest.raises(openai.APIConnectionError) as caught:
        if how == "create":
            for _ in c.responses.create(stream=True, **kwargs_for(rec)):
                seen += 1
        else:
            with c.responses.stream(**kwargs_for(rec)) as stream:
                for _ in stream:
                    seen += 1
    a = ended(tel, "error", 6)
    assert a["error.type"] == "APIConnectionError"
    assert events.errors[0].error is caught.value  # the SDK's exception, untouched
    assert events.errors[0].is_retryable
    assert only_span(tel).status.status_code.name == "ERROR"


@pytest.mark.parametrize("how", ["create", "stream"])
async def test_exception_mid_stream_async(how, instrumented):
    rec = load(LONG)
    events = Events()
    tel = instrumented(**events.options())
    c = client(rec, served=Failing(rec, after=6), is_async=True)
    with pytest.raises(openai.APIConnectionError) as caught:
        if how == "create":
            async for _ in await c.responses.create(stream=True, **kwargs_for(rec)):
                pass
        else:
            async with c.responses.stream(**kwargs_for(rec)) as stream:
                async for _ in stream:
                    pass
    ended(tel, "error", 6)
    assert events.errors[0].error is caught.value


@pytest.mark.parametrize("how", ["create", "stream"])
def test_exception_in_loop_body(how, instrumented):
    rec = load(LONG)
    tel = instrumented()
    c = client(rec)
    boom = ValueError("user code failed")
    ctx = c.responses.create(stream=True, **kwargs_for(rec)) if how == "create" else c.responses.stream(**kwargs_for(rec))
    with pytest.raises(ValueError) as caught:
        with ctx as stream:
            for _ in stream:
                raise boom
    assert caught.value is boom
    a = ended(tel, "closed_early", 1)
    assert "error.type" not in a  # the user's exception is not the call's failure


@pytest.mark.parametrize("how", ["create", "stream"])
async def test_exception_in_loop_body_async(how, instrumented):
    rec = load(LONG)
    tel = instrumented()
    c = client(rec, is_async=True)
    boom = ValueError("user code failed")
    ctx = await c.responses.create(stream=True, **kwargs_for(rec)) if how == "create" else c.responses.stream(**kwargs_for(rec))
    with pytest.raises(ValueError) as caught:
        async with ctx as stream:
            async for _ in stream:
                raise boom
    assert caught.value is boom
    ended(tel, "closed_early", 1)


@pytest.mark.parametrize("how", ["create", "stream"])
def test_abandoned_is_collected(how, instrumented):
    rec = load(LONG)
    tel = instrumented()
    c = client(rec)
    if how == "create":
        stream = c.responses.create(stream=True, **kwargs_for(rec))
        next(stream)
    else:
        manager = c.responses.stream(**kwargs_for(rec))
        stream = manager.__enter__()
        next(stream)
        del manager
    assert tel.spans() == []
    del stream
    gc.collect()
    ended(tel, "abandoned", 1)


@pytest.mark.parametrize("how", ["create", "stream"])
async def test_abandoned_is_collected_async(how, instrumented):
    rec = load(LONG)
    tel = instrumented()
    c = client(rec, is_async=True)
    if how == "create":
        stream = await c.responses.create(stream=True, **kwargs_for(rec))
        await stream.__anext__()
    else:
        manager = c.responses.stream(**kwargs_for(rec))
        stream = await manager.__aenter__()
        await stream.__anext__()
        del manager
    del stream
    await settle(tel, lambda: bool(tel.spans()))
    ended(tel, "abandoned", 1)


def test_never_iterated(instrumented):
    rec = load(LONG)
    tel = instrumented()
    c = client(rec)
    with c.responses.stream(**kwargs_for(rec)):
        pass
    ended(tel, "closed_early", 0)
    tel.clear()
    c.responses.create(stream=True, **kwargs_for(rec)).close()
    ended(tel, "closed_early", 0)
    tel.clear()
    c.responses.create(stream=True, **kwargs_for(rec))  # dropped on the floor
    gc.collect()
    ended(tel, "abandoned", 0)


async def test_never_iterated_async(instrumented):
    rec = load(LONG)
    tel = instrumented()
    c = client(rec, is_async=True)
    async with c.responses.stream(**kwargs_for(rec)):
        pass
    ended(tel, "closed_early", 0)
    tel.clear()
    await (await c.responses.create(stream=True, **kwargs_for(rec))).close()
    ended(tel, "closed_early", 0)
    tel.clear()
    await c.responses.create(stream=True, **kwargs_for(rec))
    await settle(tel, lambda: bool(tel.spans()))
    ended(tel, "abandoned", 0)


def test_uninstrument_restores_the_helper(instrumented):
    from openai.lib.streaming.responses._responses import AsyncResponseStream, ResponseStream

    originals = (Responses.__dict__["create"], ResponseStream.__dict__["close"], AsyncResponseStream.__dict__["close"])
    instrumented()
    assert "openai.lib.streaming.responses._responses.ResponseStream.close" in instrumentation.patched_targets()
    assert Responses.__dict__["create"] is not originals[0]
    steer.uninstrument()
    assert (Responses.__dict__["create"], ResponseStream.__dict__["close"], AsyncResponseStream.__dict__["close"]) == originals


# -- failures and finish reasons inside a 200 stream (derived from a real recording) ------------------
def cut_after_deltas(rec: Dict[str, Any], deltas: int) -> List[Dict[str, Any]]:
    """The recording's events up to and including its ``deltas``-th text delta."""
    out, seen = [], 0
    for ev in sse_events(rec):
        out.append(ev)
        if ev["type"] == "response.output_text.delta":
            seen += 1
            if seen == deltas:
                return out
    raise AssertionError("recording too short")


def terminal(rec: Dict[str, Any], kind: str, **fields: Any) -> Dict[str, Any]:
    """The recording's own final Response, re-labelled as ``kind`` with ``fields`` changed."""
    completed = next(e for e in sse_events(rec) if e["type"] == "response.completed")
    response = {**copy.deepcopy(completed["response"]), "output": [], **fields}
    return {"type": kind, "response": response, "sequence_number": 999}


@pytest.mark.parametrize("reason, finish", [("max_output_tokens", "length"), ("content_filter", "content_filter")])
@pytest.mark.parametrize("how", ["create", "stream"])
async def test_incomplete_is_a_finish_reason(reason, finish, how, instrumented):
    rec = load(LONG)
    events = cut_after_deltas(rec, 7) + [terminal(rec, "response.incomplete", status="incomplete",
                                                  incomplete_details={"reason": reason})]
    derived = derive(rec, events, f"incomplete:{reason}")
    partial = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    cb = Events()
    tel = instrumented(**cb.options())
    c = client(derived)
    if how == "create":
        list(c.responses.create(stream=True, **kwargs_for(derived)))
    else:
        with c.responses.stream(**kwargs_for(derived)) as stream:
            list(stream)  # no response.completed: get_final_response() would raise (the SDK's rule)
    a = ended(tel, "complete", len(events))
    assert list(a["gen_ai.response.finish_reasons"]) == [finish]
    assert a["gen_ai.usage.output_tokens"] == 79 and "error.type" not in a
    assert cb.complete[0].text == partial


@pytest.mark.parametrize("how", ["create", "stream"])
async def test_response_failed_is_an_error(how, instrumented):
    rec = load(LONG)
    events = cut_after_deltas(rec, 3) + [terminal(rec, "response.failed", status="failed", usage=None,
                                                  error={"code": "server_error", "message": "The server had an error"})]
    derived = derive(rec, events, "failed")
    cb = Events()
    tel = instrumented(**cb.options())
    c = client(derived, is_async=True)
    if how == "create":
        async for _ in await c.responses.create(stream=True, **kwargs_for(derived)):
            pass
    else:
        async with c.responses.stream(**kwargs_for(derived)) as stream:
            async for _ in stream:
                pass
    span = only_span(tel)
    a = ended(tel, "error", len(events))
    assert a["error.type"] == "server_error"
    assert a["gen_ai.response.finish_reasons"] == ("error",)  # expected, never arrived (semconv)
    assert span.status.status_code.name == "ERROR" and span.status.description == "The server had an error"
    assert cb.errors[0].error_type == "server_error" and cb.errors[0].is_retryable and not cb.complete


def test_flat_error_event_is_recorded(instrumented):
    """``event: error`` with flat code/message: the SDK yields it (does not raise); steer records it."""
    rec = load(BASIC)
    err = {"type": "error", "code": "rate_limit_exceeded", "message": "Slow down", "param": None, "sequence_number": 5}
    derived = derive(rec, cut_after_deltas(rec, 1) + [err], "error event")
    cb = Events()
    tel = instrumented(**cb.options())
    seen = [e.type for e in client(derived).responses.create(stream=True, **kwargs_for(derived))]
    assert seen[-1] == "error"
    a = ended(tel, "error")
    assert a["error.type"] == "rate_limit_exceeded"
    assert cb.errors[0].message == "Slow down" and cb.errors[0].is_retryable


def test_nested_error_event_raised_by_sdk(instrumented):
    """``{"error": {...}}`` in a stream event makes the SDK raise APIError: recorded, passed through."""
    rec = load(BASIC)
    err = {"type": "error", "error": {"type": "invalid_request_error", "code": "context_length_exceeded",
                                      "message": "Too long"}, "sequence_number": 5}
    derived = derive(rec, cut_after_deltas(rec, 1) + [err], "error raised")
    cb = Events()
    tel = instrumented(**cb.options())
    with pytest.raises(openai.APIError) as caught:
        list(client(derived).responses.create(stream=True, **kwargs_for(derived)))
    a = ended(tel, "error", 5)
    assert a["error.type"] == type(caught.value).__name__
    assert cb.errors[0].error is caught.value and not cb.errors[0].is_retryable


# -- de-duplication when the deltas and the snapshots disagree (derived: deltas removed) --------------
def without(rec: Dict[str, Any], kind: str, positions: Callable[[int, int], bool]) -> Dict[str, Any]:
    """The recording with some events of ``kind`` removed: ``positions(i, total)`` picks them."""
    evs = sse_events(rec)
    total = sum(1 for e in evs if e["type"] == kind)
    out, i = [], 0
    for ev in evs:
        if ev["type"] == kind:
            i += 1
            if positions(i - 1, total):
                continue
        out.append(ev)
    return derive(rec, out, f"lost {kind}")


LOSSES = {
    "tail": lambda i, n: i >= n - 3,  # the last deltas never arrived
    "middle": lambda i, n: i == n // 2,  # one delta in the middle went missing
    "all": lambda i, n: True,  # only the snapshots arrived
}


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_snapshot_wins_over_lost_text_deltas(loss, is_async, instrumented):
    derived = without(load(LONG), "response.output_text.delta", LOSSES[loss])
    final = sdk_final(derived)
    cb = Events()
    tel = instrumented(**cb.options())
    await run(derived, "create", is_async)
    a = ended(tel, "complete")
    assert cb.complete[0].text == final.output_text
    # .done supplies the text; content_part.done, output_item.done and response.completed repeat it.
    assert a["steer.json.duplicates_dropped"] == 3
    if loss != "middle":  # a missing tail is added as a delta, so listeners still see every character once
        assert cb.joined("text") == final.output_text


@pytest.mark.parametrize("loss", list(LOSSES))
async def test_snapshot_wins_over_lost_argument_deltas(loss, instrumented):
    derived = without(load(TOOL), "response.function_call_arguments.delta", LOSSES[loss])
    want = expected(sdk_final(derived))
    cb = Events()
    tel = instrumented(**cb.options())
    await run(derived, "stream", False)
    a = ended(tel, "complete")
    assert [c.as_dict() for c in cb.complete[0].tool_calls] == want["tool_calls"]
    assert a["steer.json.duplicates_dropped"] == 2  # output_item.done and response.completed repeat .done
    assert a["steer.tool_calls"] == 1


# -- the decoder is sans-IO: raw wire JSON (the httpx path) assembles exactly like the SDK's models -----
@pytest.mark.parametrize("rec", RECORDINGS, ids=ids(RECORDINGS))
def test_raw_wire_json_decodes_like_sdk_models(rec):
    from steer.providers.base import Assembly, view
    from steer.providers.openai_responses import ResponsesDecoder

    def assemble(chunks: Any) -> Assembly:
        asm, decoder = Assembly(want_deltas=True), ResponsesDecoder()
        for chunk in chunks:
            decoder.decode(chunk, asm)
        decoder.finish(asm)
        return asm

    raw = assemble(view(e) for e in sse_events(rec))
    sdk = assemble(client(rec).responses.create(stream=True, **kwargs_for(rec)))
    for asm in (raw, sdk):
        assert asm.decode_errors == 0 and asm.error is None
    assert raw.all_text() == sdk.all_text() and raw.joined_reasoning() == sdk.joined_reasoning()
    assert raw.raw_tool_calls() == sdk.raw_tool_calls()
    assert raw.finish_reasons() == sdk.finish_reasons()
    assert raw.usage == sdk.usage and raw.usage.source == "reported"
    assert raw.duplicates_dropped == sdk.duplicates_dropped == expected_duplicates(rec)
    assert (raw.response_id, raw.response_model) == (sdk.response_id, sdk.response_model)
    assert raw.deltas == sdk.deltas

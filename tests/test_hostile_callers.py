"""Callers that use the SDKs in the less travelled ways (issue 19, item 5): closing twice, reading after
close, dropping a stream never iterated, throwing into the iterator, ``with_raw_response`` /
``with_streaming_response`` and ``.parse()``, the SDKs' helper streams, google-genai chats, one
stream read from two tasks.

Each scenario runs bare, then under ``steer.instrument()``, against a fresh devserver: the caller sees
the same thing (types, item counts, exception types) and each logical call leaves one span with the
end that happened (None: not a streaming call).
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any, Callable, Dict, List, Optional

import pytest

from reliability.surfaces import USER, anthropic_client, gemini_client, openai_client
from steer.tools.devserver import DevServer


def _chat(c: Any, **kw: Any) -> Any:
    return c.chat.completions.create(model="gpt-4o-mini", messages=USER, **kw)


def close_twice_then_read(srv: DevServer) -> List[Any]:
    s = _chat(openai_client(srv, False, 30), stream=True)
    next(iter(s))
    s.close()
    s.close()
    return ["after close", len(list(s))]


def dropped_unread(srv: DevServer) -> List[Any]:
    s = _chat(openai_client(srv, False, 30), stream=True)
    del s
    return []


def thrown_into(srv: DevServer) -> List[Any]:
    it = iter(_chat(openai_client(srv, False, 30), stream=True))
    next(it)
    try:
        it.throw(ValueError("the caller's"))
    except ValueError as exc:
        return [type(exc).__name__, str(exc)]
    return ["no exception"]


def raw_response(srv: DevServer) -> List[Any]:
    c = openai_client(srv, False, 30)
    unary = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=USER)
    stream = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=USER, stream=True).parse()
    return [type(unary.parse()).__name__, len(list(stream))]


def streaming_response_parsed(srv: DevServer) -> List[Any]:
    c = openai_client(srv, False, 30)
    with c.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=USER, stream=True) as r:
        items = len(list(r.parse()))
    with c.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=USER) as r:
        return [items, type(r.parse()).__name__]


def helpers(srv: DevServer) -> List[Any]:
    oc, ac = openai_client(srv, False, 30), anthropic_client(srv, False, 30)
    with oc.chat.completions.stream(model="gpt-4o-mini", messages=USER) as s:
        events = len(list(s))
        final = s.get_final_completion().choices[0].message.content
    with oc.responses.stream(model="gpt-4o-mini", input="hi") as r:
        revents = len(list(r))
        rfinal = r.get_final_response().output_text
    with ac.messages.stream(model="claude-test", max_tokens=50, messages=USER) as m:
        text = "".join(m.text_stream)
        message = m.get_final_message()
    with ac.messages.stream(model="claude-test", max_tokens=50, messages=USER) as m:
        for _ in m.text_stream:
            break
    return [events, final, revents, rfinal, text, message.usage.output_tokens]


def gemini_chat(srv: DevServer) -> List[Any]:
    client = gemini_client(srv, False, 30)  # kept: a collected google-genai Client closes its HTTP client
    chat = client.chats.create(model="gemini-2.0-flash")
    streamed = "".join(r.text or "" for r in chat.send_message_stream("hi"))
    return [streamed, chat.send_message("again").text, len(chat.get_history())]


def two_tasks(srv: DevServer) -> List[Any]:
    async def main() -> List[Any]:
        s = await _chat(openai_client(srv, True, 30), stream=True)
        seen: List[List[Any]] = [[], []]

        async def read(out: List[Any]) -> None:
            try:
                async for chunk in s:
                    out.append(chunk)
            except Exception as exc:  # what the caller sees is the point
                out.append(type(exc).__name__)

        await asyncio.gather(read(seen[0]), read(seen[1]))
        return [len(seen[0]) + len(seen[1]), [x for x in seen[0] + seen[1] if isinstance(x, str)]]

    return asyncio.run(main())


SCENARIOS: Dict[str, Any] = {
    # name: (scenario, the ends of its calls in order)
    "close_twice_then_read": (close_twice_then_read, ["closed_early"]),
    "dropped_unread": (dropped_unread, ["abandoned"]),
    "thrown_into": (thrown_into, ["error"]),
    "raw_response_parse": (raw_response, [None, "complete"]),
    "streaming_response_parse": (streaming_response_parsed, ["complete", None]),
    "helper_streams": (helpers, ["complete", "complete", "complete", "closed_early"]),
    "gemini_chat": (gemini_chat, ["complete", None]),
    "two_tasks_one_stream": (two_tasks, ["complete"]),
}


def run(scenario: Callable[[DevServer], List[Any]]) -> List[Any]:
    with DevServer(chunk_delay=0, chunks=6) as srv:  # fresh: the same answers bare and instrumented
        seen = scenario(srv)
        gc.collect()
        return seen


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_hostile_caller(name: str, instrumented: Any) -> None:
    scenario, ends = SCENARIOS[name]
    bare = run(scenario)
    telemetry = instrumented()
    assert run(scenario) == bare  # the caller sees exactly the same
    spans = sorted(telemetry.genai_spans(), key=lambda s: s.start_time)
    assert [s.attributes.get("steer.stream.end") for s in spans] == ends
    for span, end in zip(spans, ends):
        failed = end == "error"
        assert span.status.status_code.name == ("ERROR" if failed else "UNSET")
        assert ("error.type" in span.attributes) == failed
    assert telemetry.active_streams() == 0


def _streaming_response(srv: DevServer, provider: str, is_async: bool) -> Any:
    """``with_streaming_response.create(..., stream=True)``: the context manager (sync or async)."""
    if provider == "openai":
        c = openai_client(srv, is_async, 30)
        return c.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True})
    c = anthropic_client(srv, is_async, 30)
    return c.messages.with_streaming_response.create(model="claude-test", max_tokens=100, messages=USER, stream=True)


def _read_sync(srv: DevServer, provider: str, reader: str) -> int:
    """Reads the answer as the caller chose; returns how many items the caller got."""
    with _streaming_response(srv, provider, False) as r:
        if reader == "parse":
            return len(list(r.parse()))
        return len(list(getattr(r, reader)()))


async def _read_async(srv: DevServer, provider: str, reader: str) -> int:
    async with _streaming_response(srv, provider, True) as r:
        if reader == "parse":
            return len([item async for item in await r.parse()])
        return len([item async for item in getattr(r, reader)()])  # the async response: async iterators, same names


_SAME = ("steer.stream.end", "steer.stream.chunks", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
         "gen_ai.response.finish_reasons", "gen_ai.response.model")


@pytest.mark.parametrize("reader", ["iter_lines", "iter_bytes", "iter_text"])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_streaming_response_read_raw_is_complete(provider: str, is_async: bool, reader: str, instrumented: Any) -> None:
    """A body read raw instead of ``.parse()``d ends ``complete`` with what ``.parse()`` reports:
    the same chunks, text, usage and finish reasons, counted once."""
    ended: List[Any] = []
    telemetry = instrumented(on_complete=ended.append, on_error=ended.append)
    for how in ("parse", reader):
        with DevServer(chunk_delay=0, chunks=6) as srv:  # a fresh server: the same answer for both
            items = asyncio.run(_read_async(srv, provider, how)) if is_async else _read_sync(srv, provider, how)
        assert items > 0
        gc.collect()
    parsed, raw = telemetry.genai_spans()
    assert parsed.attributes["steer.stream.end"] == "complete"
    assert {k: raw.attributes.get(k) for k in _SAME} == {k: parsed.attributes.get(k) for k in _SAME}
    assert raw.attributes["gen_ai.usage.output_tokens"] > 0
    assert [type(e).__name__ for e in ended] == ["StreamCompleteEvent"] * 2
    assert ended[1].text == ended[0].text != ""
    assert ended[1].total_chunks == ended[0].total_chunks
    assert telemetry.active_streams() == 0
    assert sum(p.value for p in telemetry.metrics().get("steer.internal.errors", [])) == 0

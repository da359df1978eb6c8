"""How an observed stream is iterated: ``for`` / ``async for`` get a generator over the SDK's own
iterator (the cheap path, bench/README.md), ``next()`` / ``anext()`` go through the proxy's
``__next__`` / ``__anext__``. Whatever mix the caller uses, it sees the bare SDK's items, and the call
ends once with the right end and every chunk counted."""

from __future__ import annotations

import asyncio
import gc
import inspect
from typing import Any, List

import pytest

from steer.call import CallInfo
from steer.config import Settings
from steer.pipeline import Runtime, Session
from steer.wrapping.proxies import AsyncStreamProxy, SyncStreamProxy
from test_lifecycle import KWARGS, client


def dump(items: List[Any]) -> List[Any]:
    return [item.model_dump() for item in items]


def bare_items(is_async: bool) -> List[Any]:
    """The recording's chunks as the SDK alone yields them (taken before instrument())."""
    if not is_async:
        return dump(list(client(False).chat.completions.create(**KWARGS)))

    async def read() -> List[Any]:
        return [c async for c in await client(True).chat.completions.create(**KWARGS)]

    return dump(asyncio.run(read()))


@pytest.fixture(scope="module")
def expected() -> Any:
    return {False: bare_items(False), True: bare_items(True)}


def one_span(telemetry: Any) -> Any:
    spans = telemetry.genai_spans()
    assert len(spans) == 1, [s.attributes for s in spans]
    return spans[0]


def test_for_loop_gets_a_generator_and_next_the_proxy(instrumented: Any, expected: Any) -> None:
    telemetry = instrumented()
    stream = client(False).chat.completions.create(**KWARGS)
    assert isinstance(stream, SyncStreamProxy)
    first = next(stream)  # through __next__
    rest = iter(stream)
    assert inspect.isgenerator(rest)
    items = [first, *rest]
    assert dump(items) == expected[False]
    span = one_span(telemetry)
    assert span.attributes["steer.stream.end"] == "complete"
    assert span.attributes["steer.stream.chunks"] == len(expected[False])
    assert telemetry.active_streams() == 0


def test_break_then_iterate_again_continues_the_same_call(instrumented: Any, expected: Any) -> None:
    telemetry = instrumented()
    stream = client(False).chat.completions.create(**KWARGS)
    items = []
    for item in stream:
        items.append(item)
        if len(items) == 2:
            break
    assert telemetry.genai_spans() == []  # a break ends nothing: the stream is still open
    items.extend(stream)
    assert dump(items) == expected[False]
    span = one_span(telemetry)
    assert (span.attributes["steer.stream.end"], span.attributes["steer.stream.chunks"]) == ("complete", len(items))


def test_for_break_without_close_is_abandoned_when_dropped(instrumented: Any) -> None:
    telemetry = instrumented()
    for _ in client(False).chat.completions.create(**KWARGS):
        break
    gc.collect()
    span = one_span(telemetry)
    assert (span.attributes["steer.stream.end"], span.attributes["steer.stream.chunks"]) == ("abandoned", 1)
    assert telemetry.active_streams() == 0


async def test_async_for_gets_an_async_generator_and_anext_the_proxy(instrumented: Any, expected: Any) -> None:
    telemetry = instrumented()
    stream = await client(True).chat.completions.create(**KWARGS)
    assert isinstance(stream, AsyncStreamProxy)
    first = await stream.__anext__()
    rest = stream.__aiter__()
    assert inspect.isasyncgen(rest)
    items = [first] + [item async for item in rest]
    assert dump(items) == expected[True]
    span = one_span(telemetry)
    assert span.attributes["steer.stream.end"] == "complete"
    assert span.attributes["steer.stream.chunks"] == len(expected[True])
    assert telemetry.active_streams() == 0


async def test_async_break_then_iterate_again_continues_the_same_call(instrumented: Any, expected: Any) -> None:
    telemetry = instrumented()
    stream = await client(True).chat.completions.create(**KWARGS)
    items = []
    async for item in stream:
        items.append(item)
        if len(items) == 2:
            break
    await asyncio.sleep(0)  # the loop closes the suspended generator: that ends nothing either
    assert telemetry.genai_spans() == []
    items.extend([item async for item in stream])
    assert dump(items) == expected[True]
    span = one_span(telemetry)
    assert (span.attributes["steer.stream.end"], span.attributes["steer.stream.chunks"]) == ("complete", len(items))


async def test_async_for_break_without_close_is_abandoned_once_the_loop_finalises_it(instrumented: Any) -> None:
    telemetry = instrumented()
    async for _ in await client(True).chat.completions.create(**KWARGS):
        break
    gc.collect()
    # The dropped async generator holds the proxy; the loop's finaliser closes it in a task.
    for _ in range(3):
        await asyncio.sleep(0)
    gc.collect()
    span = one_span(telemetry)
    assert (span.attributes["steer.stream.end"], span.attributes["steer.stream.chunks"]) == ("abandoned", 1)
    assert telemetry.active_streams() == 0


async def test_async_break_inside_async_with_is_closed_early(instrumented: Any) -> None:
    telemetry = instrumented()
    async with await client(True).chat.completions.create(**KWARGS) as stream:
        async for _ in stream:
            break
    span = one_span(telemetry)  # ended by __aexit__ at once, no loop iteration needed
    assert (span.attributes["steer.stream.end"], span.attributes["steer.stream.chunks"]) == ("closed_early", 1)


async def test_cancelled_while_waiting_for_a_chunk_ends_cancelled_not_error(instrumented: Any) -> None:
    telemetry = instrumented()
    gate = asyncio.Event()

    class Slow:
        """An SDK-like async stream whose second chunk never comes."""

        def __init__(self) -> None:
            self.sent = 0

        def __aiter__(self) -> Any:
            return self

        async def __anext__(self) -> Any:
            if self.sent:
                await gate.wait()
            self.sent += 1
            return "chunk"

    stream = observed(Slow(), telemetry)
    seen: List[Any] = []

    async def read() -> None:
        async for item in stream:
            seen.append(item)

    task = asyncio.ensure_future(read())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    span = one_span(telemetry)
    assert seen == ["chunk"]
    # The caller's cancellation is no failure of the call (tests/test_cancellation.py: every SDK).
    assert span.attributes["steer.stream.end"] == "cancelled" and "error.type" not in span.attributes
    assert span.status.status_code.name == "UNSET"


def observed(stream: Any, telemetry: Any) -> Any:
    """A proxy with a real Session over any object (how a non-SDK stream would be served)."""

    class Decoder:
        def decode(self, chunk: Any, asm: Any) -> None:
            asm.add_text(0, str(chunk))

        def finish(self, asm: Any) -> None:
            return None

    rt = Runtime(Settings(), telemetry.tracer_provider, telemetry.meter_provider)
    call = CallInfo(provider="openai", api="openai.chat.completions", operation="chat", request_model="m", streaming=True)
    proxy = AsyncStreamProxy if hasattr(stream, "__anext__") else SyncStreamProxy
    return proxy(stream, Session(rt, call, Decoder()))


def test_an_iterator_without_iter_is_served_by_next(telemetry: Any) -> None:
    class OnlyNext:
        def __init__(self) -> None:
            self.left = 3

        def __next__(self) -> str:
            if not self.left:
                raise StopIteration
            self.left -= 1
            return "x"

    stream = observed(OnlyNext(), telemetry)
    assert iter(stream) is stream
    assert list(stream) == ["x", "x", "x"]
    span = one_span(telemetry)
    assert (span.attributes["steer.stream.end"], span.attributes["steer.stream.chunks"]) == ("complete", 3)


async def test_an_async_iterator_without_aiter_is_served_by_anext(telemetry: Any) -> None:
    class OnlyAnext:
        def __init__(self) -> None:
            self.left = 3

        async def __anext__(self) -> str:
            if not self.left:
                raise StopAsyncIteration
            self.left -= 1
            return "x"

    stream = observed(OnlyAnext(), telemetry)
    assert stream.__aiter__() is stream
    assert [x async for x in stream] == ["x", "x", "x"]
    span = one_span(telemetry)
    assert (span.attributes["steer.stream.end"], span.attributes["steer.stream.chunks"]) == ("complete", 3)


def test_openai_streams_iterate_the_sdks_inner_iterator_and_others_the_stream(instrumented: Any) -> None:
    """A ``for`` over an openai stream skips the SDK's pure forwarding generator (one level less per
    chunk); a stream whose ``__iter__`` does anything else is iterated through it."""
    import anthropic
    import openai

    from steer.wrapping.proxies import _items

    instrumented()
    stream = client(False).chat.completions.create(**KWARGS)
    inner = stream.__wrapped__._iterator
    assert isinstance(stream.__wrapped__, openai.Stream)
    assert _items(stream.__wrapped__, "__iter__") is inner
    # anthropic's __iter__ / __aiter__ also hand each item to the SDK's observer: never skipped
    for cls, method in ((anthropic.Stream, "__iter__"), (anthropic.AsyncStream, "__aiter__")):
        fake = cls.__new__(cls)
        fake._iterator = iter(())
        assert _items(fake, method) is fake

    class Filtering:
        """Looks like a forwarder by name, but reads another attribute: iterated as it is."""

        def __init__(self) -> None:
            self._iterator = iter(range(3))
            self.skip = 1

        def __iter__(self) -> Any:
            for item in self._iterator:
                if item != self.skip:
                    yield item

    filtering = Filtering()
    assert _items(filtering, "__iter__") is filtering


async def test_async_openai_stream_iterates_the_inner_async_generator(instrumented: Any, expected: Any) -> None:
    from steer.wrapping.proxies import _items

    telemetry = instrumented()
    stream = await client(True).chat.completions.create(**KWARGS)
    assert _items(stream.__wrapped__, "__aiter__") is stream.__wrapped__._iterator
    assert dump([item async for item in stream]) == expected[True]
    span = one_span(telemetry)
    assert (span.attributes["steer.stream.end"], span.attributes["steer.stream.chunks"]) == ("complete", len(expected[True]))

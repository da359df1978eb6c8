"""The caller's own cancellation is not an error (issue 19, item 1).

A task cancelled (``task.cancel()``, ``asyncio.timeout``, ``wait_for``) or a ``KeyboardInterrupt``
wherever the caller was suspended — sending the request, awaiting a chunk, in the loop body, inside
or outside ``async with`` — ends the span ``steer.stream.end=cancelled``, status UNSET, no
``error.type`` on the span or on any metric point, a ``StreamCompleteEvent`` with ``end="cancelled"``
and the exception itself propagating untouched. Real SDKs over real sockets against the devserver
(its ``stall`` fault and ``x-steer-ttft`` pacing hold the stream where the test wants it), and a
listening socket that never answers (cancelled before the response headers).
"""

from __future__ import annotations

import asyncio
import gc
import signal
import socket
import threading
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, Iterator, List, Optional

import httpx
import pytest

from reliability.surfaces import USER, anthropic_client, close_client, gemini_client, openai_client
from steer.tools.devserver import DevServer
from steer.events import StreamCompleteEvent

STALL = {"x-steer-fault": "stall"}  # the first chunk, then silence: the reader waits for the next one
SLOW_START = {"x-steer-ttft": "30"}  # headers, then 30 s before the first chunk


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with DevServer(chunk_delay=0, chunks=12) as srv:
        yield srv


@pytest.fixture(scope="module")
def black_hole() -> Iterator[str]:
    """A listening socket nobody accepts from: the request goes out, no response ever comes."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


# -- async surfaces: open the call (the request goes out), hand back what the caller iterates -------
class Call:
    def __init__(self, client: Any, opened: Any, manager: bool = True) -> None:
        self.client, self.opened, self.manager = client, opened, manager


async def _chat(srv: Any, h: Dict[str, str]) -> Call:
    c = openai_client(srv, True, 60)
    return Call(c, await c.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True, extra_headers=h))


async def _legacy(srv: Any, h: Dict[str, str]) -> Call:
    c = openai_client(srv, True, 60)
    return Call(c, await c.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi", stream=True, extra_headers=h))


async def _responses(srv: Any, h: Dict[str, str]) -> Call:
    c = openai_client(srv, True, 60)
    return Call(c, await c.responses.create(model="gpt-4o-mini", input="hi", stream=True, extra_headers=h))


async def _messages(srv: Any, h: Dict[str, str]) -> Call:
    c = anthropic_client(srv, True, 60)
    return Call(c, await c.messages.create(model="claude-test", max_tokens=100, messages=USER, stream=True, extra_headers=h))


async def _gemini(srv: Any, h: Dict[str, str]) -> Call:
    from google.genai import types

    c = gemini_client(srv, True, 60)
    config = types.GenerateContentConfig(http_options=types.HttpOptions(headers=h))
    stream = await c.aio.models.generate_content_stream(model="gemini-2.0-flash", contents="hi", config=config)
    return Call(c, stream, manager=False)  # a bare async generator: no `async with`


class RawCall(Call):
    """Raw httpx: ``async with client.stream(...)``, or ``client.send(..., stream=True)`` and read."""

    def __init__(self, client: Any, request: Any) -> None:
        super().__init__(client, None)
        self.request = request

    async def open(self) -> Any:
        self.opened = await self.client.send(self.request, stream=True)
        return self.opened


async def _raw_httpx(srv: Any, h: Dict[str, str]) -> Call:
    c = httpx.AsyncClient(timeout=60)
    body = {"model": "claude-test", "max_tokens": 100, "messages": USER, "stream": True}
    return RawCall(c, c.build_request("POST", srv.base_url + "/v1/messages", json=body, headers=h))


SURFACES: Dict[str, Callable[[Any, Dict[str, str]], Awaitable[Call]]] = {
    "openai.chat": _chat, "openai.completions": _legacy, "openai.responses": _responses,
    "anthropic.messages": _messages, "gemini.stream": _gemini, "httpx.messages": _raw_httpx,
}


def _items(call: Call) -> AsyncIterator[Any]:
    opened = call.opened
    return opened.aiter_lines() if isinstance(opened, httpx.Response) else opened


async def _read(call: Call, reached: asyncio.Event, where: str) -> None:
    """Read as an application does, and signal once the reader is where the test cancels it."""
    async for _ in _items(call):
        if where == "awaiting_chunk":
            reached.set()  # the next read waits on the stalled server
        else:
            reached.set()
            await asyncio.sleep(60)  # the loop body awaits something else


async def consume(surface: str, where: str, srv: Any, reached: asyncio.Event, calls: List[Call]) -> None:
    headers = SLOW_START if where == "first_chunk" else STALL
    call = await SURFACES[surface](srv, headers)
    calls.append(call)
    if where == "first_chunk":
        reached.set()  # the first read waits 30 s for the first chunk
    if isinstance(call, RawCall) and where != "loop_body_in_with":
        await call.open()
    if where == "loop_body_in_with" and isinstance(call, RawCall):
        async with call.client.stream(call.request.method, call.request.url, content=call.request.content,
                                      headers=call.request.headers) as call.opened:
            await _read(call, reached, where)
    elif where == "loop_body_in_with" and call.manager:
        async with call.opened:
            await _read(call, reached, where)
    else:
        await _read(call, reached, where)


async def cancel_when(how: str, coro: Awaitable[None], reached: asyncio.Event) -> BaseException:
    """Run ``coro`` and cancel it, as ``how`` does, once ``reached`` is set; return what the caller got."""
    try:
        if how == "task.cancel":
            task = asyncio.ensure_future(coro)
            await reached.wait()
            await asyncio.sleep(0.05)  # the task is suspended where the test wants it
            task.cancel()
            await task
        elif how == "asyncio.timeout":
            async with asyncio.timeout(None) as deadline:
                waiter = asyncio.ensure_future(_reschedule_when(reached, deadline))
                try:
                    await coro
                finally:
                    waiter.cancel()
        else:  # wait_for: a deadline the reader is sure to pass while it waits where the test holds it
            await asyncio.wait_for(coro, timeout=1.0)
    except BaseException as exc:  # noqa: BLE001 - what the caller sees is the point
        return exc
    raise AssertionError("the call was not cancelled")


async def _reschedule_when(reached: asyncio.Event, deadline: Any) -> None:
    await reached.wait()
    await asyncio.sleep(0.05)
    deadline.reschedule(asyncio.get_running_loop().time())


def assert_cancelled(telemetry: Any, ended: List[Any], count: int = 1) -> None:
    gc.collect()
    spans = telemetry.genai_spans()
    assert len(spans) == count, [dict(s.attributes) for s in spans]
    for span in spans:
        attrs = dict(span.attributes)
        assert attrs["steer.stream.end"] == "cancelled", attrs
        assert span.status.status_code.name == "UNSET"
        assert "error.type" not in attrs
        assert not [e for e in span.events if e.name == "exception"]
    for name, points in telemetry.metrics().items():
        for point in points:
            assert "error.type" not in dict(point.attributes), (name, dict(point.attributes))
    ends = [dict(p.attributes).get("steer.stream.end") for p in telemetry.metrics()["gen_ai.client.operation.duration"]]
    assert ends == ["cancelled"] * count  # dashboards show cancelled calls apart from errors
    assert telemetry.active_streams() == 0
    assert sum(p.value for p in telemetry.metrics().get("steer.internal.errors", [])) == 0
    assert [type(e).__name__ for e in ended] == ["StreamCompleteEvent"] * count
    assert all(isinstance(e, StreamCompleteEvent) and e.end == "cancelled" for e in ended)


async def close_all(calls: List[Call]) -> None:
    for call in calls:
        if isinstance(call.client, httpx.AsyncClient):
            await call.client.aclose()
        else:
            await close_client(call.client, True)


WHERE = ["awaiting_chunk", "first_chunk", "loop_body", "loop_body_in_with"]


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("surface", list(SURFACES))
async def test_task_cancel_ends_cancelled_everywhere(surface: str, where: str, server: Any, instrumented: Any) -> None:
    ended: List[Any] = []
    telemetry = instrumented(on_complete=ended.append, on_error=ended.append)
    reached, calls = asyncio.Event(), []
    caught = await cancel_when("task.cancel", consume(surface, where, server, reached, calls), reached)
    assert type(caught) is asyncio.CancelledError
    await asyncio.sleep(0.1)  # httpx's own dropped generators are closed by the loop, a few iterations later
    assert_cancelled(telemetry, ended)
    await close_all(calls)


# Raw httpx read outside `async with client.stream()`, a deadline the task survives (asyncio.timeout)
# hitting the loop body: httpx's own generators are closed later, by the loop, in another task, after
# the task was un-cancelled; nothing tells that close from a `break` (docs/telemetry.md: abandoned).
DEADLINE_CASES = [(surface, how, where) for surface in ("openai.chat", "httpx.messages")
                  for how in ("asyncio.timeout", "wait_for") for where in WHERE
                  if (surface, how, where) != ("httpx.messages", "asyncio.timeout", "loop_body")]


@pytest.mark.parametrize("surface, how, where", DEADLINE_CASES)
async def test_deadlines_end_cancelled(surface: str, how: str, where: str, server: Any, instrumented: Any) -> None:
    ended: List[Any] = []
    telemetry = instrumented(on_complete=ended.append, on_error=ended.append)
    reached, calls = asyncio.Event(), []
    caught = await cancel_when(how, consume(surface, where, server, reached, calls), reached)
    assert type(caught) is TimeoutError  # the deadline's own exception, as without steer
    await asyncio.sleep(0.1)
    assert_cancelled(telemetry, ended)
    await close_all(calls)


@pytest.mark.parametrize("surface", ["openai.chat", "anthropic.messages", "httpx.messages"])
async def test_cancelled_before_the_response_headers(surface: str, black_hole: str, instrumented: Any) -> None:
    class Hole:  # the surfaces read these addresses
        base_url = black_hole
        openai_base_url = black_hole + "/v1"
        anthropic_base_url = gemini_base_url = black_hole

    ended: List[Any] = []
    telemetry = instrumented(on_complete=ended.append, on_error=ended.append)
    reached, calls = asyncio.Event(), []

    async def send() -> None:
        reached.set()  # the request is going out; no answer will come
        call = await SURFACES[surface](Hole, {})
        if isinstance(call, RawCall):
            await call.open()

    caught = await cancel_when("task.cancel", send(), reached)
    assert type(caught) is asyncio.CancelledError
    assert_cancelled(telemetry, ended)


# -- sync: KeyboardInterrupt -------------------------------------------------------------------------
def interrupt_main_after(seconds: float) -> threading.Timer:
    """A real SIGINT to the main thread: a blocking socket read is interrupted as by Ctrl-C."""
    timer = threading.Timer(seconds, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
    timer.start()
    return timer


needs_main_thread = pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                                       reason="signals reach the main thread only")


SYNC_CASES = [(api, where) for api in ("openai.chat", "anthropic.messages", "gemini.stream", "httpx.chat")
              for where in ("awaiting_chunk", "first_chunk", "loop_body_in_with") if (api, where) != ("gemini.stream", "loop_body_in_with")]


@needs_main_thread
@pytest.mark.parametrize("api, where", SYNC_CASES)
def test_keyboard_interrupt_in_a_sync_loop(api: str, where: str, server: Any, instrumented: Any) -> None:
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ended: List[Any] = []
    telemetry = instrumented(on_complete=ended.append, on_error=ended.append)
    headers = SLOW_START if where == "first_chunk" else STALL
    client, opened = _sync_call(api, server, headers)
    caught: Optional[BaseException] = None
    timer = interrupt_main_after(0.3)
    try:
        if api.startswith("httpx"):  # raw httpx is read inside `with client.stream(...)`
            with opened() as response:
                for _ in response.iter_lines():
                    if where == "loop_body_in_with":
                        time.sleep(30)
        elif where == "loop_body_in_with":
            with opened as stream:
                for _ in stream:
                    time.sleep(30)
        else:
            for _ in opened:
                pass
    except KeyboardInterrupt as exc:
        caught = exc
    finally:
        timer.cancel()
    assert isinstance(caught, KeyboardInterrupt)
    assert_cancelled(telemetry, ended)
    client.close()


def _sync_call(api: str, srv: Any, h: Dict[str, str]) -> Any:
    if api == "openai.chat":
        c = openai_client(srv, False, 60)
        return c, c.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True, extra_headers=h)
    if api == "anthropic.messages":
        c = anthropic_client(srv, False, 60)
        return c, c.messages.create(model="claude-test", max_tokens=100, messages=USER, stream=True, extra_headers=h)
    if api == "gemini.stream":
        from google.genai import types

        c = gemini_client(srv, False, 60)
        config = types.GenerateContentConfig(http_options=types.HttpOptions(headers=h))
        return c, c.models.generate_content_stream(model="gemini-2.0-flash", contents="hi", config=config)
    c = httpx.Client(timeout=60)
    body = {"model": "gpt-4o-mini", "messages": USER, "stream": True}
    return c, lambda: c.stream("POST", srv.openai_base_url + "/chat/completions", json=body, headers=h)


# -- a dropped stream is abandoned, in every loop state -----------------------------------------------
def test_break_then_asyncio_run_shutdown_is_abandoned(server: Any, instrumented: Any) -> None:
    """``break`` without closing, then ``asyncio.run()`` ends its loop (and cancels the loop's pending
    closes of dropped async generators): abandoned, not an error, not cancelled."""
    ended: List[Any] = []
    telemetry = instrumented(on_complete=ended.append, on_error=ended.append)

    async def main() -> None:
        c = openai_client(server, True, 60)
        async for _ in await c.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True):
            break

    asyncio.run(main())
    gc.collect()
    (span,) = telemetry.genai_spans()
    assert span.attributes["steer.stream.end"] == "abandoned"
    assert span.status.status_code.name == "UNSET" and "error.type" not in span.attributes
    assert [e.end for e in ended] == ["abandoned"]
    assert telemetry.active_streams() == 0


async def test_break_inside_async_with_is_closed_early_not_cancelled(server: Any, instrumented: Any) -> None:
    telemetry = instrumented()
    c = openai_client(server, True, 60)
    async with await c.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True) as stream:
        async for _ in stream:
            break
    (span,) = telemetry.genai_spans()
    assert span.attributes["steer.stream.end"] == "closed_early"
    await c.close()


async def test_openai_agents_run_cancel_ends_cancelled(instrumented: Any) -> None:
    """openai-agents' ``RunResultStreaming.cancel()`` mid-stream (the Agents SDK over the real openai
    client, Responses API, devserver)."""
    agents = pytest.importorskip("agents", reason="openai-agents is in the test extra; it did not install")
    import openai

    ended: List[Any] = []
    telemetry = instrumented(on_complete=ended.append, on_error=ended.append)
    with DevServer(chunk_delay=0.05, chunks=200) as srv:
        agents.set_tracing_disabled(True)
        client = openai.AsyncOpenAI(base_url=srv.openai_base_url, api_key="x", max_retries=0)
        agents.set_default_openai_client(client)
        result = agents.Runner.run_streamed(agents.Agent(name="a", instructions="hi", model="gpt-4o-mini"), "hello")
        seen = 0
        async for _ in result.stream_events():
            seen += 1
            if seen == 5:
                result.cancel()
        await asyncio.sleep(0.2)
        await client.close()
    assert_cancelled(telemetry, ended)

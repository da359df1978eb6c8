"""Every way a stream can end, sync and async: exactly one span, ended exactly once, with the right
``steer.stream.end``; the caller sees exactly what it would see without steer."""

from __future__ import annotations

import gc
import logging
from typing import Any, Callable, Dict, List

import httpx
import openai
import pytest

from recordings import body_pieces, load

RECORDING = load("openai/chat_gpt4_include_usage.json")
KWARGS = dict(RECORDING["request"]["body"])


class MidStreamFailure(Exception):
    pass


def transport(fail_after: int = -1, is_async: bool = False) -> Any:
    """Serves the recording; with ``fail_after`` >= 0 the connection breaks after that many events."""
    pieces = body_pieces(RECORDING)

    def body() -> List[bytes]:
        return pieces if fail_after < 0 else pieces[:fail_after]

    if is_async:
        class ABody(httpx.AsyncByteStream):
            async def __aiter__(self) -> Any:
                for p in body():
                    yield p
                if fail_after >= 0:
                    raise httpx.ReadError("connection reset by peer")

        async def handle(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=ABody())

        return httpx.AsyncClient(transport=httpx.MockTransport(handle))

    class Body(httpx.SyncByteStream):
        def __iter__(self) -> Any:
            yield from body()
            if fail_after >= 0:
                raise httpx.ReadError("connection reset by peer")

    def handle_sync(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=Body())

    return httpx.Client(transport=httpx.MockTransport(handle_sync))


def client(is_async: bool, fail_after: int = -1) -> Any:
    cls = openai.AsyncOpenAI if is_async else openai.OpenAI
    return cls(api_key="x", http_client=transport(fail_after, is_async), max_retries=0)


# --- the paths, sync -------------------------------------------------------------------------------
def sync_drained(c: Any) -> None:
    for _ in c.chat.completions.create(**KWARGS):
        pass


def sync_break_in_with(c: Any) -> None:
    with c.chat.completions.create(**KWARGS) as stream:
        for _ in stream:
            break


def sync_close_without_with(c: Any) -> None:
    stream = c.chat.completions.create(**KWARGS)
    next(stream)
    stream.close()


def sync_sdk_exception(c: Any) -> None:
    for _ in c.chat.completions.create(**KWARGS):
        pass


def sync_exception_in_body(c: Any) -> None:
    with c.chat.completions.create(**KWARGS) as stream:
        for _ in stream:
            raise MidStreamFailure("user code failed")


def sync_abandoned(c: Any) -> None:
    stream = c.chat.completions.create(**KWARGS)
    next(stream)
    del stream
    gc.collect()


def sync_never_iterated(c: Any) -> None:
    stream = c.chat.completions.create(**KWARGS)
    del stream
    gc.collect()


# --- the paths, async ------------------------------------------------------------------------------
async def async_drained(c: Any) -> None:
    async for _ in await c.chat.completions.create(**KWARGS):
        pass


async def async_break_in_with(c: Any) -> None:
    async with await c.chat.completions.create(**KWARGS) as stream:
        async for _ in stream:
            break


async def async_close_without_with(c: Any) -> None:
    stream = await c.chat.completions.create(**KWARGS)
    await stream.__anext__()
    await stream.close()


async def async_sdk_exception(c: Any) -> None:
    async for _ in await c.chat.completions.create(**KWARGS):
        pass


async def async_exception_in_body(c: Any) -> None:
    async with await c.chat.completions.create(**KWARGS) as stream:
        async for _ in stream:
            raise MidStreamFailure("user code failed")


async def async_abandoned(c: Any) -> None:
    stream = await c.chat.completions.create(**KWARGS)
    await stream.__anext__()
    del stream
    gc.collect()


async def async_never_iterated(c: Any) -> None:
    stream = await c.chat.completions.create(**KWARGS)
    del stream
    gc.collect()


# path name -> (expected steer.stream.end, expected exception or None, fail_after)
PATHS: Dict[str, Any] = {
    "drained": ("complete", None, -1),
    "break_in_with": ("closed_early", None, -1),
    "close_without_with": ("closed_early", None, -1),
    "sdk_exception": ("error", openai.APIConnectionError, 3),
    "exception_in_body": ("closed_early", MidStreamFailure, -1),
    "abandoned": ("abandoned", None, -1),
    "never_iterated": ("abandoned", None, -1),
}
FUNCS: Dict[str, Callable[..., Any]] = {name: fn for name, fn in globals().items() if name.startswith(("sync_", "async_"))}


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_every_path_ends_one_span_once(mode: str, path: str, instrumented: Any, caplog: Any) -> None:
    end, exc_type, fail_after = PATHS[path]
    telemetry = instrumented()
    errors: List[Any] = []
    telemetry_errors = steer_errors(telemetry)
    fn = FUNCS[f"{mode}_{path}"]
    c = client(mode == "async", fail_after)
    caplog.set_level(logging.WARNING)
    raised = None
    try:
        result = fn(c)
        if mode == "async":
            await result
    except BaseException as exc:  # noqa: BLE001 - the test checks what the caller sees
        raised = exc
    gc.collect()
    if exc_type is None:
        assert raised is None
    else:
        assert isinstance(raised, exc_type), raised
    spans = telemetry.genai_spans()
    assert len(spans) == 1, [s.attributes for s in spans]
    (span,) = spans
    assert span.end_time is not None and span.end_time >= span.start_time
    assert span.attributes["steer.stream.end"] == end
    if end == "error":
        assert span.status.status_code.name == "ERROR"
        assert span.attributes["error.type"] == exc_type.__name__
        recorded = [e for e in span.events if e.name == "exception"]
        assert recorded and recorded[0].attributes["exception.type"].endswith(exc_type.__name__)
    else:
        assert span.status.status_code.name == "UNSET"
    # The span was ended once: ending it again would have logged "Calling end() on an ended span".
    assert not [r for r in caplog.records if "ended span" in r.getMessage() or "detach" in r.getMessage().lower()]
    assert telemetry.active_streams() == 0
    assert telemetry_errors() == 0
    del errors


def steer_errors(telemetry: Any) -> Callable[[], int]:
    def count() -> int:
        return sum(p.value for p in telemetry.metrics().get("steer.internal.errors", []))

    return count


async def test_sdk_exception_object_reaches_caller_untouched(instrumented: Any) -> None:
    instrumented()
    c = client(False, fail_after=2)
    caught = []
    bare = openai.OpenAI(api_key="x", http_client=transport(2), max_retries=0)
    for cl in (bare, c):
        try:
            for _ in cl.chat.completions.create(**KWARGS):
                pass
        except openai.APIConnectionError as exc:
            caught.append(exc)
    assert type(caught[0]) is type(caught[1])
    assert str(caught[0]) == str(caught[1])
    assert isinstance(caught[1].__cause__, httpx.ReadError)

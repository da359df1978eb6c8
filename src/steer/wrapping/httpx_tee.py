"""The tee on a streamed HTTP body: every piece the reader reads goes on unchanged, and a copy is
framed and decoded into a Session (raw httpx, see httpx_hooks; an SDK response read raw, see proxies).

The Session finishes exactly once, from what the body's reader did: read it to the end (``complete``),
closed it (``closed_early``, or ``complete`` when the terminal event had arrived), dropped it
(``abandoned``), failed or was cancelled while reading.
"""

from __future__ import annotations

import sys
from typing import Any, Dict, Optional, Tuple

from steer.pipeline import Session
from steer.providers.httpx_sse import framer_for
from steer.wrapping.ends import cancelling, closing_end, current_task, dropped_end


class Feed:
    """Bytes in, decoded frames to the Session; finishes the Session exactly once."""

    __slots__ = ("session", "framer", "status")

    def __init__(self, session: Session, response: Any) -> None:
        self.session = session
        self.status = response.status_code
        streaming = session.call.streaming and self.status < 400
        self.framer = framer_for(response.headers.get("content-type", ""), streaming)

    def bytes_(self, data: bytes) -> None:
        try:
            for _, frame in self.framer.feed(data):
                error = frame.error
                if error is not None:
                    # {"error": {...}} inside a 200 stream (OpenAI-compatible, Anthropic, Gemini): the SDKs
                    # raise here; a raw reader gets the bytes, and the span records the provider's error.
                    # Not a chunk: the SDK hands the caller an exception, not an item.
                    if self.session.asm.error is None:
                        self.session.asm.error = error._d if hasattr(error, "_d") else {"message": str(error)}
                    continue
                self.session.on_chunk(frame)
        except Exception as exc:
            self.session.rt.internal_error("httpx_feed", exc)

    def end(self, how: str, error: Optional[BaseException] = None) -> None:
        session = self.session
        if session.done:
            return
        try:
            frames = self.framer.flush()
            if self.status >= 400:
                session.asm.error = _error_body(frames, self.status)
            elif not session.call.streaming:
                for _, frame in frames:
                    session.on_response(frame)
            else:
                for _, frame in frames:
                    session.on_chunk(frame)
            session.asm.decode_errors += self.framer.bad
        except Exception as exc:
            session.rt.internal_error("httpx_end", exc)
        if how in ("closed_early", "abandoned", "cancelled") and self._reached_end():
            # The reader stopped at the terminal event (`data: [DONE]`, `message_stop`, ...: the openai
            # SDK does, so do LiteLLM and httpx-sse loops that `break` there) before the chunked body's
            # last empty chunk: nothing was cut short.
            how = "complete"
        session.finish(how, error)

    def _reached_end(self) -> bool:
        if getattr(self.framer, "done", False):
            return True
        # Chat / legacy Completions / Gemini have no terminal event besides `[DONE]` (Gemini's SSE not
        # even that): the last chunk is the one that gives every choice its finish reason. Anthropic's
        # `message_delta` with the stop reason (and the final usage) is followed by `message_stop` only,
        # which carries nothing: LiteLLM's sync reader closes the response right after it.
        asm = self.session.asm
        return self.session.call.api in _FINISH_ENDS and bool(asm.finish) and all(c in asm.finish for c in asm.text)


_FINISH_ENDS = frozenset({"openai.chat.completions", "openai.completions", "google.generate_content_stream",
                          "anthropic.messages"})


def _error_body(frames: Any, status: int) -> dict:
    err: Any = frames[0][1] if frames else None
    inner = getattr(err, "error", None) if err is not None else None
    source = inner if inner is not None else err
    out = {"status_code": status, "type": str(status), "message": ""}
    if source is not None:
        for key in ("type", "code", "status"):
            value = getattr(source, key, None)
            if isinstance(value, str) and value:
                out["type"] = value
                break
        out["message"] = str(getattr(source, "message", "") or "")
    return out


class Tee:
    """Byte stream: yields the inner stream's pieces unchanged, feeding a copy to the Session."""

    def __init__(self, inner: Any, feed: Feed) -> None:
        self._inner = inner
        self._feed: Any = feed  # None once detached
        self.released = False  # closed by httpx2's own iterator, not by the caller (httpx_release)

    def detach(self, response: Any) -> None:
        """The response gets its own byte stream back, unread, and this tee decides nothing any more."""
        if response.stream is self:
            response.stream = self._inner
        self._feed = None

    def __iter__(self) -> Any:
        try:
            for piece in self._inner:
                self._feed.bytes_(piece)
                yield piece
        except GeneratorExit:  # the reader stopped reading: closing the response (or dropping it) decides
            if cancelling():
                self._feed.end("cancelled")
            raise
        except BaseException as exc:
            self._feed.end("error", exc)
            raise
        self._feed.end("complete")

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            if not self.released:
                self._feed.end(closing_end())

    async def __aiter__(self) -> Any:  # __iter__'s twin: an async generator cannot share a sync one's body
        task = current_task()  # the reader: a close from the loop's finaliser reports its cancellation
        try:
            async for piece in self._inner:
                self._feed.bytes_(piece)
                yield piece
        except GeneratorExit:
            if cancelling(task):
                self._feed.end("cancelled")
            raise
        except BaseException as exc:
            self._feed.end("error", exc)
            raise
        self._feed.end("complete")

    def closed_by_caller(self, end: str) -> None:
        self._feed.end(end)  # no-op once the call ended

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            if not self.released:  # `cancelled` when `async with client.stream()` is left by a cancellation
                self._feed.end(closing_end())

    def __del__(self) -> None:
        feed = getattr(self, "_feed", None)
        if feed is not None and not feed.session.done:
            feed.end(dropped_end())


_TEES: Dict[Tuple[str, bool], type] = {}


def tee_class(response: Any, is_async: bool) -> type:
    """httpx checks the stream's base class, so the tee subclasses the response's own httpx (or httpx2)."""
    module = type(response).__module__.split(".")[0]
    cls = _TEES.get((module, is_async))
    if cls is None:
        hx = sys.modules[module]
        base = hx.AsyncByteStream if is_async else hx.SyncByteStream
        cls = _TEES[(module, is_async)] = type(f"SteerTee{'Async' if is_async else ''}", (Tee, base), {})
    return cls


def body_read(response: Any) -> bool:
    """The response's body was read already (``stream=False``, or read before steer saw it)."""
    return response.is_stream_consumed or hasattr(response, "_content")


def install(response: Any, feed: Feed, is_async: bool) -> Tee:
    """The one write steer makes to a response: its byte stream becomes a transparent tee."""
    tee: Tee = tee_class(response, is_async)(response.stream, feed)
    response.stream = tee
    return tee


def tee_unparsed(session: Session, sdk_response: Any, is_async: bool) -> Optional[Tee]:
    """An SDK response handed back unparsed (``with_streaming_response``; ``with_raw_response``): when its
    body is still unread, a tee decodes it into the call's Session in case the caller reads it raw
    (``iter_lines()``, ``iter_bytes()``, ``read()``, ``http_response.*``) instead of calling
    ``.parse()``; ``.parse()`` detaches it first, so that its stream is observed instead (never both)."""
    response = getattr(sdk_response, "http_response", None)
    if response is None or body_read(response):
        return None
    return install(response, Feed(session, response), is_async)

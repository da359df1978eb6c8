"""Raw httpx (and httpx2): an application calling a provider's HTTP API directly gets the same span
and metrics as through the SDKs, decoded from a copy of the bytes it reads.

``Client.send`` / ``AsyncClient.send`` are patched. A request to a known LLM endpoint opens a
Session; the response's byte stream is wrapped by a tee that hands every piece the application
reads to the framer and decoder, and passes it on unchanged. Inside an instrumented SDK call
(``IN_CALL``) this layer opens no Session, so one call is one span: it records each send as one HTTP
attempt of that call instead (status, time), which is how the SDKs' own retries become visible.
"""

from __future__ import annotations

import sys
from time import perf_counter_ns
from typing import Any, Callable, Dict, Optional, Tuple

from steer.call import Attempts
from steer.pipeline import Runtime, Session
from steer.providers.httpx_sse import framer_for
from steer.wrapping import httpx_routes
from steer.wrapping.calls import IN_CALL
from steer.wrapping.ends import cancelling, closing_end, current_task, dropped_end
from steer.wrapping.specs import Target


class _Feed:
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
        # even that): the last chunk is the one that gives every choice its finish reason.
        asm = self.session.asm
        return self.session.call.api in _FINISH_ENDS and bool(asm.finish) and all(c in asm.finish for c in asm.text)


_FINISH_ENDS = frozenset({"openai.chat.completions", "openai.completions", "google.generate_content_stream"})


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


class _Tee:
    """Byte stream: yields the inner stream's pieces unchanged, feeding a copy to the Session."""

    def __init__(self, inner: Any, feed: _Feed) -> None:
        self._inner = inner
        self._feed = feed
        self.released = False  # closed by httpx2's own iterator, not by the caller (httpx_release)

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

    async def __aiter__(self) -> Any:
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


def _tee_class(response: Any, is_async: bool) -> type:
    """httpx checks the stream's base class, so the tee subclasses the response's own httpx (or httpx2)."""
    module = type(response).__module__.split(".")[0]
    cls = _TEES.get((module, is_async))
    if cls is None:
        hx = sys.modules[module]
        base = hx.AsyncByteStream if is_async else hx.SyncByteStream
        cls = _TEES[(module, is_async)] = type(f"SteerTee{'Async' if is_async else ''}", (_Tee, base), {})
    return cls


def _open(rt: Runtime, request: Any) -> Optional[Session]:
    url = request.url
    route = httpx_routes.match(request.method, url.path)
    if route is None:
        return None
    try:
        body = httpx_routes.request_body(request.content) or {}
        call = route.call_info(body, url, route.streaming(body, url))
        return Session(rt, call, route.decoder())
    except Exception as exc:
        rt.internal_error("httpx_open", exc)
        return None


def _observe(session: Session, response: Any, is_async: bool) -> None:
    try:
        feed = _Feed(session, response)
        if response.is_stream_consumed or hasattr(response, "_content"):
            feed.bytes_(response.content)  # stream=False: the body is already read
            feed.end("complete")
            return
        # The one write this layer makes: the response's byte stream becomes a transparent tee.
        response.stream = _tee_class(response, is_async)(response.stream, feed)
    except Exception as exc:
        session.rt.internal_error("httpx_observe", exc)
        session.finish("complete")


def _sent(session: Session) -> Optional[Attempts]:
    try:
        return session.attempt_sent()
    except Exception as exc:
        session.rt.internal_error("attempt", exc)
        return None


def _answered(session: Session, attempts: Optional[Attempts], response: Any = None, error: Optional[BaseException] = None) -> None:
    if attempts is None:
        return
    try:
        attempts.answered(perf_counter_ns(), None if response is None else response.status_code, error)
    except Exception as exc:
        session.rt.internal_error("attempt", exc)


def sync_send(spec: Any, get_runtime: Callable[[], Optional[Runtime]]) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        outer = IN_CALL.get()
        if outer is not None:  # one HTTP attempt of an instrumented SDK call (its retries are more of them)
            attempts = _sent(outer)
            try:
                response = wrapped(*args, **kwargs)
            except Exception as exc:
                _answered(outer, attempts, error=exc)
                raise
            _answered(outer, attempts, response)
            return response
        rt = get_runtime()
        if rt is None or "httpx" not in rt.settings.providers:
            return wrapped(*args, **kwargs)
        session = _open(rt, args[0] if args else kwargs["request"])
        if session is None:
            return wrapped(*args, **kwargs)
        try:
            response = wrapped(*args, **kwargs)
        except BaseException as exc:
            session.finish("error", exc)
            raise
        _observe(session, response, is_async=False)
        return response

    return wrapper


# Twin of sync_send (must stay): the same steps around `await`; a def and an async def cannot share
# a body without a per-call coroutine or thread hop (the state itself lives in pipeline.Session).
def async_send(spec: Any, get_runtime: Callable[[], Optional[Runtime]]) -> Callable[..., Any]:
    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        outer = IN_CALL.get()
        if outer is not None:
            attempts = _sent(outer)
            try:
                response = await wrapped(*args, **kwargs)
            except Exception as exc:
                _answered(outer, attempts, error=exc)
                raise
            _answered(outer, attempts, response)
            return response
        rt = get_runtime()
        if rt is None or "httpx" not in rt.settings.providers:
            return await wrapped(*args, **kwargs)
        session = _open(rt, args[0] if args else kwargs["request"])
        if session is None:
            return await wrapped(*args, **kwargs)
        try:
            response = await wrapped(*args, **kwargs)
        except BaseException as exc:
            session.finish("error", exc)
            raise
        _observe(session, response, is_async=True)
        return response

    return wrapper


# Patched for raw calls when "httpx" is instrumented, and for any SDK so that its HTTP attempts (retries)
# are seen: the three SDKs send every attempt through httpx's or httpx2's Client.send.
TARGETS = [
    Target("httpx", module, owner, "send", None, is_async=is_async, wrapper_factory=async_send if is_async else sync_send,  # type: ignore[arg-type]
           also_for=("openai", "anthropic", "google_genai"))
    for module in ("httpx", "httpx2")
    for owner, is_async in (("Client", False), ("AsyncClient", True))
]

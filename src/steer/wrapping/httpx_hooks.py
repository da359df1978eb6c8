"""Raw httpx (and httpx2): an application calling a provider's HTTP API directly gets the same span
and metrics as through the SDKs, decoded from a copy of the bytes it reads.

``Client.send`` / ``AsyncClient.send`` are patched. A request to a known LLM endpoint opens a
Session; the response's byte stream is wrapped by a tee that hands every piece the application
reads to the framer and decoder, and passes it on unchanged. Inside an instrumented SDK call
(``IN_CALL``) this layer opens no Session, so one call is one span: it records each send as one HTTP
attempt of that call instead (status, time), which is how the SDKs' own retries become visible.
"""

from __future__ import annotations

from time import perf_counter_ns
from typing import Any, Callable, Optional

from steer.call import Attempts
from steer.pipeline import Runtime, Session
from steer.wrapping import httpx_routes
from steer.wrapping.calls import IN_CALL
from steer.wrapping.httpx_tee import Feed, body_read, install
from steer.wrapping.specs import Target


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
        feed = Feed(session, response)
        if body_read(response):
            feed.bytes_(response.content)  # stream=False
            feed.end("complete")
            return
        install(response, feed, is_async)
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

"""Call wrappers (sync and async): open a Session before the request goes out, hand back the SDK's
own result — observed through a transparent proxy when it is a stream.

The span is current only around the request itself (synchronous work in this thread or task), so
spans below (the SDK's, httpx's) nest under it, and no context is held across a ``yield``.

Signal safety: a ``KeyboardInterrupt`` (or any exception a signal handler raises) can land right after
a ``ContextVar.set`` returns and before its token is stored. So the flag and the span are set inside the
``try`` whose ``finally`` takes them off, and a lost token is made good from the value saved before
(``restore``): whatever happens, the caller's context is back when the call leaves, and the span ends.
"""

from __future__ import annotations

import contextvars
import inspect
from typing import Any, Callable, Optional

from opentelemetry import context as otel_context
from opentelemetry import trace

from steer.attached import leave
from steer.pipeline import Runtime, Session
from steer.wrapping.proxies import AsyncRawResponseProxy, AsyncStreamProxy, RawResponseProxy, SyncStreamProxy
from steer.wrapping.specs import ApiSpec

# The call's Session while an instrumented SDK call is sending its request: inner layers (a patched
# method the SDK calls internally) stay silent, so one call gives one span; the httpx hook records each
# HTTP attempt (the SDK's retries) into it.
IN_CALL: contextvars.ContextVar[Optional[Session]] = contextvars.ContextVar("steer_in_call", default=None)

RuntimeGetter = Callable[[], Optional[Runtime]]


def open_session(rt: Runtime, spec: ApiSpec, instance: Any, args: tuple, kwargs: dict) -> Optional[Session]:
    try:
        call = spec.call_info(instance, args, kwargs, rt.settings)
        return Session(rt, call, spec.decoder())
    except Exception as exc:
        rt.internal_error(f"open:{spec.api}", exc)
        return None


def _current(session: Session) -> Any:
    """The OpenTelemetry context before the span is attached: what ``restore`` puts back."""
    try:
        return otel_context.get_current()
    except Exception as exc:
        session.rt.internal_error("attach", exc)
        return None


def _enter(session: Session, outer: Any) -> Any:
    try:
        return otel_context.attach(trace.set_span_in_context(session.span, outer))
    except Exception as exc:
        session.rt.internal_error("attach", exc)
        return None


def restore(session: Session, token: Any, outer: Any) -> None:
    """Detach the span by its token; without one (the attach was interrupted after it made the span
    current, or never happened), put ``outer`` back if it is not current."""
    try:
        if token is not None:
            otel_context.detach(token)
        elif outer is not None and otel_context.get_current() is not outer:
            otel_context.attach(outer)  # a token of its own is not needed: the value is the caller's again
    except Exception as exc:
        session.rt.internal_error("detach", exc)


def unflag(flag: Optional[contextvars.Token]) -> None:
    """Take ``IN_CALL`` off (without its token: back to None, the value it had — steer opens a Session
    only when it is None)."""
    leave(IN_CALL, flag, None)


def observe_result(session: Session, result: Any, is_async: bool) -> Any:
    """Wrap what the SDK returned, or record it when the call is already complete."""
    try:
        if hasattr(result, "http_response") and hasattr(result, "parse"):
            proxy = AsyncRawResponseProxy if inspect.iscoroutinefunction(type(result).parse) else RawResponseProxy
            return proxy(result, session, AsyncStreamProxy if is_async else SyncStreamProxy)
        if session.call.streaming:
            return (AsyncStreamProxy if is_async else SyncStreamProxy)(result, session)
        session.on_response(result)
        session.finish("complete")
    except Exception as exc:
        session.rt.internal_error("observe", exc)
        session.finish("complete")
    return result


def sync_wrapper(spec: ApiSpec, get_runtime: RuntimeGetter) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        rt = get_runtime()
        if rt is None or IN_CALL.get():
            return wrapped(*args, **kwargs)
        session = open_session(rt, spec, instance, args, kwargs)
        if session is None:
            return wrapped(*args, **kwargs)
        flag = token = outer = None
        try:  # everything set is set inside the try: see the module's note on signal safety
            flag = IN_CALL.set(session)
            outer = _current(session)
            token = _enter(session, outer)
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            session.finish("error", exc)
            raise
        finally:
            restore(session, token, outer)
            unflag(flag)
        return observe_result(session, result, is_async=False)

    return wrapper


# Twin of sync_wrapper (must stay): the same steps around `await`; a def and an async def cannot share
# a body without a per-call coroutine or thread hop (the state itself lives in pipeline.Session).
def async_wrapper(spec: ApiSpec, get_runtime: RuntimeGetter) -> Callable[..., Any]:
    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        rt = get_runtime()
        if rt is None or IN_CALL.get():
            return await wrapped(*args, **kwargs)
        session = open_session(rt, spec, instance, args, kwargs)
        if session is None:
            return await wrapped(*args, **kwargs)
        flag = token = outer = None
        try:  # everything set is set inside the try: see the module's note on signal safety
            flag = IN_CALL.set(session)
            outer = _current(session)
            token = _enter(session, outer)
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            session.finish("error", exc)
            raise
        finally:
            restore(session, token, outer)
            unflag(flag)
        return observe_result(session, result, is_async=True)

    return wrapper

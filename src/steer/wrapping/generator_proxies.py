"""Transparent proxies for SDK methods that hand back plain generators (google-genai's
``generate_content_stream``): a sync generator, or a coroutine that resolves to an async generator.

A generator does its I/O lazily: the request goes out on the first ``next()`` (and again on every
automatic-function-calling hop). So, unlike the Stainless streams, the span is made current and the
``IN_CALL`` flag set around each step of the wrapped generator — synchronous work in the caller's
thread or task, attached and detached in the same frame, never across the caller's own ``yield``.

Shells only: all state lives in the Session; proxy state is in ``_self_*`` attributes (wrapt's rule).
The span ends exactly once: exhausted, ``close()``/``aclose()``, an exception out of the generator,
or the proxy collected without any of those (``abandoned``).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import wrapt
from opentelemetry import context as otel_context
from opentelemetry import trace

from steer.pipeline import Session
from steer.wrapping.calls import IN_CALL, RuntimeGetter, open_session, restore, unflag
from steer.wrapping.ends import cancelling, closing_end, current_task, dropped_end, unhooked
from steer.wrapping.specs import ApiSpec


def _span_context(session: Session) -> Any:
    """The OpenTelemetry Context with the call's span, built once per call (attached per step)."""
    try:
        return trace.set_span_in_context(session.span)
    except Exception as exc:
        session.rt.internal_error("span_context", exc)
        return None


# The chunk and close steps repeat proxies.SyncStreamProxy's on purpose (must stay): they are on the per-chunk
# path, where a shared helper would cost a call per chunk; what they share lives in pipeline.Session.
class SyncGeneratorProxy(wrapt.ObjectProxy):
    """Wraps a generator; ``isinstance(proxy, types.GeneratorType)`` still holds."""

    def __init__(self, wrapped: Any, session: Session) -> None:
        super().__init__(wrapped)
        self._self_session = session
        self._self_ctx = _span_context(session)

    def __iter__(self) -> "SyncGeneratorProxy":
        return self

    def __next__(self) -> Any:
        return self._self_step(self.__wrapped__.__next__)

    def send(self, value: Any) -> Any:
        return self._self_step(self.__wrapped__.send, value)

    def throw(self, *args: Any) -> Any:
        return self._self_step(self.__wrapped__.throw, *args)

    def _self_step(self, step: Callable[..., Any], *args: Any) -> Any:
        session, ctx = self._self_session, self._self_ctx
        flag = token = outer = None
        try:  # set inside the try, restored whatever happens (calls.py: signal safety)
            flag = IN_CALL.set(session)
            if ctx is not None:
                outer = otel_context.get_current()
                token = otel_context.attach(ctx)
            chunk = step(*args)
        except StopIteration:
            session.finish("complete")
            raise
        except BaseException as exc:  # the SDK's (or a thrown-in) exception: recorded, re-raised untouched
            session.finish("error", exc)
            raise
        finally:
            # calls.restore / calls.unflag, with their common case inline (this runs per chunk)
            if token is not None:
                otel_context.detach(token)
            else:
                restore(session, token, outer)
            if flag is not None:
                IN_CALL.reset(flag)
            else:
                IN_CALL.set(None)
        try:
            session.on_chunk(chunk)
        except Exception as exc:  # steer's own failure: never the caller's problem
            session.rt.internal_error("on_chunk", exc)
        return chunk

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            self._self_session.finish(closing_end())

    def __del__(self) -> None:
        # Collected without being drained or closed. No context is touched here, so this is safe from
        # any thread and from the garbage collector.
        session = getattr(self, "_self_session", None)
        if session is not None and not session.done:
            session.finish(dropped_end())


# Twin of SyncGeneratorProxy (must stay): the same steps around `await`; a def and an async def cannot share
# a body without a per-call coroutine or thread hop (the state itself lives in pipeline.Session).
class AsyncGeneratorProxy(wrapt.ObjectProxy):
    """Wraps an async generator; ``isinstance(proxy, types.AsyncGeneratorType)`` still holds."""

    def __init__(self, wrapped: Any, session: Session) -> None:
        super().__init__(wrapped)
        self._self_session = session
        self._self_ctx = _span_context(session)

    def __aiter__(self) -> Any:
        # ``async for`` gets its own iterator, closed at once when the loop drops it (``unhooked``): a
        # cancellation of the task while the loop body awaits is seen there (the proxy itself may live
        # on in a traceback). ``anext(proxy)`` still goes through ``__anext__``.
        return unhooked(_looped(self))

    def __anext__(self) -> Any:
        return self._self_step(self.__wrapped__.__anext__)

    def asend(self, value: Any) -> Any:
        return self._self_step(self.__wrapped__.asend, value)

    def athrow(self, *args: Any) -> Any:
        return self._self_step(self.__wrapped__.athrow, *args)

    async def _self_step(self, step: Callable[..., Any], *args: Any) -> Any:
        session, ctx = self._self_session, self._self_ctx
        # Set in this task; reset in the same task once the await returns or raises.
        flag = token = outer = None
        try:
            flag = IN_CALL.set(session)
            if ctx is not None:
                outer = otel_context.get_current()
                token = otel_context.attach(ctx)
            chunk = await step(*args)
        except StopAsyncIteration:
            session.finish("complete")
            raise
        except BaseException as exc:  # a CancelledError ends it `cancelled` (Session.finish)
            session.finish("error", exc)
            raise
        finally:
            # calls.restore / calls.unflag, with their common case inline (this runs per chunk)
            if token is not None:
                otel_context.detach(token)
            else:
                restore(session, token, outer)
            if flag is not None:
                IN_CALL.reset(flag)
            else:
                IN_CALL.set(None)
        try:
            session.on_chunk(chunk)
        except Exception as exc:
            session.rt.internal_error("on_chunk", exc)
        return chunk

    async def aclose(self) -> Any:
        try:
            return await self.__wrapped__.aclose()
        finally:
            self._self_session.finish(closing_end())

    def __del__(self) -> None:
        # The event loop's async-generator finaliser closes the wrapped generator; only the span is
        # ended here, with no context attached or detached.
        session = getattr(self, "_self_session", None)
        if session is not None and not session.done:
            session.finish(dropped_end())


async def _looped(proxy: AsyncGeneratorProxy) -> Any:
    """``async for`` over the proxy: its steps, and ``cancelled`` when the loop is left by a
    cancellation of the task that reads it (see ``_observed_async`` in proxies.py)."""
    step, task = proxy.__anext__, current_task()
    try:
        while True:
            try:
                chunk = await step()
            except StopAsyncIteration:
                return
            yield chunk
    except GeneratorExit:
        if cancelling(task):
            proxy._self_session.finish("cancelled")
        raise


def _observe(session: Session, result: Any, proxy: type, protocol: str) -> Any:
    if hasattr(result, protocol):
        try:
            return proxy(result, session)
        except Exception as exc:
            session.rt.internal_error("observe", exc)
    else:  # the SDK stopped returning a generator: say so, end the span, hand back its result
        session.rt.internal_error("observe", TypeError(f"{session.call.api}: {type(result).__name__} is not a generator"))
    session.finish("complete")
    return result


# The per-call shell of calls.sync_wrapper and httpx_hooks.sync_send on purpose (must stay): each wraps a
# different result (a generator here, a response there) on the per-call path, kept inline.
def generator_wrapper(spec: ApiSpec, get_runtime: RuntimeGetter) -> Callable[..., Any]:
    """For a method that returns a generator: the Session opens at the call (t0), the request goes
    out on the first ``next()``, under the proxy."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        rt = get_runtime()
        if rt is None or IN_CALL.get():
            return wrapped(*args, **kwargs)
        session: Optional[Session] = open_session(rt, spec, instance, args, kwargs)
        if session is None:
            return wrapped(*args, **kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            session.finish("error", exc)
            raise
        return _observe(session, result, SyncGeneratorProxy, "__next__")

    return wrapper


def async_generator_wrapper(spec: ApiSpec, get_runtime: RuntimeGetter) -> Callable[..., Any]:
    """For a coroutine method that resolves to an async generator (``await`` gives the stream)."""

    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        rt = get_runtime()
        if rt is None or IN_CALL.get():
            return await wrapped(*args, **kwargs)
        session: Optional[Session] = open_session(rt, spec, instance, args, kwargs)
        if session is None:
            return await wrapped(*args, **kwargs)
        flag = None
        try:
            flag = IN_CALL.set(session)
            result = await wrapped(*args, **kwargs)  # prepares the generator; no request yet
        except BaseException as exc:
            session.finish("error", exc)
            raise
        finally:
            unflag(flag)
        return _observe(session, result, AsyncGeneratorProxy, "__anext__")

    return wrapper

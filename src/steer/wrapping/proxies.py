"""Transparent stream proxies: the SDK's own object, same type and surface, plus a Session.

Only the iteration shells exist twice (sync and async); all state lives in the Session. Proxy state
is kept in ``_self_*`` attributes (wrapt's rule), so nothing is ever written onto SDK objects.
"""

from __future__ import annotations

import inspect
from typing import Any, AsyncIterator, Dict, Iterator

import wrapt

from steer.pipeline import Session
from steer.wrapping.ends import cancelling, closing_end, current_task, dropped_end, unhooked
from steer.wrapping.httpx_tee import tee_unparsed


_FORWARDERS: Dict[Any, bool] = {}  # an SDK stream class's __iter__/__aiter__ -> it only forwards _iterator


def _items(wrapped: Any, method: str) -> Any:
    """What a ``for`` / ``async for`` over the observed stream iterates: the SDK stream, or its inner
    ``_iterator`` when the stream's ``__iter__`` / ``__aiter__`` does nothing but forward it; None
    when the stream has no such method (a bare iterator: the proxy's ``__next__`` / ``__anext__``
    serve).

    The openai SDK's ``Stream.__iter__`` is ``for item in self._iterator: yield item`` (``AsyncStream``:
    the same, async). Iterating that inner generator directly gives the same items, exceptions and end,
    one generator level less per chunk: ~1 µs per chunk for async streams, where each level is an
    async generator (bench/README.md). It is recognised by its code (a generator reading no attribute
    but ``_iterator``, no local but ``item``), so a stream class that does more — anthropic's also
    reports each item to an observer — or an SDK that changes it is iterated as it is.
    """
    fn = getattr(type(wrapped), method, None)
    if fn is None:
        return None
    forwards = _FORWARDERS.get(fn)
    if forwards is None:
        code = getattr(fn, "__code__", None)
        forwards = _FORWARDERS[fn] = (
            code is not None and code.co_names == ("_iterator",) and code.co_varnames == ("self", "item")
            and bool(code.co_flags & (inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR))
        )
    if forwards:
        inner = getattr(wrapped, "_iterator", None)
        if inner is not None:
            return inner
    return wrapped


def _bound(wrapped: Any, name: str) -> Any:
    """The wrapped stream's ``__next__``/``__anext__``, bound once per stream.

    Every attribute read through a wrapt proxy costs ~40 ns, and ``__next__`` used to make four per
    chunk (``_self_session``, ``__wrapped__``, ``__next__``, ``on_chunk``); the hot path now reads one
    tuple (see bench/README.md). A stream without the method fails at iteration, as it did before.
    """
    method = getattr(wrapped, name, None)
    if method is None:
        return lambda: getattr(wrapped, name)()
    return method


class SyncStreamProxy(wrapt.ObjectProxy):
    """Wraps an iterator-style stream (openai/anthropic ``Stream``)."""

    # The one per-chunk state read. wrapt's Python ObjectProxy defines ``__getattr__``, so even a
    # ``_self_*`` read goes through CPython's generic hook and the C proxy's ``__getattribute__``
    # (~1,100 instructions); a slot read through its descriptor (``_sync_hot``) costs ~half that.
    __slots__ = ("_self_hot",)

    def __init__(self, wrapped: Any, session: Session) -> None:
        super().__init__(wrapped)
        self._self_session = session
        self._self_hot = (_bound(wrapped, "__next__"), session.on_chunk)

    def __iter__(self) -> Any:
        # A ``for`` loop gets a generator, as from the SDK's own ``__iter__``: per chunk, resuming it
        # costs less than calling a Python ``__next__`` (no frame, no state read, and the SDK's
        # generator is iterated directly instead of through its Python ``__next__``): ~0.2-0.4 µs
        # per chunk in situ (bench/README.md). ``next(stream)`` still goes through ``__next__``.
        items = _items(self.__wrapped__, "__iter__")
        return self if items is None else _observed(self, items, self._self_session)

    def __next__(self) -> Any:
        next_chunk, on_chunk = _sync_hot(self)  # one state read per chunk
        try:
            chunk = next_chunk()
        except StopIteration:
            self._self_session.finish("complete")
            raise
        except BaseException as exc:  # the SDK's exception: recorded, then re-raised untouched
            self._self_session.finish("error", exc)
            raise
        try:
            on_chunk(chunk)
        except Exception as exc:  # steer's own failure: never the caller's problem
            self._self_session.rt.internal_error("on_chunk", exc)
        return chunk

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            self._self_session.finish(closing_end())

    def __enter__(self) -> "SyncStreamProxy":
        self.__wrapped__.__enter__()
        return self  # `with stream as s` binds the proxy, so iteration stays observed

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(exc_type, exc, tb)
        finally:
            self._self_session.finish(closing_end(exc))  # `cancelled` when a KeyboardInterrupt & co. leave the block

    def __del__(self) -> None:
        # Abandoned without close: end the span here. No context is attached or detached, so this is
        # safe from any thread or from the loop's async-generator finaliser.
        session = getattr(self, "_self_session", None)
        if session is not None and not session.done:
            session.finish(dropped_end())


def _observed(proxy: SyncStreamProxy, items: Any, session: Session) -> Iterator[Any]:
    """Iterate the SDK stream (``items``: the stream or its inner iterator, see ``_items``) as a bare
    ``for`` loop would, handing each chunk to the Session.

    ``proxy`` is held while the loop runs: ``for c in client...create(stream=True)`` keeps only this
    generator, and the proxy's ``__del__`` would otherwise end the call as abandoned at once.

    Same chunks, same exceptions (the SDK's, re-raised untouched). The stream ends here only when the
    SDK's iterator ends or raises; a ``break`` closes this generator (GeneratorExit), which ends
    nothing: ``close()``, ``__exit__`` or garbage collection of the proxy decide how the call ended,
    exactly as with ``__next__`` — unless the loop is being left by a cancellation of its task.
    """
    on_chunk = session.on_chunk
    try:
        for chunk in items:
            try:
                on_chunk(chunk)
            except Exception as exc:  # steer's own failure: never the caller's problem
                session.rt.internal_error("on_chunk", exc)
            yield chunk
    except GeneratorExit:
        if cancelling():
            session.finish("cancelled")
        raise
    except BaseException as exc:  # the SDK's exception: recorded, then re-raised untouched
        session.finish("error", exc)
        raise
    session.finish("complete")


# Twin of SyncStreamProxy (must stay): the same steps around `await`; a def and an async def cannot share
# a body without a per-call coroutine or thread hop (the state itself lives in pipeline.Session).
class AsyncStreamProxy(wrapt.ObjectProxy):
    """Wraps an async-iterator-style stream (openai/anthropic ``AsyncStream``)."""

    __slots__ = ("_self_hot",)  # read per chunk through ``_async_hot`` (see SyncStreamProxy)

    def __init__(self, wrapped: Any, session: Session) -> None:
        super().__init__(wrapped)
        self._self_session = session
        self._self_hot = (_bound(wrapped, "__anext__"), session.on_chunk)

    def __aiter__(self) -> Any:
        # As for sync streams: ``async for`` gets an async generator over the SDK's own iterator, so a
        # chunk costs one generator resume instead of two coroutines (the proxy's ``__anext__`` and
        # the SDK's). ``anext(stream)`` still goes through ``__anext__``.
        items = _items(self.__wrapped__, "__aiter__")
        return self if items is None else unhooked(_observed_async(self, items, self._self_session))

    async def __anext__(self) -> Any:
        next_chunk, on_chunk = _async_hot(self)
        try:
            chunk = await next_chunk()
        except StopAsyncIteration:
            self._self_session.finish("complete")
            raise
        except BaseException as exc:
            self._self_session.finish("error", exc)
            raise
        try:
            on_chunk(chunk)
        except Exception as exc:
            self._self_session.rt.internal_error("on_chunk", exc)
        return chunk

    async def close(self) -> Any:
        try:
            return await self.__wrapped__.close()
        finally:
            self._self_session.finish(closing_end())

    async def aclose(self) -> Any:
        inner = getattr(self.__wrapped__, "aclose", None) or self.__wrapped__.close
        try:
            return await inner()
        finally:
            self._self_session.finish(closing_end())

    async def __aenter__(self) -> "AsyncStreamProxy":
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(exc_type, exc, tb)
        finally:
            self._self_session.finish(closing_end(exc))  # `cancelled` when a cancellation leaves the block

    def __del__(self) -> None:
        session = getattr(self, "_self_session", None)
        if session is not None and not session.done:
            session.finish(dropped_end())


async def _observed_async(proxy: AsyncStreamProxy, items: Any, session: Session) -> AsyncIterator[Any]:
    """``_observed`` for async streams: same chunks, same exceptions, same ends.

    A ``break`` leaves the SDK's generator suspended; this one is closed at once as the loop drops it
    (it is ``unhooked``), which ends nothing: the proxy's ``close``/``__aexit__``/``__del__`` decide,
    as for sync streams. When the loop is left by a cancellation of its task (the loop body awaited
    something else), that close happens while the task unwinds the cancellation: ``cancelled``; so
    it is when an enclosing generator is closed later, after the task that read this one was cancelled
    (a Starlette ``StreamingResponse`` whose client went away while it was sending).
    """
    on_chunk = session.on_chunk
    task = current_task()  # once per stream: the reader, whose cancellation a later close reports
    try:
        async for chunk in items:
            try:
                on_chunk(chunk)
            except Exception as exc:  # steer's own failure: never the caller's problem
                session.rt.internal_error("on_chunk", exc)
            yield chunk
    except GeneratorExit:
        if cancelling(task):
            session.finish("cancelled")
        raise
    except BaseException as exc:  # the SDK's exception: recorded, then re-raised untouched
        session.finish("error", exc)
        raise
    session.finish("complete")


# The slots' own getters: ``_sync_hot(proxy)`` is ``proxy._self_hot`` without the proxy's attribute hooks.
_sync_hot = SyncStreamProxy._self_hot.__get__  # type: ignore[attr-defined]
_async_hot = AsyncStreamProxy._self_hot.__get__  # type: ignore[attr-defined]


class RawResponseProxy(wrapt.ObjectProxy):
    """``with_raw_response`` / ``with_streaming_response`` results: ``parse()`` hands back the observed
    stream (or records the body); a body the caller reads raw instead is decoded by a tee
    (httpx_tee.tee_unparsed), which ``parse()`` takes off first."""

    def __init__(self, wrapped: Any, session: Session, stream_proxy: type) -> None:
        super().__init__(wrapped)
        self._self_session = session
        self._self_stream_proxy = stream_proxy
        self._self_parsed: Any = None
        try:
            self._self_tee = tee_unparsed(session, wrapped, stream_proxy is AsyncStreamProxy)
        except Exception as exc:
            self._self_tee = None
            session.rt.internal_error("raw_tee", exc)

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        self._self_untee()
        parsed = self.__wrapped__.parse(*args, **kwargs)
        return self._self_observe(parsed)

    def _self_untee(self) -> None:
        tee, self._self_tee = self._self_tee, None
        if tee is not None:
            try:
                tee.detach(self.__wrapped__.http_response)
            except Exception as exc:
                self._self_session.rt.internal_error("raw_tee", exc)

    def _self_observe(self, parsed: Any) -> Any:
        session = self._self_session
        if self._self_parsed is not None and self._self_parsed.__wrapped__ is parsed:
            return self._self_parsed  # the SDK caches parse(); so do we
        try:
            if session.call.streaming:
                self._self_parsed = self._self_stream_proxy(parsed, session)
                return self._self_parsed
            session.on_response(parsed)
            session.finish("complete")
        except Exception as exc:
            session.rt.internal_error("raw_parse", exc)
        return parsed

    def __del__(self) -> None:
        session = getattr(self, "_self_session", None)
        if session is not None and not session.done and self._self_parsed is None:
            session.finish(dropped_end())


class AsyncRawResponseProxy(RawResponseProxy):
    async def parse(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self._self_untee()
        parsed = await self.__wrapped__.parse(*args, **kwargs)
        return self._self_observe(parsed)

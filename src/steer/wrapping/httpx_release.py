"""httpx2 closes a streamed response itself when the caller drops its iterator; that close is no
decision of the caller's (raw httpx path, see httpx_hooks).

httpx2's ``Response.iter_raw`` / ``aiter_raw`` close the response in a ``finally``: when the caller
drops the iterator (a ``break`` without ``with``, ``del``, the garbage collector), httpx2 closes the
response, and steer's tee would take that for the caller's ``close()`` (``closed_early``). Here such
a close only marks the tee ``released``; the end is decided by the caller's own close afterwards (a
``with client.stream()`` exit: ``closed_early``, or ``cancelled`` while a cancellation unwinds) —
httpx2 makes it a no-op on the response, so it is seen on ``Response.close`` — or else by the tee
being collected (``abandoned``). httpx closes nothing from its iterators: no patch there.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional, Tuple

from steer.pipeline import Runtime
from steer.wrapping.ends import closing_end
from steer.wrapping.httpx_tee import Tee
from steer.wrapping.specs import Target


def _by_its_iterator(frame: Any, response: Any) -> bool:
    """Is ``frame`` (the close's caller; wrapt's pure-Python frames skipped) httpx2's own iterator?"""
    while frame is not None and frame.f_globals.get("__name__", "").startswith("wrapt"):
        frame = frame.f_back
    cls = type(response)
    return frame is not None and frame.f_code in (getattr(cls.iter_raw, "__code__", None), getattr(cls.aiter_raw, "__code__", None))


def _callers_close(instance: Any, frame: Any) -> Optional[Tuple[Tee, str]]:
    """The tee and the end a close decides when it is the caller's; None for a response steer does not
    watch, or for httpx2's own close of a dropped iterator (then the tee is only marked ``released``)."""
    tee = instance.__dict__.get("stream")
    if not isinstance(tee, Tee):
        return None
    if _by_its_iterator(frame, instance):
        tee.released = True
        return None
    return tee, closing_end()


def sync_response_close(spec: Any, get_runtime: Callable[[], Optional[Runtime]]) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        decided = _callers_close(instance, sys._getframe(1))
        try:
            return wrapped(*args, **kwargs)
        finally:
            if decided is not None:
                decided[0].closed_by_caller(decided[1])  # no-op when the close reached the tee (it ended the call)

    return wrapper


# Twin of sync_response_close (must stay): the same steps around `await`.
def async_response_close(spec: Any, get_runtime: Callable[[], Optional[Runtime]]) -> Callable[..., Any]:
    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        decided = _callers_close(instance, sys._getframe(1))
        try:
            return await wrapped(*args, **kwargs)
        finally:
            if decided is not None:
                decided[0].closed_by_caller(decided[1])

    return wrapper


TARGETS = [
    Target("httpx", "httpx2", "Response", "close", None, is_async=False, wrapper_factory=sync_response_close),
    Target("httpx", "httpx2", "Response", "aclose", None, is_async=True, wrapper_factory=async_response_close),
]

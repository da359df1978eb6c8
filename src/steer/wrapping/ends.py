"""How a stream ended, as the iteration shells see it when it stops without draining: closed by the
caller (``closed_early``), dropped (``abandoned``), or stopped by the caller's own cancellation
(``cancelled``).

An exception raised by the SDK or the transport reaches ``Session.finish("error", exc)``, which tells a
failure (an ``Exception``) from the caller's cancellation (any other ``BaseException``:
``asyncio.CancelledError``, ``KeyboardInterrupt``, ``SystemExit``, anyio/trio cancellation). This
module covers the cancellations that do not pass through steer's code: the task is cancelled while
the loop body awaits (a client disconnecting from a ``StreamingResponse``, ``asyncio.timeout`` around
a slow consumer), and the stream is closed or dropped while that cancellation unwinds.
"""

from __future__ import annotations

import sys
from typing import Any, Optional


def current_task() -> Any:
    """The running asyncio task, or None (no event loop: a synchronous caller)."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def cancelling(task: Any = None) -> bool:
    """True while the current asyncio task unwinds a cancellation (``Task.cancelling()``, which anyio,
    ``asyncio.timeout`` and ``TaskGroup`` all go through); also when ``task`` — the task that read the
    stream, if the stream is closed from elsewhere (the loop's finaliser, the garbage collector) —
    ended cancelled. False outside a task, and on Pythons without ``Task.cancelling`` (3.10)."""
    running = current_task()
    count = getattr(running, "cancelling", None)
    if count is not None and count():
        return True
    return task is not None and task.done() and task.cancelled()


def closing_end(exc: Optional[BaseException] = None) -> str:
    """``close()``, ``__exit__``/``__aexit__`` with ``exc`` in flight (by default the exception being
    handled where ``close()`` is called: a ``with`` block's exit, a ``finally``): ``cancelled`` when
    the caller is being cancelled (``exc`` is a cancellation, or the task unwinds one), else
    ``closed_early``."""
    if exc is None:
        exc = sys.exc_info()[1]
    if exc is not None and not isinstance(exc, (Exception, GeneratorExit)):
        return "cancelled"
    return "cancelled" if cancelling() else "closed_early"


def dropped_end() -> str:
    """The stream is collected unfinished: ``cancelled`` when that happens while the task unwinds a
    cancellation (the stream was the loop's iterator), else ``abandoned``."""
    return "cancelled" if cancelling() else "abandoned"


def unhooked(agen: Any) -> Any:
    """``agen`` made to close synchronously when it is dropped, instead of through the event loop.

    asyncio closes a dropped async generator later, in a new task (its async-generator finaliser
    hook), or never: ``asyncio.run()`` cancels that pending close when it shuts down. steer's own
    observing generators never await while closing, so they opt out of the hook: the first
    ``__anext__()`` (which binds a generator to the hooks in force) is taken while no hook is set.
    Then a ``break`` or a cancellation that drops the generator closes it at once, in the caller's
    task, where ``cancelling()`` still tells a cancellation from a ``break``.
    """
    hooks = sys.get_asyncgen_hooks()
    if hooks.firstiter is None and hooks.finalizer is None:
        return agen
    sys.set_asyncgen_hooks(firstiter=None, finalizer=None)
    try:
        agen.__anext__()  # binds no hook; the awaitable is dropped unstarted (the generator does not run)
    finally:
        sys.set_asyncgen_hooks(*hooks)
    return agen

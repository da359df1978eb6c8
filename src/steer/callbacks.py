"""User callbacks: route each event of a call to the user's functions, never letting them break
the caller's stream.

Plain functions run inline, in order, when the event happens. Coroutine functions never block the
stream:
- on an async stream they become tasks on the caller's running loop, created in event order, so they
  see the caller's context and may use objects bound to that loop (a websocket, an ``asyncio.Queue``);
- on a sync stream, where no loop runs, they go, in order, to one background event loop thread.
Either way at most ``MAX_PENDING`` coroutine callbacks wait at a time; beyond that they are dropped and
counted (``Listeners.dropped``) rather than letting a slow callback grow memory without bound.
A callback that raises is logged once (per callback) and counted; the stream goes on.

The EventProcessor (``steer.event_processor``) is reached through its ``process`` method only.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import inspect
import logging
import threading
import time
from typing import Any, Callable, Deque, Dict, Optional, Set

from steer.events import (StreamCompleteEvent, StreamDeltaEvent, StreamErrorEvent, StreamEvent, StreamStallEvent,
                          StreamStartEvent, StreamUsageEvent)

log = logging.getLogger("steer")

_SLOTS = {
    StreamStartEvent: "on_start",
    StreamDeltaEvent: "on_delta",
    StreamUsageEvent: "on_usage",
    StreamCompleteEvent: "on_complete",
    StreamErrorEvent: "on_error",
    StreamStallEvent: "on_stall",
}
MAX_PENDING = 10_000
_EXIT_DRAIN_S = 5.0


class BackgroundLoop:
    """One daemon thread running an event loop, for coroutine callbacks fired from sync code.

    Submissions go through a deque, and the loop is woken (a self-pipe write) only when it is not
    already draining it, so a burst of deltas costs one wake-up rather than one per event.
    """

    _lock = threading.Lock()
    _instance: Optional["BackgroundLoop"] = None

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pending: Deque[Any] = collections.deque()
        self.scheduled = False
        self.running = 0  # tasks created and not finished
        self.thread = threading.Thread(target=self.loop.run_forever, name="steer-callbacks", daemon=True)
        self.thread.start()

    @classmethod
    def get(cls) -> "BackgroundLoop":
        with cls._lock:
            if cls._instance is None or not cls._instance.thread.is_alive():
                cls._instance = BackgroundLoop()
            return cls._instance

    def backlog(self) -> int:
        return len(self.pending) + self.running

    def submit(self, coro: Any) -> None:
        self.pending.append(coro)  # append before reading the flag: _drain clears it before draining
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        self.scheduled = False
        pending = self.pending
        while pending:
            self.running += 1
            self.loop.create_task(pending.popleft()).add_done_callback(self._done)

    def _done(self, _task: Any) -> None:
        self.running -= 1

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.backlog():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True


@atexit.register
def _drain_at_exit() -> None:
    # Coroutine callbacks already handed to the background loop still run before the process ends.
    instance = BackgroundLoop._instance
    if instance is not None and instance.thread.is_alive():
        instance.wait_idle(_EXIT_DRAIN_S)


class Listeners:
    """The callbacks and the event processor of one ``instrument()``/``wrap()`` configuration."""

    def __init__(self, callbacks: Optional[Dict[str, Optional[Callable[..., Any]]]] = None, event_processor: Any = None) -> None:
        self.callbacks: Dict[str, Callable[..., Any]] = {k: v for k, v in (callbacks or {}).items() if v is not None}
        for name, fn in self.callbacks.items():
            if name not in _SLOTS.values():
                raise TypeError(f"steer: unknown callback {name!r}")
            if not callable(fn):
                raise TypeError(f"steer: callback {name} must be callable")
        if event_processor is not None and not callable(getattr(event_processor, "process", None)):
            raise TypeError("steer: event_processor must be a steer.EventProcessor (something with process(event))")
        self.processor = event_processor
        self.active = bool(self.callbacks) or event_processor is not None
        # Delta events cost an allocation per chunk: built only when a delta callback or the processor's
        # type filter wants them.
        self.wants_deltas = "on_delta" in self.callbacks or bool(getattr(event_processor, "wants_deltas", event_processor is not None))
        self.errors = 0
        self.dropped = 0
        self._warned: Set[int] = set()
        self._tasks: Set[Any] = set()  # strong refs, so scheduled callback tasks are not collected early

    def emit(self, event: StreamEvent) -> None:
        fn = self.callbacks.get(_SLOTS[type(event)])
        if fn is not None:
            self._call(fn, event)
        if self.processor is not None:
            try:
                self.processor.process(event)
            except Exception as exc:  # the processor isolates its own handlers; this is a last resort
                self._failed(self.processor, exc)

    def _call(self, fn: Callable[..., Any], event: StreamEvent) -> None:
        try:
            result = fn(event)
            if inspect.isawaitable(result):
                self._schedule(fn, result)
        except Exception as exc:
            self._failed(fn, exc)

    def _schedule(self, fn: Callable[..., Any], awaitable: Any) -> None:
        try:
            loop: Optional[asyncio.AbstractEventLoop] = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        background = BackgroundLoop.get() if loop is None else None
        backlog = len(self._tasks) if background is None else background.backlog()
        if backlog >= MAX_PENDING:
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # never awaited on purpose: no "was never awaited" warning
            self.dropped += 1
            if self.dropped == 1:
                log.warning("steer: more than %d coroutine callbacks pending; dropping events (counted)", MAX_PENDING)
            return

        async def guarded() -> None:
            try:
                await awaitable
            except Exception as exc:
                self._failed(fn, exc)

        if background is not None:
            background.submit(guarded())
        else:
            task = loop.create_task(guarded())  # type: ignore[union-attr]
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _failed(self, fn: Any, exc: BaseException) -> None:
        self.errors += 1
        if id(fn) not in self._warned:
            self._warned.add(id(fn))
            name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
            log.warning("steer: callback %s raised %r; the stream goes on (logged once per callback)", name, exc)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until coroutine callbacks sent to the background loop and the processor are done."""
        deadline = time.monotonic() + timeout
        ok = True
        instance = BackgroundLoop._instance
        if instance is not None and instance.thread.is_alive():
            ok = instance.wait_idle(timeout)
        if self.processor is not None and hasattr(self.processor, "flush"):
            ok = bool(self.processor.flush(timeout=max(0.0, deadline - time.monotonic()))) and ok
        return ok


NO_LISTENERS = Listeners()

"""User callbacks: route each event of a call to the user's functions, never letting them break
the caller's stream.

Plain functions run inline, in order. Coroutine functions never block the stream: on an async
stream they are scheduled as tasks on the caller's running loop (so they see the caller's
context); on a sync stream, where no loop runs, they go to one background event loop thread.
A callback that raises is logged once (per callback) and counted; the stream goes on.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from typing import Any, Callable, Dict, Optional, Set

from steer.events import (
    StreamCompleteEvent,
    StreamDeltaEvent,
    StreamErrorEvent,
    StreamEvent,
    StreamStartEvent,
    StreamUsageEvent,
)

log = logging.getLogger("steer")

_SLOTS = {
    StreamStartEvent: "on_start",
    StreamDeltaEvent: "on_delta",
    StreamUsageEvent: "on_usage",
    StreamCompleteEvent: "on_complete",
    StreamErrorEvent: "on_error",
}


class BackgroundLoop:
    """One daemon thread running an event loop, for coroutine callbacks fired from sync code."""

    _lock = threading.Lock()
    _instance: Optional["BackgroundLoop"] = None

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="steer-callbacks", daemon=True)
        self.thread.start()

    @classmethod
    def get(cls) -> "BackgroundLoop":
        with cls._lock:
            if cls._instance is None or not cls._instance.thread.is_alive():
                cls._instance = BackgroundLoop()
            return cls._instance

    def submit(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)


class Listeners:
    """The callbacks and the event processor of one ``instrument()``/``wrap()`` configuration."""

    def __init__(self, callbacks: Optional[Dict[str, Optional[Callable[..., Any]]]] = None, event_processor: Any = None) -> None:
        self.callbacks: Dict[str, Callable[..., Any]] = {k: v for k, v in (callbacks or {}).items() if v is not None}
        for name, fn in self.callbacks.items():
            if name not in _SLOTS.values():
                raise TypeError(f"steer: unknown callback {name!r}")
            if not callable(fn):
                raise TypeError(f"steer: callback {name} must be callable")
        self.processor = event_processor
        self.active = bool(self.callbacks) or event_processor is not None
        self.wants_deltas = "on_delta" in self.callbacks or event_processor is not None
        self.errors = 0
        self._warned: Set[str] = set()
        self._tasks: Set[Any] = set()  # strong refs, so scheduled callback tasks are not collected early

    def emit(self, event: StreamEvent) -> None:
        fn = self.callbacks.get(_SLOTS[type(event)])
        if fn is not None:
            self._call(fn, event)
        if self.processor is not None:
            try:
                self.processor.process(event)
            except Exception as exc:  # the processor isolates its own handlers; this is a last resort
                self._failed("event_processor", exc)

    def _call(self, fn: Callable[..., Any], event: StreamEvent) -> None:
        try:
            result = fn(event)
            if inspect.isawaitable(result):
                self._schedule(fn, result)
        except Exception as exc:
            self._failed(getattr(fn, "__qualname__", repr(fn)), exc)

    def _schedule(self, fn: Callable[..., Any], awaitable: Any) -> None:
        async def guarded() -> None:
            try:
                await awaitable
            except Exception as exc:
                self._failed(getattr(fn, "__qualname__", repr(fn)), exc)

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            task = loop.create_task(guarded())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            BackgroundLoop.get().submit(guarded())

    def _failed(self, name: str, exc: BaseException) -> None:
        self.errors += 1
        if name not in self._warned:
            self._warned.add(name)
            log.warning("steer: callback %s raised %r; the stream goes on (logged once per callback)", name, exc)


NO_LISTENERS = Listeners()

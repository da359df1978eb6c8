"""One thread that notices streams going silent while they are still open (live stall detection).

Nothing runs per chunk for this: a stream records the time of its last chunk anyway (``Session.t_last``),
and this thread looks at every open stream a few times per ``stall_after`` and tells the stream when its
silence has passed the threshold (``watch(now)``); what a stall means is the stream's business.

The thread starts when the first stream to watch opens, exits after ``IDLE_EXIT_S`` with nothing open
(the next stream starts it again), is stopped by ``stop()`` (``steer.uninstrument()``, interpreter exit),
and is forgotten in a forked child (``os.register_at_fork``): a child starts its own when it needs one.
"""

from __future__ import annotations

import atexit
import os
import threading
from time import perf_counter_ns
from typing import Any, List, Optional, Protocol, Set

MIN_PERIOD_NS = 10_000_000  # 10 ms: never spin, whatever stall_after says
MAX_PERIOD_NS = 1_000_000_000  # 1 s: a stall is seen within stall_after + 1 s at worst
IDLE_EXIT_S = 60.0


class Watched(Protocol):
    stall_after_ns: int

    def watch(self, now: int) -> None: ...


class Watchdog:
    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._sessions: Set[Any] = set()
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()

    # -- called by streams (their open and their end) ---------------------------------------------------
    def add(self, session: Watched) -> None:
        self._sessions.add(session)  # one set insertion per stream; the thread below is started once
        if self._thread is None:
            self._start()

    def discard(self, session: Watched) -> None:
        self._sessions.discard(session)

    def watched(self) -> List[Any]:
        return list(self._sessions)  # a copy: streams come and go on other threads meanwhile

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    # -- the thread -----------------------------------------------------------------------------------
    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._stop,), name="steer-stall-watchdog", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self, stop: threading.Event) -> None:
        idle_since: Optional[int] = None
        while True:
            sessions = list(self._sessions)
            period = min((s.stall_after_ns // 4 for s in sessions), default=MAX_PERIOD_NS)
            if stop.wait(max(MIN_PERIOD_NS, min(MAX_PERIOD_NS, period)) / 1e9):
                return
            now = perf_counter_ns()
            for session in sessions:
                try:
                    session.watch(now)
                except Exception:  # pragma: no cover - watch() guards itself; the thread must not die
                    pass
            if sessions or self._sessions:
                idle_since = None
                continue
            idle_since = idle_since or now
            if now - idle_since >= IDLE_EXIT_S * 1e9:
                with self._lock:
                    if self._sessions or self._thread is not threading.current_thread():
                        idle_since = None
                        continue
                    self._thread = None
                    return


WATCHDOG = Watchdog()
atexit.register(WATCHDOG.stop)
os.register_at_fork(after_in_child=WATCHDOG._reset)  # the parent's thread does not exist in the child

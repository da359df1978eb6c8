"""Live stall detection: one thread that notices streams going silent while they are still open, and
what a stream records of its silences (``StallTracking``, a part of ``pipeline.Session``).

Nothing runs per chunk for this: a stream records the time of its last chunk anyway (``Session.t_last``),
and this thread looks at every open stream a few times per ``stall_after`` and tells the stream when its
silence has passed the threshold (``watch(now)``). The chunk (or the end) that closes a silence records its
length from the stream's own clock readings, and records the silences the thread did not see in time.

The thread starts when the first stream to watch opens, exits after ``IDLE_EXIT_S`` with nothing open
(the next stream starts it again), is stopped by ``stop()`` (``steer.uninstrument()``, interpreter exit),
and is forgotten in a forked child (``os.register_at_fork``): a child starts its own when it needs one.
"""

from __future__ import annotations

import atexit
import os
import threading
from time import perf_counter_ns
from typing import Any, Callable, Dict, List, Optional, Protocol, Set, Tuple

from steer.events import StreamStallEvent

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


class StallTracking:
    """The stall half of ``pipeline.Session`` (its slots: ``stall_after_ns``, ``stall_start``, ``stalls``,
    ``gap_mark``, ``t0``, ``t_last``, ``done``, ``chunks``, ``_lock``, ``rt``). ``watch`` runs on the
    watchdog's thread; the rest on the thread that feeds the stream its chunks, or that ends the call."""

    __slots__ = ()
    stall_after_ns: int
    stall_start: int
    stalls: Optional[List[Tuple[int, int, bool]]]
    gap_mark: int
    t0: int
    t_last: int
    done: bool
    chunks: int
    _lock: Any
    rt: Any
    _common: Callable[[], Dict[str, Any]]  # the event fields every event of the call carries

    def watch(self, now: int) -> None:
        last = self.t_last or self.t0
        if now - last <= self.stall_after_ns or self.stall_start or self.done:
            return
        try:
            with self._lock:
                if self.done or self.stall_start or (self.t_last or self.t0) != last:
                    return  # ended, or a chunk came, meanwhile
                self.stall_start = last
                self.gap_mark = 0  # the chunk that ends the silence takes on_chunk's out-of-line branch
                self.stalls = (self.stalls or []) + [(last, 0, False)]
                count = len(self.stalls)
            self._stall_event(now - last, count)
        except Exception as exc:
            self.rt.internal_error("stall", exc)

    def _stall_event(self, silent_ns: int, count: int) -> None:
        if self.rt.listeners.active:
            self.rt.listeners.emit(StreamStallEvent(
                **self._common(), silent_ms=silent_ns / 1e6, stall_after_ms=self.stall_after_ns / 1e6,
                total_chunks=self.chunks, stall_count=count))

    def _silence_over(self, gap: int, now: int) -> None:
        """A chunk ended a silence longer than stall_after: the one the watchdog reported, or one it did not
        see while it lasted (its thread got no core or no GIL in time on a busy machine, or the silence ended
        between two of its looks). Every silence longer than stall_after is a stall, whoever saw it first."""
        if not self.stall_start and not self._unseen_stall(now - gap, now, resumed=True):
            return
        self._stall_over(now)

    def _unseen_stall(self, start: int, now: int, resumed: bool) -> bool:
        """Record a silence the watchdog did not report, and send its StreamStallEvent now. True when the
        watchdog reported it meanwhile after all (then it is that one, and it is open)."""
        try:
            with self._lock:
                if self.stall_start:
                    return True
                self.stalls = (self.stalls or []) + [(start, now - start, resumed)]
                if resumed:  # by the chunk arriving now: a watchdog deciding meanwhile sees it is over
                    self.t_last = now
                count = len(self.stalls)
            self._stall_event(now - start, count)
        except Exception as exc:
            self.rt.internal_error("stall", exc)
        return False

    def _stall_over(self, now: int) -> None:
        """The silence that started at stall_start has ended: resumed by a chunk, or by the end of the call.

        The chunk that ended it is the one arriving now, or — when it slipped in while the watchdog was
        deciding — the previous one (t_last moved past stall_start without this branch being taken)."""
        with self._lock:
            start = self.stall_start
            if not start or not self.stalls:
                return
            last = self.t_last or self.t0
            resumed_at, resumed = (last, True) if last != start else (now, not self.done)
            self.stalls[-1] = (start, resumed_at - start, resumed)
            self.stall_start = 0


WATCHDOG = Watchdog()
atexit.register(WATCHDOG.stop)
os.register_at_fork(after_in_child=WATCHDOG._reset)  # the parent's thread does not exist in the child

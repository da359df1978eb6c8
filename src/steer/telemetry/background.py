"""One background worker for the end-of-call work, so the caller's thread only takes timestamps.

When a call ends, ``Session.finish`` takes the end time and hands ``Session.complete_call`` to this
worker: usage estimation (tiktoken), attribute building, metric points and ``span.end`` (with the end
time already taken) run on one daemon thread, in the order calls ended. The caller's ``for`` loop
ends as soon as the SDK's does, and the worker starts a moment later (``DEFER_S``), so that it does
not take the GIL from the caller while the caller's loop is still ending.

Nothing is lost, and nothing waits without bound:
- the queue is bounded (``MAX_QUEUED``): when it is full, ``submit`` says no and the caller does the
  work inline, as before — memory never grows with a burst of ends;
- ``flush()`` waits until every job handed over before it ran has finished. It runs at
  ``steer.uninstrument()``, at interpreter exit (atexit), from ``steer.flush()``, and before the
  ``force_flush()`` / ``shutdown()`` of every tracer and meter provider steer reports to
  (``chain_flush`` wraps those two methods on the provider object, so an application's
  ``provider.force_flush()`` exports the calls that just ended);
- after ``fork()`` the child starts with no worker and an empty queue (the parent finishes its own
  calls); a child's first ended call starts its own thread.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from typing import Any, Callable, Optional

log = logging.getLogger("steer")

MAX_QUEUED = 10_000  # calls ended and not yet recorded; beyond it the caller records inline
# How long the worker waits, the GIL released, before recording what a caller just handed over. The
# caller's loop is ending at that moment: were the woken worker to take the GIL as soon as the caller
# releases it once (an event loop's select, a socket close), the caller would wait for the whole end of
# the call (up to the 5 ms switch interval when the machine is busy). Deferred, the work runs while the
# caller waits for its next I/O. A flush cuts the wait short.
DEFER_S = 0.002
_EXIT_FLUSH_S = 5.0
_HOOKED = "_steer_flush_chained"


class EndWorker:
    def __init__(self) -> None:
        self._queue: "queue.SimpleQueue[Any]" = queue.SimpleQueue()  # C put: ~0.2 µs on the caller
        self._thread: Optional[threading.Thread] = None
        self._start_lock = threading.Lock()
        self._exit_registered = False
        self._hurry = threading.Event()  # set by flush: no deferral, someone waits for the queue

    def submit(self, job: Callable[[], None]) -> bool:
        """Queue ``job``; False when the queue is full (the caller then runs it itself)."""
        if self._thread is None:
            self._start()
        q = self._queue
        if q.qsize() >= MAX_QUEUED:
            return False
        q.put(job)
        return True

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until every job submitted so far has run; True when done within ``timeout``."""
        thread = self._thread
        if thread is None or not thread.is_alive() or thread is threading.current_thread():
            return True  # nothing queued; or a job flushing its own worker (it cannot wait for itself)
        done = threading.Event()
        self._hurry.set()
        self._queue.put(done.set)  # FIFO: it runs after every job queued before it
        return done.wait(timeout)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            thread = threading.Thread(target=self._run, name="steer-end-of-call", daemon=True)
            thread.start()
            self._thread = thread
            if not self._exit_registered:
                # Registered at the first ended call, so after the application built its providers:
                # atexit runs last-registered first, so this drains before their own exit shutdown.
                self._exit_registered = True
                atexit.register(self.flush, _EXIT_FLUSH_S)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            self._hurry.wait(DEFER_S)
            while True:  # then everything queued meanwhile, one job at a time
                try:
                    job()
                except Exception:  # jobs guard themselves (Session.complete_call); this is the last net
                    log.debug("steer: end-of-call job failed", exc_info=True)
                time.sleep(0)  # the GIL, between two jobs, to a caller waiting for it
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    # Drained, flushes included (a flush racing this only waits DEFER_S more).
                    self._hurry.clear()
                    break

    def _after_fork_in_child(self) -> None:
        # The parent's thread does not exist in the child, and the parent records its own queued calls.
        self._queue = queue.SimpleQueue()
        self._thread = None
        self._start_lock = threading.Lock()
        self._hurry = threading.Event()


WORKER = EndWorker()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=WORKER._after_fork_in_child)


def flush(timeout: Optional[float] = None) -> bool:
    return WORKER.flush(timeout)


def chain_flush(tracer_provider: Any, meter_provider: Any) -> None:
    """Make each provider's ``force_flush()`` and ``shutdown()`` drain steer's queue first.

    ``None`` stands for the application's global provider, when it installed an SDK one already (a
    provider installed later is covered by ``steer.flush()`` and the exit flush). The two methods are
    wrapped on the provider object only (instance attributes; the class is left alone), once. A
    provider that refuses new attributes is left as it is.
    """
    for provider in (tracer_provider or _global_sdk_provider("trace"), meter_provider or _global_sdk_provider("metrics")):
        if provider is None or getattr(provider, _HOOKED, False):
            continue
        try:
            for name in ("force_flush", "shutdown"):
                original = getattr(provider, name, None)
                if callable(original):
                    setattr(provider, name, _draining(original))
            setattr(provider, _HOOKED, True)
        except Exception:  # no __dict__, or a proxy refusing writes
            pass


def _global_sdk_provider(signal: str) -> Any:
    """The application's global provider of ``signal`` when it installed one (not the API's proxy)."""
    try:
        if signal == "trace":
            from opentelemetry import trace

            provider: Any = trace.get_tracer_provider()
            return None if isinstance(provider, trace.ProxyTracerProvider) else provider
        from opentelemetry import metrics
        from opentelemetry.metrics import _internal

        provider = metrics.get_meter_provider()
        return None if isinstance(provider, _internal._ProxyMeterProvider) else provider
    except Exception:
        return None


def _draining(original: Callable[..., Any]) -> Callable[..., Any]:
    def drain_then(*args: Any, **kwargs: Any) -> Any:
        WORKER.flush(_EXIT_FLUSH_S)
        return original(*args, **kwargs)

    drain_then.__wrapped__ = original  # type: ignore[attr-defined]
    return drain_then

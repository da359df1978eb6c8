"""The EventProcessor's off-the-caller half: its worker thread, its bounded queue and its open batch.

The worker awaits coroutine stages on its own loop, one event at a time: one consumer keeps each
stream's events in order, each delivered once, and never borrows (or stalls) the application's loop.

The queue is bounded. Overflow policy, "drop newest deltas first": when it is full, a new delta event
is dropped and counted; lifecycle events (few per call, carrying its summary) and full batches still
get in, up to twice the bound. Accepted events are delivered at ``flush()``, ``shutdown()`` and
interpreter exit.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import inspect
import logging
import queue
import threading
import time
import weakref
from typing import Any, Callable, Deque, List, Optional, Set

from steer.event_processor.stages import stage_name
from steer.events import StreamEvent

log = logging.getLogger("steer")

_IDLE_POLL_S = 1.0  # an idle worker wakes this often to notice its processor was garbage-collected
_EXIT_FLUSH_S = 5.0  # how long interpreter exit waits, in total, for processors to deliver
_TICK, _STOP = object(), object()  # queue markers: "re-read the batch deadline", "exit"


class Worker:
    """Queue, worker thread and batching of an EventProcessor (its base class). The processor
    implements ``_run(event, stage, on_worker)``: the pipeline from ``stage`` on, which the worker calls
    for each queued event."""

    def _init_worker(self, max_queue_size: int, batch_size: Optional[int], batch_timeout_ms: Optional[float],
                     batch_handler: Optional[Callable[[List[StreamEvent]], Any]]) -> None:
        self._batch_handler = batch_handler
        self._batch_size = (batch_size or 100) if batch_handler is not None else 0
        self._batch_timeout = ((batch_timeout_ms if batch_timeout_ms is not None else 1000.0) / 1e3) if batch_handler else None
        # The open batch: appended to without a lock (deque appends are atomic); cut under the lock.
        self._batch: Deque[StreamEvent] = collections.deque()
        self._batch_lock = threading.Lock()
        self._max_queue = max_queue_size
        self._queue: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None
        self._start_lock = threading.Lock()
        self._loop: Optional[asyncio.AbstractEventLoop] = None  # the worker's own loop, made on first coroutine
        self._closed = False
        self._warned: Set[str] = set()
        self.dropped = self.handler_errors = self.batches = 0
        _LIVE.add(self)

    def _run(self, event: StreamEvent, stage: int, on_worker: bool) -> None:
        raise NotImplementedError

    # -- the queue ----------------------------------------------------------------------------------
    def _offer(self, item: Any, lifecycle: bool, count: int = 1) -> None:
        q = self._queue
        size = q.qsize()
        if size >= self._max_queue and (not lifecycle or size >= 2 * self._max_queue):
            self._drop(count)
            return
        q.put(item)
        if self._thread is None:
            self._start_worker()

    def _drop(self, count: int) -> None:
        self.dropped += count
        if count and "overflow" not in self._warned:
            self._warned.add("overflow")
            log.warning("steer: EventProcessor queue full (or shut down); dropping events, counted in metrics.dropped")

    def _await(self, awaitable: Any, name: str, on_worker: bool) -> Any:
        if not on_worker:  # a plain function returned an awaitable: the caller's thread cannot await it
            if inspect.iscoroutine(awaitable):
                awaitable.close()
            raise TypeError(f"{name} returned an awaitable; declare it with `async def`")
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(awaitable)

    def _failed(self, name: str, exc: BaseException) -> None:
        self.handler_errors += 1
        if name not in self._warned:
            self._warned.add(name)
            log.warning("steer: event processor stage %s raised %r; events go on (logged once per stage)", name, exc)

    # -- batching -----------------------------------------------------------------------------------
    def _add_to_batch(self, event: StreamEvent, on_worker: bool) -> None:
        batch = self._batch
        batch.append(event)
        n = len(batch)
        if n >= self._batch_size:
            self._cut(on_worker, full=True)
        elif n == 1 and not on_worker:
            self._offer(_TICK, True, 0)  # the worker arms the timeout of the batch just opened

    def _cut(self, on_worker: bool, full: bool) -> None:
        """Take a batch off the open one: a full one, or (``full=False``) whatever is there."""
        batch = self._batch
        with self._batch_lock:
            size = self._batch_size if full else len(batch)
            if not size or len(batch) < size:
                return
            events = [batch.popleft() for _ in range(size)]
            if not on_worker:  # queued under the lock, so batches reach the worker in order
                self._offer(events, True, size)
                return
        self._call_batch(events)  # on the worker, the only consumer: outside the lock

    def _call_batch(self, batch: List[StreamEvent]) -> None:
        try:
            out = self._batch_handler(batch)  # type: ignore[misc]
            if inspect.isawaitable(out):
                self._await(out, "batch_handler", True)
            self.batches += 1
        except Exception as exc:
            self._failed(stage_name(self._batch_handler), exc)

    # -- the worker thread --------------------------------------------------------------------------
    def _start_worker(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=_work, args=(weakref.ref(self), self._queue),
                                                name="steer-event-processor", daemon=True)
                self._thread.start()

    def _handle(self, item: Any) -> bool:
        """One queue item on the worker; False means stop."""
        if isinstance(item, StreamEvent):
            self._run(item, -1, True)
        elif type(item) is tuple:
            self._run(item[0], item[1], True)
        elif type(item) is list:
            self._call_batch(item)
        elif isinstance(item, threading.Event):  # flush(): everything queued before it is done
            self._cut(True, full=False)
            item.set()
        elif item is _STOP:
            return False
        return True

    def flush(self, timeout: Optional[float] = 5.0) -> bool:
        """Deliver every accepted event (queued ones and the open batch). True when done in time.

        Blocks the calling thread; from async code use ``await processor.aflush()``.
        """
        if self._closed:
            return True  # shutdown() already delivered everything
        if self._thread is not None and threading.current_thread() is self._thread:
            return False  # called from one of our own handlers: waiting for ourselves would deadlock
        if self._thread is None and not self._batch:
            return True
        done = threading.Event()
        self._queue.put(done)
        if self._thread is None:
            self._start_worker()
        return done.wait(timeout)

    async def aflush(self, timeout: Optional[float] = 5.0) -> bool:
        return await asyncio.to_thread(self.flush, timeout)

    def _stop_worker(self) -> None:
        """After the last flush: the worker ends, and interpreter exit no longer waits for it."""
        self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
        _LIVE.discard(self)


def _work(ref: "weakref.ReferenceType[Worker]", q: "queue.SimpleQueue[Any]") -> None:
    # Holds the processor only while handling an item, so an unused processor can be collected;
    # the idle poll then notices and the thread ends.
    wait, deadline = _IDLE_POLL_S, None
    while True:
        try:
            item = q.get(timeout=wait)
        except queue.Empty:
            item = None
        processor = ref()
        if processor is None:
            return
        try:
            if item is not None and not processor._handle(item):
                break
            timeout = processor._batch_timeout
            if timeout is not None:
                # A partial batch waits at most batch_timeout from when the worker first sees it open
                # (a _TICK from the caller, or its own append); cut only once the queue is drained,
                # so a timed batch never overtakes a full one still queued.
                now = time.monotonic()
                if not processor._batch:
                    deadline = None
                elif deadline is None:
                    deadline = now + timeout
                elif now >= deadline and q.empty():
                    processor._cut(True, full=False)
                    deadline = None
            wait = _IDLE_POLL_S if deadline is None else max(0.0, deadline - time.monotonic())
        except Exception as exc:  # pragma: no cover - a steer bug; keep the worker alive
            log.debug("steer: event processor worker error", exc_info=exc)
        del processor
    processor = ref()
    if processor is not None and processor._loop is not None:
        processor._loop.close()


_LIVE: "weakref.WeakSet[Worker]" = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    # Daemon worker threads still run while atexit handlers do, so accepted events get delivered.
    deadline = time.monotonic() + _EXIT_FLUSH_S
    for processor in list(_LIVE):
        try:
            processor.flush(timeout=max(0.0, deadline - time.monotonic()))
        except Exception:  # pragma: no cover - never fail interpreter exit
            pass

"""EventProcessor: filter, transform, correlate, batch and deliver the events of every observed call.

One processor serves every call of an ``instrument()``/``wrap()`` configuration, from any thread or
event loop. Inline (the default), filters, plain transformers and plain handlers run in the caller's
thread as each event is emitted; with ``background=True`` the caller only enqueues. Batch handlers,
and every stage from the first coroutine transformer or handler on, always run on the processor's
worker thread, which awaits them on its own loop, one event at a time: one consumer keeps each
stream's events in order, each delivered once, and never borrows (or stalls) the application's loop.

The worker's queue is bounded. Overflow policy, "drop newest deltas first": when it is full, a new
delta event is dropped and counted; lifecycle events (few per call, carrying its summary) and full
batches still get in, up to twice the bound. Accepted events are delivered at ``flush()``,
``shutdown()`` and interpreter exit. docs/events.md explains the choices for users.
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
from dataclasses import asdict, dataclass
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from steer.events import EVENT_TYPES, StreamCompleteEvent, StreamDeltaEvent, StreamErrorEvent, StreamEvent

log = logging.getLogger("steer")

Handler = Callable[[StreamEvent], Any]
_SHORT_NAMES = {"start": "StreamStartEvent", "delta": "StreamDeltaEvent", "usage": "StreamUsageEvent",
                "complete": "StreamCompleteEvent", "error": "StreamErrorEvent", "stall": "StreamStallEvent"}
_TERMINAL = frozenset((StreamCompleteEvent, StreamErrorEvent))
_MAX_OPEN_CALLS = 100_000  # bound on the per-call sequence counters (calls normally end and free theirs)
_IDLE_POLL_S = 1.0  # an idle worker wakes this often to notice its processor was garbage-collected
_EXIT_FLUSH_S = 5.0  # how long interpreter exit waits, in total, for processors to deliver
_TICK, _STOP = object(), object()  # queue markers: "re-read the batch deadline", "exit"


class PredicateFilter:
    """Keeps the events for which ``predicate(event)`` is true. A predicate that raises rejects the
    event (counted as filtered and as a handler error), so a bug cannot let unwanted events through."""

    __slots__ = ("predicate", "name")

    def __init__(self, predicate: Callable[[StreamEvent], Any]) -> None:
        if not callable(predicate):
            raise TypeError("steer: PredicateFilter needs a callable")
        if _is_async(predicate):
            raise TypeError("steer: a predicate must be a plain function; filter in an async transformer instead")
        self.predicate = predicate
        self.name = _name(predicate)

    def __call__(self, event: StreamEvent) -> bool:
        return bool(self.predicate(event))


class EventTransformer:
    """Subclass and override ``transform`` (``def`` or ``async def``): return the event (the same
    object, changed, or a new one), or ``None`` to drop it. A transformer that raises passes the event
    on unchanged (counted and logged once): enrichment failing must not lose events."""

    def transform(self, event: StreamEvent) -> Optional[StreamEvent]:
        return event


@dataclass(frozen=True)
class ProcessorMetrics:
    events_in: int  # every event the processor was given
    filtered: int  # rejected by a type/provider filter, a predicate, or a transformer returning None
    transformed: int  # delivered events that went through the transformers
    emitted: int  # passed the filters and transformers: handed to the handlers and the open batch
    # Lost to overflow (or offered after shutdown): in background mode before the pipeline (so
    # events_in == filtered + emitted + dropped); inline, as whole batches that could not be queued.
    dropped: int
    handler_errors: int  # exceptions raised by predicates, transformers, handlers, batch handlers
    batches: int  # batches handed to the batch handler
    queued: int  # items waiting for the worker right now

    def as_dict(self) -> Dict[str, int]:
        return asdict(self)


class EventProcessor:
    process: Callable[[StreamEvent], None]  # set per instance by _compile()

    def __init__(
        self,
        *,
        event_types: Optional[Iterable[Any]] = None,
        providers: Optional[Iterable[str]] = None,
        predicate: Optional[Callable[[StreamEvent], Any]] = None,
        transformers: Sequence[Any] = (),
        handler: Optional[Handler] = None,
        add_correlation: bool = True,
        add_timestamp: bool = False,
        add_metrics: bool = True,
        batch_size: Optional[int] = None,
        batch_timeout_ms: Optional[float] = None,
        batch_handler: Optional[Callable[[List[StreamEvent]], Any]] = None,
        background: bool = False,
        max_queue_size: int = 10_000,
    ) -> None:
        if batch_handler is None and (batch_size is not None or batch_timeout_ms is not None):
            raise ValueError("steer: batch_size/batch_timeout_ms need a batch_handler")
        if batch_handler is not None and not callable(batch_handler):
            raise TypeError("steer: batch_handler must be callable")
        if (batch_size is not None and batch_size < 1) or max_queue_size < 1:
            raise ValueError("steer: batch_size and max_queue_size must be at least 1")
        self._types = frozenset(_event_class(t) for t in event_types) if event_types is not None else None
        self._providers = frozenset(providers) if providers is not None else None
        self._filters: List[PredicateFilter] = [PredicateFilter(predicate)] if predicate is not None else []
        self._transformers: List[Tuple[Callable[..., Any], str, bool]] = []
        self._handlers: List[Tuple[Callable[..., Any], str, bool]] = []
        self._correlate, self._timestamp, self._count = add_correlation, add_timestamp, add_metrics
        self._background = background
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
        self._seqs: Dict[str, int] = {}
        self._warned: Set[str] = set()
        self.events_in = self.filtered = self.transformed = self.emitted = 0
        self.dropped = self.handler_errors = self.batches = 0
        for t in transformers:
            self.add_transformer(t)
        if handler is not None:
            self.add_handler(handler)
        self._plan()
        _LIVE.add(self)

    # -- configuration ------------------------------------------------------------------------------
    def add_filter(self, predicate: Callable[[StreamEvent], Any]) -> "EventProcessor":
        self._filters.append(predicate if isinstance(predicate, PredicateFilter) else PredicateFilter(predicate))
        return self._plan()

    def add_transformer(self, transformer: Any) -> "EventProcessor":
        """An ``EventTransformer`` or a plain/async function ``event -> event | None``."""
        if isinstance(transformer, EventTransformer):
            fn, is_async = transformer.transform, inspect.iscoroutinefunction(type(transformer).transform)
        elif callable(transformer):
            fn, is_async = transformer, _is_async(transformer)
        else:
            raise TypeError("steer: a transformer is an EventTransformer or a callable")
        self._transformers.append((fn, _name(transformer), is_async))
        return self._plan()

    def add_handler(self, handler: Handler) -> "EventProcessor":
        """Called with each event that passed the filters and transformers (plain or coroutine function)."""
        if not callable(handler):
            raise TypeError("steer: a handler must be callable")
        self._handlers.append((handler, _name(handler), _is_async(handler)))
        return self._plan()

    def _plan(self) -> "EventProcessor":
        # Inline processing hands over to the worker at the first coroutine stage: the same point for
        # every event, so the handover cannot reorder a stream's events.
        stop = next((i for i, (_, _, a) in enumerate(self._transformers) if a), len(self._transformers))
        self._inline_stop = stop
        self._inline_deliver = stop == len(self._transformers) and not any(a for _, _, a in self._handlers)
        if not self._closed:
            self.process = self._compile()  # type: ignore[method-assign]
        return self

    # -- the caller's side (hot path) ---------------------------------------------------------------
    def _compile(self) -> Callable[[StreamEvent], None]:
        """``process(event)``, the Session's entry point: a closure over the configuration (no per-event
        attribute lookups or mode checks). Never raises, never waits for a handler."""
        types, providers, correlate, count = self._types, self._providers, self._correlate, self._count
        offer, run, background, seqs, terminal = self._offer, self._run, self._background, self._seqs, _TERMINAL

        def process(event: StreamEvent) -> None:
            self.events_in += 1
            if correlate:
                # metadata["sequence"]: the event's position among its call's events given to this
                # processor (0 = start), counted before any filter: a consumer of interleaved batches
                # can order a call's events and see gaps.
                rid = event.request_id
                n = seqs.get(rid, 0)
                event.metadata["sequence"] = n
                if type(event) in terminal:
                    seqs.pop(rid, None)
                else:
                    seqs[rid] = n + 1
                    if n == 0 and len(seqs) > _MAX_OPEN_CALLS:
                        seqs.pop(next(iter(seqs)), None)
            # Type and provider filters are set lookups: always here, so unwanted events take no queue room.
            if (types is not None and type(event) not in types) or (providers is not None and event.provider not in providers):
                if count:
                    self.filtered += 1
            elif background:
                offer(event, type(event) is not StreamDeltaEvent)
            else:
                run(event, -1, False)

        return process

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

    # -- the pipeline (inline, or on the worker) ----------------------------------------------------
    def _run(self, event: StreamEvent, stage: int, on_worker: bool) -> None:
        if stage < 0:
            for accept in self._filters:
                try:
                    ok = accept(event)
                except Exception as exc:
                    self._failed(accept.name, exc)
                    ok = False
                if not ok:
                    if self._count:
                        self.filtered += 1
                    return
            stage = 0
        transformers = self._transformers
        stop = len(transformers) if on_worker else self._inline_stop
        while stage < stop:
            fn, name, _ = transformers[stage]
            stage += 1
            try:
                out = fn(event)
                if inspect.isawaitable(out):
                    out = self._await(out, name, on_worker)
            except Exception as exc:
                self._failed(name, exc)
                continue
            if out is None:
                if self._count:
                    self.filtered += 1
                return
            event = out
        if not on_worker and not self._inline_deliver:
            self._offer((event, stage), type(event) is not StreamDeltaEvent)
        else:
            self._deliver(event, on_worker)

    def _deliver(self, event: StreamEvent, on_worker: bool) -> None:
        if self._timestamp:
            event.metadata["processed_at"] = time.time()  # vs event.timestamp: the time spent queued
        if self._count:
            self.emitted += 1
            if self._transformers:
                self.transformed += 1
        for fn, name, _ in self._handlers:
            try:
                out = fn(event)
                if inspect.isawaitable(out):
                    self._await(out, name, on_worker)
            except Exception as exc:
                self._failed(name, exc)
        if self._batch_handler is not None:
            batch = self._batch
            batch.append(event)
            n = len(batch)
            if n >= self._batch_size:
                self._cut(on_worker, full=True)
            elif n == 1 and not on_worker:
                self._offer(_TICK, True, 0)  # the worker arms the timeout of the batch just opened

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
            self._failed(_name(self._batch_handler), exc)

    # -- worker thread ------------------------------------------------------------------------------
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

    # -- lifecycle ----------------------------------------------------------------------------------
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

    def shutdown(self, timeout: Optional[float] = 5.0) -> bool:
        """Flush, then stop the worker. Events offered afterwards are dropped (and counted)."""
        done = self.flush(timeout)
        self._closed = True
        self.process = self._refuse  # type: ignore[method-assign]
        if self._thread is not None:
            self._queue.put(_STOP)
        _LIVE.discard(self)
        return done

    def _refuse(self, event: StreamEvent) -> None:
        self.events_in += 1
        self._drop(1)

    @property
    def wants_deltas(self) -> bool:
        """False when the type filter excludes deltas: steer then does not even build them."""
        return self._types is None or StreamDeltaEvent in self._types

    @property
    def metrics(self) -> ProcessorMetrics:
        return ProcessorMetrics(self.events_in, self.filtered, self.transformed, self.emitted, self.dropped,
                                self.handler_errors, self.batches, self._queue.qsize())

    def get_metrics(self) -> Dict[str, int]:
        return self.metrics.as_dict()


def _work(ref: "weakref.ReferenceType[EventProcessor]", q: "queue.SimpleQueue[Any]") -> None:
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


def create_event_processor(**options: Any) -> EventProcessor:
    """``EventProcessor(**options)``; see the class for the options."""
    return EventProcessor(**options)


_LIVE: "weakref.WeakSet[EventProcessor]" = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    # Daemon worker threads still run while atexit handlers do, so accepted events get delivered.
    deadline = time.monotonic() + _EXIT_FLUSH_S
    for processor in list(_LIVE):
        try:
            processor.flush(timeout=max(0.0, deadline - time.monotonic()))
        except Exception:  # pragma: no cover - never fail interpreter exit
            pass


def _event_class(spec: Any) -> type:
    if isinstance(spec, type) and issubclass(spec, StreamEvent):
        return spec
    if isinstance(spec, str):
        cls = EVENT_TYPES.get(_SHORT_NAMES.get(spec.lower(), spec))
        if cls is not None:
            return cls
    raise ValueError(f"steer: unknown event type {spec!r}; use a class or one of {sorted(EVENT_TYPES)}")


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


def _name(fn: Any) -> str:
    if isinstance(fn, EventTransformer):
        return type(fn).__qualname__
    return getattr(fn, "__qualname__", None) or type(fn).__qualname__


__all__ = ["EventProcessor", "EventTransformer", "PredicateFilter", "ProcessorMetrics", "create_event_processor"]

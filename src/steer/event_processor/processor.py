"""EventProcessor: filter, transform, correlate, batch and deliver the events of every observed call.

One processor serves every call of an ``instrument()``/``wrap()`` configuration, from any thread or
event loop. Inline (the default), filters, plain transformers and plain handlers run in the caller's
thread as each event is emitted; with ``background=True`` the caller only enqueues. Batch handlers,
and every stage from the first coroutine transformer or handler on, always run on the processor's
worker thread (worker.py: the queue, its overflow policy, batching). docs/events.md explains the
choices for users.
"""

from __future__ import annotations

import inspect
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from steer.event_processor.stages import (
    EventTransformer, PredicateFilter, ProcessorMetrics, event_class, is_async, stage_name,
)
from steer.event_processor.worker import Worker
from steer.events import StreamCompleteEvent, StreamDeltaEvent, StreamErrorEvent, StreamEvent

Handler = Callable[[StreamEvent], Any]
_TERMINAL = frozenset((StreamCompleteEvent, StreamErrorEvent))
_MAX_OPEN_CALLS = 100_000  # bound on the per-call sequence counters (calls normally end and free theirs)


class EventProcessor(Worker):
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
        self._types = frozenset(event_class(t) for t in event_types) if event_types is not None else None
        self._providers = frozenset(providers) if providers is not None else None
        self._filters: List[PredicateFilter] = [PredicateFilter(predicate)] if predicate is not None else []
        self._transformers: List[Tuple[Callable[..., Any], str, bool]] = []
        self._handlers: List[Tuple[Callable[..., Any], str, bool]] = []
        self._correlate, self._timestamp, self._count = add_correlation, add_timestamp, add_metrics
        self._background = background
        self._init_worker(max_queue_size, batch_size, batch_timeout_ms, batch_handler)
        self._seqs: Dict[str, int] = {}
        self.events_in = self.filtered = self.transformed = self.emitted = 0
        for t in transformers:
            self.add_transformer(t)
        if handler is not None:
            self.add_handler(handler)
        self._plan()

    # -- configuration ------------------------------------------------------------------------------
    def add_filter(self, predicate: Callable[[StreamEvent], Any]) -> "EventProcessor":
        self._filters.append(predicate if isinstance(predicate, PredicateFilter) else PredicateFilter(predicate))
        return self._plan()

    def add_transformer(self, transformer: Any) -> "EventProcessor":
        """An ``EventTransformer`` or a plain/async function ``event -> event | None``."""
        if isinstance(transformer, EventTransformer):
            fn, asynchronous = transformer.transform, inspect.iscoroutinefunction(type(transformer).transform)
        elif callable(transformer):
            fn, asynchronous = transformer, is_async(transformer)
        else:
            raise TypeError("steer: a transformer is an EventTransformer or a callable")
        self._transformers.append((fn, stage_name(transformer), asynchronous))
        return self._plan()

    def add_handler(self, handler: Handler) -> "EventProcessor":
        """Called with each event that passed the filters and transformers (plain or coroutine function)."""
        if not callable(handler):
            raise TypeError("steer: a handler must be callable")
        self._handlers.append((handler, stage_name(handler), is_async(handler)))
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
            self._add_to_batch(event, on_worker)

    # -- lifecycle ----------------------------------------------------------------------------------
    def shutdown(self, timeout: Optional[float] = 5.0) -> bool:
        """Flush, then stop the worker. Events offered afterwards are dropped (and counted)."""
        done = self.flush(timeout)
        self.process = self._refuse  # type: ignore[method-assign]
        self._stop_worker()
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


def create_event_processor(**options: Any) -> EventProcessor:
    """``EventProcessor(**options)``; see the class for the options."""
    return EventProcessor(**options)


__all__ = ["EventProcessor", "create_event_processor"]

"""The pieces an EventProcessor is configured with: filters, transformers, its metrics, and the
helpers that read a stage's kind and name."""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Optional

from steer.events import EVENT_TYPES, StreamEvent

_SHORT_NAMES = {"start": "StreamStartEvent", "delta": "StreamDeltaEvent", "usage": "StreamUsageEvent",
                "complete": "StreamCompleteEvent", "error": "StreamErrorEvent", "stall": "StreamStallEvent"}


class PredicateFilter:
    """Keeps the events for which ``predicate(event)`` is true. A predicate that raises rejects the
    event (counted as filtered and as a handler error), so a bug cannot let unwanted events through."""

    __slots__ = ("predicate", "name")

    def __init__(self, predicate: Callable[[StreamEvent], Any]) -> None:
        if not callable(predicate):
            raise TypeError("steer: PredicateFilter needs a callable")
        if is_async(predicate):
            raise TypeError("steer: a predicate must be a plain function; filter in an async transformer instead")
        self.predicate = predicate
        self.name = stage_name(predicate)

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


def event_class(spec: Any) -> type:
    """An event class, or its name ("StreamDeltaEvent") or short name ("delta")."""
    if isinstance(spec, type) and issubclass(spec, StreamEvent):
        return spec
    if isinstance(spec, str):
        cls = EVENT_TYPES.get(_SHORT_NAMES.get(spec.lower(), spec))
        if cls is not None:
            return cls
    raise ValueError(f"steer: unknown event type {spec!r}; use a class or one of {sorted(EVENT_TYPES)}")


def is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


def stage_name(fn: Any) -> str:
    if isinstance(fn, EventTransformer):
        return type(fn).__qualname__
    return getattr(fn, "__qualname__", None) or type(fn).__qualname__

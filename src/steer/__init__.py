"""steer: OpenTelemetry traces and metrics for every streamed LLM call, with one line.

    import steer
    steer.instrument()

Public surface only; see README.md and docs/ for what is emitted.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from steer.attached import context
from steer.events import (StreamCompleteEvent, StreamDeltaEvent, StreamErrorEvent, StreamEvent, StreamStallEvent,
                          StreamStartEvent, StreamUsageEvent, ToolCall, Usage)

__version__ = "0.1.0"


# Same keywords as instrumentation.build_runtime on purpose (must stay): the public signature is spelled out
# for users, help() and type checkers rather than hidden behind **kwargs.
def instrument(
    providers: Any = None,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    capture_content: Any = None,
    estimate_usage: bool = True,
    on_start: Optional[Callable[..., Any]] = None,
    on_delta: Optional[Callable[..., Any]] = None,
    on_usage: Optional[Callable[..., Any]] = None,
    on_complete: Optional[Callable[..., Any]] = None,
    on_error: Optional[Callable[..., Any]] = None,
    event_processor: Any = None,
    **options: Any,
) -> None:
    """Patch the installed provider SDKs so every call becomes a span plus metrics (idempotent).

    ``capture_content``: True/False, or a content mode: ``"NO_CONTENT"``, ``"SPAN_ONLY"``, ``"EVENT_ONLY"``,
    ``"SPAN_AND_EVENT"`` (default: ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``; True is SPAN_ONLY).
    Extra options: ``logger_provider`` (for the ``gen_ai.client.inference.operation.details`` event;
    default the global one), ``content_max_chars``, ``redact`` (a ``str -> str`` hook applied to captured
    content), ``chunk_gap_metric`` (``"per_stream"`` or ``"per_chunk"``), ``provider_name``,
    ``json_max_depth`` / ``json_max_bytes`` (bounds of JSON-mode tracking), ``stall_after`` (seconds of
    silence before an open stream is reported stalled; None/0: off) and ``on_stall`` (its callback),
    ``finish_in_background`` (default True: the end of a call is recorded on steer's background thread;
    see ``flush``).
    """
    from steer import instrumentation as _instrument

    _instrument.instrument(
        providers=providers, tracer_provider=tracer_provider, meter_provider=meter_provider,
        capture_content=capture_content, estimate_usage=estimate_usage, on_start=on_start, on_delta=on_delta,
        on_usage=on_usage, on_complete=on_complete, on_error=on_error, event_processor=event_processor, **options,
    )


def uninstrument() -> None:
    """Restore every patched attribute exactly (idempotent)."""
    from steer import instrumentation as _instrument

    _instrument.uninstrument()


def instrumentation_status() -> Any:
    """What steer patched and what it could not (target -> status, a dict), with ``.patched`` (the
    patched targets) and ``.peers``: other GenAI instrumentations (OpenTelemetry's openai-v2,
    OpenLLMetry, OpenInference, OpenLIT, ...) found wrapping the same SDK methods -> those methods.
    Each such peer is also logged once as a warning: every call it shares with steer is traced twice."""
    from steer import instrumentation as _instrument

    return _instrument.instrumentation_status()


def flush(timeout: Optional[float] = 5.0) -> bool:
    """Wait until every call that already ended is recorded (span ended, metric points taken).

    steer records the end of a call on a background thread (``finish_in_background``, the default);
    ``flush()`` is for code that reads an exporter right after a call (tests). The ``force_flush()``
    and ``shutdown()`` of the providers steer reports to, ``uninstrument()`` and interpreter exit
    flush too. True when everything was recorded within ``timeout`` seconds.
    """
    from steer.telemetry import background

    return background.flush(timeout)


def wrap(client_or_stream: Any, **options: Any) -> Any:
    """Observe one client or one stream, without global patching. Same options as ``instrument``."""
    from steer.instrumentation import build_runtime
    from steer.wrapping.explicit import wrap as _wrap

    # The Runtime is built here, in the composition root: steer.wrapping may not import steer.instrumentation.
    return _wrap(client_or_stream, build_runtime(**options))


def __getattr__(name: str) -> Any:
    # The EventProcessor pipeline is imported on first use, keeping `import steer` light.
    if name in ("EventProcessor", "create_event_processor", "PredicateFilter", "EventTransformer"):
        from steer import event_processor

        return getattr(event_processor, name)
    raise AttributeError(f"module 'steer' has no attribute {name!r}")


__all__ = [
    "instrument", "uninstrument", "instrumentation_status", "flush", "wrap", "context", "EventProcessor", "create_event_processor", "PredicateFilter",
    "EventTransformer", "StreamEvent", "StreamStartEvent", "StreamDeltaEvent", "StreamUsageEvent",
    "StreamCompleteEvent", "StreamErrorEvent", "StreamStallEvent", "Usage", "ToolCall", "__version__",
]

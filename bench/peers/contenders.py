"""Contender registry (adapted from the team's shared/bench/contenders.py: provider-aware, with steer
and the Anthropic instrumentations of the same peer projects).

A contender is ONE small function that instruments the ``openai`` (or ``anthropic``, ``ctx.provider``)
SDK in the current process.
It is called exactly once, in a fresh worker subprocess, BEFORE any OpenAI client is created:

    @contender("my-lib", dists=["my-lib-dist-name"])
    def my_lib(ctx: Ctx) -> None:
        import my_lib
        my_lib.instrument_openai(
            tracer_provider=ctx.tracer_provider,
            meter_provider=ctx.meter_provider,
            capture_content=ctx.capture_content,
        )

* ``ctx.capture_content`` (bool): turn prompt/completion content capture on or off.
* ``ctx.tracer_provider`` / ``ctx.meter_provider`` / ``ctx.logger_provider``: the shared SDK providers
  (also installed as the OTel globals) that every instrumented contender exports through, so the
  export cost is identical for everyone (SimpleSpanProcessor -> InMemorySpanExporter,
  InMemoryMetricReader, SimpleLogRecordProcessor -> InMemoryLogExporter).
* ``ctx.note(text)``: record something worth knowing (config quirks, fallbacks); it ends up in the JSON.
* ``dists``: distribution names whose installed versions are reported.
* ``instrumented=False`` only for the floor ("bare"): then no OTel providers are installed.

Raise an exception to mark the contender as failed: the error is recorded and the run moves on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

HERE = Path(__file__).resolve().parent


@dataclass
class Ctx:
    capture_content: bool
    provider: str = "openai"  # which SDK the scenario streams from: "openai" or "anthropic"
    tracer_provider: Any = None
    meter_provider: Any = None
    logger_provider: Any = None
    notes: List[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.notes.append(text)


@dataclass
class ContenderSpec:
    name: str
    setup: Callable[[Ctx], Any]
    dists: Sequence[str] = ()
    instrumented: bool = True
    description: str = ""
    providers: Sequence[str] = ("openai", "anthropic")  # scenarios it takes part in


CONTENDERS: Dict[str, ContenderSpec] = {}

# The order used when --contenders is not given.
DEFAULT_CONTENDERS = ["bare", "steer", "otel-official", "openllmetry", "openlit", "openinference"]


def contender(name: str, dists: Sequence[str] = (), instrumented: bool = True,
              providers: Sequence[str] = ("openai", "anthropic")):
    def deco(fn: Callable[[Ctx], Any]) -> Callable[[Ctx], Any]:
        CONTENDERS[name] = ContenderSpec(
            name=name,
            setup=fn,
            dists=tuple(dists),
            instrumented=instrumented,
            providers=tuple(providers),
            description=(fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "",
        )
        return fn

    return deco


# --------------------------------------------------------------------------------------------------
# Contenders
# --------------------------------------------------------------------------------------------------


@contender("bare", instrumented=False)
def bare(ctx: Ctx) -> None:
    """openai SDK with no instrumentation at all (the floor)."""
    return None


@contender("steer", dists=["steer"])
def steer_(ctx: Ctx) -> None:
    """steer.instrument() with the shared providers (install the project into the venv first)."""
    import steer

    steer.instrument(
        providers=[ctx.provider],
        tracer_provider=ctx.tracer_provider,
        meter_provider=ctx.meter_provider,
        capture_content=ctx.capture_content,
    )
    # instrument() loads the tokenizer encodings (for usage estimation) in a daemon thread. Let it finish
    # here, as it long has in a running application, so that it does not share the CPU with timed streams.
    import threading

    for t in threading.enumerate():
        if t is not threading.main_thread() and t.daemon and t.name != "steer-end-of-call":  # that one lives on
            t.join(60)
    ctx.note("waited for steer's encoding warm-up thread before the timed streams")


# OpenTelemetry contrib has released no Anthropic instrumentation: openai only.
@contender("otel-official", dists=["opentelemetry-instrumentation-openai-v2", "opentelemetry-util-genai"], providers=("openai",))
def otel_official(ctx: Ctx) -> None:
    """opentelemetry-instrumentation-openai-v2 (OpenTelemetry contrib), content on span attributes."""
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    from opentelemetry.util.genai.utils import is_experimental_mode

    # openai-v2 has two code paths: the legacy v1.30-semconv one (content flag "true", content as log
    # events) and the util-genai TelemetryHandler one (flag "span_only"/"span_and_event"/"no_content").
    # With opentelemetry-util-genai 1.1b0, is_experimental_mode() is always True, i.e. the latter.
    if is_experimental_mode():
        mode = "span_only" if ctx.capture_content else "no_content"
        ctx.note(f"util-genai path; OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT={mode}")
    else:
        mode = "true" if ctx.capture_content else "false"
        ctx.note(f"legacy v1.30 path; OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT={mode}")
    os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = mode
    OpenAIInstrumentor().instrument(
        tracer_provider=ctx.tracer_provider,
        meter_provider=ctx.meter_provider,
        logger_provider=ctx.logger_provider,
    )


@contender("openllmetry", dists=["opentelemetry-instrumentation-openai", "opentelemetry-instrumentation-anthropic",
                                   "opentelemetry-semantic-conventions-ai"])
def openllmetry(ctx: Ctx) -> None:
    """Traceloop's opentelemetry-instrumentation-openai / -anthropic alone (no traceloop-sdk)."""
    os.environ["TRACELOOP_TRACE_CONTENT"] = "true" if ctx.capture_content else "false"
    if ctx.provider == "anthropic":
        from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor as Instrumentor
    else:
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor as Instrumentor

    Instrumentor().instrument(
        tracer_provider=ctx.tracer_provider,
        meter_provider=ctx.meter_provider,
        logger_provider=ctx.logger_provider,
    )


@contender("openlit", dists=["openlit"])
def openlit_(ctx: Ctx) -> None:
    """openlit.init() with every instrumentor but the scenario's SDK disabled; reuses the global providers."""
    import openlit
    from openlit._instrumentors import MODULE_NAME_MAP

    disabled = [n for n in MODULE_NAME_MAP if n != ctx.provider]
    # pricing_json: a local file, so that init() does not try to download pricing from GitHub.
    openlit.init(
        application_name="peers-bench",
        environment="bench",
        capture_message_content=ctx.capture_content,
        disabled_instrumentors=disabled,
        pricing_json=str(HERE / "openlit_pricing.json"),
    )
    ctx.note(f"openlit.init(disabled_instrumentors=<all {len(disabled)} but {ctx.provider!r}>)")


@contender("openinference", dists=["openinference-instrumentation-openai", "openinference-instrumentation-anthropic",
                                     "openinference-instrumentation"])
def openinference(ctx: Ctx) -> None:
    """Arize openinference-instrumentation-openai / -anthropic (spans only, no metrics)."""
    from openinference.instrumentation import TraceConfig

    if ctx.provider == "anthropic":
        from openinference.instrumentation.anthropic import AnthropicInstrumentor as Instrumentor
    else:
        from openinference.instrumentation.openai import OpenAIInstrumentor as Instrumentor

    hide = not ctx.capture_content
    Instrumentor().instrument(
        tracer_provider=ctx.tracer_provider,
        config=TraceConfig(hide_inputs=hide, hide_outputs=hide),
    )


# --------------------------------------------------------------------------------------------------
# Shared OpenTelemetry SDK pipeline (same for every instrumented contender)
# --------------------------------------------------------------------------------------------------


class Telemetry:
    """OTel SDK providers with in-memory sinks, installed as the globals before the contender's setup()
    (``install_globals=False``: passed to contenders only; with a global tracer provider the anthropic SDK
    makes its own span, which a bare stream would then pay for)."""

    def __init__(self, install_globals: bool = True) -> None:
        from opentelemetry import _logs, metrics, trace
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import InMemoryLogExporter, SimpleLogRecordProcessor
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        resource = Resource.create({"service.name": "peers-bench"})
        self.span_exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.span_exporter))
        if install_globals:
            trace.set_tracer_provider(self.tracer_provider)

        self.metric_reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(resource=resource, metric_readers=[self.metric_reader])
        if install_globals:
            metrics.set_meter_provider(self.meter_provider)

        self.log_exporter = InMemoryLogExporter()
        self.logger_provider = LoggerProvider(resource=resource)
        self.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.log_exporter))
        if not install_globals:
            return
        _logs.set_logger_provider(self.logger_provider)
        try:  # deprecated Events API, still used by some instrumentations
            from opentelemetry import _events
            from opentelemetry.sdk._events import EventLoggerProvider

            _events.set_event_logger_provider(EventLoggerProvider(self.logger_provider))
        except Exception:  # pragma: no cover - not present in every SDK version
            pass

    def clear(self) -> None:
        self.tracer_provider.force_flush()  # a call still in steer's end-of-call queue would land after the clear
        self.span_exporter.clear()
        self.log_exporter.clear()

    def finished_spans(self):
        self.tracer_provider.force_flush()  # steer records a call's end on its background thread
        return list(self.span_exporter.get_finished_spans())

    def logs(self):
        return list(self.log_exporter.get_finished_logs())

    def metrics_data(self):
        self.tracer_provider.force_flush()  # drains steer's end-of-call queue (metric points too)
        return self.metric_reader.get_metrics_data()

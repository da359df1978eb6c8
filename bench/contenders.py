"""Contender registry of every bench driver (bench/worker.py runs one contender per process for
overhead.py and peers/peers.py; percall.py and inprocess.py use it too). Adapted from the team's
shared/bench/contenders.py: provider-aware, with steer, steer's placebo and variants, and the Anthropic
instrumentations of the same peer projects.

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
* ``ctx.quick``: a smoke run, nothing is timed (no need to wait for warm-up threads); ``ctx.alt_src``: the
  other steer source tree of ``steer-alt``.
* ``instrumented=False`` only for the floor ("bare"): then no OTel providers are installed.
* ``observes=False``: the contender's telemetry sees no stream (the placebo), so nothing is checked on it.
* ``dead_otlp="refused"|"hanging"``: the providers are steer's own (otel_setup) with OTLP exporters
  pointed at a loopback endpoint that refuses connections or never answers.

Raise an exception to mark the contender as failed: the error is recorded and the run moves on.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent


@dataclass
class Ctx:
    capture_content: bool
    provider: str = "openai"  # which SDK the scenario streams from: "openai" or "anthropic"
    tracer_provider: Any = None
    meter_provider: Any = None
    logger_provider: Any = None
    notes: List[str] = field(default_factory=list)
    quick: bool = False
    alt_src: str = ""

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
    observes: bool = True
    dead_otlp: str = ""


CONTENDERS: Dict[str, ContenderSpec] = {}

# The order used when --contenders is not given.
DEFAULT_CONTENDERS = ["bare", "steer", "otel-official", "openllmetry", "openlit", "openinference"]


def contender(name: str, dists: Sequence[str] = (), instrumented: bool = True,
              providers: Sequence[str] = ("openai", "anthropic"), observes: bool = True, dead_otlp: str = ""):
    def deco(fn: Callable[[Ctx], Any]) -> Callable[[Ctx], Any]:
        CONTENDERS[name] = ContenderSpec(
            name=name,
            setup=fn,
            dists=tuple(dists),
            instrumented=instrumented,
            providers=tuple(providers),
            description=(fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "",
            observes=observes,
            dead_otlp=dead_otlp,
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


def _steer(ctx: Ctx, provider: str = "", **options: Any) -> None:
    import steer

    steer.instrument(
        providers=[provider or ctx.provider],
        tracer_provider=ctx.tracer_provider,
        meter_provider=ctx.meter_provider,
        capture_content=ctx.capture_content,
        **options,
    )
    if ctx.quick:  # a smoke run times nothing: no need to wait
        return
    # instrument() loads the tokenizer encodings (for usage estimation) in a daemon thread. Let it finish
    # here, as it long has in a running application, so that it does not share the CPU with timed streams.
    for t in threading.enumerate():
        if t is not threading.main_thread() and t.daemon and t.name != "steer-end-of-call":  # that one lives on
            t.join(60)
    ctx.note("waited for steer's encoding warm-up thread before the timed streams")


@contender("steer", dists=["steer"])
def steer_(ctx: Ctx) -> None:
    """steer.instrument() with the shared providers (install the project into the venv first)."""
    _steer(ctx)


@contender("steer-alt", dists=["steer"])
def steer_alt(ctx: Ctx) -> None:
    """steer imported from another source tree (--alt-src DIR, its src/ folder): before/after in one run."""
    sys.path.insert(0, ctx.alt_src)
    _steer(ctx)


# The placebo: steer and the OpenTelemetry SDK imported and instrument()ed exactly as for "steer", but for
# the *other* provider, so the measured SDK is not hooked. steer-idle - bare is what merely having them in
# the process costs (imports, a larger heap for the GC to walk, another memory layout); steer - steer-idle
# is what observing the stream costs.
@contender("steer-idle", dists=["steer"], observes=False)
def steer_idle(ctx: Ctx) -> None:
    """steer instrument()ed for the other provider only: the measured SDK is not hooked (placebo)."""
    _steer(ctx, provider="anthropic" if ctx.provider in ("openai", "openai-json") else "openai")


@contender("steer-per-chunk-gaps", dists=["steer"])
def steer_per_chunk_gaps(ctx: Ctx) -> None:
    """steer with chunk_gap_metric="per_chunk" (one histogram point per chunk gap)."""
    _steer(ctx, chunk_gap_metric="per_chunk")


# An exporter that refuses or hangs must not change the stream's timing: steer's own providers (spans
# through a BatchSpanProcessor, metrics every second) exporting to a dead loopback endpoint.
@contender("steer-otlp-refused", dists=["steer"], dead_otlp="refused")
def steer_otlp_refused(ctx: Ctx) -> None:
    """steer whose OTLP exporters point at a port that refuses connections."""
    _steer(ctx)


@contender("steer-otlp-hanging", dists=["steer"], dead_otlp="hanging")
def steer_otlp_hanging(ctx: Ctx) -> None:
    """steer whose OTLP exporters point at a port that accepts connections and never answers."""
    _steer(ctx)


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
        pricing_json=str(HERE / "peers" / "openlit_pricing.json"),
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


def dead_otlp_endpoint(kind: str) -> str:
    """A loopback URL that refuses connections ("refused"), or accepts them and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    if kind == "refused":
        sock.close()  # nothing listens there now
    else:
        sock.listen(64)
        held: List[Any] = []

        def accept() -> None:  # keep every connection open, read nothing back, answer nothing
            while True:
                held.append(sock.accept()[0])

        threading.Thread(target=accept, daemon=True, name="hanging-otlp").start()
    return f"http://127.0.0.1:{port}"


class Telemetry:
    """OTel SDK providers with in-memory sinks. ``install_globals``: also the OTel globals, before the
    contender's setup() (the peers harness: some instrumentations only use the globals); without them
    they are passed to the contender only (with a global tracer provider the anthropic SDK makes its own
    span, which a bare stream would then pay for). ``otlp_endpoint``: steer's own providers (otel_setup)
    exporting there as well as to the in-memory sinks."""

    def __init__(self, install_globals: bool = True, otlp_endpoint: Optional[str] = None) -> None:
        from opentelemetry import _logs, metrics, trace
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import InMemoryLogExporter, SimpleLogRecordProcessor
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        resource = Resource.create({"service.name": "steer-bench"})
        self.span_exporter = InMemorySpanExporter()
        self.metric_reader = InMemoryMetricReader()
        if otlp_endpoint:
            from steer import otel_setup

            os.environ.update(OTEL_BSP_SCHEDULE_DELAY="200", OTEL_METRIC_EXPORT_INTERVAL="1000",
                              OTEL_EXPORTER_OTLP_TIMEOUT="10", OTEL_SERVICE_NAME="steer-bench")
            self.tracer_provider = otel_setup.build_tracer_provider([SimpleSpanProcessor(self.span_exporter)],
                                                                    otlp_endpoint=otlp_endpoint)
            self.meter_provider = otel_setup.build_meter_provider([self.metric_reader], otlp_endpoint=otlp_endpoint)
        else:
            self.tracer_provider = TracerProvider(resource=resource)
            self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.span_exporter))
            self.meter_provider = MeterProvider(resource=resource, metric_readers=[self.metric_reader])
        self.log_exporter = InMemoryLogExporter()
        self.logger_provider = LoggerProvider(resource=resource)
        self.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.log_exporter))
        if not install_globals:
            return
        trace.set_tracer_provider(self.tracer_provider)
        metrics.set_meter_provider(self.meter_provider)
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

    def _metrics(self):
        data = self.metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                yield from sm.metrics

    def metric_points(self) -> Dict[str, int]:
        """Data points per metric name."""
        out: Dict[str, int] = {}
        for m in self._metrics():
            out[m.name] = out.get(m.name, 0) + len(list(m.data.data_points))
        return out

    def active_streams(self) -> int:
        return sum(p.value for m in self._metrics() if m.name == "steer.client.streams.active" for p in m.data.data_points)

"""Which OpenTelemetry providers steer reports to, and the SDK it sets up when the application set none.

Per signal (traces, metrics), first match wins:
1. the provider passed to ``instrument(tracer_provider=..., meter_provider=...)``;
2. the application's global provider (``trace.set_tracer_provider`` & co., or a distro /
   ``opentelemetry-instrument`` that configured one): steer uses it and configures nothing;
3. an SDK provider built here from the standard ``OTEL_*`` variables, installed as the global one so
   the application's own spans and other instrumentations share its pipeline and its traces.

Step 3 happens only when the environment names somewhere to send (an OTLP endpoint or an exporter
list). With nothing set, steer stays on the global proxy providers, which follow whatever the
application configures later; nothing then retries against a localhost collector that is not there.

Exporting never runs on the caller's thread: spans go through a BatchSpanProcessor (an O(1) enqueue
on span end), metrics through a PeriodicExportingMetricReader or a pull reader (Prometheus). The
exporters' network I/O, timeouts and retries happen on their own threads.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Callable, Iterable, List, Mapping, Optional, Sequence, Tuple

log = logging.getLogger("steer")

# The specification's default OTLP transport; the Python SDK's own auto-configuration uses grpc when no
# protocol is set, steer follows the spec (port 4318, the path most collectors and vendors document).
DEFAULT_PROTOCOL = "http/protobuf"
_PROTOCOL_ENTRY_POINT = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}
_GROUP = {"traces": "opentelemetry_traces_exporter", "metrics": "opentelemetry_metrics_exporter",
          "logs": "opentelemetry_logs_exporter"}
_SIGNAL_ENV = {"traces": "TRACES", "metrics": "METRICS", "logs": "LOGS"}

_LOCK = threading.Lock()
# What steer itself set up in this process (None: nothing), for describe() and the CLI.
_CONFIGURED: dict = {"traces": None, "metrics": None, "logs": None}


def resolve_providers(tracer_provider: Any = None, meter_provider: Any = None) -> Tuple[Any, Any]:
    """The providers steer's Runtime should use (``None`` means "the global one").

    Called by every ``instrument()``; sets the SDK up at most once per process and per signal.
    """
    env = os.environ
    if _truthy(env.get("OTEL_SDK_DISABLED")):
        return tracer_provider, meter_provider
    with _LOCK:
        try:
            if tracer_provider is None and _CONFIGURED["traces"] is None and not tracing_configured():
                from opentelemetry import trace

                _install("traces", "tracer", _tracer_provider(env, (), None, None, require_exporter=True),
                         trace.set_tracer_provider)
            if meter_provider is None and _CONFIGURED["metrics"] is None and not metrics_configured():
                from opentelemetry import metrics

                _install("metrics", "meter", _meter_provider(env, (), None, None, require_exporter=True),
                         metrics.set_meter_provider)
        except Exception as exc:  # a broken exporter package must not break instrument()
            log.warning("steer: could not set up the OpenTelemetry SDK from the environment: %s", exc)
    return tracer_provider, meter_provider


def _install(signal: str, kind: str, built: Tuple[Any, List[str]], set_global: Callable[[Any], Any]) -> None:
    """Makes the provider steer built from the environment (if any) the global one, and remembers where it
    exports."""
    provider, names = built
    if provider is None:
        return
    set_global(provider)
    _CONFIGURED[signal] = ", ".join(names)
    what = "events" if signal == "logs" else signal
    log.info("steer: no %s provider was configured; exporting %s to %s", kind, what, _CONFIGURED[signal])


def resolve_logger_provider(logger_provider: Any = None) -> Any:
    """The logger provider for the ``gen_ai.client.inference.operation.details`` event, by the same
    rules as traces and metrics: the one passed in, else the application's global one, else one built
    from ``OTEL_LOGS_EXPORTER`` / ``OTEL_EXPORTER_OTLP_*`` (a BatchLogRecordProcessor per exporter)
    and installed as the global one. Only called when the event is switched on."""
    if logger_provider is not None or _truthy(os.environ.get("OTEL_SDK_DISABLED")):
        return logger_provider
    with _LOCK:
        try:
            if _CONFIGURED["logs"] is None and not logging_configured():
                from opentelemetry import _logs

                _install("logs", "logger", _logger_provider(os.environ, None), _logs.set_logger_provider)
        except Exception as exc:  # a broken exporter package must not break instrument()
            log.warning("steer: could not set up OpenTelemetry logs from the environment: %s", exc)
    return None


def logging_configured() -> bool:
    """True when the application (or a distro) installed a global logger provider."""
    from opentelemetry import _logs
    from opentelemetry._logs._internal import ProxyLoggerProvider

    return not isinstance(_logs.get_logger_provider(), ProxyLoggerProvider)


def _logger_provider(env: Mapping[str, str], otlp_endpoint: Optional[str]) -> Tuple[Any, List[str]]:
    exporters = _exporters("logs", env, otlp_endpoint)
    if not exporters:
        return None, []
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    provider = LoggerProvider(resource=Resource.create({}))
    for _, exporter in exporters:
        provider.add_log_record_processor(BatchLogRecordProcessor(exporter))  # reads OTEL_BLRP_*
    return provider, [name for name, _ in exporters]


def tracing_configured() -> bool:
    """True when the application (or a distro) installed a global tracer provider."""
    from opentelemetry import trace

    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def metrics_configured() -> bool:
    """True when the application (or a distro) installed a global meter provider."""
    from opentelemetry import metrics

    try:
        from opentelemetry.metrics._internal import _ProxyMeterProvider
    except ImportError:  # pragma: no cover - very old API; treat a NoOp as "not configured"
        return not isinstance(metrics.get_meter_provider(), metrics.NoOpMeterProvider)
    return not isinstance(metrics.get_meter_provider(), _ProxyMeterProvider)


def describe() -> Mapping[str, Optional[str]]:
    """What steer set up in this process: ``{"traces": "otlp (http/protobuf)", "metrics": None}``."""
    return dict(_CONFIGURED)


def build_tracer_provider(
    extra_processors: Sequence[Any] = (),
    *,
    otlp_endpoint: Optional[str] = None,
    resource_attributes: Optional[Mapping[str, Any]] = None,
    require_exporter: bool = False,
) -> Any:
    """An SDK TracerProvider exporting as the ``OTEL_*`` environment says, plus ``extra_processors``.

    ``otlp_endpoint`` adds an OTLP/HTTP exporter to that base URL (``/v1/traces`` is appended), for
    tools such as ``steer demo --otlp URL``; ``resource_attributes`` are added to the resource
    (``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` still apply). Returns None when
    ``require_exporter`` and nothing would be exported. Does not install the provider globally.
    """
    return _tracer_provider(os.environ, extra_processors, otlp_endpoint, resource_attributes, require_exporter=require_exporter)[0]


def _tracer_provider(env: Mapping[str, str], extra_processors: Sequence[Any], otlp_endpoint: Optional[str],
                     resource_attributes: Optional[Mapping[str, Any]], *, require_exporter: bool) -> Tuple[Any, List[str]]:
    exporters = _exporters("traces", env, otlp_endpoint)
    if require_exporter and not exporters and not extra_processors:
        return None, []
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # TracerProvider reads OTEL_TRACES_SAMPLER* and span limits; Resource.create reads
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; BatchSpanProcessor reads OTEL_BSP_*.
    provider = TracerProvider(resource=Resource.create(dict(resource_attributes or {})))
    for _, exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    for processor in extra_processors:
        provider.add_span_processor(processor)
    return provider, [name for name, _ in exporters]


# build_tracer_provider's shape on purpose (must stay): one public builder per signal, each with its SDK's
# own classes (processors vs readers).
def build_meter_provider(
    extra_readers: Sequence[Any] = (),
    *,
    otlp_endpoint: Optional[str] = None,
    resource_attributes: Optional[Mapping[str, Any]] = None,
    require_exporter: bool = False,
) -> Any:
    """An SDK MeterProvider exporting as the ``OTEL_*`` environment says, plus ``extra_readers``.

    Push exporters get a PeriodicExportingMetricReader (``OTEL_METRIC_EXPORT_INTERVAL``, default 60 s);
    pull readers (``prometheus``: an HTTP endpoint on ``OTEL_EXPORTER_PROMETHEUS_HOST``/``_PORT``,
    default localhost:9464) are used as they are.
    """
    return _meter_provider(os.environ, extra_readers, otlp_endpoint, resource_attributes, require_exporter=require_exporter)[0]


def _meter_provider(env: Mapping[str, str], extra_readers: Sequence[Any], otlp_endpoint: Optional[str],
                    resource_attributes: Optional[Mapping[str, Any]], *, require_exporter: bool) -> Tuple[Any, List[str]]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    exporters = _exporters("metrics", env, otlp_endpoint)
    if require_exporter and not exporters and not extra_readers:
        return None, []
    readers: List[Any] = [e if isinstance(e, MetricReader) else PeriodicExportingMetricReader(e) for _, e in exporters]
    provider = MeterProvider(metric_readers=[*readers, *extra_readers], resource=Resource.create(dict(resource_attributes or {})))
    return provider, [name for name, _ in exporters]


# -- exporters from the environment ------------------------------------------------------------------
def exporter_names(signal: str, env: Optional[Mapping[str, str]] = None) -> List[str]:
    """``OTEL_{TRACES,METRICS,LOGS}_EXPORTER`` as a list; unset means ``otlp`` when an OTLP endpoint is set,
    else nothing. ``none`` anywhere in the list means nothing at all (the specification's reading)."""
    env = os.environ if env is None else env
    raw = env.get(f"OTEL_{_SIGNAL_ENV[signal]}_EXPORTER")
    if raw is None or not raw.strip():
        endpoint = env.get(f"OTEL_EXPORTER_OTLP_{_SIGNAL_ENV[signal]}_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        return ["otlp"] if endpoint and endpoint.strip() else []
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    return [] if "none" in names else list(dict.fromkeys(names))


def otlp_protocol(signal: str, env: Optional[Mapping[str, str]] = None) -> str:
    env = os.environ if env is None else env
    raw = (env.get(f"OTEL_EXPORTER_OTLP_{_SIGNAL_ENV[signal]}_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "").strip()
    if not raw:
        return DEFAULT_PROTOCOL
    if raw not in _PROTOCOL_ENTRY_POINT:
        # http/json has no Python exporter; protobuf over HTTP reaches the same receivers.
        log.warning("steer: OTLP protocol %r is not supported here; using %s", raw, DEFAULT_PROTOCOL)
        return DEFAULT_PROTOCOL
    return raw


def _exporters(signal: str, env: Mapping[str, str], otlp_endpoint: Optional[str] = None) -> List[Tuple[str, Any]]:
    """(description, exporter or reader instance) for each name the environment lists, and an OTLP/HTTP
    exporter to ``otlp_endpoint`` when one is given.

    Names resolve through the same entry points the OpenTelemetry SDK's auto-configuration uses
    (``opentelemetry_traces_exporter`` / ``opentelemetry_metrics_exporter``), so any installed
    exporter package works; ``otlp`` picks the transport from ``OTEL_EXPORTER_OTLP_*PROTOCOL``.
    The exporters read their own settings (endpoint, headers, timeout, compression, certificates).
    """
    out: List[Tuple[str, Any]] = []
    for name in exporter_names(signal, env):
        entry_name, label = name, name
        if name == "otlp":
            protocol = otlp_protocol(signal, env)
            entry_name, label = _PROTOCOL_ENTRY_POINT[protocol], f"otlp ({protocol})"
        cls = _load_entry_point(_GROUP[signal], entry_name)
        if cls is None:
            log.warning("steer: no OpenTelemetry %s exporter named %r is installed; skipping it", signal, name)
            continue
        try:
            out.append((label, cls()))
        except Exception as exc:
            log.warning("steer: the %s exporter %r failed to start: %s", signal, name, exc)
    if otlp_endpoint:
        out.append(("otlp (http/protobuf)", _explicit_otlp(signal, otlp_endpoint)))
    return out


def _load_entry_point(group: str, name: str) -> Any:
    from importlib.metadata import entry_points

    for ep in _select(entry_points(), group):
        if ep.name == name:
            try:
                return ep.load()
            except Exception as exc:
                log.warning("steer: cannot load exporter %s from %s: %s", name, ep.value, exc)
                return None
    return None


def _select(eps: Any, group: str) -> Iterable[Any]:
    return eps.select(group=group) if hasattr(eps, "select") else eps.get(group, ())  # Python 3.9 API


def _explicit_otlp(signal: str, endpoint: str) -> Any:
    url = endpoint.rstrip("/") + "/v1/" + signal
    if signal == "logs":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

        return OTLPLogExporter(endpoint=url)
    if signal == "traces":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=url)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter(endpoint=url)


def _truthy(value: Optional[str]) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")

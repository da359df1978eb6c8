"""The ``gen_ai.client.inference.operation.details`` event: one log record per call, through the
OpenTelemetry Logs API, in the call's trace context (the trace and span ids of steer's span).

Its attributes are the call's request and response attributes and, when the content mode puts content
on events (EVENT_ONLY, SPAN_AND_EVENT), ``gen_ai.input.messages``, ``gen_ai.output.messages``,
``gen_ai.system_instructions`` and ``gen_ai.tool.definitions`` as structured values (lists of maps,
not JSON strings), redacted and capped as on spans. It is built only when the event is switched on
(``OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT`` or the mode): nothing here runs otherwise.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from steer.call import CallInfo, Outcome
from steer.config import Settings
from steer.telemetry import semconv as sc
from steer.telemetry.content import prepare, structured
from steer.telemetry.spans import CONTENT_ATTRIBUTES, SpanRecorder, bounded, response_attributes


class DetailsEvents:
    def __init__(self, logger_provider: Any, settings: Settings, spans: SpanRecorder) -> None:
        from opentelemetry._logs import LogRecord, get_logger
        from opentelemetry.trace import set_span_in_context

        from steer.telemetry.metrics import _version

        schema_url = sc.conventions(settings.semconv).schema_url
        self._logger = get_logger(sc.INSTRUMENTATION_SCOPE, _version(), logger_provider, schema_url=schema_url)
        self._record = LogRecord
        self._in_context = set_span_in_context
        self._settings = settings
        self._spans = spans  # the span's request attributes, named per the conventions in use

    def emit(self, span: Any, call: CallInfo, outcome: Outcome, content_in: Optional[Dict[str, Any]], wall_ns: int) -> None:
        attrs = self._spans.request_attributes(call)
        attrs.update(bounded(_response_attributes(outcome)))
        settings = self._settings
        if settings.content_on_event:
            content = dict(content_in or {})
            content["output"] = outcome.output_messages
            for key, value in content.items():
                if value:
                    structure, text = prepare(value, settings.content_max_chars, settings.redact, droppable=key != "output")
                    attrs[CONTENT_ATTRIBUTES[key]] = structured(text) if structure is not None else text
        self._logger.emit(self._record(timestamp=wall_ns, observed_timestamp=wall_ns, context=self._in_context(span),
                                       event_name=sc.EVENT_INFERENCE_DETAILS, attributes=attrs))


def _response_attributes(outcome: Outcome) -> Dict[str, Any]:
    attrs = response_attributes(outcome)
    usage = outcome.usage
    if usage.source == "reported":
        for key, value in ((sc.USAGE_INPUT_TOKENS, usage.input_tokens), (sc.USAGE_OUTPUT_TOKENS, usage.output_tokens)):
            if value is not None:
                attrs[key] = value
    if outcome.error_type:
        attrs[sc.ERROR_TYPE] = outcome.error_type
    return attrs

"""One CLIENT span per call: started before the request goes out, ended exactly once.

The span is never made current across a ``yield``: callers pass it explicitly, and only
``attach_around`` (synchronous work, same thread or task) ever touches the context.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from steer.call import CallInfo, Outcome, Retry
from steer.config import Settings
from steer.telemetry import semconv as sc
from steer.telemetry.content import TRUNCATED, prepare
from steer.telemetry.exportable import INT64_MAX, INT64_MIN, repaired, text_ok, value_ok

_PARAMS = {
    "max_tokens": sc.REQUEST_MAX_TOKENS,
    "temperature": sc.REQUEST_TEMPERATURE,
    "top_p": sc.REQUEST_TOP_P,
    "top_k": sc.REQUEST_TOP_K,
    "frequency_penalty": sc.REQUEST_FREQUENCY_PENALTY,
    "presence_penalty": sc.REQUEST_PRESENCE_PENALTY,
    "stop_sequences": sc.REQUEST_STOP_SEQUENCES,
    "seed": sc.REQUEST_SEED,
    "choice_count": sc.REQUEST_CHOICE_COUNT,
    "output_type": sc.OUTPUT_TYPE,
}
# Request attributes the newest conventions add (emitted only when they are opted in).
_LATEST_PARAMS = {
    **_PARAMS,
    "reasoning_level": sc.REQUEST_REASONING_LEVEL,
    "previous_response_id": sc.REQUEST_PREVIOUS_RESPONSE_ID,
}
_EXTRA = {
    "api_type": sc.OPENAI_API_TYPE,
    "service_tier": sc.OPENAI_SERVICE_TIER,
    "request_service_tier": sc.OPENAI_REQUEST_SERVICE_TIER,
    "system_fingerprint": sc.OPENAI_SYSTEM_FINGERPRINT,
}


class SpanRecorder:
    def __init__(self, tracer_provider: Any, settings: Settings) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        from steer.telemetry.metrics import _version

        conventions = sc.conventions(settings.semconv)
        self._tracer = trace.get_tracer(sc.INSTRUMENTATION_SCOPE, _version(), tracer_provider, schema_url=conventions.schema_url)
        self._params = _LATEST_PARAMS if conventions.latest else _PARAMS
        self._top_k_type = int if conventions.latest else float  # gen_ai.request.top_k: double in v1.41, int since
        self._usage_names = _usage_names(conventions)
        self._kind = SpanKind.CLIENT
        self._error_status = Status
        self._error_code = StatusCode.ERROR
        self._settings = settings

    def start(self, call: CallInfo, wall_ns: int, content: Optional[Dict[str, Any]] = None,
              attached: Optional[Dict[str, Any]] = None) -> Any:
        """``attached``: the steer.context values (user.id, session.id, custom): steer's own names win."""
        name = f"{call.operation} {call.request_model}" if call.request_model else call.operation
        attrs = self.request_attributes(call, attached)
        if content:
            attrs.update(self._content_attrs(content))
        name = clip(name, sc.MAX_ATTRIBUTE_CHARS)
        return self._tracer.start_span(name if text_ok(name) else repaired(name), kind=self._kind, attributes=attrs,
                                       start_time=wall_ns)

    def request_attributes(self, call: CallInfo, attached: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """What is known before the request goes out (the span's start; the details event has them too)."""
        attrs: Dict[str, Any] = dict(attached) if attached else {}
        attrs.update({
            sc.OPERATION_NAME: call.operation,
            sc.PROVIDER_NAME: call.provider,
            sc.REQUEST_STREAM: call.streaming,
        })
        if call.request_model:
            attrs[sc.REQUEST_MODEL] = call.request_model
        if call.server_address:
            attrs[sc.SERVER_ADDRESS] = call.server_address
        if call.server_port:
            attrs[sc.SERVER_PORT] = call.server_port
        params = self._params
        for key, value in call.params.items():
            name_ = params.get(key)
            if name_ and isinstance(value, (bool, int, float, str, list, tuple)):
                attrs[name_] = value
        top_k = attrs.get(sc.REQUEST_TOP_K)
        if isinstance(top_k, (int, float)) and not isinstance(top_k, bool):
            attrs[sc.REQUEST_TOP_K] = self._top_k_type(top_k)
        for key, value in call.extra.items():
            name_ = _EXTRA.get(key)
            if name_ and isinstance(value, (bool, int, float, str)):
                attrs[name_] = value
        return bounded(attrs)

    def end(self, span: Any, call: CallInfo, outcome: Outcome, end_wall_ns: int) -> None:
        attrs = response_attributes(outcome)
        if call.streaming:
            attrs[sc.STREAM_CHUNKS] = outcome.chunks
            attrs[sc.STREAM_END] = outcome.end
            if outcome.ttfc_s is not None:
                attrs[sc.RESPONSE_TIME_TO_FIRST_CHUNK] = outcome.ttfc_s
            if outcome.max_gap_s is not None:
                attrs[sc.STREAM_MAX_CHUNK_GAP] = outcome.max_gap_s
                attrs[sc.STREAM_MEAN_CHUNK_GAP] = outcome.mean_gap_s
        self._usage_attrs(attrs, outcome)
        if outcome.cost is not None:
            attrs[sc.USAGE_COST] = outcome.cost.usd
            attrs[sc.USAGE_COST_SOURCE] = outcome.cost.source
            attrs[sc.USAGE_COST_PRICES_VERSION] = outcome.cost.prices_version
        elif outcome.unpriced:
            attrs[sc.USAGE_COST_UNPRICED] = outcome.unpriced
        if outcome.json is not None:
            j = outcome.json
            attrs[sc.JSON_OBJECTS] = j.objects
            attrs[sc.JSON_DUPLICATES_DROPPED] = j.duplicates_dropped
            if j.valid is not None:
                attrs[sc.JSON_VALID] = j.valid
            attrs[sc.JSON_REPAIRED] = j.repaired
            if j.error:
                attrs[sc.JSON_ERROR] = j.error
        if outcome.tool_calls:
            attrs[sc.TOOL_CALLS] = len(outcome.tool_calls)
        if outcome.decode_errors:
            attrs[sc.DECODE_ERRORS] = outcome.decode_errors
        if outcome.attempts is not None:
            attrs[sc.ATTEMPTS] = outcome.attempts
            if outcome.last_attempt_ttfc_s is not None:
                attrs[sc.LAST_ATTEMPT_TIME_TO_FIRST_CHUNK] = outcome.last_attempt_ttfc_s
            for retry in outcome.retries:
                span.add_event(sc.EVENT_RETRY, _retry_attributes(retry), timestamp=retry.failed_at_ns)
        if call.streaming and self._settings.stall_after:
            attrs[sc.STREAM_STALLS] = len(outcome.stalls or ())
            for start_ns, gap_s, resumed in outcome.stalls or ():
                span.add_event(sc.STREAM_STALL_EVENT, {sc.STREAM_STALL_GAP: gap_s, sc.STREAM_STALL_RESUMED: resumed}, start_ns)
        for key, value in outcome.extra.items():
            name_ = _EXTRA.get(key)
            if name_ and isinstance(value, (bool, int, float, str)):
                attrs[name_] = value
        if outcome.error_type:
            attrs[sc.ERROR_TYPE] = outcome.error_type
        attrs = bounded(attrs)  # before content: captured content has its own cap
        if outcome.output_messages is not None and self._settings.content_on_span:
            attrs.update(self._content_attrs({"output": outcome.output_messages}))
        if outcome.error_type:
            span.set_status(self._error_status(self._error_code, clip(outcome.error_message or outcome.error_type,
                                                                      sc.MAX_EXCEPTION_MESSAGE_CHARS)))
            if outcome.error is not None:
                span.record_exception(outcome.error, attributes=_exception_bounds(outcome.error), escaped=True)
        span.set_attributes(attrs)
        span.end(end_time=end_wall_ns)

    def _usage_attrs(self, attrs: Dict[str, Any], outcome: Outcome) -> None:
        usage = outcome.usage
        attrs[sc.USAGE_SOURCE] = usage.source
        # Reported counts always; an estimate too when asked (estimates_in_usage_attributes), for trace UIs
        # that read tokens and cost from gen_ai.usage.* only: steer.usage.source still says which it is.
        if usage.source == "reported" or (usage.source == "estimated" and self._settings.estimates_in_usage_attributes):
            for key, field_name in self._usage_names:
                value = getattr(usage, field_name)
                if value is not None:
                    attrs[key] = value
        if usage.source == "estimated":
            # By default an estimate never goes into gen_ai.usage.*: it is labelled as steer's own.
            if usage.input_tokens is not None:
                attrs[sc.USAGE_ESTIMATED_INPUT_TOKENS] = usage.input_tokens
            if usage.output_tokens is not None:
                attrs[sc.USAGE_ESTIMATED_OUTPUT_TOKENS] = usage.output_tokens
            if usage.confidence is not None:
                attrs[sc.USAGE_CONFIDENCE] = usage.confidence
            if usage.method:
                attrs[sc.USAGE_ESTIMATE_METHOD] = usage.method

    def _content_attrs(self, content: Dict[str, Any]) -> Dict[str, str]:
        out: Dict[str, str] = {}
        for key, value in content.items():
            if value:
                out[CONTENT_ATTRIBUTES[key]] = self.render_content(value, droppable=key != "output")
        return out

    def render_content(self, value: List[Any], droppable: bool = True) -> str:
        """JSON, redacted by the user's hook, then capped inside the messages (telemetry/content.py):
        content never leaves unbounded or unredacted, and always parses."""
        return prepare(value, self._settings.content_max_chars, self._settings.redact, droppable)[1]


# Content keys (providers' ``input_content``, the pipeline's output messages) -> attribute names.
CONTENT_ATTRIBUTES = {"system": sc.SYSTEM_INSTRUCTIONS, "input": sc.INPUT_MESSAGES, "output": sc.OUTPUT_MESSAGES,
                      "tools": sc.TOOL_DEFINITIONS}


def response_attributes(outcome: Outcome) -> Dict[str, Any]:
    """The response's id, model and finish reasons (the span's end; the details event has them too)."""
    attrs: Dict[str, Any] = {}
    if outcome.response_id:
        attrs[sc.RESPONSE_ID] = outcome.response_id
    if outcome.response_model:
        attrs[sc.RESPONSE_MODEL] = outcome.response_model
    if outcome.finish_reasons:
        attrs[sc.RESPONSE_FINISH_REASONS] = list(outcome.finish_reasons)
    return attrs


def _retry_attributes(retry: Retry) -> Dict[str, Any]:
    attrs: Dict[str, Any] = {sc.RETRY_ATTEMPT: retry.attempt, sc.ERROR_TYPE: retry.error_type,
                             sc.RETRY_ATTEMPT_DURATION: retry.duration_s, sc.RETRY_BACKOFF: retry.backoff_s}
    if retry.status_code is not None:
        attrs[sc.HTTP_RESPONSE_STATUS_CODE] = retry.status_code
    return attrs


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + TRUNCATED


def bounded(attrs: Dict[str, Any]) -> Dict[str, Any]:
    """Span attributes with every string and sequence cut to the schema's bounds (semconv.MAX_*), and
    without any value OTLP cannot carry (the call's wire values were made exportable before; this is the
    net for the rest, such as request parameters)."""
    out: Dict[str, Any] = {}
    limit = sc.MAX_ATTRIBUTE_CHARS
    for key, value in attrs.items():
        kind = type(value)
        # Every call's ids, names and counts: checked inline (one call per attribute less, ~40k
        # instructions per call over the span's start and end); the general rule below for the rest.
        if kind is str:
            if len(value) > limit:
                value = value[:limit] + TRUNCATED
            if value.isascii() or text_ok(value):
                out[key] = value
            continue
        if kind is float or kind is bool or (kind is int and INT64_MIN <= value <= INT64_MAX):
            out[key] = value
            continue
        if isinstance(value, str):
            value = clip(value, limit)
        elif isinstance(value, (list, tuple)):
            value = [clip(v, limit) if isinstance(v, str) else v for v in value[:sc.MAX_ATTRIBUTE_ITEMS]]
        if value_ok(value):
            out[key] = value
    return out


def _exception_bounds(error: BaseException) -> Optional[Dict[str, Any]]:
    """Bounded, exportable exception.message / exception.stacktrace overrides, only when the exception
    needs them (a provider can put megabytes, or lone surrogates, into an error message; the traceback
    repeats it)."""
    message = str(error)
    exportable = text_ok(message)
    if len(message) <= sc.MAX_EXCEPTION_MESSAGE_CHARS and exportable:
        return None
    import traceback

    trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    if not exportable:
        message, trace = repaired(message), repaired(trace)
    half = sc.MAX_EXCEPTION_STACKTRACE_CHARS // 2
    if len(trace) > 2 * half:
        trace = trace[:half] + "\n…[truncated]…\n" + trace[-half:]
    return {"exception.message": clip(message, sc.MAX_EXCEPTION_MESSAGE_CHARS), "exception.stacktrace": trace}


def _usage_names(conventions: sc.Conventions) -> Tuple[Tuple[str, str], ...]:
    """(span attribute, Usage field) pairs of reported usage; only the cache-write name differs."""
    return (
        (sc.USAGE_INPUT_TOKENS, "input_tokens"),
        (sc.USAGE_OUTPUT_TOKENS, "output_tokens"),
        (sc.USAGE_CACHE_READ_INPUT_TOKENS, "cache_read_input_tokens"),
        (conventions.cache_write_attribute, "cache_creation_input_tokens"),
        (sc.USAGE_REASONING_TOKENS, "reasoning_tokens"),
    )

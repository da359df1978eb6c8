"""Metric instruments, created once per meter provider, and how one call's Outcome becomes points.

Recording an OpenTelemetry SDK histogram point costs ~10 µs (attribute hashing, locks), so nothing
here runs per chunk: every point is recorded once, when the call ends.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Callable, Dict, Iterable, Optional, Set, Tuple

from opentelemetry.trace import set_span_in_context

from steer.call import CallInfo, Outcome
from steer.telemetry import semconv as sc
from steer.telemetry.exportable import text_ok
from steer.telemetry.token_metrics import token_metrics


class Instruments:
    """The instrument set of one convention version (``conventions``), chosen here, once: recording
    below never asks which version it is."""

    def __init__(self, meter_provider: Any = None, conventions: sc.Conventions = sc.V1_41,
                 stalled: Optional[Callable[[], Dict[Tuple[Any, ...], int]]] = None) -> None:
        from opentelemetry import metrics

        meter = metrics.get_meter(sc.INSTRUMENTATION_SCOPE, _version(), meter_provider, schema_url=conventions.schema_url)
        duration = dict(unit="s", explicit_bucket_boundaries_advisory=sc.DURATION_BUCKETS)
        tokens = dict(unit="{token}", explicit_bucket_boundaries_advisory=sc.TOKEN_BUCKETS)
        self.duration = meter.create_histogram(conventions.inference_duration, description="GenAI operation duration.", **duration)
        # The newest conventions keep gen_ai.client.operation.duration for operations other than inference.
        self.other_duration = self.duration if not conventions.latest else meter.create_histogram(
            sc.METRIC_OPERATION_DURATION, description="GenAI operation duration.", **duration)
        self.ttfc = meter.create_histogram(
            conventions.time_to_first_chunk, description="Time to receive the first chunk of a streaming response.", **duration
        )
        self.per_chunk = meter.create_histogram(
            conventions.time_per_output_chunk,
            description="Time between consecutive output chunks after the first (see steer docs: per_stream mode records the mean per stream).",
            **duration,
        )
        self.tokens = token_metrics(meter, conventions)
        self.tokens_estimated = meter.create_histogram(
            sc.METRIC_TOKEN_USAGE_ESTIMATED, description="Tokens estimated by steer when the provider reported none.", **tokens
        )
        self.chunks = meter.create_histogram(
            sc.METRIC_STREAM_CHUNKS, unit="{chunk}", description="Chunks per streaming call.",
            explicit_bucket_boundaries_advisory=sc.TOKEN_BUCKETS,
        )
        # Observed at collection from steer's own count: opening and ending a stream costs an integer
        # update, not two synchronous SDK points (~90k instructions each).
        self.open_streams = shared_of(meter_provider, (sc.METRIC_STREAMS_ACTIVE, conventions.schema_url), OpenStreams)
        self.active = meter.create_observable_up_down_counter(
            sc.METRIC_STREAMS_ACTIVE, callbacks=[self.open_streams.observe], unit="{stream}",
            description="Streams opened and not yet ended (leaked or hung streams stay up).",
        )
        self.confidence = meter.create_histogram(
            sc.METRIC_USAGE_CONFIDENCE, unit="1", description="Confidence of each usage estimate (0..1), one point per estimated call.",
            explicit_bucket_boundaries_advisory=sc.CONFIDENCE_BUCKETS,
        )
        # Counters of every call (cost) or of every JSON-mode call: summed by steer, observed by the SDK at
        # collection (an integer/float update per call, not a synchronous SDK point of ~120k instructions).
        # The same cumulative series a Counter gives, without an exemplar (every histogram point keeps its own).
        self.json_outputs = self._summed(meter, meter_provider, conventions, sc.METRIC_JSON_OUTPUTS, "{output}",
                                         "JSON outputs checked (JSON mode / structured output), by steer.json.valid.")
        self.json_duplicates = self._summed(meter, meter_provider, conventions, sc.METRIC_JSON_DUPLICATES_DROPPED, "{duplicate}",
                                            "Repeated snapshots of already-assembled output that steer dropped.")
        self.cost = self._summed(meter, meter_provider, conventions, sc.METRIC_COST, "USD",
                                 "Cost of calls from genai-prices' price data, by the source of its token counts.")
        self.unpriced = self._summed(meter, meter_provider, conventions, sc.METRIC_COST_UNPRICED, "{call}",
                                     "Calls steer could not price, by reason (unknown_model, no_usage, no_price_data).")
        self._stalled = stalled
        self._stalled_seen: Set[Tuple[Any, ...]] = set()
        if stalled is not None:
            meter.create_observable_gauge(
                sc.METRIC_STREAMS_STALLED, callbacks=[self._observe_stalled], unit="{stream}",
                description="Open streams that have received nothing for longer than stall_after, now.")
        self.retries = meter.create_counter(
            sc.METRIC_RETRIES, unit="{retry}",
            description="HTTP attempts the SDK retried within one call, by error.type (the status or exception that failed).",
        )
        self.decode_errors = meter.create_counter(
            sc.METRIC_DECODE_ERRORS, unit="{error}",
            description="Chunks steer could not decode, and wire values it left out or repaired because OTLP cannot carry them.",
        )
        self.internal_errors = meter.create_counter(
            sc.METRIC_INTERNAL_ERRORS, unit="{error}", description="steer's own failures, caught at the seam (never raised into user code)."
        )

    @staticmethod
    def _summed(meter: Any, meter_provider: Any, conventions: sc.Conventions, name: str, unit: str,
                description: str) -> "Sums":
        sums = shared_of(meter_provider, (name, conventions.schema_url), Sums)
        meter.create_observable_counter(name, callbacks=[sums.observe], unit=unit, description=description)
        return sums

    def record(self, call: CallInfo, outcome: Outcome, base_attrs: Dict[str, Any], gap_mode: str, span: Any = None) -> None:
        """The call's points, each given the call's span as its context: recorded on steer's worker (or
        after the span stopped being current) they still get the call's trace as their exemplar (the
        SDK's trace-based exemplar filter reads the context it is given, else the current one)."""
        ctx = set_span_in_context(span) if span is not None else None
        attrs = dict(base_attrs)
        # From the wire: bounded, since each distinct value keys a time series of every instrument.
        if outcome.response_model:
            attrs[sc.RESPONSE_MODEL] = str(outcome.response_model)[:sc.MAX_METRIC_ATTRIBUTE_CHARS]
        if outcome.error_type:
            attrs[sc.ERROR_TYPE] = str(outcome.error_type)[:sc.MAX_METRIC_ATTRIBUTE_CHARS]
        duration = self.duration if call.operation in sc.INFERENCE_OPERATIONS else self.other_duration
        if call.streaming:
            # How the stream ended (5 values): dashboards tell a caller's cancellation (or a consumer that
            # stopped early) from an error, on the duration metric only.
            duration.record(outcome.duration_s, {**attrs, sc.STREAM_END: outcome.end}, context=ctx)
        else:
            duration.record(outcome.duration_s, attrs, context=ctx)
        if call.streaming:
            self.chunks.record(outcome.chunks, attrs, context=ctx)
            if outcome.ttfc_s is not None:
                self.ttfc.record(outcome.ttfc_s, attrs, context=ctx)
            if gap_mode == "per_chunk" and outcome.gaps_ns:
                record = self.per_chunk.record
                for gap in outcome.gaps_ns:
                    record(gap / 1e9, attrs, context=ctx)
            elif outcome.mean_gap_s is not None:
                self.per_chunk.record(outcome.mean_gap_s, attrs, context=ctx)
        usage = outcome.usage
        self.tokens.record(call, outcome, attrs, ctx)
        if usage.source == "estimated":
            if usage.input_tokens is not None:
                self.tokens_estimated.record(usage.input_tokens, {**attrs, sc.TOKEN_TYPE: "input"}, context=ctx)
            if usage.output_tokens is not None:
                self.tokens_estimated.record(usage.output_tokens, {**attrs, sc.TOKEN_TYPE: "output"}, context=ctx)
        if usage.source == "estimated" and usage.confidence is not None:
            self.confidence.record(usage.confidence, attrs, context=ctx)
        if outcome.cost is not None:
            self.cost.add(outcome.cost.usd, {**attrs, sc.USAGE_COST_SOURCE: outcome.cost.source})
        elif outcome.unpriced:
            self.unpriced.add(1, {**attrs, sc.USAGE_COST_UNPRICED: outcome.unpriced})
        j = outcome.json
        if j is not None:
            if j.valid is not None:
                self.json_outputs.add(1, {**attrs, sc.JSON_VALID: j.valid})
            self.json_duplicates.add(j.duplicates_dropped, attrs)
        if outcome.decode_errors:
            self._decode_errors(outcome, base_attrs, ctx)
        for retry in outcome.retries:
            self.retries.add(1, {**base_attrs, sc.ERROR_TYPE: retry.error_type}, context=ctx)

    def _decode_errors(self, outcome: Outcome, base_attrs: Dict[str, Any], ctx: Any) -> None:
        invalid = outcome.invalid_values or {}
        undecodable = outcome.decode_errors - sum(invalid.values())
        for reason, n in ((sc.DECODE_REASON_UNDECODABLE, undecodable), *invalid.items()):
            if n > 0:
                self.decode_errors.add(n, {**base_attrs, sc.DECODE_REASON: reason}, context=ctx)

    def _observe_stalled(self, _options: Any) -> Iterable[Any]:
        from opentelemetry.metrics import Observation

        counts = self._stalled() if self._stalled is not None else {}
        self._stalled_seen.update(counts)
        # A series that had stalled streams reports 0 once they ended, rather than vanishing (a stale
        # last value would keep showing a stall that is over).
        return [Observation(counts.get(key, 0), dict(key)) for key in self._stalled_seen]


class OpenStreams:
    """Streams opened and not yet ended, per metric attribute set: what streams.active reports.

    One per meter provider and scope (``shared_of``). A series that went back to 0 keeps reporting 0.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Dict[frozenset, int] = {}
        self.generation = 1  # + 1 in each fork()ed child: streams opened before the fork are not its own

    def opened(self, attrs: Dict[str, Any]) -> int:
        """Count a stream; returns the token ``closed`` takes (the process generation it was opened in)."""
        key = frozenset(attrs.items())  # one series per attribute set, whatever their order
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            return self.generation

    def closed(self, attrs: Dict[str, Any], token: int) -> None:
        key = frozenset(attrs.items())
        with self._lock:
            if token == self.generation:  # a stream the parent opened before fork() is not counted here
                self.counts[key] = self.counts.get(key, 0) - 1

    def observe(self, _options: Any = None) -> Iterable[Any]:
        from opentelemetry.metrics import Observation

        with self._lock:
            counts = list(self.counts.items())
        return [Observation(n, dict(key)) for key, n in counts]

    def reset(self) -> None:
        """In a fork()ed child: none of the parent's streams is open here. Every series goes to 0 (and
        keeps reporting 0, overriding the value the child's copy of the metric SDK last observed); the
        lock is new (another thread of the parent may have held it at the fork)."""
        self._lock = threading.Lock()
        self.counts = dict.fromkeys(self.counts, 0)
        self.generation += 1


class Sums:
    """A monotonic counter's cumulative value per attribute set, summed by steer and observed by the SDK
    at collection (an observable counter: the SDK turns it into deltas for delta-temporality readers)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sums: Dict[frozenset, float] = {}

    def add(self, amount: float, attrs: Dict[str, Any]) -> None:
        key = frozenset(attrs.items())  # keys are unique: one series per attribute set, whatever their order
        with self._lock:
            self.sums[key] = self.sums.get(key, 0) + amount

    def observe(self, _options: Any = None) -> Iterable[Any]:
        from opentelemetry.metrics import Observation

        with self._lock:
            sums = list(self.sums.items())
        return [Observation(value, dict(key)) for key, value in sums]


# What steer counts itself for an observable instrument, one per meter provider and scope (the SDK
# keeps the first callback registered under an instrument's name: every Runtime on one provider shares
# it). Weakly keyed: a provider the application drops takes its counts with it.
_SHARED: "weakref.WeakKeyDictionary[Any, Dict[Tuple[str, str], Any]]" = weakref.WeakKeyDictionary()
_GLOBAL_SHARED: Dict[Tuple[str, str], Any] = {}  # for the global meter provider (meter_provider=None)
_SHARED_LOCK = threading.Lock()


def shared_of(meter_provider: Any, key: Tuple[str, str], factory: Callable[[], Any]) -> Any:
    with _SHARED_LOCK:
        try:
            found = _GLOBAL_SHARED if meter_provider is None else _SHARED.setdefault(meter_provider, {})
        except TypeError:  # not weak-referenceable: its own state (one Runtime per such provider)
            return factory()
        state = found.get(key)
        if state is None:
            state = found[key] = factory()
        return state


def _reset_open_streams_in_child() -> None:
    for found in [_GLOBAL_SHARED, *list(_SHARED.values())]:
        for state in found.values():
            if isinstance(state, OpenStreams):
                state.reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_open_streams_in_child)


def base_metric_attributes(call: CallInfo) -> Dict[str, Any]:
    attrs: Dict[str, Any] = {sc.OPERATION_NAME: call.operation, sc.PROVIDER_NAME: call.provider}
    model = str(call.request_model)[:sc.MAX_METRIC_ATTRIBUTE_CHARS] if call.request_model else None
    if model and text_ok(model):
        attrs[sc.REQUEST_MODEL] = model
    if call.server_address:
        attrs[sc.SERVER_ADDRESS] = call.server_address
    if call.server_port:
        attrs[sc.SERVER_PORT] = call.server_port
    return attrs


def _version() -> Optional[str]:
    try:
        from importlib.metadata import version

        return version("steer")
    except Exception:  # pragma: no cover - not installed as a distribution
        return None

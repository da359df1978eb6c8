"""The per-call state machine (Session) and the Runtime it reports to.

A Session is opened before the request is sent (t0), sees every chunk (O(1) work each), and
finishes exactly once — drained, closed early, failed, cancelled, or abandoned — whichever comes first.
Everything steer does for a call is behind ``_guard``-style try/except: steer's own failures are
logged once, counted, and never reach the caller.
"""

from __future__ import annotations

import logging
import threading
import uuid
from time import perf_counter_ns, time_ns
from typing import Any, Dict, List, Optional, Tuple

from steer.attached import CURRENT as ATTACHED
from steer.call import Attempts, CallInfo, JsonSummary, Outcome
from steer.callbacks import NO_LISTENERS, Listeners
from steer.config import Settings
from steer.events import (
    StreamCompleteEvent,
    StreamDeltaEvent,
    StreamErrorEvent,
    StreamEvent,
    StreamStartEvent,
    StreamUsageEvent,
    ToolCall,
    Usage,
)
from steer.processing import errors as error_rules
from steer.providers.base import Assembly, Decoder, choice_order
from steer.telemetry.exportable import check_outcome
from steer.telemetry.metrics import Instruments, base_metric_attributes
from steer.telemetry.semconv import conventions
from steer.telemetry import background
from steer.telemetry.spans import SpanRecorder
from steer.watchdog import WATCHDOG, StallTracking

log = logging.getLogger("steer")


class Runtime:
    """Everything calls share under one ``instrument()`` or ``wrap()``: settings, telemetry, listeners."""

    def __init__(self, settings: Settings, tracer_provider: Any = None, meter_provider: Any = None,
                 listeners: Listeners = NO_LISTENERS, logger_provider: Any = None) -> None:
        self.settings = settings
        self.spans = SpanRecorder(tracer_provider, settings)
        self.instruments = Instruments(meter_provider, conventions(settings.semconv), stalled=self._stalled_streams)
        self.details_events: Any = None
        if settings.emit_event:
            from steer.telemetry.details_event import DetailsEvents

            self.details_events = DetailsEvents(logger_provider, settings, self.spans)
        self.listeners = listeners
        # End-of-call work off the caller's thread, unless a listener must see the end there: plain
        # callbacks run inline, in event order, before the caller's loop ends (docs/events.md).
        self.background = settings.finish_in_background and not listeners.active
        if self.background:
            background.chain_flush(tracer_provider, meter_provider)
        self._logged: set = set()
        self._lock = threading.Lock()
        self.internal_errors = 0

    def internal_error(self, where: str, exc: BaseException) -> None:
        """steer's own bug: count it, log it once per place at debug, never raise."""
        try:
            with self._lock:
                self.internal_errors += 1
                first = where not in self._logged
                self._logged.add(where)
            if first:
                log.debug("steer internal error in %s (further ones counted, not logged)", where, exc_info=exc)
            self.instruments.internal_errors.add(1, {"steer.where": where})
        except Exception:  # pragma: no cover - logging itself failed; nothing left to do safely
            pass

    def _stalled_streams(self) -> Dict[Tuple[Tuple[str, Any], ...], int]:
        """This Runtime's open streams silent for longer than stall_after now, by metric attributes
        (read when the steer.client.streams.stalled gauge is collected, not kept up to date)."""
        now = perf_counter_ns()
        counts: Dict[Tuple[Tuple[str, Any], ...], int] = {}
        for session in WATCHDOG.watched():
            if session.rt is self and not session.done and now - (session.t_last or session.t0) > session.stall_after_ns:
                key = tuple(session.metric_attrs.items())
                counts[key] = counts.get(key, 0) + 1
        return counts


def _trace_ids(span: Any) -> Dict[str, str]:
    """The call's span as W3C hex ids, for events' metadata (links a callback's log line to the trace)."""
    try:
        ctx = span.get_span_context()
        if ctx.is_valid:
            return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}
    except Exception:  # no span (telemetry failed to start one): events simply carry no ids
        pass
    return {}


class Session(StallTracking):
    __slots__ = (
        "rt", "call", "decoder", "asm", "span", "t0", "wall0", "chunks", "t_first", "t_last", "max_gap",
        "gaps", "done", "json", "json_result", "metric_attrs", "request_id", "stream_id", "active_counted", "_lock",
        "metadata", "stall_after_ns", "gap_mark", "stall_start", "stalls", "attempts", "ending", "content_in",
    )

    def __init__(self, rt: Runtime, call: CallInfo, decoder: Decoder) -> None:
        # t0 first: everything below is steer's own set-up, and it counts against the call.
        self.t0 = perf_counter_ns()
        self.wall0 = time_ns()
        self.rt = rt
        self.call = call
        self.decoder = decoder
        self.chunks = 0
        self.t_first = 0
        self.t_last = 0
        self.max_gap = 0
        # on_chunk's threshold for out-of-line work: max_gap (capped at stall_after_ns, so that every silence
        # longer than that is looked at), or 0 while a stall is open
        self.gap_mark = 0
        self.stall_start = 0  # t_last (or t0) of the silence the watchdog reported, until it ends
        self.stalls: Optional[List[Tuple[int, int, bool]]] = None  # (start, gap, resumed) per stall
        self.attempts: Optional[Attempts] = None  # the HTTP attempts, once the httpx hook saw one sent
        self.done = False
        self.span = None
        self.json = None
        self.json_result = None
        self.active_counted = False
        self._lock = threading.Lock()
        settings = rt.settings
        listeners = rt.listeners
        self.gaps: Optional[List[int]] = [] if settings.chunk_gap_metric == "per_chunk" and call.streaming else None
        self.asm = Assembly(settings.text_max_chars, want_deltas=listeners.wants_deltas)
        self.request_id = self.stream_id = ""
        self.metadata: Dict[str, Any] = {}
        self.metric_attrs = base_metric_attributes(call)
        attached = ATTACHED.get()  # steer.context: read once per call
        if attached is not None:
            self.metric_attrs = {**attached.metric_attributes, **self.metric_attrs}
        if call.json_output:
            from steer.processing.json_stream import JsonStreamTracker

            self.json = JsonStreamTracker(max_depth=settings.json_max_depth, max_bytes=settings.json_max_bytes)
            self.asm.text_sink = self.json.feed
        content = self.content_in = self._input_content() if settings.capture_content else None
        self.span = rt.spans.start(call, self.wall0, content if settings.content_on_span else None,
                                   attached.values if attached is not None else None)
        self.stall_after_ns = int(settings.stall_after * 1e9) if settings.stall_after and call.streaming else 0
        if call.streaming:
            self.active_counted = rt.instruments.open_streams.opened(self.metric_attrs)  # a token (int), truthy
            if self.stall_after_ns:
                WATCHDOG.add(self)
        if listeners.active:
            self.request_id = uuid.uuid4().hex
            self.stream_id = self.request_id if call.streaming else ""
            self.metadata = {**attached.values, **_trace_ids(self.span)} if attached is not None else _trace_ids(self.span)
            listeners.emit(StreamStartEvent(**self._common(), operation=call.operation, streaming=call.streaming,
                                            server_address=call.server_address))

    # -- per chunk (hot path) ------------------------------------------------------------------------
    def on_chunk(self, chunk: Any) -> None:
        now = perf_counter_ns()
        n = self.chunks
        if n:
            gap = now - self.t_last
            if gap > self.gap_mark:  # a new longest gap, or a silence past stall_after (rare: out of line)
                self._long_gap(gap, now)
            if self.gaps is not None:
                self.gaps.append(gap)
        else:
            self.t_first = now
            if self.stall_after_ns and (self.stall_start or now - self.t0 > self.stall_after_ns):
                self._silence_over(now - self.t0, now)  # silent from the request until this first chunk
        self.t_last = now
        self.chunks = n + 1
        asm = self.asm
        try:
            self.decoder.decode(chunk, asm)
        except Exception as exc:
            asm.decode_errors += 1
            self.rt.internal_error(f"decode:{self.call.api}", exc)
        if asm.deltas:
            self._emit_deltas(n)

    def _long_gap(self, gap: int, now: int) -> None:
        if gap > self.max_gap:
            self.max_gap = gap
        if self.stall_after_ns:
            if self.stall_start or gap > self.stall_after_ns:
                self._silence_over(gap, now)
            self.gap_mark = min(self.max_gap, self.stall_after_ns)
        else:
            self.gap_mark = self.max_gap

    def on_response(self, response: Any) -> None:
        """A non-streaming call's whole response."""
        try:
            self.decoder.decode_response(response, self.asm)  # type: ignore[attr-defined]
        except Exception as exc:
            self.asm.decode_errors += 1
            self.rt.internal_error(f"decode_response:{self.call.api}", exc)

    # -- end (exactly once) --------------------------------------------------------------------------
    def finish(self, end: str, error: Optional[BaseException] = None) -> None:
        """The call ended: take the end time, then hand the rest to ``complete_call``.

        Only this part runs on the caller's thread when steer finishes in the background (the
        default, see ``Runtime.background``): after ``done`` nothing mutates the Session any more
        (proxies stop calling ``on_chunk``), so ``complete_call`` may run on any thread, later.
        """
        now = perf_counter_ns()
        with self._lock:
            if self.done:
                return
            self.done = True
        if self.stall_after_ns:
            WATCHDOG.discard(self)
        if error is not None and not isinstance(error, Exception):
            # Not a failure of the call: the caller's own cancellation (CancelledError, KeyboardInterrupt,
            # SystemExit, anyio/trio cancellation) or the stream being closed (GeneratorExit). No
            # error.type, status UNSET; the exception itself propagates untouched from the shell.
            end, error = ("closed_early" if isinstance(error, GeneratorExit) else "cancelled"), None
        self.ending = (end, error, now)
        rt = self.rt
        try:
            if self.active_counted:
                token, self.active_counted = self.active_counted, False
                rt.instruments.open_streams.closed(self.metric_attrs, token)
            if rt.background and background.WORKER.submit(self.complete_call):
                return
        except Exception as exc:
            rt.internal_error("finish", exc)
        self.complete_call()

    def complete_call(self) -> None:
        """Everything the end of a call records, from the Session as ``finish`` left it (any thread).

        End-of-call code goes into ``_complete`` (the Outcome, the span, the metric points, the events).
        """
        try:
            self._complete(*self.ending)
        except Exception as exc:
            self.rt.internal_error("finish", exc)
            self._end_span_fallback()

    def _complete(self, end: str, error: Optional[BaseException], now: int) -> None:
        rt, call, asm = self.rt, self.call, self.asm
        try:
            self.decoder.finish(asm)
        except Exception as exc:
            asm.decode_errors += 1
            rt.internal_error(f"decode_finish:{call.api}", exc)
        # Decoders copy ids and model names from the wire as they come; a server that sends a number or
        # an object there must not break the end of the call (usage estimation, attributes, metrics).
        if not isinstance(asm.response_id, str):
            asm.response_id = None
        if not isinstance(asm.response_model, str):
            asm.response_model = None
        outcome = Outcome(end=end, duration_s=(now - self.t0) / 1e9, chunks=self.chunks,  # type: ignore[arg-type]
                          response_id=asm.response_id, response_model=asm.response_model,
                          finish_reasons=asm.finish_reasons(), decode_errors=asm.decode_errors,
                          invalid_values=asm.invalid)
        arrived = outcome.finish_reasons  # what the provider sent (events report these)
        if self.chunks:
            outcome.ttfc_s = (self.t_first - self.t0) / 1e9
            if self.chunks > 1:
                outcome.max_gap_s = self.max_gap / 1e9
                outcome.mean_gap_s = (self.t_last - self.t_first) / (self.chunks - 1) / 1e9
                outcome.gaps_ns = self.gaps
        outcome.tool_calls = self._tool_calls()
        outcome.json = self._json_summary(outcome)
        info = None
        if error is not None:
            info = error_rules.classify_exception(error)  # error.type: the exception's class name, every provider
            outcome.error = error
        elif asm.error is not None:
            info = error_rules.classify_stream_error(asm.error)
            outcome.end = "error"
        if info is not None:
            outcome.error_type, outcome.error_message = info.error_type, info.message
        finish = self._finish_by_choice(outcome)
        outcome.finish_reasons = [finish[c] for c in sorted(finish, key=choice_order)]
        outcome.usage = self._usage(outcome)
        if rt.settings.cost:
            self._cost(outcome)
        if rt.settings.capture_content:
            outcome.output_messages = self._output_content(outcome, finish)
        outcome.extra = asm.extra
        if self.stall_start:
            self._stall_over(now)  # still silent when the call ended
        elif self.stall_after_ns and now - (self.t_last or self.t0) > self.stall_after_ns:
            self._unseen_stall(self.t_last or self.t0, now, resumed=False)  # ditto, and the watchdog did not look in time
        if self.stalls:
            outcome.stalls = [(self.wall0 + (start - self.t0), gap / 1e9, resumed) for start, gap, resumed in self.stalls]
        if self.attempts is not None:
            self._retries(outcome)
        check_outcome(outcome)  # wire values OTLP cannot carry: left out or repaired, counted
        rt.spans.end(self.span, call, outcome, self.wall0 + (now - self.t0))
        if rt.details_events is not None:  # the gen_ai.client.inference.operation.details log event
            rt.details_events.emit(self.span, call, outcome, self.content_in, self.wall0 + (now - self.t0))
        rt.instruments.record(call, outcome, self.metric_attrs, rt.settings.chunk_gap_metric, self.span)
        if rt.listeners.active:
            self._emit_end(outcome, info, arrived)

    # -- HTTP attempts (the SDKs' retries), reported by the httpx hook while the call sends ----------
    def attempt_sent(self) -> Attempts:
        attempts = self.attempts
        if attempts is None:
            attempts = self.attempts = Attempts(self.wall0 - self.t0)
        attempts.sent(perf_counter_ns())
        return attempts

    def _retries(self, outcome: Outcome) -> None:
        attempts = self.attempts
        retries = outcome.retries = attempts.retries  # type: ignore[union-attr]
        outcome.attempts = 1 + len(retries)
        sent = attempts.sent_ns  # type: ignore[union-attr]
        if retries and self.chunks and self.t_first > sent:
            outcome.last_attempt_ttfc_s = (self.t_first - sent) / 1e9

    def _end_span_fallback(self) -> None:
        try:
            if self.span is not None and self.span.is_recording():
                self.span.end(end_time=self.wall0 + (self.ending[2] - self.t0))
        except Exception:
            pass

    # -- end-of-call processing ----------------------------------------------------------------------
    def _tool_calls(self) -> List[ToolCall]:
        if not self.asm.tools:  # most calls: no import, no sort
            return []
        from steer.processing.json_stream import parse_arguments
        calls = []
        for choice, call_id, name, whole, raw in self.asm.raw_tool_calls():
            if whole is not None and not raw:
                calls.append(ToolCall(id=call_id, name=name, arguments=whole, raw_arguments="", choice_index=choice))
                continue
            value, valid = parse_arguments(raw)
            calls.append(ToolCall(id=call_id, name=name, arguments=value, raw_arguments=raw, choice_index=choice, valid_json=valid))
        return calls

    def _json_summary(self, outcome: Outcome) -> Optional[JsonSummary]:
        tracker = self.json
        if tracker is None:
            if not self.asm.duplicates_dropped:
                return None
            return JsonSummary(duplicates_dropped=self.asm.duplicates_dropped)
        truncated = outcome.end != "complete" or "length" in outcome.finish_reasons
        result = tracker.finish(truncated=truncated)
        self.json_result = result
        return JsonSummary(objects=len(result.objects), duplicates_dropped=result.duplicates_dropped + self.asm.duplicates_dropped,
                           valid=result.valid, repaired=result.repaired, error=result.error)

    def _finish_by_choice(self, outcome: Outcome) -> Dict[Any, str]:
        """Each choice's finish reason; ``error`` where one was expected and never arrived: a choice with
        output, and each choice asked for when the call failed or stopped early (docs/telemetry.md)."""
        asm = self.asm
        finish = dict(asm.finish)
        expected = set(asm.text) | set(asm.reasoning) | set(asm.refusal) | {c.choice_index for c in outcome.tool_calls}
        if (outcome.end != "complete" or outcome.error_type) and self.call.operation != "embeddings":
            count = self.call.params.get("choice_count")
            expected.update(range(count if isinstance(count, int) and 0 < count <= 128 else 1))
        for choice in expected:
            finish.setdefault(choice, "error")
        return finish

    def _usage(self, outcome: Outcome) -> Usage:
        asm = self.asm
        if asm.usage is not None:
            return asm.usage
        if not self.rt.settings.estimate_usage:
            return Usage(source="none")
        if outcome.error is not None and not self.chunks and not asm.chars:
            return Usage(source="none")  # the request failed before any output: nothing to estimate
        from steer.processing.usage import estimate_usage

        try:
            return estimate_usage(
                provider=self.call.provider, model=asm.response_model or self.call.request_model, request=self.call.request,
                output_text=asm.all_text(), reasoning_text=asm.joined_reasoning(),
                tool_arguments=[c.raw_arguments or "" for c in outcome.tool_calls],
                tool_names=[c.name or "" for c in outcome.tool_calls], api=self.call.api,
            )
        except Exception as exc:  # an estimate is optional; the span and the metrics of the call are not
            self.rt.internal_error("usage_estimate", exc)
            return Usage(source="none")

    def _cost(self, outcome: Outcome) -> None:
        from steer.processing.cost import Cost, price

        try:
            priced = price(self.call.provider, outcome.response_model or self.call.request_model, outcome.usage, self.wall0)
        except Exception as exc:  # a price is optional; the span and the metrics of the call are not
            self.rt.internal_error("cost", exc)
            return
        if isinstance(priced, Cost):
            outcome.cost = priced
        else:
            outcome.unpriced = priced

    # -- content capture (only when on) --------------------------------------------------------------
    def _input_content(self) -> Optional[Dict[str, Any]]:
        extract = getattr(self.decoder, "input_content", None)
        return extract(self.call.request) if extract is not None else None

    def _output_content(self, outcome: Outcome, finish: Dict[Any, str]) -> List[Dict[str, Any]]:
        """One assistant message per choice (none for a choice with no output nor finish reason)."""
        asm = self.asm
        server = asm.extra.get("server_tool_parts") or {}
        messages = []
        for choice in sorted(set(finish) | set(server), key=choice_order):
            parts: List[Dict[str, Any]] = []
            reasoning = asm.reasoning.get(choice)
            if reasoning is not None:
                parts.append({"type": "reasoning", "content": reasoning.text()})
            parts.extend(server.get(choice, ()))
            text = asm.joined_text(choice)
            if text:
                parts.append({"type": "text", "content": text})
            refusal = asm.refusal.get(choice)
            if refusal is not None:
                parts.append({"type": "refusal", "content": refusal.text()})
            for call in outcome.tool_calls:
                if call.choice_index == choice:
                    parts.append({"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments})
            if parts or choice in asm.finish:
                messages.append({"role": "assistant", "parts": parts, "finish_reason": finish.get(choice, "error")})
        return messages

    # -- events --------------------------------------------------------------------------------------
    def _common(self) -> Dict[str, Any]:
        return {
            "provider": self.call.provider,
            "model": self.asm.response_model or self.call.request_model,
            "request_id": self.request_id,
            "stream_id": self.stream_id,
            "timestamp": time_ns() / 1e9,
            "metadata": dict(self.metadata),  # a fresh dict: listeners may add keys to one event's metadata
        }

    def _emit_deltas(self, chunk_index: int) -> None:
        deltas, self.asm.deltas = self.asm.deltas, []
        emit, is_json = self.rt.listeners.emit, self.call.json_output
        for kind, text, choice, call_id, name, index in deltas:  # type: ignore[union-attr]
            emit(StreamDeltaEvent(**self._common(), delta=text, chunk_index=chunk_index, is_json=is_json or kind == "tool_call",
                                  kind=kind, choice_index=choice, tool_call_id=call_id, tool_name=name, tool_call_index=index))  # type: ignore[arg-type]

    def _emit_end(self, outcome: Outcome, info: Any, finish_reasons: List[str]) -> None:
        emit = self.rt.listeners.emit
        usage = outcome.usage
        if usage.source != "none":
            emit(StreamUsageEvent(**self._common(), usage=usage, is_estimated=usage.is_estimated, confidence=usage.confidence))
        common = self._common()  # its own metadata dict: never shared between two events
        choice_texts = [self.asm.joined_text(c) for c in sorted(self.asm.text, key=choice_order)]
        # What was received, whether the call completed or failed half-way (both events carry it).
        received = dict(total_chunks=outcome.chunks, duration_ms=outcome.duration_s * 1e3,
                        ttft_ms=outcome.ttfc_s * 1e3 if outcome.ttfc_s is not None else None, final_usage=usage,
                        text=choice_texts[0] if choice_texts else "", reasoning=self.asm.joined_reasoning(),
                        choice_texts=choice_texts, tool_calls=outcome.tool_calls, finish_reasons=finish_reasons,
                        end=outcome.end, response_id=outcome.response_id, response_model=outcome.response_model)
        if info is not None:
            event: StreamEvent = StreamErrorEvent(**common, **received, error=outcome.error, error_type=info.error_type,
                                                  is_retryable=info.retryable, message=info.message)
        else:
            result = self.json_result
            event = StreamCompleteEvent(
                **common, **received, json_objects=list(result.objects) if result is not None else [],
                cost_usd=outcome.cost.usd if outcome.cost is not None else None,
                cost_source=outcome.cost.source if outcome.cost is not None else None)
        emit(event)

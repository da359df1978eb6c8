"""Content capture modes as the OpenTelemetry Python GenAI instrumentations define them, and the
``gen_ai.client.inference.operation.details`` event through the OpenTelemetry Logs API (issue 14,
item 2): real SDK streams over the recordings, the event read back from an in-memory log exporter and,
set up from OTEL_* by steer itself, from a real OTLP/HTTP logs receiver on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

import steer
import test_content as runs
from backends.otlp_receiver import OtlpHttpReceiver, wait_for
from steer.config import load_settings

CONTENT = ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions", "gen_ai.tool.definitions")
TOOLS = "openai/chat_two_tool_calls_include_usage.json"  # a system message, a user message, two tool calls, tools


@pytest.fixture
def logs() -> Any:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def details(exporter: Any) -> List[Any]:
    steer.flush()  # the end of a call is recorded on steer's background worker
    return [r.log_record for r in exporter.get_finished_logs() if r.log_record.event_name == "gen_ai.client.inference.operation.details"]


# -- the modes, read as opentelemetry-util-genai reads them ---------------------------------------------------
@pytest.mark.parametrize("env,emit,expected", [
    (None, None, ("NO_CONTENT", False, False)),
    ("span_only", None, ("SPAN_ONLY", True, False)),
    ("Event_Only", None, ("EVENT_ONLY", False, True)),
    ("SPAN_AND_EVENT", None, ("SPAN_AND_EVENT", True, True)),
    ("true", None, ("SPAN_ONLY", True, False)),  # legacy: what steer and the earlier instrumentations did
    ("FALSE", None, ("NO_CONTENT", False, False)),
    ("bogus", None, ("NO_CONTENT", False, False)),
    ("EVENT_ONLY", "false", ("EVENT_ONLY", False, False)),  # the event switched off: content nowhere
    ("SPAN_ONLY", "TRUE", ("SPAN_ONLY", True, True)),  # an event, without content (SPAN_ONLY keeps it off events)
    ("NO_CONTENT", "true", ("NO_CONTENT", False, True)),
])
def test_modes_from_the_environment(env: Any, emit: Any, expected: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", env), ("OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT", emit)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    s = load_settings()
    assert (s.content_mode, s.content_on_span, s.emit_event) == expected
    assert s.capture_content == (s.content_on_span or (s.content_on_event and s.emit_event))


@pytest.mark.parametrize("argument,mode", [(True, "SPAN_ONLY"), (False, "NO_CONTENT"), ("event_only", "EVENT_ONLY"),
                                           ("SPAN_AND_EVENT", "SPAN_AND_EVENT")])
def test_the_argument_wins_over_the_environment(argument: Any, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
    assert load_settings(capture_content=argument).content_mode == mode


# -- EVENT_ONLY: content on the event, never on a span ------------------------------------------------------
def test_event_only_keeps_content_off_every_span(instrumented: Any, logs: Any) -> None:
    provider, exporter = logs
    telemetry = instrumented(capture_content="EVENT_ONLY", logger_provider=provider)
    runs.run_chat(TOOLS)
    runs.run_anthropic("anthropic/messages_thinking_claude37.json")
    runs.run_gemini("google/gemini25_flash_code_execution.json")
    spans = telemetry.spans()
    assert len(telemetry.genai_spans()) == 3
    for span in spans:  # every span, steer's and any other
        assert not [k for k in span.attributes or {} if k in CONTENT], span.name
        for event in span.events:
            assert not [k for k in event.attributes or {} if k in CONTENT]
    records = details(exporter)
    assert len(records) == 3
    first = records[0].attributes
    assert first["gen_ai.input.messages"][0]["role"] == "system"  # structured values, not JSON strings
    assert first["gen_ai.output.messages"][0]["finish_reason"] == "tool_calls"
    assert first["gen_ai.tool.definitions"][0]["name"] == "get_current_weather"
    assert first["gen_ai.operation.name"] == "chat" and first["gen_ai.response.finish_reasons"] == ("tool_calls",)


def test_the_event_is_in_the_calls_trace_context(instrumented: Any, logs: Any) -> None:
    provider, exporter = logs
    telemetry = instrumented(capture_content="SPAN_AND_EVENT", logger_provider=provider)
    runs.run_chat(TOOLS)
    (span,) = telemetry.genai_spans()
    (record,) = details(exporter)
    assert record.trace_id == span.context.trace_id and record.span_id == span.context.span_id
    assert record.timestamp == span.end_time
    assert json.loads(span.attributes["gen_ai.input.messages"]) == json.loads(json.dumps(record.attributes["gen_ai.input.messages"]))


def test_no_event_and_no_content_by_default(instrumented: Any, logs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT", raising=False)
    provider, exporter = logs
    telemetry = instrumented(logger_provider=provider)
    runs.run_chat(TOOLS)
    assert details(exporter) == []
    assert not [k for k in telemetry.genai_spans()[0].attributes if k in CONTENT]


def test_an_event_without_content_when_the_mode_keeps_it_off_events(instrumented: Any, logs: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT", "true")
    provider, exporter = logs
    telemetry = instrumented(capture_content="SPAN_ONLY", logger_provider=provider)
    runs.run_chat(TOOLS)
    (record,) = details(exporter)
    assert not [k for k in record.attributes if k in CONTENT] and record.attributes["gen_ai.provider.name"] == "openai"
    assert "gen_ai.input.messages" in telemetry.genai_spans()[0].attributes


def test_the_event_content_is_redacted_and_capped(instrumented: Any, logs: Any) -> None:
    provider, exporter = logs
    instrumented(capture_content="EVENT_ONLY", logger_provider=provider, content_max_chars=150,
                 redact=lambda s: s.replace("Seattle", "[city]"))
    runs.run_chat(TOOLS)
    (record,) = details(exporter)
    dumped = {k: json.dumps(record.attributes[k], ensure_ascii=False) for k in CONTENT if k in record.attributes}
    assert "Seattle" not in "".join(dumped.values())
    assert "…[truncated]" in "".join(dumped.values())


# -- to a real OTLP logs receiver, set up by steer from OTEL_* --------------------------------------------------
APP = Path(__file__).parent / "backends" / "otel_app.py"


def test_event_only_reaches_an_otlp_logs_receiver_and_spans_stay_clean() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "STEER_"))}
    with OtlpHttpReceiver() as receiver:
        env.update({"STEER_PROVIDERS": "openai", "OTEL_BSP_SCHEDULE_DELAY": "50", "OTEL_BLRP_SCHEDULE_DELAY": "50",
                    "OTEL_METRICS_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "EVENT_ONLY"})
        proc = subprocess.run([sys.executable, str(APP), "--streams", "2"], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert wait_for(lambda: len(receiver.received.logs) >= 2 and len(receiver.received.spans) >= 2)
    result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith('{"describe"')))
    assert result["describe"]["logs"] == "otlp (http/protobuf)"
    spans = {s["span_id"]: s for s in receiver.received.spans if s["scope"] == "steer"}
    events = [r for r in receiver.received.logs if r["event_name"] == "gen_ai.client.inference.operation.details"]
    assert len(events) == 2 and all(r["scope"] == "steer" for r in events)
    for record in events:
        span = spans[record["span_id"]]  # the event names steer's span, in the same trace
        assert span["trace_id"] == record["trace_id"]
        assert not [k for k in span["attributes"] if k in CONTENT]
        inputs: Dict[str, Any] = record["attributes"]["gen_ai.input.messages"][0]
        assert inputs["role"] == "user" and inputs["parts"][0]["content"].startswith("hello ")
        (output,) = record["attributes"]["gen_ai.output.messages"]
        assert output["role"] == "assistant" and output["parts"][0]["type"] == "text" and output["parts"][0]["content"]

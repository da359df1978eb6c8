"""Every recording, every content mode, both convention modes: captured content parses as JSON and
follows the GenAI message schemas (issue 14 leftovers).

Each recording in shared/fixtures/streams is replayed to its REAL SDK (``steer replay``'s callers and
transport) under one ``steer.instrument()`` per mode, so the whole set stays quick. The schemas below
restate the required fields of semantic-conventions-genai's ``gen-ai-{input,output}-messages.json``,
``gen-ai-system-instructions.json`` and ``gen-ai-tool-definitions.json`` (docs/telemetry.md pins the
commit): a message has a role and parts, an output message a ``finish_reason`` (required in v1.41 and
in the newest schema alike), each known part type its own fields; unknown part types are generic parts.
"""

from __future__ import annotations

import json
import warnings
from typing import Any, Dict, List

import jsonschema
import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

import steer
from recordings import all_recordings
from steer.tools.replay import _run
from steer.tools.replay.callers import CALLERS
from steer.tools.replay.transport import RecordingTransport

RECORDINGS = all_recordings()
CONTENT = ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions", "gen_ai.tool.definitions")
EVENT = "gen_ai.client.inference.operation.details"

_STRING = {"type": "string"}
_ID = {"type": ["string", "null"]}
_TYPED = {  # part type -> what its schema requires of it
    "text": {"required": ["content"], "properties": {"content": _STRING}},
    "reasoning": {"required": ["content"], "properties": {"content": _STRING}},
    "tool_call": {"required": ["name"], "properties": {"name": _STRING, "id": _ID}},
    "tool_call_response": {"required": ["response"], "properties": {"id": _ID}},
    "server_tool_call": {"required": ["name", "server_tool_call"],
                         "properties": {"name": _STRING, "id": _ID,
                                        "server_tool_call": {"type": "object", "required": ["type"]}}},
    "server_tool_call_response": {"required": ["server_tool_call_response"],
                                  "properties": {"id": _ID, "server_tool_call_response": {"type": "object", "required": ["type"]}}},
    "blob": {"required": ["modality", "content"], "properties": {"content": _STRING}},
    "file": {"required": ["modality", "file_id"], "properties": {"file_id": _STRING}},
    "uri": {"required": ["modality", "uri"], "properties": {"uri": _STRING}},
}
PART = {"type": "object", "required": ["type"], "properties": {"type": _STRING},
        "allOf": [{"if": {"properties": {"type": {"const": kind}}}, "then": rule} for kind, rule in _TYPED.items()]}
PARTS = {"type": "array", "items": PART}
_ROLES = ["system", "developer", "user", "assistant", "tool"]
INPUT = {"type": "array", "items": {"type": "object", "required": ["role", "parts"],
                                    "properties": {"role": {"enum": _ROLES}, "parts": PARTS}}}
OUTPUT = {"type": "array", "items": {"type": "object", "required": ["role", "parts", "finish_reason"],
                                     "properties": {"role": {"const": "assistant"}, "parts": PARTS,
                                                    "finish_reason": {"type": "string", "minLength": 1}}}}
TOOLS = {"type": "array", "items": {"type": "object", "required": ["type", "name"],
                                    "properties": {"type": _STRING, "name": _STRING}}}
SCHEMAS = {"gen_ai.input.messages": INPUT, "gen_ai.output.messages": OUTPUT, "gen_ai.system_instructions": PARTS,
           "gen_ai.tool.definitions": TOOLS}


def _plain(value: Any) -> Any:
    """A log attribute as the SDK keeps it (tuples, mapping proxies) as plain JSON values."""
    return json.loads(json.dumps(value, default=dict))


def _check(where: str, values: Dict[str, Any], finish_reasons: Any) -> None:
    for key, schema in SCHEMAS.items():
        if key in values:
            jsonschema.validate(values[key], schema)
    output = values.get("gen_ai.output.messages")
    if output is not None:  # one message per choice: each one's reason is among the span's, none invented
        assert len(output) <= len(finish_reasons or ()), where
        assert all(m["finish_reason"] in finish_reasons for m in output), where


# (content mode, conventions): every mode in v1.41, and the newest conventions with content everywhere.
MODES = [("NO_CONTENT", "v1.41"), ("SPAN_ONLY", "v1.41"), ("EVENT_ONLY", "v1.41"), ("SPAN_AND_EVENT", "v1.41"),
         ("SPAN_AND_EVENT", "latest")]


@pytest.mark.parametrize("mode,conventions", MODES, ids=[f"{m}-{c}" for m, c in MODES])
def test_every_recording_gives_schema_valid_content(mode: str, conventions: str, telemetry: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    if conventions == "latest":
        monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    else:
        monkeypatch.delenv("OTEL_SEMCONV_STABILITY_OPT_IN", raising=False)
    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    steer.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider,
                     logger_provider=logger_provider, capture_content=mode)
    on_span, on_event = mode in ("SPAN_ONLY", "SPAN_AND_EVENT"), mode in ("EVENT_ONLY", "SPAN_AND_EVENT")
    seen: Dict[str, int] = {}
    try:
        for recording in RECORDINGS:
            where = recording["_name"]
            telemetry.clear()
            logs.clear()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    _run(CALLERS[recording["api"]](recording, RecordingTransport(recording), False))
                except Exception:  # an error recording: the SDK raises, steer's span records it
                    pass
            spans = telemetry.genai_spans()
            assert len(spans) == 1, where
            attrs = dict(spans[0].attributes)
            reasons = attrs.get("gen_ai.response.finish_reasons")
            span_content = {key: json.loads(attrs[key]) for key in CONTENT if key in attrs}
            assert bool(span_content) == on_span, where
            if on_span:
                assert "gen_ai.input.messages" in span_content, where
            _check(where, span_content, reasons)
            events = [r.log_record for r in logs.get_finished_logs() if r.log_record.event_name == EVENT]
            assert len(events) == (1 if on_event else 0), where
            for event in events:
                event_content = {key: _plain(event.attributes[key]) for key in CONTENT if key in event.attributes}
                assert "gen_ai.input.messages" in event_content, where
                _check(where, event_content, reasons)
                if on_span:
                    assert event_content == span_content, where
            for key in span_content or (_plain(events[0].attributes) if events else {}):
                if key in CONTENT:
                    seen[key] = seen.get(key, 0) + 1
    finally:
        steer.uninstrument()
        logger_provider.shutdown()
    if mode != "NO_CONTENT":  # the set exercises every content attribute
        assert set(seen) == set(CONTENT), seen
        assert seen["gen_ai.output.messages"] >= len(RECORDINGS) - 6, seen  # all but the error recordings

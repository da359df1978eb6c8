"""Captured content reaches OTLP only in a form it can carry (issue 14 leftovers, the wire-value rule).

Recorded streams are mutated the way a broken or hostile server sends them: a lone surrogate (JSON's
``"\\ud800"`` escape) inside streamed text, tool-call arguments, reasoning, tool-call ids and finish
reasons. They are replayed to the REAL SDKs (and to raw httpx) under
``steer.instrument(capture_content="SPAN_AND_EVENT")``, sync and async, and everything steer emitted —
spans, metrics and the ``gen_ai.client.inference.operation.details`` log event — is encoded with the real
OTLP protobuf encoders: nothing is refused or dropped, every content attribute parses as JSON, the
surrogates became U+FFFD there, and the caller's events still carry what the SDK gave.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
from opentelemetry.exporter.otlp.proto.common._internal._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common._internal.trace_encoder import encode_spans
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

import steer
from recordings import load
from steer.events import StreamCompleteEvent
from steer.tools.replay import callers, run_replay

from .checks import otlp_complaints

BAD = "\ud800"  # a lone surrogate: what json.loads gives for the escape "\ud800"
CONTENT = ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions", "gen_ai.tool.definitions")
IDS = {"id", "call_id", "item_id", "tool_use_id"}
# String fields of the events that carry content (text, reasoning, tool arguments) or a finish reason.
TEXTS = {"content", "text", "delta", "thinking", "arguments", "partial_json", "finish_reason", "stop_reason"}
RECORDINGS = [
    "openai/chat_two_tool_calls_include_usage.json",  # a system message, tools, two tool calls
    "openai/chat_gpt4_include_usage.json",  # streamed text
    "openai/responses_o4_mini_reasoning_summary.json",  # reasoning summary + text
    "openai/responses_function_call_gpt55.json",  # function call arguments
    "anthropic/messages_thinking_claude37.json",  # thinking + text
    "anthropic/messages_tool_use_input_json_delta.json",  # tool use, arguments streamed as partial_json
    "google/gemini20_flash_function_call.json",  # function call with arguments
    "google/gemini25_pro_thinking.json",  # thoughts + text
]


def _spoiled(value: Any, key: str = "") -> Any:
    """A lone surrogate put into each content string: after the first "o" (inside a JSON string even in
    a piece of tool arguments: JSON's own words true/false/null have none), appended to each id."""
    if isinstance(value, dict):  # Gemini's function call arguments are an object: each string is content
        return {k: _spoiled(v, "text" if key == "args" else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_spoiled(v, key) for v in value]
    if isinstance(value, str) and key in IDS:
        return value + BAD
    if isinstance(value, str) and key in TEXTS and "o" in value:
        return value.replace("o", "o" + BAD, 1)
    return value


def mutated(name: str) -> Dict[str, Any]:
    """The recording with surrogates in every JSON event of its body (the SDKs cannot send one in a
    prompt: httpx refuses to encode it, the caller's own error)."""
    rec = load(name)
    lines = []
    for line in rec["response"]["body"].split("\n"):
        if line.startswith("data:") and line[5:].strip().startswith("{"):
            line = "data: " + json.dumps(_spoiled(json.loads(line[5:])))
        lines.append(line)
    body = "\n".join(lines)
    if body.lstrip().startswith(("{", "[")):  # a whole JSON body (Gemini without alt=sse)
        body = json.dumps(_spoiled(json.loads(body)))
    rec["response"]["body"] = body
    return rec


def _logs() -> Any:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    return provider, exporter


class _Emitted:
    """What one replay emitted, read the way tests/reliability/checks.otlp_complaints reads a fixture."""

    def __init__(self, capture: Any) -> None:
        self.exporter, self.reader = capture.exporter, capture.reader

    def spans(self) -> List[Any]:
        return list(self.exporter.get_finished_spans())


def replayed(rec: Dict[str, Any], is_async: bool, raw: bool) -> Any:
    provider, exporter = _logs()
    if raw:  # the same request POSTed with plain httpx: the raw-httpx path decodes it
        saved, callers.CALLERS[rec["api"]] = callers.CALLERS[rec["api"]], callers.raw_httpx
    try:
        capture = run_replay(rec, is_async=is_async, capture_content="SPAN_AND_EVENT", logger_provider=provider,
                             **({"providers": ["httpx"]} if raw else {}))
    finally:
        if raw:
            callers.CALLERS[rec["api"]] = saved
    return capture, [r for r in exporter.get_finished_logs()]


@pytest.mark.parametrize("raw", [False, True], ids=["sdk", "raw-httpx"])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("name", RECORDINGS)
def test_content_with_lone_surrogates_exports_cleanly(name: str, is_async: bool, raw: bool) -> None:
    rec = mutated(name)
    capture, logs = replayed(rec, is_async, raw)
    assert capture.raised is None, capture.raised
    (span,) = [s for s in capture.exporter.get_finished_spans() if "gen_ai.operation.name" in s.attributes]
    attrs = dict(span.attributes)
    # Encoded as the exporters encode: nothing refused, nothing dropped.
    assert otlp_complaints(_Emitted(capture)) == []
    encoded = encode_spans([span]).resource_spans[0].scope_spans[0].spans[0]
    assert {kv.key for kv in encoded.attributes} == set(attrs)
    assert {"gen_ai.input.messages", "gen_ai.output.messages"} <= set(attrs)
    for key in CONTENT:
        if key in attrs:
            assert attrs[key].encode("utf-8") and isinstance(json.loads(attrs[key]), list), key
    assert "\ufffd" in attrs["gen_ai.output.messages"]
    # The details event: content as structured values, all of it encoded.
    (event,) = [r.log_record for r in logs if r.log_record.event_name == "gen_ai.client.inference.operation.details"]
    assert {"gen_ai.input.messages", "gen_ai.output.messages"} <= set(event.attributes)
    assert _plain(event.attributes["gen_ai.output.messages"]) == json.loads(attrs["gen_ai.output.messages"])
    pb = encode_logs(logs).resource_logs[0].scope_logs[0].log_records[0]
    assert {kv.key for kv in pb.attributes} == set(event.attributes)
    # The caller's events carry what the SDK gave, surrogates and all.
    (done,) = [e for e in capture.events if isinstance(e, StreamCompleteEvent)]
    carried = [done.text, done.reasoning, list(done.finish_reasons), [c.as_dict() for c in done.tool_calls]]
    assert BAD in json.dumps(carried, ensure_ascii=False, default=str)


def _plain(value: Any) -> Any:
    """A log attribute as the SDK keeps it (tuples, mapping proxies) as plain JSON values."""
    return json.loads(json.dumps(value, default=dict))


def test_replay_json_and_text_print_lone_surrogates(tmp_path: Path) -> None:
    """`steer replay --json` prints one JSON object that parses back to the SDK's text; the human form
    prints too (U+FFFD where the terminal cannot show the lone surrogate)."""
    path = tmp_path / "spoiled.json"
    path.write_text(json.dumps(mutated("openai/chat_two_tool_calls_include_usage.json")))
    for args in (["--json"], [], ["--json", "--capture-content"]):
        out = subprocess.run([sys.executable, "-m", "steer", "replay", str(path), *args], capture_output=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr.decode("utf-8", "replace")
        if "--json" in args:
            summary = json.loads(out.stdout)
            assert BAD in json.dumps(summary["tool_calls"], ensure_ascii=False)  # the arguments' keys
            if "--capture-content" in args:
                assert "\ufffd" in summary["span"]["attributes"]["gen_ai.output.messages"]
        else:
            assert "\ufffd".encode() in out.stdout
    steer.uninstrument()


def test_numbers_json_or_otlp_cannot_carry() -> None:
    """Tool arguments parsed from the wire may hold NaN (no JSON number) or an integer past int64 (no
    OTLP int): the attribute stays strict JSON, the event's structured value stays encodable."""
    from opentelemetry.exporter.otlp.proto.common._internal import _encode_value

    from steer.telemetry.content import prepare, structured

    args = {"x": float("nan"), "y": float("-inf"), "n": 2**70, "k": 3}
    _, text = prepare([{"role": "assistant", "parts": [{"type": "tool_call", "arguments": args}]}], 10_000, None, False)

    def strict(name: str) -> Any:
        raise AssertionError(f"{name} is not JSON")

    assert json.loads(text, parse_constant=strict)[0]["parts"][0]["arguments"] == {"x": "NaN", "y": "-Infinity",
                                                                                  "n": 2**70, "k": 3}
    value = structured(text)
    assert value[0]["parts"][0]["arguments"] == {"x": "NaN", "y": "-Infinity", "n": str(2**70), "k": 3}
    _encode_value(value)  # raises ValueError on an integer past int64

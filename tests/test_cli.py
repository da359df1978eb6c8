"""The `steer` command: `steer replay FILE --json` (the DESIGN contract) and `steer demo`."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from typing import Any, Dict

import openai
import pytest

from recordings import Served, all_recordings, ids
from test_openai_chat import call_kwargs, make_client, sdk_assembly

CHAT = all_recordings("openai.chat.completions")
CONTRACT_KEYS = {"provider", "api", "text", "tool_calls", "finish_reasons", "chunks", "usage", "json", "span", "metrics", "events"}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "steer", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("recording", CHAT, ids=ids(CHAT))
def test_replay_json_equals_the_sdk_assembly(recording: Dict[str, Any]) -> None:
    result = run_cli("replay", recording["_path"], "--json")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, "exactly one JSON object on stdout"
    summary = json.loads(lines[0])
    assert CONTRACT_KEYS <= set(summary)
    assert summary["provider"] == recording["provider"] and summary["api"] == recording["api"]
    assert summary["span"]["count"] == 1

    if recording["response"]["status"] != 200:
        assert summary["span"]["status"] == "ERROR" and summary["error"]["type"].endswith("Error")
        assert summary["usage"]["source"] == "none"
        return
    # The same bytes through the bare SDK, assembled by the SDK's own accumulator.
    chunks = []
    try:
        for chunk in make_client(recording).chat.completions.create(**call_kwargs(recording)):
            chunks.append(chunk)
    except openai.APIError:
        assert summary["span"]["status"] == "ERROR" and summary["span"]["attributes"]["steer.stream.end"] == "error"
        assert summary["events"]["StreamErrorEvent"] == 1
        return
    sdk = sdk_assembly(chunks)
    assert summary["text"] == (sdk["texts"][0] if sdk["texts"] else "")
    assert [(c["id"], c["name"], c["arguments"]) for c in summary["tool_calls"]] == sdk["tool_calls"]
    assert summary["finish_reasons"] == sdk["finish"]
    assert summary["chunks"] == len(chunks)
    assert summary["events"]["StreamStartEvent"] == 1 and summary["events"]["StreamCompleteEvent"] == 1
    assert "gen_ai.client.operation.duration" in summary["metrics"]
    assert "gen_ai.client.operation.time_to_first_chunk" in summary["metrics"]
    reported = recording.get("reported_usage")
    if reported:
        assert summary["usage"] == {"input_tokens": reported["input_tokens"], "output_tokens": reported["output_tokens"],
                                    "source": "reported", "confidence": 1.0}
    else:
        assert summary["usage"]["source"] == "estimated"
        assert 0 < summary["usage"]["confidence"] < 1


def test_replay_human_output_and_bad_file(tmp_path: Any) -> None:
    result = run_cli("replay", CHAT[0]["_path"])
    assert result.returncode == 0 and "span" in result.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    result = run_cli("replay", str(bad), "--json")
    assert result.returncode == 2 and "not a recording" in result.stderr
    assert run_cli("replay", str(tmp_path / "missing.json")).returncode == 2


def test_demo_shows_traces_and_metrics() -> None:
    from steer.tools.demo import CALLS, run_demo

    out = io.StringIO()
    assert run_demo(fast=True, out=out) == 0
    text = out.getvalue()
    assert f"Traces: {len(CALLS)} spans (one per call)" in text
    for provider in ("openai", "anthropic", "gcp.gemini"):
        assert f"  {provider} " in text
    for metric in ("gen_ai.client.operation.duration", "gen_ai.client.operation.time_to_first_chunk",
                   "gen_ai.client.token.usage", "steer.client.token.usage.estimated", "steer.client.streams.active: value 0"):
        assert metric in text
    assert "error: RateLimitError" in text and "closed_early" in text and "(estimated, conf" in text


def test_python_dash_m_steer_help() -> None:
    result = run_cli("--help")
    assert result.returncode == 0 and "replay" in result.stdout and "demo" in result.stdout

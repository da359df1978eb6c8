"""The `steer` command: `steer replay FILE --json` (the DESIGN contract) and `steer demo`."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import openai
import pytest

from recordings import Served, all_recordings, ids
from steer.tools.replay import replay
from test_openai_chat import call_kwargs, make_client, sdk_assembly

ROOT = Path(__file__).resolve().parents[1]
CHAT = all_recordings("openai.chat.completions")
CONTRACT_KEYS = {"provider", "api", "text", "tool_calls", "finish_reasons", "chunks", "usage", "json", "span", "metrics", "events"}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "steer", *args], capture_output=True, text=True, timeout=120)


def test_replay_json_is_one_object_with_the_contract_keys() -> None:
    result = run_cli("replay", CHAT[0]["_path"], "--json")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, "exactly one JSON object on stdout"
    summary = json.loads(lines[0])
    assert CONTRACT_KEYS <= set(summary)
    same = replay(CHAT[0]["_path"])  # what the next test checks recording by recording, in-process
    for key in ("provider", "api", "text", "tool_calls", "finish_reasons", "chunks", "usage", "events"):
        assert summary[key] == same[key], key


@pytest.mark.parametrize("recording", CHAT, ids=ids(CHAT))
def test_replay_json_equals_the_sdk_assembly(recording: Dict[str, Any]) -> None:
    # replay() is what `steer replay --json` prints (the test above); in-process, so the SDKs are
    # imported once rather than once per recording.
    summary = json.loads(json.dumps(replay(recording["_path"]), ensure_ascii=False, default=str))
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
    assert result.returncode == 0, result.stderr
    out = result.stdout
    summary = json.loads(run_cli("replay", CHAT[0]["_path"], "--json").stdout)
    # What was said, how it streamed, what it cost, how it ended: values, not Python reprs.
    assert f"text:   {summary['text']}" in out
    assert re.search(r"^TTFC:   [0-9.]+ (ms|s)$", out, re.M), out
    assert f"chunks: {summary['chunks']}" in out
    usage = summary["usage"]
    assert f"usage:  {usage['input_tokens']} in, {usage['output_tokens']} out ({usage['source']}" in out
    assert f"end:    {summary['span']['attributes']['steer.stream.end']}" in out
    for name in summary["metrics"]:  # every metric, with its value and unit
        assert re.search(rf"^  {re.escape(name)}(\{{[^}}]*\}})?: \S", out, re.M), (name, out)
    assert re.search(r"^  gen_ai\.client\.operation\.duration: [0-9.]+ (ms|s)", out, re.M), out
    assert re.search(r"^  steer\.client\.stream\.chunks: [0-9]+ chunks?", out, re.M), out
    assert "{'" not in out and "': " not in out  # no dict reprs
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
                   "gen_ai.client.token.usage", "steer.client.token.usage.estimated", "steer.client.streams.active: 0 streams"):
        assert metric in text
    # Histograms as count, percentiles and max, with units.
    assert re.search(rf"gen_ai\.client\.operation\.duration: n={len(CALLS)} · p50 [0-9.]+ (ms|s) · p95 [0-9.]+ (ms|s) · "
                     r"max [0-9.]+ (ms|s)", text), text
    assert re.search(r"gen_ai\.client\.token\.usage\{gen_ai\.token\.type=output\}: n=\d+ · p50 [0-9.]+ tokens", text), text
    assert "error: RateLimitError" in text and "closed_early" in text and "(estimated, conf" in text


def test_python_dash_m_steer_help() -> None:
    result = run_cli("--help")
    assert result.returncode == 0 and "replay" in result.stdout and "demo" in result.stdout


def test_version() -> None:
    import importlib.metadata

    import steer

    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"steer {steer.__version__}"
    assert steer.__version__ == importlib.metadata.version("steer")


def test_ctrl_c_ends_the_demo_quietly() -> None:
    # Ctrl-C mid-stream: exit code 130, no traceback, nothing left retrying (the process ends).
    proc = subprocess.Popen([sys.executable, "-m", "steer", "demo", "--rounds", "50"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and "✓" in proc.stdout.readline()  # the first call streamed
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


def test_percentiles_are_read_off_the_buckets() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from steer.tools.metrics_text import metric_lines, with_unit

    reader = InMemoryMetricReader()
    histogram = MeterProvider(metric_readers=[reader]).get_meter("t").create_histogram(
        "d", unit="s", explicit_bucket_boundaries_advisory=[0.1, 0.2, 0.5, 1.0, 2.0])
    for value in [0.15] * 50 + [0.4] * 45 + [1.5] * 5:  # p50, p95: the tops of (0.1, 0.2] and (0.2, 0.5]
        histogram.record(value)
    (line,) = metric_lines(reader.get_metrics_data())
    assert line == "d: n=100 · p50 200.0 ms · p95 500.0 ms · max 1.50 s", line
    assert with_unit(3, "{chunk}") == "3 chunks" and with_unit(1, "{chunk}") == "1 chunk"
    assert with_unit(0.8125, "1") == "0.812" and with_unit(2e-05, "USD") == "2e-05 USD"


def test_the_license_is_an_spdx_string() -> None:
    # A TOML table made setuptools print a deprecation banner on every editable install (PEP 639);
    # setuptools 77 is the first to read the string form.
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in project["build-system"]["requires"]


def test_the_readme_lists_every_metric_the_reference_documents() -> None:
    from steer.telemetry import semconv

    readme = (ROOT / "README.md").read_text()
    emitted = readme[readme.index("## What is emitted"):readme.index("both versions side by side")]
    reference = (ROOT / "docs" / "telemetry.md").read_text()
    names = {v for k, v in vars(semconv).items() if k.startswith("METRIC_") and isinstance(v, str)
             and not v.startswith("gen_ai.client.inference.")}  # the newest conventions: listed as a family
    assert names and not [n for n in sorted(names) if f"`{n}`" not in emitted], "README misses some metrics"
    assert not [n for n in sorted(names) if f"`{n}`" not in reference], "docs/telemetry.md misses some metrics"
    for name in re.findall(r"`((?:gen_ai|steer)\.client\.[a-z_.]+)`", emitted):  # and names nothing else
        assert name in names or name.startswith("gen_ai.client.inference"), name

"""Arize Phoenix (``phoenix serve`` on 127.0.0.1) receiving the demo workload's traces over OTLP, exported
by the SDK that steer set up from OTEL_* alone; spans read back through Phoenix's REST API
(``GET /v1/projects/{name}/spans``) and seen in its UI by headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import time
from typing import Any, Dict, List

import pytest

from backend_support import ARTIFACTS, ROOT, PhoenixRun, phoenix, require  # noqa: F401 - phoenix: the session fixture
from chromium import Chromium, find_chromium
from workload import FAULTY

pytestmark = pytest.mark.backend

# Span names every workload pass produces (the demo's calls and the extras of tests/backends/workload.py).
EXPECTED_NAMES = {"chat gpt-4o-mini", "chat gpt-4o", "chat gpt-4.1-nano", "chat gpt-4.1-mini", "chat claude-sonnet-4-6",
                  "chat claude-haiku-4-5", "generate_content gemini-2.5-flash"}


def spans_of(run: PhoenixRun, project: str, expected: int) -> List[Dict[str, Any]]:
    deadline = time.monotonic() + 60  # Phoenix ingests asynchronously
    spans: List[Dict[str, Any]] = []
    while time.monotonic() < deadline:
        spans = [s for s in run.server.spans(project) if s["attributes"].get("gen_ai.operation.name")]
        if len(spans) >= expected:
            break
        time.sleep(0.5)
    return spans


def calls_per_pass(run: PhoenixRun) -> int:
    return run.summaries[0]["calls"]


@pytest.mark.parametrize("project, passes", [(PhoenixRun.HTTP_PROJECT, 2), (PhoenixRun.GRPC_PROJECT, 1)])
def test_phoenix_has_every_call_with_steers_attributes(phoenix: PhoenixRun, project: str, passes: int) -> None:
    expected = calls_per_pass(phoenix) * passes
    spans = spans_of(phoenix, project, expected)
    assert len(spans) == expected  # one span per call, no more, no fewer
    assert EXPECTED_NAMES <= {s["name"] for s in spans}
    for span in spans:
        attrs = span["attributes"]
        assert attrs["gen_ai.provider.name"] in ("openai", "anthropic", "gcp.gemini")
        assert attrs["gen_ai.request.model"] == span["name"].split(" ", 1)[1]
        assert attrs["gen_ai.request.stream"] is False or attrs["steer.stream.end"] in ("complete", "closed_early", "error", "cancelled")
        assert attrs["steer.usage.source"] in ("reported", "estimated", "none")
    by_kind = {key: [s for s in spans if key in s["attributes"]] for key in (
        "gen_ai.usage.output_tokens", "steer.usage.estimated.output_tokens", "steer.usage.confidence",
        "gen_ai.response.time_to_first_chunk", "steer.stream.chunks", "steer.json.valid", "steer.json.duplicates_dropped",
        "error.type")}
    assert all(by_kind.values()), {k: len(v) for k, v in by_kind.items()}
    errored = [s for s in spans if s["status_code"] == "ERROR"]
    assert errored and all("error.type" in s["attributes"] for s in errored)
    assert any(s["attributes"].get("steer.json.duplicates_dropped", 0) > 0 for s in spans)  # the Responses stream


def test_the_workload_saw_the_injected_faults(phoenix: PhoenixRun) -> None:
    assert len(phoenix.summaries) == 3  # 2 passes over HTTP, 1 over gRPC
    for summary in phoenix.summaries:
        assert summary["calls"] == calls_per_pass(phoenix)
        assert set(summary["errors"]) == set(FAULTY), summary  # the demo's own calls all succeed


def test_screenshot_of_a_steer_trace_in_phoenix(phoenix: PhoenixRun) -> None:
    binary = require("Chromium (Debian package `chromium`)", find_chromium())
    spans = spans_of(phoenix, PhoenixRun.HTTP_PROJECT, calls_per_pass(phoenix) * 2)
    # A JSON-mode stream with reported usage: it carries the most of steer's attributes.
    span = next(s for s in spans if s["attributes"].get("steer.json.valid") is True)
    url = phoenix.server.trace_url(PhoenixRun.HTTP_PROJECT, span["context"]["trace_id"], span["id"])
    with Chromium(binary, width=1600, height=1500) as browser:
        browser.navigate(url)
        browser.wait_for_text(span["name"], "Attributes", timeout=90)
        assert browser.click_text("Attributes"), "no Attributes tab on the span page"
        text = browser.wait_for_text("gen_ai.provider.name", "gen_ai.usage.output_tokens", "steer.stream.chunks",
                                     "steer.json.valid", "steer.usage.source", timeout=60)
        time.sleep(0.5)  # let the table finish its layout before the picture
        shot = browser.screenshot(ARTIFACTS / "phoenix-steer-trace.png")
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
    assert span["attributes"]["gen_ai.response.id"] in text
    if os.environ.get("STEER_UPDATE_DOCS_IMAGES"):
        shutil.copy(shot, ROOT / "docs" / "images" / "phoenix-steer-trace.png")


def test_tracer_provider_for_phoenix_in_process(phoenix: PhoenixRun, instrumented: Any) -> None:
    """The API ``steer demo --phoenix`` uses: a provider exporting to this Phoenix, into one project."""
    import openai

    from steer.tools.devserver import DevServer

    provider = phoenix.server.tracer_provider("steer-in-process")
    instrumented(tracer_provider=provider)
    with DevServer(chunk_delay=0) as server:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="sk-test", max_retries=0)
        for _ in client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True,
                                                stream_options={"include_usage": True}):
            pass
    provider.force_flush()
    provider.shutdown()
    spans = spans_of(phoenix, "steer-in-process", 1)
    assert [s["name"] for s in spans] == ["chat gpt-4o"]
    assert spans[0]["attributes"]["steer.usage.source"] == "reported"
    assert phoenix.server.project_url("steer-in-process").startswith(phoenix.server.url + "/projects/")


# -- steer.context: Phoenix's Sessions view (issue 17) ------------------------------------------------
SESSION = "support-chat-42"


def session_of(run: PhoenixRun, session_id: str, traces: int) -> Dict[str, Any]:
    """Phoenix's own grouping (GET /v1/sessions/{session_id}): filed at ingestion from `session.id`."""
    import json
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + 60
    data: Dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{run.server.url}/v1/sessions/{session_id}", timeout=30) as resp:
                data = json.loads(resp.read())["data"]
            if len(data["traces"]) >= traces:
                break
        except urllib.error.HTTPError as exc:
            if exc.code != 404:  # not there until its first trace is ingested
                raise
        time.sleep(0.5)
    return data


def test_phoenix_sessions_view_shows_one_sessions_calls_together(phoenix: PhoenixRun, instrumented: Any) -> None:
    import openai

    import steer
    from steer.tools.devserver import DevServer

    provider = phoenix.server.tracer_provider("steer-sessions")
    instrumented(tracer_provider=provider)
    questions = ["Where is my order?", "Can I change the address?", "Thanks!"]
    with DevServer(chunk_delay=0) as server:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="sk-test", max_retries=0)
        with steer.context(session_id=SESSION, user_id="user-7", conversation_id="conv-42"):
            for question in questions:  # three calls, three traces: one session
                for _ in client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": question}],
                                                        stream=True, stream_options={"include_usage": True}):
                    pass
        with steer.context(session_id="another-session"):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    provider.force_flush()
    provider.shutdown()
    session = session_of(phoenix, SESSION, len(questions))
    assert len(session["traces"]) == len(questions), session  # grouped by Phoenix, and nothing else in it
    assert session["token_count_completion"] > 0  # Phoenix read the calls' usage as well
    assert len(session_of(phoenix, "another-session", 1)["traces"]) == 1
    spans = [s for s in spans_of(phoenix, "steer-sessions", len(questions) + 1) if s["attributes"].get("session.id") == SESSION]
    assert {s["attributes"]["user.id"] for s in spans} == {"user-7"}

    binary = require("Chromium (Debian package `chromium`)", find_chromium())
    url = f"{phoenix.server.project_url('steer-sessions')}/sessions/{session['id']}"
    with Chromium(binary, width=1600, height=1100) as browser:
        browser.navigate(url)
        # Each call is a turn of the session, with the user Phoenix read from user.id.
        text = browser.wait_for_text(SESSION, "Turn 03", "USER: user-7", timeout=120)
        time.sleep(1.0)  # let the conversation view finish its layout before the picture
        shot = browser.screenshot(ARTIFACTS / "phoenix-steer-session.png")
    assert shot.stat().st_size > 20_000
    assert SESSION in text
    if os.environ.get("STEER_UPDATE_DOCS_IMAGES"):
        shutil.copy(shot, ROOT / "docs" / "images" / "phoenix-steer-session.png")


def test_steer_demo_phoenix_sends_traces_only_and_stops_quietly() -> None:
    # `steer demo --phoenix` as a new user runs it: no metric export errors (Phoenix answers OTLP
    # metrics with 405), the project page and where the data lives are printed, and Ctrl-C ends it
    # at once without a traceback or an exporter retrying.
    import signal
    import subprocess
    import sys

    from steer.tools.demo import DEMO_PROJECT
    from steer.tools.phoenix import find_python

    require("Arize Phoenix (.venv-phoenix with arize-phoenix)", find_python())
    proc = subprocess.Popen([sys.executable, "-m", "steer", "demo", "--phoenix", "--fast"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: List[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C stops Phoenix" in line:
                break
        text = "".join(lines)
        assert "Ctrl-C stops Phoenix" in text, text
        assert "its data lives in " in text and f"project {DEMO_PROJECT!r}" in text, text
        assert "/projects/" in text, text  # the project page, not just the server's root
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    text = "".join(lines) + rest
    # The exporter's refusal reads "Failed to export ... code: 405, reason: Method Not Allowed"; a bare "405"
    # also occurs in a random port (127.0.0.1:54053), so look for the status as the exporter words it.
    assert "Failed to export" not in text and "Method Not Allowed" not in text, text
    assert not re.search(r"\bcode:? ?405\b|\bstatus(?: code)?:? ?405\b|\b405 Method\b", text), text
    assert "Traceback" not in text, text
    assert proc.returncode in (0, 130), text

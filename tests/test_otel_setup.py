"""steer's OpenTelemetry defaults (steer.otel_setup), proven with the real SDK exporters sending to
real OTLP endpoints on loopback (tests/backends/otlp_receiver.py).

Global tracer/meter providers can be set once per process, so every scenario that lets steer set
them up runs tests/backends/otel_app.py as its own process: a real openai SDK streaming against the
loopback devserver, with ``steer.instrument()`` called without providers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest

from backends.otlp_receiver import BlackHole, OtlpGrpcReceiver, OtlpHttpReceiver, closed_port, wait_for
from steer import otel_setup

APP = Path(__file__).parent / "backends" / "otel_app.py"
STEER_METRICS = {"gen_ai.client.operation.duration", "gen_ai.client.operation.time_to_first_chunk",
                 "gen_ai.client.token.usage", "steer.client.stream.chunks"}


def app_env(**overrides: str) -> Dict[str, str]:
    # Hermetic: none of the caller's OTEL_* leaks in. The app only uses openai, so steer is told to
    # patch only openai (instrument() would otherwise import every installed provider SDK).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "STEER_"))}
    env.update({"STEER_PROVIDERS": "openai", "OTEL_BSP_SCHEDULE_DELAY": "50", "OTEL_METRIC_EXPORT_INTERVAL": "200"})
    env.update(overrides)
    return env


def run_app(env: Dict[str, str], *args: str, timeout: float = 120) -> Tuple[Dict[str, Any], str]:
    proc = subprocess.run([sys.executable, str(APP), *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return result_line(proc.stdout), proc.stdout


def result_line(stdout: str) -> Dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith('{"describe"'):
            return json.loads(line)
    raise AssertionError(f"no result line in:\n{stdout[-3000:]}")


# -- which providers steer uses ----------------------------------------------------------------------
def test_nothing_configured_sets_up_nothing_and_follows_what_the_app_configures_later() -> None:
    # With no destination in the environment steer stays on the global proxies, which then follow
    # the providers the application installs after instrument().
    result, _ = run_app(app_env(), "--configure-after", "--streams", "1")
    assert result["describe"] == {"traces": None, "metrics": None, "logs": None}
    assert result["tracing_configured"] is False and result["metrics_configured"] is False
    assert [s["name"] for s in result["own_spans"]] == ["chat gpt-4o-mini"]
    assert result["own_spans"][0]["attributes"]["gen_ai.provider.name"] == "openai"
    assert STEER_METRICS <= set(result["own_metrics"])


def test_the_applications_own_providers_win_and_steer_configures_nothing() -> None:
    with OtlpHttpReceiver() as receiver:
        result, _ = run_app(app_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint), "--own-providers", "--streams", "1")
    assert result["describe"] == {"traces": None, "metrics": None, "logs": None}
    assert [s["name"] for s in result["own_spans"]] == ["chat gpt-4o-mini"]
    assert STEER_METRICS <= set(result["own_metrics"])
    assert receiver.received.spans == [] and receiver.received.metrics == []


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_defaults_export_traces_and_metrics_over_otlp(protocol: str) -> None:
    receiver_cls = OtlpHttpReceiver if protocol == "http/protobuf" else OtlpGrpcReceiver
    with receiver_cls() as receiver:
        env = app_env(
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
            OTEL_EXPORTER_OTLP_HEADERS="x-steer-test=abc,authorization=Bearer%20t0ken",
            OTEL_SERVICE_NAME="otel-setup-test", OTEL_RESOURCE_ATTRIBUTES="deployment.environment.name=test,team=llm",
        )
        result, _ = run_app(env)  # the process exits: the SDK flushes at exit
        assert wait_for(lambda: len(receiver.received.spans) >= 2 and STEER_METRICS <= receiver.received.metric_names())
    assert result["describe"] == {"traces": f"otlp ({protocol})", "metrics": f"otlp ({protocol})", "logs": None}
    spans = [s for s in receiver.received.spans if s["name"] == "chat gpt-4o-mini"]
    assert len(spans) == 2
    span = spans[0]
    assert span["scope"] == "steer"
    assert span["attributes"]["gen_ai.provider.name"] == "openai"
    assert span["attributes"]["steer.stream.end"] == "complete"
    assert span["resource"]["service.name"] == "otel-setup-test"
    assert span["resource"]["team"] == "llm" and span["resource"]["deployment.environment.name"] == "test"
    for headers in receiver.received.headers:  # OTEL_EXPORTER_OTLP_HEADERS, values URL-decoded
        assert headers["x-steer-test"] == "abc"
        assert headers["authorization"] == "Bearer t0ken"


def test_per_signal_settings_traces_only() -> None:
    with OtlpHttpReceiver() as receiver:
        env = app_env(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=receiver.endpoint + "/v1/traces", OTEL_METRICS_EXPORTER="none")
        result, _ = run_app(env, "--streams", "1")
        assert wait_for(lambda: len(receiver.received.spans) >= 1)
    assert result["describe"] == {"traces": "otlp (http/protobuf)", "metrics": None, "logs": None}
    assert result["metrics_configured"] is False
    assert receiver.received.metrics == []


def test_console_exporters_and_an_unknown_name_is_skipped_not_raised() -> None:
    env = app_env(OTEL_TRACES_EXPORTER="no_such_exporter,console", OTEL_METRICS_EXPORTER="console")
    result, stdout = run_app(env, "--streams", "1")
    assert result["describe"] == {"traces": "console", "metrics": "console", "logs": None}
    assert '"gen_ai.provider.name": "openai"' in stdout  # the console span exporter's JSON
    assert '"name": "gen_ai.client.operation.duration"' in stdout  # the console metric exporter's JSON


def test_none_means_nothing_even_with_an_endpoint() -> None:
    with OtlpHttpReceiver() as receiver:
        env = app_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none")
        result, _ = run_app(env, "--streams", "1")
    assert result["describe"] == {"traces": None, "metrics": None, "logs": None}
    assert receiver.received.spans == [] and receiver.received.metrics == []


def test_sdk_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    # In-process: with OTEL_SDK_DISABLED steer returns before touching any global state.
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "console")
    before = (otel_setup.tracing_configured(), otel_setup.metrics_configured(), otel_setup.describe())
    assert otel_setup.resolve_providers(None, None) == (None, None)
    assert (otel_setup.tracing_configured(), otel_setup.metrics_configured(), otel_setup.describe()) == before


# -- an unreachable endpoint costs the caller nothing --------------------------------------------------
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_a_hung_endpoint_never_blocks_the_stream(protocol: str) -> None:
    """The endpoint accepts the export and never answers. The app's first stream triggers an export;
    once that export request is provably hanging (the black hole has its bytes and has not answered),
    the app runs four more streams to completion. Were exporting on the caller's path, they would
    wait behind the hung request (and the test would time out)."""
    with BlackHole() as hole:
        env = app_env(OTEL_EXPORTER_OTLP_ENDPOINT=hole.endpoint, OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
                      OTEL_EXPORTER_OTLP_TIMEOUT="120")
        proc = subprocess.Popen([sys.executable, str(APP), "--streams", "5", "--wait-go"], env=env, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert proc.stdout is not None and proc.stdin is not None
            assert proc.stdout.readline().strip() == "ready"
            assert hole.request_arrived.wait(60), "the exporter never tried the endpoint"
            proc.stdin.write("go\n")
            proc.stdin.flush()
            result = result_line(proc.stdout.readline())
            still_hanging = not hole.client_closed.is_set()
        finally:
            proc.kill()  # ours; its exporter would otherwise wait out its 120 s timeout at exit
            proc.wait(30)
    assert result["completed"] == 5
    assert still_hanging, "the export request ended before the streams did; the proof needs it outstanding"


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_a_closed_port_costs_only_background_retries(protocol: str) -> None:
    env = app_env(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{closed_port()}", OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
                  OTEL_EXPORTER_OTLP_TIMEOUT="1")
    result, _ = run_app(env, "--streams", "5", timeout=120)  # exits by itself: retries end at the timeout
    assert result["completed"] == 5
    threads = set(result["exporter_log_threads"])
    assert threads, "the exporters never reported a failed attempt"
    assert result["main_thread"] not in threads  # every attempt and retry ran on the SDK's own threads


# -- the building blocks the CLI uses ----------------------------------------------------------------
def test_build_tracer_provider_with_an_explicit_endpoint(instrumented: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import openai

    from steer.tools.devserver import DevServer

    for name in [k for k in os.environ if k.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    with OtlpHttpReceiver() as receiver:
        provider = otel_setup.build_tracer_provider(otlp_endpoint=receiver.endpoint, resource_attributes={"openinference.project.name": "p1"})
        instrumented(tracer_provider=provider)
        with DevServer(chunk_delay=0) as server:
            client = openai.OpenAI(base_url=server.openai_base_url, api_key="sk-test", max_retries=0)
            for _ in client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True):
                pass
        provider.force_flush()
        assert wait_for(lambda: len(receiver.received.spans) == 1)
        provider.shutdown()
    span = receiver.received.spans[0]
    assert span["name"] == "chat gpt-4o"
    assert span["resource"]["openinference.project.name"] == "p1"


def test_build_providers_without_destination() -> None:
    env: Dict[str, str] = {}
    assert otel_setup._tracer_provider(env, (), None, None, require_exporter=True)[0] is None
    assert otel_setup._meter_provider(env, (), None, None, require_exporter=True)[0] is None


@pytest.mark.parametrize(
    "env, signal, expected",
    [
        ({}, "traces", []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "traces", ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:4318/v1/metrics"}, "traces", []),
        ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:4318/v1/metrics"}, "metrics", ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console, otlp"}, "traces", ["console", "otlp"]),
        ({"OTEL_TRACES_EXPORTER": "otlp,none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, "traces", []),
        ({"OTEL_METRICS_EXPORTER": "prometheus"}, "metrics", ["prometheus"]),
    ],
)
def test_exporter_names(env: Dict[str, str], signal: str, expected: list) -> None:
    assert otel_setup.exporter_names(signal, env) == expected


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, "http/protobuf"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "grpc"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, "http/protobuf"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "http/protobuf"),
    ],
)
def test_otlp_protocol(env: Dict[str, str], expected: str) -> None:
    assert otel_setup.otlp_protocol("traces", env) == expected

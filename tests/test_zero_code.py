"""Zero-code instrumentation: ``opentelemetry-instrument python app.py`` picks steer up through its
``opentelemetry_instrumentor`` entry point, with no change to an application that never imports steer."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Dict

import openai
import pytest
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from backends.otlp_receiver import OtlpHttpReceiver, wait_for
from steer.tools.devserver import DevServer
from steer.otel_instrumentor import SteerInstrumentor

LAUNCHER = Path(sys.executable).with_name("opentelemetry-instrument")

# An ordinary application: the openai SDK and nothing else (no steer, no OpenTelemetry).
APP = textwrap.dedent("""
    import os
    import openai

    client = openai.OpenAI(base_url=os.environ["APP_BASE_URL"], api_key="sk-app", max_retries=0)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}],
        stream=True, stream_options={"include_usage": True})
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    print("app output:", len(text), "characters")
""")


def test_the_entry_point_names_the_instrumentor() -> None:
    found = [ep for ep in _group("opentelemetry_instrumentor") if ep.name == "steer"]
    assert len(found) == 1, "is the project installed (pip install -e .)?"
    cls = found[0].load()
    assert cls is SteerInstrumentor and issubclass(cls, BaseInstrumentor)
    assert tuple(SteerInstrumentor().instrumentation_dependencies()) == ()


def test_instrumentor_in_code_instruments_and_restores(telemetry: Any) -> None:
    original = openai.resources.chat.completions.Completions.__dict__["create"]
    instrumentor = SteerInstrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    try:
        assert instrumentor.is_instrumented_by_opentelemetry
        with DevServer(chunk_delay=0) as server:
            client = openai.OpenAI(base_url=server.openai_base_url, api_key="sk-test", max_retries=0)
            for _ in client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True):
                pass
    finally:
        instrumentor.uninstrument()
    assert [s.name for s in telemetry.genai_spans()] == ["chat gpt-4o"]
    assert openai.resources.chat.completions.Completions.__dict__["create"] is original


def _run_launcher(tmp_path: Path, base_url: str, **env_overrides: str) -> subprocess.CompletedProcess:
    if not LAUNCHER.exists():
        pytest.fail(f"{LAUNCHER} is missing: opentelemetry-instrumentation is a dependency of steer")
    app = tmp_path / "app.py"
    app.write_text(APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "STEER_"))}
    env.update({"APP_BASE_URL": base_url, "OTEL_BSP_SCHEDULE_DELAY": "50", "STEER_PROVIDERS": "openai"})
    env.update(env_overrides)
    return subprocess.run(
        [str(LAUNCHER), "--traces_exporter", "otlp", "--metrics_exporter", "otlp", "--service_name", "zero-code-app",
         sys.executable, str(app)],
        env=env, capture_output=True, text=True, timeout=180,
    )


def test_opentelemetry_instrument_picks_steer_up(tmp_path: Path) -> None:
    with DevServer(chunk_delay=0) as server, OtlpHttpReceiver() as receiver:
        proc = _run_launcher(tmp_path, server.openai_base_url, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
                             OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "app output:" in proc.stdout
        assert wait_for(lambda: any(s["name"] == "chat gpt-4o-mini" for s in receiver.received.spans))
        assert wait_for(lambda: "gen_ai.client.operation.duration" in receiver.received.metric_names())
    span = next(s for s in receiver.received.spans if s["name"] == "chat gpt-4o-mini")
    attrs: Dict[str, Any] = span["attributes"]
    assert span["scope"] == "steer"
    assert span["resource"]["service.name"] == "zero-code-app"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["steer.stream.end"] == "complete"
    assert attrs["steer.usage.source"] == "reported"


def test_disabled_instrumentations_turns_steer_off(tmp_path: Path) -> None:
    with DevServer(chunk_delay=0) as server, OtlpHttpReceiver() as receiver:
        proc = _run_launcher(tmp_path, server.openai_base_url, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
                             OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="steer")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "app output:" in proc.stdout
    assert not any(s["scope"] == "steer" for s in receiver.received.spans)


def _group(name: str) -> Any:
    eps = entry_points()
    return eps.select(group=name) if hasattr(eps, "select") else eps.get(name, ())

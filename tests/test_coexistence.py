"""Coexistence with the other GenAI instrumentations, with the real peer packages and the real openai SDK
against the loopback devserver.

- opentelemetry-instrumentation-openai-v2 (what ``opentelemetry-bootstrap`` installs for openai): in
  the zero-code setup it stands down, whichever of the two the launcher loaded first, so each call
  has one GenAI span and every metric is recorded once.
- OpenLLMetry, OpenInference, OpenLIT on the same methods: steer notices, warns once, and
  ``steer.instrumentation_status().peers`` names them.

The peer packages come from the ``peers-test`` extra (openlit with ``--no-deps``: it declares
openai<3); a test that needs one that is not installed is skipped with the install command.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, List

import openai
import pytest
from opentelemetry import context as otel_context

import steer
from steer.tools.devserver import DevServer
from steer.otel_instrumentor import post_instrument


def peer(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # loud: the reason and the fix are in the skip message
        pytest.skip(f"peer instrumentation {module} is not installed ({exc}); "
                    "pip install -e '.[peers-test]' && pip install --no-deps openlit==1.45.0")


@pytest.fixture
def sdk_restored() -> Any:
    """Puts back every openai class attribute a peer left behind: OpenLLMetry's uninstrument() passes
    dotted names ("Completions.create") to an unwrap that takes one attribute name, so its wrappers stay."""
    import sys

    import openai.resources.chat.completions.completions  # noqa: F401 - the classes peers patch

    def classes() -> List[Any]:
        return [value for name, module in list(sys.modules.items()) if name == "openai" or name.startswith("openai.")
                for value in list(vars(module).values()) if isinstance(value, type)]

    saved = {cls: dict(vars(cls)) for cls in classes()}
    yield
    for cls, attrs in saved.items():
        for name, value in list(vars(cls).items()):
            if name not in attrs and callable(value):
                delattr(cls, name)
            elif name in attrs and attrs[name] is not value and callable(value):
                setattr(cls, name, attrs[name])


@pytest.fixture
def server() -> Any:
    with DevServer(chunk_delay=0, chunks=4) as srv:
        yield srv


def chat(server: Any) -> None:
    client = openai.OpenAI(base_url=server.openai_base_url, api_key="sk-test", max_retries=0)
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True,
                                            stream_options={"include_usage": True}):
        pass
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


def genai_scopes(telemetry: Any) -> List[str]:
    return sorted(s.instrumentation_scope.name for s in telemetry.genai_spans())


def duration_points_by_scope(telemetry: Any) -> dict:
    out: dict = {}
    steer.flush(120)  # the calls' ends are recorded on steer's background thread
    data = telemetry.reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == "gen_ai.client.operation.duration":
                    out[sm.scope.name] = sum(p.count for p in metric.data.data_points)
    return out


@pytest.mark.parametrize("steer_first", [True, False], ids=["steer-then-openai-v2", "openai-v2-then-steer"])
def test_openai_v2_stands_down_in_either_order(steer_first: bool, server: Any, telemetry: Any, instrumented: Any) -> None:
    """What the launcher does (every instrumentor, in entry-point order, then the post-instrument hooks)."""
    v2 = peer("opentelemetry.instrumentation.openai_v2").OpenAIInstrumentor()
    load = [instrumented, lambda: v2.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)]
    # Before post_instrument both trace the calls. openai-v2 (util-genai) attaches its span's context in
    # create() and detaches it when the stream ends: under steer's wrapper, that late detach makes the
    # context current again that was current when it attached — steer's, inside steer's call. That state
    # ends at post_instrument (never seen by an application); the test puts its own context back.
    outer = otel_context.attach(otel_context.get_current())
    try:
        for step in load if steer_first else reversed(load):
            step()
        chat(server)
        assert genai_scopes(telemetry).count("steer") == 2 and len(genai_scopes(telemetry)) == 4  # twice: the problem
        assert "opentelemetry-instrumentation-openai-v2" in steer.instrumentation_status().peers
        telemetry.exporter.clear()
        before = duration_points_by_scope(telemetry)
        post_instrument()
        assert not v2.is_instrumented_by_opentelemetry
        chat(server)
        assert genai_scopes(telemetry) == ["steer", "steer"]
        after = duration_points_by_scope(telemetry)
        assert after["steer"] - before["steer"] == 2
        assert {scope: n for scope, n in after.items() if scope != "steer"} == {s: n for s, n in before.items() if s != "steer"}
        status = steer.instrumentation_status()
        assert "openai.resources.chat.completions.completions.Completions.create" in status.patched
        assert not status.peers
    finally:
        otel_context.detach(outer)
        if v2.is_instrumented_by_opentelemetry:
            v2.uninstrument()


def test_openai_v2_keeps_its_place_when_steer_is_off_for_openai(server: Any, telemetry: Any, instrumented: Any) -> None:
    v2 = peer("opentelemetry.instrumentation.openai_v2").OpenAIInstrumentor()
    instrumented(providers=["anthropic"])
    v2.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    try:
        post_instrument()
        assert v2.is_instrumented_by_opentelemetry
        chat(server)
        assert "steer" not in genai_scopes(telemetry) and len(genai_scopes(telemetry)) == 2
    finally:
        v2.uninstrument()


def _openllmetry(telemetry: Any) -> Callable[[], None]:
    inst = peer("opentelemetry.instrumentation.openai").OpenAIInstrumentor()
    inst.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    return inst.uninstrument


def _openinference(telemetry: Any) -> Callable[[], None]:
    inst = peer("openinference.instrumentation.openai").OpenAIInstrumentor()
    inst.instrument(tracer_provider=telemetry.tracer_provider)
    return inst.uninstrument


def _openlit(telemetry: Any) -> Callable[[], None]:
    inst = peer("openlit.instrumentation.openai").OpenAIInstrumentor()
    config = importlib.import_module("openlit._config").OpenlitConfig
    if not hasattr(config, "metrics_dict"):  # what openlit.init() would set up; its metrics stay off here
        config.reset_to_defaults()
    inst.instrument(disable_metrics=True)
    return inst.uninstrument


PEERS = [("OpenLLMetry", _openllmetry, "opentelemetry-instrumentation-openai (OpenLLMetry)"),
         ("OpenInference", _openinference, "openinference-instrumentation-openai (OpenInference)"),
         ("OpenLIT", _openlit, "openlit (OpenLIT)")]


# Where each peer puts its first wrapper (OpenInference wraps the client's request method, below steer).
WRAPPED_BY = {PEERS[0][2]: {"openai.resources.chat.completions.completions.Completions.create"},
              PEERS[1][2]: {"openai.OpenAI.request"},
              PEERS[2][2]: {"openai.resources.chat.completions.completions.Completions.create"}}


@pytest.mark.parametrize("steer_first", [True, False], ids=["steer-first", "peer-first"])
@pytest.mark.parametrize("install, expected", [(p[1], p[2]) for p in PEERS], ids=[p[0] for p in PEERS])
def test_other_instrumentations_are_reported_and_warned_once(
    sdk_restored: None, install: Any, expected: str, steer_first: bool, server: Any, telemetry: Any, instrumented: Any,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from steer import instrumentation

    monkeypatch.setattr(instrumentation._STATE, "warned", set())
    monkeypatch.setattr(instrumentation._STATE, "peers", {})
    caplog.set_level(logging.WARNING, logger="steer")
    remove = None
    try:
        if steer_first:
            instrumented()
            remove = install(telemetry)
        else:
            remove = install(telemetry)
            instrumented()
        status = steer.instrumentation_status()
        steer.instrumentation_status()
        assert expected in status.peers, status.peers
        assert status.peers[expected][0] in WRAPPED_BY[expected]
        assert status["openai.resources.chat.completions.completions.Completions.create"] == "patched"
        warnings = [r.getMessage() for r in caplog.records if expected in r.getMessage()]
        assert len(warnings) == 1 and "traced twice" in warnings[0]
        chat(server)  # both still work: steer never breaks the caller, whatever else is on the method
        assert genai_scopes(telemetry).count("steer") == 2
    finally:
        if remove is not None:
            remove()


def test_alone_no_peer_is_reported(instrumented: Any, caplog: pytest.LogCaptureFixture) -> None:
    instrumented()
    import openai.resources.chat.completions.completions  # noqa: F401 - the SDK imported: targets patched

    status = steer.instrumentation_status()
    assert status.patched and not status.peers
    assert not [r for r in caplog.records if "traced twice" in r.getMessage()]


# --- the zero-code setup: `opentelemetry-bootstrap` put openai-v2 next to steer ------------------------------------

ROOT = Path(__file__).resolve().parents[1]
APP = textwrap.dedent("""
    import os
    import openai

    client = openai.OpenAI(base_url=os.environ["APP_BASE_URL"], api_key="sk-app", max_retries=0)
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}],
                                            stream=True, stream_options={"include_usage": True}):
        pass
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])
    print("app done")
""")
# The documented zero-code set-up (pip install opentelemetry-distro opentelemetry-exporter-otlp;
# opentelemetry-bootstrap -a install) for an openai application, at shared/bench's lock-file pins.
BOOTSTRAPPED = ["opentelemetry-distro", "opentelemetry-exporter-otlp-proto-http",
                "opentelemetry-instrumentation-openai-v2==2.4b0", "opentelemetry-util-genai==1.1b0"]


@pytest.fixture(scope="module")
def bootstrapped_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding only the app's SDK, steer and what the bootstrap adds (no other peer)."""
    uv = [shutil.which("uv")] if shutil.which("uv") else [sys.executable, "-m", "uv"]
    if subprocess.run([*uv, "--version"], capture_output=True).returncode:
        pytest.skip("uv is needed to build the zero-code test's own virtualenv: pip install uv")
    venv = tmp_path_factory.mktemp("bootstrapped") / "venv"
    subprocess.run([*uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True, timeout=120)
    env = {**os.environ, "VIRTUAL_ENV": str(venv), "UV_PYTHON_DOWNLOADS": "never"}
    install = [*uv, "pip", "install", "-q", "-e", f"{ROOT}[openai]", *BOOTSTRAPPED]
    if subprocess.run([*install, "--offline"], env=env, capture_output=True, timeout=300).returncode:
        subprocess.run(install, env=env, check=True, timeout=600)  # the cache lacked something: fetch it
    return venv


def _launch(venv: Path, tmp_path: Path, base_url: str, endpoint: str, **env_overrides: str) -> subprocess.CompletedProcess:
    app = tmp_path / "app.py"
    app.write_text(APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "STEER_", "VIRTUAL_ENV"))}
    env.update({"APP_BASE_URL": base_url, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_BSP_SCHEDULE_DELAY": "50", "OTEL_METRIC_EXPORT_INTERVAL": "200", **env_overrides})
    return subprocess.run([str(venv / "bin" / "opentelemetry-instrument"), "--traces_exporter", "otlp", "--metrics_exporter", "otlp",
                           "--service_name", "bootstrapped-app", str(venv / "bin" / "python"), str(app)],
                          env=env, capture_output=True, text=True, timeout=180)


@pytest.mark.xdist_group("bootstrapped-venv")  # one worker builds the virtualenv once
@pytest.mark.parametrize("disabled, keeper", [("", "steer"), ("steer", "opentelemetry.util.genai.handler")],
                         ids=["steer-keeps-the-calls", "disabled-steer-keeps-openai-v2"])
def test_zero_code_one_span_per_call_and_metrics_once(bootstrapped_venv: Path, tmp_path: Path, disabled: str, keeper: str) -> None:
    from backends.otlp_receiver import OtlpHttpReceiver, wait_for

    extra = {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": disabled} if disabled else {}
    with DevServer(chunk_delay=0) as server, OtlpHttpReceiver() as receiver:
        proc = _launch(bootstrapped_venv, tmp_path, server.openai_base_url, receiver.endpoint, **extra)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "app done" in proc.stdout
        received = receiver.received
        assert wait_for(lambda: len([s for s in received.spans if s["name"] == "chat gpt-4o-mini"]) >= 2)
        assert wait_for(lambda: "gen_ai.client.operation.duration" in received.metric_names())
    genai = [s for s in received.spans if "gen_ai.operation.name" in s["attributes"]]
    assert [s["scope"] for s in genai] == [keeper, keeper], [(s["name"], s["scope"]) for s in genai]
    for name in ("gen_ai.client.operation.duration", "gen_ai.client.token.usage"):
        scopes = {m["scope"] for m in received.metrics if m["name"] == name}
        assert len(scopes) == 1, (name, scopes)  # recorded once: by one instrumentation

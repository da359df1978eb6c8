"""instructor, llama-index (llama-index-llms-openai) and LiteLLM over steer (issue 19), each in a
virtualenv of their own: instructor and llama-index pin openai below the main venv's, LiteLLM brings
aiohttp (google-genai would send its async requests through it). The venv is built once per run with uv
(as tests/test_coexistence.py builds its zero-code one): steer from this checkout plus the pins in
tests/isolated/requirements.txt, so CI installs the same.

tests/isolated/frameworks_app.py runs in that venv: it drives the framework against a devserver on
loopback with steer instrumented, reads the spans from an in-memory exporter, then sends each request
body the framework sent again through the bare SDK. Here each logical call must be one steer span with
the end that truly happened, the chunk count the bare SDK yields for that very body, and its usage.

Marked ``backend`` (``make test-backends``, which CI runs too): building the venv (bytecode compiled)
takes ~25-60 s and importing LiteLLM / llama-index 10-40 s per run, too slow for ``make test``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent / "isolated"
REPORT = "STEER-REPORT "

pytestmark = [pytest.mark.backend, pytest.mark.xdist_group("isolated-frameworks")]  # one worker builds the venv once

# scenario -> (stream end, which bare count the chunks equal): None for a call that is not streamed
EXPECTED: Dict[str, Dict[str, Any]] = {
    "instructor": {"create": None, "create_partial": ("complete", "items"),
                   "async_create_partial": ("complete", "items")},
    "llama_index": {"chat": None, "stream_chat": ("complete", "items"), "async_stream_chat": ("complete", "items"),
                    # llama-index's stream_chat generator loops over the SDK stream; closing it drops that
                    # stream unclosed (a `for` loop closes nothing): abandoned, after the one chunk it read
                    "stream_chat_closed_early": ("abandoned", 1)},
    # LiteLLM: openai through the openai SDK (steer's SDK span); Anthropic through its own httpx client
    # (steer's raw-httpx path). Its sync reader closes the response after the stop reason, before
    # `message_stop` (nothing lost: complete, one chunk fewer than the SDK reads); the async one reads
    # through `message_stop`, then closes.
    "litellm": {"openai_completion": None, "openai_stream": ("complete", "items"),
                "openai_async_stream": ("complete", "items"), "anthropic_completion": None,
                "anthropic_stream": ("complete", "through_stop_reason"),
                "anthropic_async_stream": ("complete", "items"),
                # closed after the first chunk LiteLLM hands over: it closes the SDK stream (openai: one
                # chunk read) or its httpx response (Anthropic: message_start, content_block_start and
                # the first text delta read)
                "openai_stream_closed_early": ("closed_early", 1),
                "anthropic_stream_closed_early": ("closed_early", 3)},
}


def _uv() -> list:
    return [shutil.which("uv")] if shutil.which("uv") else [sys.executable, "-m", "uv"]


@pytest.fixture(scope="module")
def isolated_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    uv = _uv()
    if subprocess.run([*uv, "--version"], capture_output=True).returncode:
        pytest.skip("uv is needed to build the frameworks' own virtualenv: pip install uv")
    venv = tmp_path_factory.mktemp("frameworks") / "venv"
    subprocess.run([*uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True, timeout=120)
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    # --python, not VIRTUAL_ENV: `python -m uv pip` installs into its own interpreter whatever VIRTUAL_ENV says
    install = [*uv, "pip", "install", "-q", "--compile-bytecode", "--python", str(venv / "bin" / "python"), "-e", f"{ROOT}[openai,anthropic]",
               "-r", str(HERE / "requirements.txt")]
    if subprocess.run([*install, "--offline"], env=env, capture_output=True, timeout=300).returncode:
        online = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)  # fetch what the cache lacks
        if online.returncode:
            pytest.skip(f"the frameworks' pins in tests/isolated/requirements.txt did not install: {online.stderr[-2000:]}")
    return venv


def run_app(venv: Path, framework: str) -> Dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "STEER_", "VIRTUAL_ENV", "PYTHONPATH"))}
    proc = subprocess.run([str(venv / "bin" / "python"), str(HERE / "frameworks_app.py"), framework],
                          env={**env, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [line for line in proc.stdout.splitlines() if line.startswith(REPORT)]
    return json.loads(line[len(REPORT):])


@pytest.mark.parametrize("framework", list(EXPECTED))
def test_framework_calls_are_one_true_span_each(framework: str, isolated_venv: Path) -> None:
    report = run_app(isolated_venv, framework)
    scenarios = report["scenarios"]
    assert set(scenarios) == set(EXPECTED[framework]), report["versions"]
    for name, expected in EXPECTED[framework].items():
        entry = scenarios[name]
        spans, (bare,) = entry["spans"], entry["bare"]  # one request sent: one logical call
        assert len(spans) == 1, (name, spans)
        (span,) = spans
        where = (framework, name, report["versions"])
        assert span["status"] == "UNSET" and "error.type" not in span, where
        if expected is None:
            assert span.get("gen_ai.request.stream") is not True and "steer.stream.end" not in span, where
        else:
            end, chunks = expected
            assert span["steer.stream.end"] == end, where
            assert span["steer.stream.chunks"] == (chunks if isinstance(chunks, int) else bare[chunks]), (where, span, bare)
        if end_reads_usage(expected):
            input_tokens, output_tokens = bare["usage"]
            assert span.get("gen_ai.usage.input_tokens") == input_tokens, (where, span, bare)
            assert span.get("gen_ai.usage.output_tokens") == output_tokens, (where, span, bare)


def end_reads_usage(expected: Any) -> bool:
    """Usage is compared where the framework read the answer through: not for a stream it dropped."""
    return expected is None or expected[0] == "complete"

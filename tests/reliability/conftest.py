"""Fixtures of the reliability suite: the devserver in its own process (``instrumented``,
``telemetry`` and the frozen heap come from tests/conftest.py)."""

from __future__ import annotations

from typing import Iterator

import pytest


class ExternalDevServer:
    """``python -m steer.tools.devserver`` in its own process: its CPU and its request log stay out of the
    process under test (the load and memory figures are steer's and the SDKs', not the server's).
    Duck-types the ``DevServer`` address properties the surfaces use."""

    def __init__(self, *args: str) -> None:
        import subprocess
        import sys

        self.proc = subprocess.Popen([sys.executable, "-m", "steer.tools.devserver", "--port", "0", "--chunk-delay", "0", *args],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        if not first.startswith("steer devserver listening on "):
            self.proc.kill()
            raise RuntimeError(f"devserver did not start: {first!r}")
        self.base_url = first.split()[-1]
        self.openai_base_url = self.base_url + "/v1"
        self.anthropic_base_url = self.gemini_base_url = self.base_url

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except Exception:
            self.proc.kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture(scope="module")
def devserver_process() -> Iterator[ExternalDevServer]:
    server = ExternalDevServer()
    yield server
    server.stop()

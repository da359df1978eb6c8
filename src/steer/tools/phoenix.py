"""Arize Phoenix on loopback: start ``phoenix serve``, send it OTLP traces, read spans back.

Used by ``steer demo --phoenix`` and by the backend tests. Phoenix is large, so steer never imports
it: the server runs from a Python that has ``arize-phoenix`` installed, found in this order:
``$STEER_PHOENIX_PYTHON``; ``.venv-phoenix/bin/python`` in the current directory or the project root
(what ``make phoenix`` creates); the running interpreter if it can import ``phoenix``.

It listens on 127.0.0.1 only, keeps its SQLite database in a working directory of its own, and runs
with its telemetry, web analytics and external resources (fonts, downloads) off.

    with PhoenixServer() as px:
        tp = px.tracer_provider("steer-demo")     # OTLP/HTTP to this Phoenix, project "steer-demo"
        steer.instrument(tracer_provider=tp)
        ...
        tp.force_flush()
        print(px.project_url("steer-demo"))
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

# The resource attribute Phoenix files spans under (its "project"); "default" when absent.
PROJECT_ATTRIBUTE = "openinference.project.name"
DEFAULT_PROJECT = "default"
_ROOT = Path(__file__).resolve().parents[2]  # the project root when running from a checkout


class PhoenixNotInstalled(RuntimeError):
    """No Python with ``arize-phoenix`` was found (see the module docstring for where steer looks)."""


def find_python() -> Optional[str]:
    """A Python interpreter that can run ``phoenix serve``, or None."""
    explicit = os.environ.get("STEER_PHOENIX_PYTHON")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for base in (Path.cwd(), _ROOT):
        candidate = base / ".venv-phoenix" / "bin" / "python"
        if candidate.exists():
            return str(candidate)
    if importlib.util.find_spec("phoenix") is not None and importlib.util.find_spec("phoenix.server") is not None:
        return sys.executable
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class PhoenixServer:
    """One ``phoenix serve`` process owned by this object (started by ``start()``, ended by ``stop()``)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        grpc_port: int = 0,
        working_dir: Optional[str] = None,
        python: Optional[str] = None,
        startup_timeout: float = 180.0,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.grpc_port = grpc_port or free_port(host)
        self._own_dir = working_dir is None
        self.working_dir = Path(working_dir or tempfile.mkdtemp(prefix="steer-phoenix-"))
        self.python = python or find_python()
        self.startup_timeout = startup_timeout
        self.log_path = self.working_dir / "phoenix.log"
        self._proc: Optional[subprocess.Popen] = None
        self._log: Any = None

    # -- lifecycle -----------------------------------------------------------------------------------
    def env(self) -> Dict[str, str]:
        env = dict(os.environ)
        env.update({
            "PHOENIX_HOST": self.host,
            "PHOENIX_PORT": str(self.port),
            "PHOENIX_GRPC_PORT": str(self.grpc_port),
            "PHOENIX_WORKING_DIR": str(self.working_dir),
            "PHOENIX_TELEMETRY_ENABLED": "false",
            "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
            "PHOENIX_DISABLE_AGENT_ASSISTANT": "true",
            "PHOENIX_ENABLE_MCP_SERVER": "false",
        })
        # Phoenix instruments itself when these point somewhere; it must not send to our own receivers.
        for name in [k for k in env if k.startswith("OTEL_")]:
            del env[name]
        return env

    def start(self) -> "PhoenixServer":
        if self._proc is not None:
            return self
        if not self.python:
            raise PhoenixNotInstalled(
                "Arize Phoenix is not installed: run `make phoenix` (it creates .venv-phoenix) or set STEER_PHOENIX_PYTHON")
        self.working_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self._proc = subprocess.Popen(
            [self.python, "-m", "phoenix.server.main", "serve"], env=self.env(), stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, cwd=str(self.working_dir),
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"phoenix serve exited early; see {self.log_path}:\n{self.log_tail()}")
            if self.healthy():
                return self
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"phoenix did not answer /healthz within {self.startup_timeout:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def cleanup(self) -> None:
        """Stop, and delete the working directory if this object created it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.working_dir, ignore_errors=True)

    def __enter__(self) -> "PhoenixServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def wait(self) -> None:
        """Keep Phoenix up until Ctrl-C (or until it exits by itself), then stop it: for ``steer demo``."""
        try:
            while self._proc is not None and self._proc.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.cleanup()

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- addresses -----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def otlp_http_endpoint(self) -> str:
        """For ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the exporter appends ``/v1/traces``)."""
        return self.url

    otlp_endpoint = otlp_http_endpoint  # the name `steer demo` uses

    @property
    def otlp_grpc_endpoint(self) -> str:
        return f"http://{self.host}:{self.grpc_port}"

    @staticmethod
    def resource_attributes(project: str) -> Dict[str, str]:
        return {PROJECT_ATTRIBUTE: project}

    def tracer_provider(self, project: str = DEFAULT_PROJECT, extra_processors: Sequence[Any] = ()) -> Any:
        """An SDK TracerProvider exporting OTLP/HTTP to this Phoenix, into ``project`` (plus the
        ``OTEL_*`` exporters and ``extra_processors``). Not installed globally; pass it to
        ``steer.instrument(tracer_provider=...)`` and ``force_flush()`` it before reading back."""
        from steer import otel_setup

        return otel_setup.build_tracer_provider(
            extra_processors, otlp_endpoint=self.otlp_http_endpoint, resource_attributes=self.resource_attributes(project))

    # -- reading back (Phoenix REST API) -------------------------------------------------------------
    def get(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        with urllib.request.urlopen(f"{self.url}{path}{'?' + query if query else ''}", timeout=30) as resp:
            return json.loads(resp.read())

    def project_id(self, project: str) -> Optional[str]:
        for item in self.get("/v1/projects").get("data", []):
            if item.get("name") == project:
                return item.get("id")
        return None

    def spans(self, project: str = DEFAULT_PROJECT, limit: int = 1000) -> List[Dict[str, Any]]:
        """Every span of ``project`` (newest first), following Phoenix's cursor pages up to ``limit``."""
        out: List[Dict[str, Any]] = []
        cursor = None
        path = f"/v1/projects/{urllib.parse.quote(project, safe='')}/spans"
        while len(out) < limit:
            try:
                page = self.get(path, limit=min(100, limit - len(out)), cursor=cursor)
            except urllib.error.HTTPError as exc:
                if exc.code == 404:  # the project does not exist until its first span arrives
                    return out
                raise
            out.extend(page.get("data", []))
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return out

    def project_url(self, project: str = DEFAULT_PROJECT, wait: float = 0.0) -> str:
        """The project's UI page (the server's root while the project does not exist). Phoenix creates a
        project when it has ingested its first span, some time after the export returned: ``wait`` seconds
        are given for that right after sending."""
        deadline = time.monotonic() + wait
        pid = self.project_id(project)
        while pid is None and time.monotonic() < deadline:
            time.sleep(0.2)
            pid = self.project_id(project)
        return f"{self.url}/projects/{pid}" if pid else self.url

    def trace_url(self, project: str, trace_id: str, span_node_id: Optional[str] = None) -> str:
        """The UI page of one trace; ``span_node_id`` (a span's ``id`` from ``spans()``) selects a span."""
        url = f"{self.project_url(project)}/traces/{urllib.parse.quote(trace_id)}"
        return url + (f"?selectedSpanNodeId={urllib.parse.quote(span_node_id)}" if span_node_id else "")


def start_phoenix(**options: Any) -> PhoenixServer:
    """Start a private Phoenix on loopback and wait until it answers (``steer demo --phoenix``).

    Raises PhoenixNotInstalled (with how to install it) when no Python with arize-phoenix is found.
    """
    return PhoenixServer(**options).start()

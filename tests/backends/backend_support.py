"""Real backends for the tests in this directory, each started once per test session: Prometheus
scraping a process that runs the demo workload through steer, and Arize Phoenix receiving that
workload's traces over OTLP. Test modules import the fixtures they use from here (no conftest.py:
``from conftest import ...`` elsewhere in the suite must keep meaning tests/conftest.py).

``.ci/install-backends.sh`` installs the backends. A missing backend skips its tests on a developer
machine and FAILS them under CI (``CI=true``): CI must never pass by not testing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

from steer.tools.phoenix import PhoenixServer, find_python, free_port

ROOT = Path(__file__).resolve().parents[2]
WORKLOAD = Path(__file__).with_name("workload.py")
ARTIFACTS = Path(os.environ.get("STEER_TEST_ARTIFACTS", ROOT / "test-artifacts"))
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require(what: str, found: Any) -> Any:
    if found:
        return found
    message = f"{what} is not installed: run .ci/install-backends.sh"
    if IN_CI:
        pytest.fail(message + " (CI must run every backend test)", pytrace=False)
    pytest.skip(message)


def workload_env(**overrides: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "STEER_"))}
    env.update({"OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_SERVICE_NAME": "steer-workload"})
    env.update(overrides)
    return env


def start_workload(log: Path, *args: str, **env: str) -> subprocess.Popen:
    with open(log, "wb") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, str(WORKLOAD), *args], env=workload_env(**env), stdin=subprocess.DEVNULL,
                                stdout=handle, stderr=subprocess.STDOUT)


def stop(proc: Optional[subprocess.Popen]) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# -- Prometheus ------------------------------------------------------------------------------------
class Prometheus:
    def __init__(self, url: str, workload_log: Path) -> None:
        self.url, self.workload_log = url, workload_log

    def query(self, expr: str) -> List[Dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}", timeout=30) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # 400: bad PromQL; 422: it failed to evaluate
            raise AssertionError(f"Prometheus rejected {expr}: {exc.code} {exc.read().decode(errors='replace')}") from None
        assert body["status"] == "success", body
        data = body["data"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def label_values(self, label: str, match: str) -> List[str]:
        query = urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(f"{self.url}/api/v1/label/{label}/values?{query}", timeout=30) as resp:
            return json.loads(resp.read())["data"]


def wait_until(predicate: Any, timeout: float, what: str, log: Optional[Path] = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"{what} within {timeout:.0f}s\n{tail}")


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = require("Prometheus (Debian package `prometheus`)", shutil.which("prometheus"))
    work = tmp_path_factory.mktemp("prometheus")
    metrics_port, web_port = free_port(), free_port()
    # The workload process exposes steer's metrics with OpenTelemetry's Prometheus exporter, set up by
    # steer.otel_setup from OTEL_METRICS_EXPORTER=prometheus; it keeps calling until stopped (bounded).
    workload_log = work / "workload.log"
    workload = start_workload(workload_log, "--seconds", "600", OTEL_METRICS_EXPORTER="prometheus",
                              OTEL_TRACES_EXPORTER="none", OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1",
                              OTEL_EXPORTER_PROMETHEUS_PORT=str(metrics_port))
    config = work / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: steer-workload\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{metrics_port}']\n"
    )
    prom_log = work / "prometheus.log"
    with open(prom_log, "wb") as handle:
        prom = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={work / 'data'}",
             f"--web.listen-address=127.0.0.1:{web_port}", "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
        )
    server = Prometheus(f"http://127.0.0.1:{web_port}", workload_log)
    try:
        wait_until(lambda: urllib.request.urlopen(server.url + "/-/ready", timeout=2).status == 200, 60, "Prometheus not ready", prom_log)
        wait_until(lambda: any(r["value"][1] == "1" for r in server.query('up{job="steer-workload"}')), 120,
                   "the workload's metrics endpoint never came up (up == 1)", workload_log)
        # One whole pass done, then a scrape after it: every kind of call has left its metrics.
        wait_until(lambda: '{"calls"' in workload_log.read_text(errors="replace"), 300, "the workload never finished a pass", workload_log)
        passed = time.time()
        wait_until(lambda: any(float(r["value"][1]) > passed for r in server.query('timestamp(up{job="steer-workload"})')), 60,
                   "no scrape after the first pass", prom_log)
        yield server
    finally:
        stop(prom)
        stop(workload)


class PhoenixRun:
    """Phoenix, after the demo workload sent it traces over OTLP/HTTP (and a second run over gRPC)."""

    HTTP_PROJECT = "steer-workload"
    GRPC_PROJECT = "steer-workload-grpc"

    def __init__(self, server: PhoenixServer, summaries: List[Dict[str, Any]]) -> None:
        self.server, self.summaries = server, summaries


# -- Phoenix ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PhoenixRun]:
    require("Arize Phoenix (.venv-phoenix with arize-phoenix)", find_python())
    work = tmp_path_factory.mktemp("phoenix")
    server = PhoenixServer(working_dir=str(work / "phoenix"))
    runs: List[subprocess.Popen] = []
    try:
        server.start()
        project_attr = "openinference.project.name"
        runs = [
            start_workload(work / "http.log", "--passes", "2", OTEL_EXPORTER_OTLP_ENDPOINT=server.otlp_http_endpoint,
                           OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf", OTEL_METRICS_EXPORTER="none",
                           OTEL_RESOURCE_ATTRIBUTES=f"{project_attr}={PhoenixRun.HTTP_PROJECT}"),
            start_workload(work / "grpc.log", "--passes", "1", OTEL_EXPORTER_OTLP_ENDPOINT=server.otlp_grpc_endpoint,
                           OTEL_EXPORTER_OTLP_PROTOCOL="grpc", OTEL_METRICS_EXPORTER="none",
                           OTEL_RESOURCE_ATTRIBUTES=f"{project_attr}={PhoenixRun.GRPC_PROJECT}"),
        ]
        for proc, log in zip(runs, ("http.log", "grpc.log")):
            code = proc.wait(300)  # each process flushes its spans at exit
            assert code == 0, (work / log).read_text(errors="replace")[-3000:]
        summaries = [json.loads(line) for log in ("http.log", "grpc.log")
                     for line in (work / log).read_text().splitlines() if line.startswith('{"calls"')]
        yield PhoenixRun(server, summaries)
    finally:
        for proc in runs:
            stop(proc)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        if server.log_path.exists():
            shutil.copy(server.log_path, ARTIFACTS / "phoenix.log")
        server.cleanup()

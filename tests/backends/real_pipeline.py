"""The real telemetry pipeline for the backend tests: an OpenTelemetry Collector, Jaeger v2 and
Prometheus 3, each built from source by ``make backends`` (.ci/build-backends.sh) and run here as
processes on loopback ports. The Collectors run the repository's own files in collector-config/;
their addresses and timers come in through the environment variables those files read.

``Pipeline`` (the session fixture ``pipeline``): Jaeger <- Collector (otel-collector.yaml) -> scraped
by Prometheus 3, which also takes OTLP metrics straight from an application. Two workload processes:
``VIA_COLLECTOR`` sends traces and metrics to the Collector; ``DIRECT`` sends its traces to the
Collector and its metrics to Prometheus 3's OTLP receiver; ``LATEST`` is ``VIA_COLLECTOR`` with the
newest GenAI conventions opted in (other metric names). Each arrives in Prometheus under its own
``job`` (service.name), which is how the tests tell the paths apart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

from backend_support import ARTIFACTS, ROOT, Prometheus, require, start_workload, stop, wait_until, workload_env
from steer.tools.phoenix import free_port

CONFIG = ROOT / "collector-config"
CACHE = Path(os.environ.get("STEER_BACKENDS_CACHE") or Path.home() / ".cache" / "steer-backends")
BINARIES = ("otelcol-steer", "jaeger", "prometheus")

VIA_COLLECTOR = "steer-via-collector"
DIRECT = "steer-direct"
LATEST = "steer-latest"  # through the Collector, with OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental
PASSES = 2
WITH_JAEGER = True  # False runs the Collector/Prometheus tests alone (Jaeger v2's cold build is the longest)
OTHER_CALLS = 5  # calls of another GenAI instrumentation in VIA_COLLECTOR (other_instrumentation.py)

# Short timers for the test run; production values are the config files' defaults.
FAST_COLLECTOR = {
    "OTELCOL_BATCH_TIMEOUT": "200ms",
    "OTELCOL_DECISION_WAIT": "2s",
    "OTELCOL_SPANMETRICS_FLUSH_INTERVAL": "1s",
    "OTELCOL_BASELINE_PERCENT": "0",  # no random baseline: exactly the traces a policy matches are kept
    "OTELCOL_LOG_LEVEL": "warn",
}


def binary(name: str) -> Path:
    path = CACHE / "bin" / name
    return require(f"{name} (built by `make backends`, .ci/build-backends.sh)", path if os.access(path, os.X_OK) else None)


def get_json(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except urllib.error.HTTPError:
        return False


class Service:
    """One backend process with its log file; started on construction, stopped by ``stop()``."""

    def __init__(self, name: str, argv: List[str], work: Path, env: Optional[Dict[str, str]] = None) -> None:
        self.name, self.log = name, work / f"{name}.log"
        with open(self.log, "wb") as handle:
            self.proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, cwd=work, stdin=subprocess.DEVNULL,
                                         stdout=handle, stderr=subprocess.STDOUT)

    def wait_ready(self, url: str, timeout: float = 60) -> None:
        def ready() -> bool:
            assert self.proc.poll() is None, f"{self.name} exited with {self.proc.returncode}:\n{self.log.read_text(errors='replace')[-3000:]}"
            return http_ok(url)

        wait_until(ready, timeout, f"{self.name} not ready at {url}", self.log)

    def stop(self) -> None:
        stop(self.proc)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        if self.log.exists():
            (ARTIFACTS / self.log.name).write_bytes(self.log.read_bytes())


class Collector(Service):
    """``otelcol-steer --config collector-config/<config>`` with every address on a free loopback port."""

    def __init__(self, name: str, config: str, work: Path, env: Dict[str, str]) -> None:
        self.grpc, self.http, self.health, self.self_metrics, self.prometheus = (free_port() for _ in range(5))
        env = {"OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{self.grpc}", "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{self.http}",
               "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{self.health}", "OTELCOL_SELF_METRICS_HOST": "127.0.0.1",
               "OTELCOL_SELF_METRICS_PORT": str(self.self_metrics), "OTELCOL_PROMETHEUS_ENDPOINT": f"127.0.0.1:{self.prometheus}",
               **FAST_COLLECTOR, **env}
        super().__init__(name, [str(binary("otelcol-steer")), f"--config={CONFIG / config}"], work, env)
        self.wait_ready(f"http://127.0.0.1:{self.health}/")

    def self_metric(self, name: str, **labels: str) -> float:
        """Sum of one of the Collector's own counters (its Prometheus reader), over matching series."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.self_metrics}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            series, value = line.rsplit(" ", 1)
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += float(value)
        return total


class Jaeger(Service):
    """Jaeger v2 with collector-config/jaeger.yaml: OTLP in, memory storage, the query API."""

    def __init__(self, work: Path) -> None:
        self.grpc, self.http, self.query, self.query_grpc, self.health, self.metrics = (free_port() for _ in range(6))
        env = {"JAEGER_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{self.grpc}", "JAEGER_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{self.http}",
               "JAEGER_QUERY_HTTP_ENDPOINT": f"127.0.0.1:{self.query}", "JAEGER_QUERY_GRPC_ENDPOINT": f"127.0.0.1:{self.query_grpc}",
               "JAEGER_HEALTH_ENDPOINT": f"127.0.0.1:{self.health}", "JAEGER_SELF_METRICS_HOST": "127.0.0.1",
               "JAEGER_SELF_METRICS_PORT": str(self.metrics), "JAEGER_BATCH_TIMEOUT": "200ms", "JAEGER_LOG_LEVEL": "warn"}
        super().__init__("jaeger", [str(binary("jaeger")), f"--config={CONFIG / 'jaeger.yaml'}"], work, env)
        self.url = f"http://127.0.0.1:{self.query}"
        self.wait_ready(self.url + "/api/services")

    def services(self) -> List[str]:
        return get_json(self.url + "/api/services")["data"] or []

    def operations(self, service: str) -> List[str]:
        return get_json(f"{self.url}/api/services/{urllib.parse.quote(service)}/operations")["data"] or []

    def traces(self, service: str, limit: int = 1000) -> List[Dict[str, Any]]:
        query = urllib.parse.urlencode({"service": service, "limit": limit, "lookback": "1h"})
        return get_json(f"{self.url}/api/traces?{query}")["data"] or []

    def trace(self, trace_id: str) -> Optional[Dict[str, Any]]:
        try:
            data = get_json(f"{self.url}/api/traces/{trace_id}")["data"]
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
        return data[0] if data else None


def span_tags(span: Dict[str, Any]) -> Dict[str, Any]:
    return {tag["key"]: tag["value"] for tag in span.get("tags", [])}


def spans_of(traces: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [span for trace in traces for span in trace["spans"]]


class Prometheus3(Service, Prometheus):
    """Prometheus 3 with collector-config/prometheus.yml (scraping the Collector's exporter with
    ``honor_labels``, so the application's service.name stays its ``job``, and its own metrics; OTLP
    metrics keep their scope), its OTLP receiver and exemplar storage on. As docs/recipes/collector.md
    runs it: the file's ``otel-collector:<port>`` targets become the loopback ports in ``targets``; the
    test also scrapes every second instead of every 15."""

    def __init__(self, work: Path, targets: Dict[str, str]) -> None:
        port = free_port()
        text = (CONFIG / "prometheus.yml").read_text()
        for target, address in {"otel-collector:8889": targets["exporter"], "otel-collector:8888": targets["self"]}.items():
            assert target in text, target
            text = text.replace(target, address)
        assert "15s" in text
        config = work / "prometheus.yml"
        config.write_text(text.replace("15s", "1s"))
        argv = [str(binary("prometheus")), f"--config.file={config}", f"--storage.tsdb.path={work / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{port}", "--web.enable-otlp-receiver", "--enable-feature=exemplar-storage",
                "--log.level=warn"]
        Service.__init__(self, "prometheus3", argv, work)
        Prometheus.__init__(self, f"http://127.0.0.1:{port}", self.log)
        self.otlp_metrics_endpoint = f"{self.url}/api/v1/otlp/v1/metrics"
        self.wait_ready(self.url + "/-/ready")

    def exemplars(self, expr: str, seconds: float = 600) -> List[Dict[str, Any]]:
        now = time.time()
        query = urllib.parse.urlencode({"query": expr, "start": now - seconds, "end": now})
        return get_json(f"{self.url}/api/v1/query_exemplars?{query}")["data"]


def wait_for(predicate: Any, what: str, timeout: float = 90, detail: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}" + (f": {detail()}" if detail else ""))


def workload_summaries(log: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in log.read_text(errors="replace").splitlines() if line.startswith('{"calls"')]


class Pipeline:
    def __init__(self, jaeger: Optional[Jaeger], collector: Collector, prometheus: Prometheus3, summaries: Dict[str, List[Dict[str, Any]]]) -> None:
        self.jaeger, self.collector, self.prometheus, self.summaries = jaeger, collector, prometheus, summaries

    def calls(self, service: str) -> int:
        return sum(s["calls"] for s in self.summaries[service])


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    for name in BINARIES if WITH_JAEGER else ("otelcol-steer", "prometheus"):
        binary(name)
    work = tmp_path_factory.mktemp("pipeline")
    services: List[Service] = []
    try:
        jaeger = Jaeger(work) if WITH_JAEGER else None
        if jaeger:
            services.append(jaeger)
        # Without Jaeger the kept traces go to a port nothing listens on (the exporter retries quietly).
        gateway = Collector("otelcol", "otel-collector.yaml", work, {"OTELCOL_JAEGER_OTLP_ENDPOINT": f"127.0.0.1:{jaeger.grpc if jaeger else free_port()}"})
        services.append(gateway)
        prom = Prometheus3(work, {"exporter": f"127.0.0.1:{gateway.prometheus}", "self": f"127.0.0.1:{gateway.self_metrics}"})
        services.append(prom)
        common = {"OTEL_METRIC_EXPORT_INTERVAL": "1000", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
        runs = {
            VIA_COLLECTOR: start_workload(work / f"{VIA_COLLECTOR}.log", "--passes", str(PASSES), OTEL_SERVICE_NAME=VIA_COLLECTOR,
                                          OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{gateway.http}", **common),
            LATEST: start_workload(work / f"{LATEST}.log", "--passes", str(PASSES), OTEL_SERVICE_NAME=LATEST,
                                   OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{gateway.http}",
                                   OTEL_SEMCONV_STABILITY_OPT_IN="gen_ai_latest_experimental", **common),
            DIRECT: start_workload(work / f"{DIRECT}.log", "--passes", str(PASSES), OTEL_SERVICE_NAME=DIRECT,
                                   OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"http://127.0.0.1:{gateway.http}/v1/traces",
                                   OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=prom.otlp_metrics_endpoint, **common),
        }
        other = subprocess.run([sys.executable, str(Path(__file__).with_name("other_instrumentation.py")), "--calls", str(OTHER_CALLS)],
                               env=workload_env(OTEL_SERVICE_NAME=VIA_COLLECTOR, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{gateway.http}"),
                               capture_output=True, text=True, timeout=60)
        assert other.returncode == 0, other.stderr[-3000:]
        for service, proc in runs.items():
            code = proc.wait(900)  # each process flushes its spans and metrics at exit (bounds a hang)
            assert code == 0, (work / f"{service}.log").read_text(errors="replace")[-3000:]
        summaries = {service: workload_summaries(work / f"{service}.log") for service in runs}
        yield Pipeline(jaeger, gateway, prom, summaries)
    finally:
        for service in reversed(services):
            service.stop()

"""collector-config/ and docs/telemetry.md hold together: the Collector configuration wires every
component it defines, keeps span metrics ahead of sampling, names only attributes steer emits; the
compose file provisions what the dashboards expect; Prometheus' own ``promtool`` accepts the scrape
configuration; the telemetry reference documents every name in steer.telemetry.semconv."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any, Dict, Set

import pytest
import yaml

from backend_support import ROOT, require
from real_pipeline import CACHE, binary
from steer.telemetry import semconv as sc

pytestmark = pytest.mark.backend

CONFIG = ROOT / "collector-config"


def load(name: str) -> Dict[str, Any]:
    return yaml.safe_load((CONFIG / name).read_text())


def production_value(value: str) -> str:
    """The production value of a setting written ${env:NAME:-default} (the tests set NAME)."""
    match = re.fullmatch(r"\$\{env:\w+:-(.*)\}", value)
    return match.group(1) if match else value


def steer_names() -> Set[str]:
    return {v for k, v in vars(sc).items() if k.isupper() and isinstance(v, str)}


@pytest.mark.parametrize("config", ["otel-collector.yaml", "otel-agent.yaml"])
def test_collector_pipelines_use_only_defined_components(config: str) -> None:
    cfg = load(config)
    defined = {kind: set(cfg.get(kind) or {}) for kind in ("receivers", "processors", "exporters", "connectors")}
    for name, pipeline in cfg["service"]["pipelines"].items():
        for receiver in pipeline["receivers"]:
            assert receiver in defined["receivers"] | defined["connectors"], (name, receiver)
        for exporter in pipeline["exporters"]:
            assert exporter in defined["exporters"] | defined["connectors"], (name, exporter)
        processors = pipeline.get("processors", [])
        assert set(processors) <= defined["processors"], name
        assert processors[0] == "memory_limiter", f"{name}: memory_limiter must come first"
        if "batch" in processors:
            assert processors[-1] == "batch", f"{name}: batch belongs last"
    used = {c for p in cfg["service"]["pipelines"].values() for c in p["receivers"] + p["exporters"] + p.get("processors", [])}
    unused = set().union(*defined.values()) - used - {"debug"}
    assert not unused, f"defined but never used: {unused}"


def test_span_metrics_see_every_span_and_sampling_keeps_errors_and_slow_streams() -> None:
    cfg = load("otel-collector.yaml")
    pipelines = cfg["service"]["pipelines"]
    ingest = next(p for p in pipelines.values() if "otlp" in p["receivers"] and "spanmetrics" in p["exporters"])
    assert "tail_sampling" not in ingest.get("processors", []), "span metrics must be computed before sampling"
    assert any("spanmetrics" in p["receivers"] and "prometheus" in p["exporters"] for p in pipelines.values())
    policies = {p["type"]: p for p in cfg["processors"]["tail_sampling"]["policies"]}
    assert policies["status_code"]["status_code"]["status_codes"] == ["ERROR"]
    assert int(production_value(policies["latency"]["latency"]["threshold_ms"])) > 0
    assert "probabilistic" in policies


def test_collector_names_only_attributes_steer_emits() -> None:
    text = (CONFIG / "otel-collector.yaml").read_text()
    cfg = yaml.safe_load(text)
    referenced = set(re.findall(r'attributes\["([^"]+)"\]', text))
    referenced |= {d["name"] for d in cfg["connectors"]["spanmetrics"]["dimensions"]}
    referenced |= {p["string_attribute"]["key"] for p in cfg["processors"]["tail_sampling"]["policies"] if p["type"] == "string_attribute"}
    unknown = referenced - steer_names()
    assert not unknown, f"not a name in steer.telemetry.semconv: {unknown}"


def test_compose_provisions_the_dashboards_and_datasource() -> None:
    compose = load("docker-compose.yml")
    services = compose["services"]
    assert {"otel-collector", "jaeger", "prometheus", "grafana"} <= set(services)
    # Jaeger v2 (one binary, OTLP native) with this directory's config, Prometheus 3 with OTLP in.
    assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:2.")
    assert "./jaeger.yaml:/etc/jaeger/config.yaml:ro" in services["jaeger"]["volumes"]
    assert services["prometheus"]["image"].startswith("prom/prometheus:v3.")
    assert "--web.enable-otlp-receiver" in services["prometheus"]["command"]
    provider = load("grafana/provisioning/dashboards/dashboards.yml")["providers"][0]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in services["grafana"]["volumes"])
    assert mounts["../dashboards"] == provider["options"]["path"]
    assert (CONFIG / "grafana" / "provisioning").is_dir() and mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    datasources = {d["uid"]: d for d in load("grafana/provisioning/datasources/datasources.yml")["datasources"]}
    for board in (ROOT / "dashboards").glob("*.json"):
        default = next(v for v in json.loads(board.read_text())["templating"]["list"] if v["type"] == "datasource")
        assert default["current"]["value"] in datasources, board.name
    # Prometheus scrapes the port the Collector's Prometheus exporter listens on.
    exporter_port = production_value(load("otel-collector.yaml")["exporters"]["prometheus"]["endpoint"]).rsplit(":", 1)[1]
    targets = [t for job in load("prometheus.yml")["scrape_configs"] for static in job["static_configs"] for t in static["targets"]]
    assert f"otel-collector:{exporter_port}" in targets


def test_promtool_accepts_the_scrape_configuration() -> None:
    # Prometheus 3's own promtool (`make backends`): the file uses Prometheus 3 settings (otlp:).
    built = CACHE / "bin" / "promtool"
    promtool = require("promtool of Prometheus 3 (`make backends`)", built if built.exists() else None)
    result = subprocess.run([promtool, "check", "config", str(CONFIG / "prometheus.yml")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr



def test_the_telemetry_reference_documents_every_name() -> None:
    docs = (ROOT / "docs" / "telemetry.md").read_text()
    names = {v for v in steer_names() if "." in v and "://" not in v}
    missing = sorted(n for n in names if f"`{n}`" not in docs)
    assert not missing, f"docs/telemetry.md does not document: {missing}"
    assert sc.SCHEMA_URL in docs


@pytest.mark.parametrize("config", ["otel-collector.yaml", "otel-agent.yaml"])
def test_the_built_collector_validates_the_configuration(config: str) -> None:
    # With the production defaults of every ${env:...}: what a deployment runs.
    result = subprocess.run([str(binary("otelcol-steer")), "validate", f"--config={CONFIG / config}"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr



def test_jaeger_validates_its_configuration() -> None:
    result = subprocess.run([str(binary("jaeger")), "validate", f"--config={CONFIG / 'jaeger.yaml'}"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr

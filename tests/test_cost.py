"""The USD cost of each call from genai-prices' bundled data — through the real SDKs against the loopback
devserver and recorded streams (``steer replay``), and through ``steer.wrap``: reported or estimated usage,
cached input and reasoning tokens priced as the library prices them, unknown models counted and not
guessed, nothing fetched from the network, the library never imported by ``import steer``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from typing import Any, Dict, Iterator, List

import genai_prices
import openai
import pytest

import steer
from recordings import load
from steer.tools.devserver import DevServer
from steer.events import StreamCompleteEvent
from steer.processing import cost
from steer.tools.replay import replay

USER = [{"role": "user", "content": "Say something"}]
VERSION = f"genai-prices {genai_prices.__version__}"


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with DevServer(chunk_delay=0) as srv:
        yield srv


def library_price(provider_id: str, model: str, when: float, **tokens: int) -> float:
    """The same call priced by genai-prices directly: what steer must report."""
    usage = genai_prices.Usage(**tokens)
    return float(genai_prices.calc_price(usage, model, provider_id=provider_id,
                                         genai_request_timestamp=datetime.fromtimestamp(when, tz=timezone.utc)).total_price)


def stream(client: Any, model: str = "gpt-4o", **extra: Any) -> None:
    for _ in client.chat.completions.create(model=model, messages=USER, stream=True, **extra):
        pass


def cost_points(telemetry: Any, name: str = "steer.client.cost") -> List[Any]:
    return telemetry.metrics().get(name, [])


def test_reported_usage_is_priced_on_span_metric_and_event(server: DevServer, instrumented: Any) -> None:
    completed: List[StreamCompleteEvent] = []
    telemetry = instrumented(on_complete=completed.append)
    client = openai.OpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0)
    stream(client, stream_options={"include_usage": True})
    (span,) = telemetry.genai_spans()
    attrs = span.attributes
    assert attrs["steer.usage.source"] == "reported"
    expected = library_price("openai", attrs["gen_ai.response.model"], span.start_time / 1e9,
                             input_tokens=attrs["gen_ai.usage.input_tokens"], output_tokens=attrs["gen_ai.usage.output_tokens"])
    assert expected > 0 and attrs["steer.usage.cost"] == pytest.approx(expected, rel=1e-12)
    assert (attrs["steer.usage.cost.source"], attrs["steer.usage.cost.prices_version"]) == ("reported", VERSION)
    (point,) = cost_points(telemetry)
    assert point.value == pytest.approx(expected)
    assert point.attributes["gen_ai.provider.name"] == "openai" and point.attributes["steer.usage.cost.source"] == "reported"
    assert point.attributes["gen_ai.request.model"] == "gpt-4o"
    (event,) = completed
    assert (event.cost_usd, event.cost_source) == (attrs["steer.usage.cost"], "reported")


def test_estimated_usage_is_priced_as_estimated(server: DevServer, instrumented: Any) -> None:
    telemetry = instrumented()
    stream(openai.OpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0))  # no include_usage
    (span,) = telemetry.genai_spans()
    attrs = span.attributes
    assert attrs["steer.usage.source"] == "estimated" and "gen_ai.usage.input_tokens" not in attrs
    expected = library_price("openai", attrs["gen_ai.response.model"], span.start_time / 1e9,
                             input_tokens=attrs["steer.usage.estimated.input_tokens"],
                             output_tokens=attrs["steer.usage.estimated.output_tokens"])
    assert attrs["steer.usage.cost"] == pytest.approx(expected) and attrs["steer.usage.cost.source"] == "estimated"
    assert cost_points(telemetry)[0].attributes["steer.usage.cost.source"] == "estimated"


def test_estimates_in_usage_attributes_option(server: DevServer, instrumented: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEER_ESTIMATES_IN_USAGE_ATTRIBUTES", "true")
    telemetry = instrumented()
    stream(openai.OpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0))
    (span,) = telemetry.genai_spans()
    attrs = span.attributes
    assert attrs["steer.usage.source"] == "estimated"  # still says what the counts are
    assert attrs["gen_ai.usage.output_tokens"] == attrs["steer.usage.estimated.output_tokens"] > 0
    assert attrs["gen_ai.usage.input_tokens"] == attrs["steer.usage.estimated.input_tokens"] > 0
    assert "gen_ai.client.token.usage" not in telemetry.metrics()  # metrics never mix estimates in


def test_an_unknown_model_gets_no_cost_and_is_counted(server: DevServer, instrumented: Any) -> None:
    telemetry = instrumented()
    client = openai.OpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0)
    for _ in range(2):
        stream(client, model="acme-finetune-7", stream_options={"include_usage": True})
    spans = telemetry.genai_spans()
    assert all("steer.usage.cost" not in s.attributes for s in spans)
    assert {s.attributes["steer.usage.cost.unpriced"] for s in spans} == {"unknown_model"}
    assert not cost_points(telemetry)
    (point,) = cost_points(telemetry, "steer.client.cost.unpriced")
    assert point.value == 2 and point.attributes["steer.usage.cost.unpriced"] == "unknown_model"


def test_cost_counter_gives_delta_readers_each_calls_cost(server: DevServer) -> None:
    """steer sums the cost itself and the SDK observes the sums at collection: a delta-temporality reader
    (what OTLP backends such as Datadog ask for) still gets exactly the calls of each interval."""
    from opentelemetry.sdk.metrics import MeterProvider, ObservableCounter
    from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    reader = InMemoryMetricReader(preferred_temporality={ObservableCounter: AggregationTemporality.DELTA})
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    steer.instrument(tracer_provider=tracer_provider, meter_provider=MeterProvider(metric_readers=[reader]))
    try:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0)

        def interval(calls: int) -> float:
            spans.clear()
            for _ in range(calls):
                stream(client, stream_options={"include_usage": True})
            steer.flush(60)
            (metric,) = [m for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics
                         for m in sm.metrics if m.name == "steer.client.cost"]
            assert metric.data.aggregation_temporality == AggregationTemporality.DELTA
            assert sum(s.attributes["steer.usage.cost"] for s in spans.get_finished_spans()) > 0
            return sum(p.value for p in metric.data.data_points) - sum(s.attributes["steer.usage.cost"] for s in spans.get_finished_spans())

        assert interval(1) == pytest.approx(0, abs=1e-12)
        assert interval(3) == pytest.approx(0, abs=1e-12)
    finally:
        steer.uninstrument()


def test_one_series_per_attribute_set_whatever_their_order(server: DevServer, instrumented: Any) -> None:
    """steer.context's metric attributes named in two orders are one attribute set: the counts steer keeps
    for its observable instruments (cost, open streams) report one series holding both calls."""
    telemetry = instrumented()
    client = openai.OpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0)
    open_streams = []
    for order in (["tenant", "tier"], ["tier", "tenant"]):
        with steer.context(attributes={"tenant": "acme", "tier": "gold"}, metric_attributes=order):
            stream(client, stream_options={"include_usage": True})
            open_streams.append(client.chat.completions.create(model="gpt-4o", messages=USER, stream=True))
    (active,) = [p for p in telemetry.metrics()["steer.client.streams.active"] if p.attributes.get("tenant") == "acme"]
    assert active.value == 2
    (point,) = cost_points(telemetry)
    spans = telemetry.genai_spans()
    assert point.value == pytest.approx(sum(s.attributes["steer.usage.cost"] for s in spans)) and len(spans) == 2
    for s in open_streams:
        s.close()
    assert telemetry.active_streams() == 0


def test_cost_off(server: DevServer, instrumented: Any) -> None:
    telemetry = instrumented(cost=False)
    stream(openai.OpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0), stream_options={"include_usage": True})
    (span,) = telemetry.genai_spans()
    assert not [k for k in span.attributes if k.startswith("steer.usage.cost")]


def test_a_wrapped_client_is_priced(server: DevServer, telemetry: Any) -> None:
    client = steer.wrap(openai.OpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0),
                        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    stream(client, model="gpt-4o-mini", stream_options={"include_usage": True})
    (span,) = telemetry.genai_spans()
    assert span.attributes["steer.usage.cost"] > 0 and span.attributes["steer.usage.cost.source"] == "reported"


def test_cached_input_and_reasoning_tokens_in_steer_replay() -> None:
    """A recorded xAI stream with 290 cached input and 196 reasoning tokens, replayed to the real openai SDK."""
    recording = load("xai/xai_grok3_mini_tool_call_reasoning.json")
    summary = replay(recording)
    attrs = summary["span"]["attributes"]
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 290 and attrs["gen_ai.usage.reasoning.output_tokens"] == 196
    model = attrs.get("gen_ai.response.model") or attrs["gen_ai.request.model"]
    tokens = dict(input_tokens=attrs["gen_ai.usage.input_tokens"], output_tokens=attrs["gen_ai.usage.output_tokens"])
    when = datetime.now().timestamp()
    with_cache = library_price("x-ai", model, when, cache_read_tokens=290, output_reasoning_tokens=196, **tokens)
    assert with_cache < library_price("x-ai", model, when, **tokens)  # the cached input is cheaper: it was counted
    assert summary["cost"] == {"usd": pytest.approx(with_cache), "source": "reported", "prices_version": VERSION, "unpriced": None}


def test_cache_writes_are_priced_by_the_library() -> None:
    usage = steer.Usage(input_tokens=10_000, output_tokens=500, cache_read_input_tokens=2_000,
                        cache_creation_input_tokens=3_000, source="reported")
    now = datetime.now().timestamp()
    priced = cost.price("anthropic", "claude-sonnet-4-5", usage, int(now * 1e9))
    assert isinstance(priced, cost.Cost)
    assert priced.usd == pytest.approx(library_price("anthropic", "claude-sonnet-4-5", now, input_tokens=10_000,
                                                     output_tokens=500, cache_read_tokens=2_000, cache_write_tokens=3_000))
    assert priced.usd != pytest.approx(library_price("anthropic", "claude-sonnet-4-5", now, input_tokens=10_000, output_tokens=500))
    assert cost.price("anthropic", "claude-sonnet-4-5", steer.Usage(source="none"), 0) == cost.NO_USAGE


def run_python(code: str) -> Dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return eval(done.stdout.strip().splitlines()[-1])


def test_prices_come_from_the_package_never_the_network() -> None:
    """Any socket connection or name lookup in the process raises (an audit hook), then steer prices calls."""
    seen = run_python("""
        import sys
        attempts = []
        def no_network(event, args):
            if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "urllib.Request"):
                attempts.append(event)
                raise OSError("network use during pricing: " + event)
        sys.addaudithook(no_network)
        import steer
        from steer.processing import cost
        usage = steer.Usage(input_tokens=1000, output_tokens=100, source="reported")
        priced = [cost.price("openai", m, usage, 1_780_000_000 * 10**9) for m in ("gpt-4o", "gpt-4o-mini", "nope-1")]
        print({"usd": [getattr(p, "usd", p) for p in priced], "attempts": attempts})
    """)
    assert seen["attempts"] == []
    assert seen["usd"][0] > seen["usd"][1] > 0 and seen["usd"][2] == "unknown_model"


def test_the_library_is_imported_lazily_and_off_the_callers_path() -> None:
    seen = run_python("""
        import sys, threading
        import steer
        after_import = "genai_prices" in sys.modules
        steer.instrument()
        warmers = [t for t in threading.enumerate() if t.name == "steer-prices-warm-up"]
        for t in warmers:
            t.join(60)
        print({"after_import": after_import, "warmers": len(warmers), "loaded": "genai_prices" in sys.modules})
    """)
    assert seen == {"after_import": False, "warmers": 1, "loaded": True}

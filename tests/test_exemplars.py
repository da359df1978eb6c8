"""steer's metric points carry the call's own span as their exemplar, on every path that records them.

The SDK's trace-based exemplar filter reads the context a point is recorded in. steer records at the
end of a call, on its background worker (no span current there) or inline (where the caller's span,
not steer's, may be current), so it passes the call's span to each point explicitly: the exemplar is
what Grafana follows from a latency panel to the trace (proven against Prometheus 3 and Jaeger in
tests/backends/test_pipeline.py).
"""

from __future__ import annotations

from typing import Any, Dict, List

import pytest

from test_background_end import chat_kwargs, openai_client

# The observable instruments (steer counts, the SDK observes at collection) have no context to give:
# the open and stalled streams, and the per-call counters summed by steer (cost, JSON outputs).
OBSERVED = {"steer.client.streams.active", "steer.client.streams.stalled", "steer.client.cost",
            "steer.client.cost.unpriced", "steer.client.json.outputs", "steer.client.json.duplicates_dropped"}


def exemplars_by_metric(telemetry: Any) -> Dict[str, List[Any]]:
    out: Dict[str, List[Any]] = {}
    for name, points in telemetry.metrics().items():
        if name not in OBSERVED:
            out[name] = [e for p in points for e in p.exemplars]
    return out


@pytest.mark.parametrize("opt_in", ["", "gen_ai_latest_experimental"], ids=["v1.41", "latest"])
@pytest.mark.parametrize("options", [{}, {"finish_in_background": False}], ids=["worker", "inline"])
@pytest.mark.parametrize("under_caller_span", [False, True], ids=["no-caller-span", "caller-span"])
def test_every_point_has_the_calls_span_as_exemplar(instrumented: Any, options: Dict[str, Any], opt_in: str,
                                                    under_caller_span: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", opt_in)  # the token metrics' two shapes
    telemetry = instrumented(**options)
    if under_caller_span:  # inline, the caller's span is current when the call ends: not the one to point to
        with telemetry.tracer_provider.get_tracer("app").start_as_current_span("caller"):
            list(openai_client().chat.completions.create(**chat_kwargs()))
    else:
        list(openai_client().chat.completions.create(**chat_kwargs()))
    (span,) = telemetry.genai_spans()
    exemplars = exemplars_by_metric(telemetry)
    assert exemplars and all(exemplars.values()), f"metrics without an exemplar: {[n for n, e in exemplars.items() if not e]}"
    pointing = {(e.trace_id, e.span_id) for found in exemplars.values() for e in found}
    assert pointing == {(span.context.trace_id, span.context.span_id)}

"""One instance of a distributed application for the scale-out test: every instance joins the SAME
traces (trace ids derived from --seed), as services of one request path do, so each trace's spans
leave from several processes through different agent Collectors. Prints "ready" once set up and starts
on a line on stdin, so the instances run side by side.

    python tests/backends/fanout_app.py --index 0 --traces 24 --seed run-1

Per trace, the instance opens its own server span under the shared remote parent and makes one LLM
call through steer inside it (real openai SDK against the loopback devserver): two spans per trace per
instance. In one trace of every ``PERIOD``, one instance makes the call a tail-sampling policy keeps
(``KEPT``): instance 0 fails it (HTTP 500: status ERROR), instance 1 cancels it (a stalled stream its
caller's timeout cancels: steer.stream.end=cancelled), instance 2 gets no usage from an o-series model
(steer estimates it with low confidence). Those traces must be kept whole; every other trace is healthy
and dropped. The exporter setup comes from OTEL_* (steer.otel_setup). Prints one JSON line:
{"index", "spans", "kept": {reason: [trace id, ...]}, "traces"}.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
from typing import Any, Dict, List

import openai
from opentelemetry import context, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

import steer
from steer.tools.devserver import DevServer


def shared_trace(seed: str, number: int) -> SpanContext:
    digest = hashlib.sha256(f"{seed}:{number}".encode()).digest()
    return SpanContext(trace_id=int.from_bytes(digest[:16], "big"), span_id=int.from_bytes(digest[16:24], "big"),
                       is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))


PERIOD = 6
# (instance index, trace number % PERIOD) -> why that call makes its trace one tail sampling keeps.
KEPT = {(0, 0): "errors", (1, 1): "cancelled", (2, 2): "low-confidence"}
PROMPT = [{"role": "user", "content": "request"}]


def call(server: DevServer, client: Any, reason: str) -> None:
    """One LLM call through steer, healthy or made to end the way ``reason`` says."""
    if reason == "cancelled":
        async def stalled() -> None:
            aclient = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="sk-fanout", max_retries=0)
            stream = await aclient.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True,
                                                           stream_options={"include_usage": True}, extra_headers={"x-steer-fault": "stall"})
            async for _ in stream:
                pass

        try:
            asyncio.run(asyncio.wait_for(stalled(), timeout=0.3))
        except asyncio.TimeoutError:
            return
        raise AssertionError("the stalled stream ended")
    # No include_usage on an o-series model: steer estimates the output (hidden reasoning: confidence ~0.05).
    model, usage = ("o3-mini", {}) if reason == "low-confidence" else ("gpt-4o-mini", {"stream_options": {"include_usage": True}})
    try:
        for _ in client.chat.completions.create(model=model, messages=PROMPT, stream=True, **usage,
                                                extra_headers={"x-steer-fault": "http_500" if reason == "errors" else "none"}):
            pass
    except openai.InternalServerError:
        assert reason == "errors"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--traces", type=int, default=24)
    parser.add_argument("--seed", required=True)
    args = parser.parse_args()

    steer.instrument()
    tracer = trace.get_tracer("fanout-app")
    spans, ids = 0, []  # type: int, List[str]
    kept: Dict[str, List[str]] = {}
    with DevServer(chunk_delay=0.001) as server:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="sk-fanout", max_retries=0)
        # Start together: the spans of one trace leave every instance close in time (within the gateways'
        # decision_wait), as the services of one request would.
        print("ready", flush=True)
        sys.stdin.readline()
        for number in range(args.traces):
            parent = shared_trace(args.seed, number)
            ids.append(format(parent.trace_id, "032x"))
            reason = KEPT.get((args.index, number % PERIOD), "")
            token = context.attach(trace.set_span_in_context(NonRecordingSpan(parent)))
            try:
                with tracer.start_as_current_span(f"handle request (instance {args.index})", kind=SpanKind.SERVER):
                    call(server, client, reason)
                spans += 2
            finally:
                context.detach(token)
            if reason:
                kept.setdefault(reason, []).append(ids[-1])
    trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
    print(json.dumps({"index": args.index, "spans": spans, "kept": kept, "traces": ids}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

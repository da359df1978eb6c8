"""One instance of a distributed application for the scale-out test: every instance joins the SAME
traces (trace ids derived from --seed), as services of one request path do, so each trace's spans
leave from several processes through different agent Collectors. Prints "ready" once set up and starts
on a line on stdin, so the instances run side by side.

    python tests/backends/fanout_app.py --index 0 --traces 24 --seed run-1

Per trace, the instance opens its own server span under the shared remote parent and makes one LLM
call through steer inside it (real openai SDK against the loopback devserver): two spans per trace per
instance. Instance 0 fails its call (HTTP 500) in every trace whose number is a multiple of
``--fail-every``: those traces are the ones tail sampling must keep, whole. The exporter setup comes
from OTEL_* (steer.otel_setup). Prints one JSON line: {"index", "spans", "failed_traces", "traces"}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from typing import List

import openai
from opentelemetry import context, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

import steer
from steer.tools.devserver import DevServer


def shared_trace(seed: str, number: int) -> SpanContext:
    digest = hashlib.sha256(f"{seed}:{number}".encode()).digest()
    return SpanContext(trace_id=int.from_bytes(digest[:16], "big"), span_id=int.from_bytes(digest[16:24], "big"),
                       is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--traces", type=int, default=24)
    parser.add_argument("--seed", required=True)
    parser.add_argument("--fail-every", type=int, default=4)
    args = parser.parse_args()

    steer.instrument()
    tracer = trace.get_tracer("fanout-app")
    spans, failed, ids = 0, [], []  # type: int, List[str], List[str]
    with DevServer(chunk_delay=0.001) as server:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="sk-fanout", max_retries=0)
        # Start together: the spans of one trace leave every instance close in time (within the gateways'
        # decision_wait), as the services of one request would.
        print("ready", flush=True)
        sys.stdin.readline()
        for number in range(args.traces):
            parent = shared_trace(args.seed, number)
            ids.append(format(parent.trace_id, "032x"))
            fail = args.index == 0 and number % args.fail_every == 0
            token = context.attach(trace.set_span_in_context(NonRecordingSpan(parent)))
            try:
                with tracer.start_as_current_span(f"handle request (instance {args.index})", kind=SpanKind.SERVER):
                    try:
                        stream = client.chat.completions.create(
                            model="gpt-4o-mini", messages=[{"role": "user", "content": f"request {number}"}], stream=True,
                            stream_options={"include_usage": True}, extra_headers={"x-steer-fault": "http_500" if fail else "none"})
                        for _ in stream:
                            pass
                    except openai.InternalServerError:
                        failed.append(ids[-1])
                spans += 2
            finally:
                context.detach(token)
    trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
    print(json.dumps({"index": args.index, "spans": spans, "failed_traces": failed, "traces": ids}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Cost of steer's event pipeline per event: ``python bench/events_bench.py [--events N] [--json]``.

Two measurements, each the median of several rounds:

1. The EventProcessor alone, on a typical pipeline — a type filter (deltas), one transformer, batches
   of 100 to a batch handler — fed a realistic mix (one start, N deltas, a usage and a complete event
   per call of 200 deltas). Inline: the whole pipeline on the caller's thread; the figure is what a
   stream pays per event. Background: the caller only enqueues; "caller" is the cost on the stream's
   thread, "end to end" includes the worker delivering every event (``flush()``), which gives the
   sustained events per second.
2. The same processor behind a real stream: the openai SDK over an httpx MockTransport, instrumented
   with ``steer.instrument`` with and without the processor, so the difference is the event layer's
   cost per chunk (building the delta event included).

No network, no OpenTelemetry export (in-memory SDK providers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any, Dict, List

import steer
from steer.events import StreamCompleteEvent, StreamDeltaEvent, StreamStartEvent, StreamUsageEvent, Usage


class Tag(steer.EventTransformer):
    """A typical enrichment: label the event, keep the delta's length."""

    def transform(self, event: Any) -> Any:
        event.metadata["app"] = "bench"
        event.metadata["chars"] = len(event.delta)
        return event


def make_events(n: int, per_call: int = 200) -> List[Any]:
    out: List[Any] = []
    ts = time.time()
    for call in range(max(1, n // per_call)):
        rid = f"req{call}"
        common = dict(provider="openai", model="gpt-4o-mini", request_id=rid, stream_id=rid, timestamp=ts)
        out.append(StreamStartEvent(**common))
        out.extend(StreamDeltaEvent(**common, delta="tok ", chunk_index=i) for i in range(per_call))
        out.append(StreamUsageEvent(**common, usage=Usage(input_tokens=10, output_tokens=per_call, source="reported")))
        out.append(StreamCompleteEvent(**common, total_chunks=per_call))
    return out


def processor(background: bool, sink: List[int]) -> Any:
    return steer.create_event_processor(
        event_types=["delta"], transformers=[Tag()], batch_size=100, batch_timeout_ms=1000,
        batch_handler=lambda batch: sink.append(len(batch)), background=background, max_queue_size=1_000_000,
    )


def run_processor(background: bool, events: List[Any], rounds: int) -> Dict[str, float]:
    wall, cpu, total = [], [], []
    for _ in range(rounds):
        for e in events:
            e.metadata.clear()
        sink: List[int] = []
        p = processor(background, sink)
        process = p.process
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        for e in events:
            process(e)
        t1, c1 = time.perf_counter_ns(), time.thread_time_ns()
        p.flush(timeout=60)
        t2 = time.perf_counter_ns()
        m = p.metrics
        assert m.dropped == 0 and sum(sink) == m.emitted, m
        p.shutdown()
        wall.append((t1 - t0) / len(events) / 1e3)
        cpu.append((c1 - c0) / len(events) / 1e3)
        total.append((t2 - t0) / len(events) / 1e3)
    us_total = statistics.median(total)
    return {"us_per_event_caller_wall": round(statistics.median(wall), 3),
            "us_per_event_caller_cpu": round(statistics.median(cpu), 3),
            "us_per_event_end_to_end": round(us_total, 3), "events_per_second": round(1e6 / us_total)}


def run_stream(chunks: int, streams: int) -> Dict[str, float]:
    import httpx
    import openai
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    def body() -> List[bytes]:
        head = '{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":%s,"finish_reason":%s}]}'
        frames = [("data: " + head % ('{"content":"tok "}', "null") + "\n\n").encode() for _ in range(chunks)]
        frames.append(("data: " + head % ("{}", '"stop"') + "\n\n").encode())
        return frames + [b"data: [DONE]\n\n"]

    frames = body()
    transport = httpx.MockTransport(lambda request: httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=iter(frames)))
    client = openai.OpenAI(api_key="x", base_url="https://api.openai.com/v1", http_client=httpx.Client(transport=transport))
    providers = dict(tracer_provider=TracerProvider(), meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]))

    def one_stream(**options: Any) -> float:
        steer.instrument(**providers, estimate_usage=False, **options)
        try:
            t0 = time.thread_time_ns()  # CPU time of this thread: less sensitive to a busy machine
            for _chunk in client.chat.completions.create(model="gpt-4o-mini", messages=[], stream=True):
                pass
            return (time.thread_time_ns() - t0) / (chunks + 1) / 1e3
        finally:
            steer.uninstrument()

    sink: List[int] = []
    inline_p, background_p = processor(False, sink), processor(True, sink)
    configs = {"none": {}, "inline": {"event_processor": inline_p}, "background": {"event_processor": background_p}}
    for options in configs.values():  # warm-up
        one_stream(**options)
    times: Dict[str, List[float]] = {name: [] for name in configs}
    for _ in range(streams):  # interleaved, so drift on a shared machine hits every configuration alike
        for name, options in configs.items():
            times[name].append(one_stream(**options))
    inline_p.shutdown()
    background_p.shutdown()
    base = statistics.median(times["none"])
    return {"us_per_chunk_no_listeners": round(base, 3),
            "us_per_chunk_added_inline": round(statistics.median(times["inline"]) - base, 3),
            "us_per_chunk_added_background": round(statistics.median(times["background"]) - base, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunks", type=int, default=1000)
    parser.add_argument("--streams", type=int, default=30)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    events = make_events(args.events)
    result = {
        "events": len(events),
        "inline": run_processor(False, events, args.rounds),
        "background": run_processor(True, events, args.rounds),
        "stream": run_stream(args.chunks, args.streams),
    }
    if args.json:
        print(json.dumps(result))
        return
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"EventProcessor, type filter + transformer + batches of 100, {result['events']} events, median of "
          f"{args.rounds} (load average {load:.1f} on {os.cpu_count()} CPUs):")
    print("  mode        caller wall   caller CPU   end to end     events/s")
    for mode in ("inline", "background"):
        r = result[mode]
        print(f"  {mode:10s} {r['us_per_event_caller_wall']:8.3f} us  {r['us_per_event_caller_cpu']:8.3f} us"
              f"  {r['us_per_event_end_to_end']:8.3f} us  {r['events_per_second']:>11,}")
    s = result["stream"]
    print(f"Behind a real openai stream ({args.chunks} chunks, caller CPU): {s['us_per_chunk_no_listeners']:.3f} us/chunk"
          f" instrumented without listeners;"
          f" the processor adds {s['us_per_chunk_added_inline']:.3f} us/chunk inline, {s['us_per_chunk_added_background']:.3f} background")
    print("(caller CPU is the caller thread's own CPU time: the work steer adds, whatever else the machine runs)")


if __name__ == "__main__":
    main()

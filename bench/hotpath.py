"""steer's own cost per chunk, layer by layer, on chunks the real SDK already decoded.

    .venv/bin/python bench/hotpath.py [--chunks 1000] [--reps 200] [--capture on|off] [--json]

``overhead.py`` measures what a user sees (the SDK and steer together, noisy on a busy machine).
This one takes the SDK out: it streams once through the bare SDK, keeps the 1,000-odd chunk
objects, and then times steer's layers over that list, many times, interleaved, reporting the
minimum and the median (the minimum is the cost itself; the median shows the noise):

* ``decode``: the provider decoder (``ChatDecoder.decode`` / ``MessagesDecoder.decode``) into an
  Assembly;
* ``on_chunk``: ``Session.on_chunk`` (clock read, gap bookkeeping, decode);
* ``proxy``: iterating ``SyncStreamProxy`` over the chunk list (``__next__`` + ``on_chunk``);
* ``open``: ``Session(...)`` for one call (span start, active-streams counter), in µs per call;
* ``finish``: ``Session.finish`` after a full stream (usage, span end + export, metric points),
  in µs per call; ``finish (estimated)``: the same when the stream reported no usage, so steer
  tokenises the output to estimate it.

This is the profile ``bench/README.md`` reports before/after numbers from. GC is disabled inside
the timed loops (collections belong to whoever allocates most, here the SDK).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import WORKLOADS  # noqa: E402


def _telemetry() -> tuple:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()])


def measure(provider: str, chunks: int, reps: int, capture: bool) -> Dict[str, Any]:
    import steer
    from steer.pipeline import Session
    from steer.providers.base import Assembly
    from steer.wrapping.proxies import SyncStreamProxy

    work = WORKLOADS[provider](chunks)
    items = list(work.call(work.client(False)))  # bare SDK: the chunk objects a user would get
    no_usage = WORKLOADS[provider](chunks, include_usage=False)
    items_no_usage = list(no_usage.call(no_usage.client(False)))
    exporter, tracer_provider, meter_provider = _telemetry()
    steer.instrument(providers=[work.provider], tracer_provider=tracer_provider, meter_provider=meter_provider,
                     capture_content=capture)
    try:
        client = work.client(False)
        template = work.call(client)  # one instrumented call gives the runtime, CallInfo and decoder type
        rt, call, decoder_cls = template._self_session.rt, template._self_session.call, type(template._self_session.decoder)
        template.close()
        n = len(items)

        def session() -> Any:
            return Session(rt, call, decoder_cls())

        def t_decode() -> float:
            decode, asm = decoder_cls().decode, Assembly()
            t0 = time.perf_counter_ns()
            for c in items:
                decode(c, asm)
            return (time.perf_counter_ns() - t0) / n

        def t_on_chunk() -> float:
            s = session()
            on_chunk = s.on_chunk
            t0 = time.perf_counter_ns()
            for c in items:
                on_chunk(c)
            dt = (time.perf_counter_ns() - t0) / n
            s.finish("complete")
            return dt

        def t_proxy() -> float:
            s = session()
            proxy = SyncStreamProxy(iter(items), s)
            t0 = time.perf_counter_ns()
            for _ in proxy:
                pass
            dt = (time.perf_counter_ns() - t0) / n  # includes finish("complete") once, at StopIteration
            return dt

        def t_open() -> float:
            t0 = time.perf_counter_ns()
            s = session()
            dt = (time.perf_counter_ns() - t0) / 1e3
            s.finish("complete")
            return dt

        def finisher(chunk_list: List[Any]) -> Callable[[], float]:
            def t_finish() -> float:
                s = session()
                for c in chunk_list:
                    s.on_chunk(c)
                t0 = time.perf_counter_ns()
                s.finish("complete")
                return (time.perf_counter_ns() - t0) / 1e3
            return t_finish

        tests: Dict[str, Callable[[], float]] = {
            "decode_ns": t_decode, "on_chunk_ns": t_on_chunk, "proxy_ns": t_proxy,
            "open_us": t_open, "finish_us": finisher(items), "finish_estimated_us": finisher(items_no_usage),
        }
        for fn in tests.values():  # warm-up (imports, encodings, first-call caches)
            fn()
        samples: Dict[str, List[float]] = {k: [] for k in tests}
        order = list(tests.items())
        rng = random.Random(7)
        for _ in range(reps):
            rng.shuffle(order)  # no test always runs right after the exporter is cleared
            for name, fn in order:
                gc.disable()
                try:
                    samples[name].append(fn())
                finally:
                    gc.enable()
                exporter.clear()
        out: Dict[str, Any] = {"provider": provider, "capture": capture, "chunks_per_stream": n}
        for name, vals in samples.items():
            out[name] = {"min": round(min(vals), 1), "median": round(statistics.median(vals), 1)}
        return out
    finally:
        steer.uninstrument()


def main(argv: Any = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", type=int, default=1000)
    p.add_argument("--reps", type=int, default=200)
    p.add_argument("--providers", default="openai,anthropic")
    p.add_argument("--capture", default="off", choices=["on", "off"])
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    a = p.parse_args(argv)
    results = [measure(prov, a.chunks, a.reps, a.capture == "on") for prov in a.providers.split(",") if prov]
    if a.json:
        print(json.dumps(results, indent=1))
        return 0
    print(f"steer per-layer cost, capture {a.capture}; min (median) over {a.reps} interleaved reps")
    print("| provider | decode ns/chunk | on_chunk ns/chunk | proxy ns/chunk | open µs/call | finish µs/call | finish, estimated usage µs/call |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        cells = [f"{r[k]['min']:.0f} ({r[k]['median']:.0f})" for k in
                 ("decode_ns", "on_chunk_ns", "proxy_ns", "open_us", "finish_us", "finish_estimated_us")]
        print(f"| {r['provider']} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

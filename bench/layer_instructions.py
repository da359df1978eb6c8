"""Instructions per chunk of steer's own layers, without the SDK: the exact before/after figure.

    .venv/bin/python bench/layer_instructions.py [--providers openai,anthropic,openai-json] [--src DIR] [--capture]

``instructions.py`` counts the SDK and steer together; its per-chunk difference moves by ±1-3k
instructions between runs because the bare SDK's own count does. This script takes the SDK out, as
``hotpath.py`` does for time: it streams once through the bare SDK, keeps the chunk objects, and
counts under callgrind, over a 1,000-chunk list and a 10-chunk list (per chunk = the difference):

* ``proxy``: a ``SyncStreamProxy`` over the list with a fresh ``Session`` — everything steer does for a
  stream, its end (span end, metric points) spread over the chunks;
* ``decode``: the provider decoder into an ``Assembly``;
* ``on_chunk``: ``Session.on_chunk`` (clock, gap bookkeeping, decode, JSON tracking when on).

Counts repeat to about 5 instructions. ``--src`` counts another steer source tree (its ``src/``).
Needs ``valgrind``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Dict

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from instructions import callgrind_regions  # noqa: E402

LAYERS = ("proxy", "decode", "on_chunk")

CHILD = r"""
import gc, sys, threading
if {src!r}:
    sys.path.insert(0, {src!r})
sys.path.insert(0, {here!r})
from _operator import call
from workload import WORKLOADS
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import steer
from steer.pipeline import Session
from steer.providers.base import Assembly
from steer.wrapping.proxies import SyncStreamProxy

work = WORKLOADS[{provider!r}](1000)
items = list(work.call(work.client(False)))  # the bare SDK's chunk objects
short = items[:10]
exporter = InMemorySpanExporter()
tp = TracerProvider(); tp.add_span_processor(SimpleSpanProcessor(exporter))
mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
# The end of each call inline (finish_in_background=False), so that "proxy" counts it: callgrind counts
# the thread that entered the region, not steer's end-of-call worker.
steer.instrument(providers=[work.provider], tracer_provider=tp, meter_provider=mp, capture_content={capture},
                 finish_in_background=False)
template = work.call(work.client(False))  # one observed call: its Runtime, CallInfo and decoder type
session = template._self_session
rt, info, decoder = session.rt, session.call, type(session.decoder)
template.close()
for t in threading.enumerate():  # the tokenizer's and the prices' warm-ups: done before anything is counted
    if t.name.endswith(("warmup", "warm-up")):  # (not steer's long-lived threads: watchdog, workers)
        t.join(3600)

def proxy(chunks):
    def run():
        for _ in SyncStreamProxy(iter(chunks), Session(rt, info, decoder())):
            pass
    return run

def decode(chunks):
    def run():
        d, asm = decoder().decode, Assembly()
        for c in chunks:
            d(c, asm)
    return run

def on_chunk(chunks):
    def run():
        s = Session(rt, info, decoder())
        step = s.on_chunk
        for c in chunks:
            step(c)
    return run

gc.disable()  # collections belong to whoever allocates most (the SDK, not measured here)
for layer in (proxy, decode, on_chunk):  # warm-up, uncounted
    layer(items)(); layer(short)(); exporter.clear()
for layer in (proxy, decode, on_chunk):
    call(layer(items)); call(layer(short)); exporter.clear()
print("CHUNKS", len(items), len(short))
"""


def count(provider: str, src: str = "", capture: bool = False) -> Dict[str, int]:
    stdout, regions = callgrind_regions(
        CHILD.format(here=str(HERE), provider=provider, src=src, capture=capture), 2 * len(LAYERS))
    m = re.search(r"CHUNKS (\d+) (\d+)", stdout)
    if not m:
        raise RuntimeError("callgrind child printed no chunk counts")
    long_n, short_n = int(m.group(1)), int(m.group(2))
    ir = [r["Ir"] for r in regions]
    return {name: round((ir[2 * i] - ir[2 * i + 1]) / (long_n - short_n)) for i, name in enumerate(LAYERS)}


def main(argv: object = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--providers", default="openai,anthropic,openai-json")
    p.add_argument("--src", default="", help="a steer source tree (its src/ folder) to count instead of the installed one")
    p.add_argument("--capture", action="store_true", help="content capture on")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if not shutil.which("valgrind"):
        print("valgrind not found (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    rows = {provider: count(provider, a.src, a.capture) for provider in a.providers.split(",") if provider}
    if a.json:
        print(json.dumps(rows, indent=1))
        return 0
    print("| provider | " + " | ".join(f"{layer} instructions/chunk" for layer in LAYERS) + " |")
    print("|---|" + "---:|" * len(LAYERS))
    for provider, row in rows.items():
        print(f"| {provider} | " + " | ".join(f"{row[layer]:,}" for layer in LAYERS) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

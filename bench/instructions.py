"""Deterministic cost counts: CPU instructions per chunk and per call, under valgrind's callgrind.

    .venv/bin/python bench/instructions.py [--providers openai,anthropic] [--chunks 1000] [--src DIR]

Wall and CPU time on a shared machine move with its load; instruction counts do not (same input,
same code, same count, to a few parts per million). One process per provider runs under
``valgrind --tool=callgrind``, sets everything up and warms up uncounted, then counts six regions,
each inside its own ``_operator.call`` (collection is on only inside that function, and callgrind
dumps a count after each): a long stream (``--chunks``) and a short one (10 chunks) for each of

* ``bare``: the SDK client alone;
* ``steer, capture off`` / ``steer, capture on``: the same SDK client given to ``steer.wrap()`` (same
  Session, proxies and telemetry as ``instrument()``; its client proxy adds a little per call, not
  per chunk), exporting to in-memory OpenTelemetry SDK providers.

Per chunk = (I(long) - I(short)) / (chunks(long) - chunks(short)); per call = I(short) - chunks(short)
x per chunk. ``--src`` counts another steer source tree (its ``src/`` folder) instead of the
installed one: that is how bench/README.md gives before/after numbers. Needs ``valgrind`` (Debian
package ``valgrind``); a few minutes per provider on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

HERE = Path(__file__).resolve().parent
CONTENDERS = ("bare", "steer, capture off", "steer, capture on")

CHILD = r"""
import sys, threading
if {src!r}:
    sys.path.insert(0, {src!r})  # another steer source tree (before/after comparisons)
sys.path.insert(0, {here!r})
from _operator import call
from workload import WORKLOADS
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import steer

long_w, short_w = WORKLOADS[{provider!r}]({chunks}), WORKLOADS[{provider!r}](10)
exporter = InMemorySpanExporter()
tp = TracerProvider(); tp.add_span_processor(SimpleSpanProcessor(exporter))
mp = MeterProvider(metric_readers=[InMemoryMetricReader()])

def clients(work):
    # finish_in_background=False: the end-of-call work runs inside the counted region, on this thread
    # (callgrind counts only the thread that entered it); the same instructions as on steer's worker.
    return [work.client(False),
            steer.wrap(work.client(False), tracer_provider=tp, meter_provider=mp, capture_content=False,
                       finish_in_background=False),
            steer.wrap(work.client(False), tracer_provider=tp, meter_provider=mp, capture_content=True,
                       finish_in_background=False)]

long_c, short_c = clients(long_w), clients(short_w)
for t in threading.enumerate():  # tokenizer warm-up thread: done before anything is counted
    if t is not threading.main_thread():
        t.join(3600)

def runner(work, client, streams):
    def run():
        n = 0
        for _ in range(streams):
            for _chunk in work.call(client):
                n += 1
        return n
    return run

for i in range(3):
    for work, cs in ((long_w, long_c), (short_w, short_c)):
        runner(work, cs[i], 1)()  # warm-up, uncounted
    exporter.clear()
for i in range(3):  # dump order: long bare, short bare, long steer-off, short steer-off, long steer-on, short steer-on
    assert call(runner(long_w, long_c[i], 1)) == long_w.chunks_yielded
    assert call(runner(short_w, short_c[i], {short_streams})) == {short_streams} * short_w.chunks_yielded
    exporter.clear()
print("CHUNKS", long_w.chunks_yielded, short_w.chunks_yielded)
"""


def callgrind_regions(code: str, regions: int, cache: bool = False) -> tuple:
    """Run ``code`` under callgrind; (its stdout, each ``_operator.call`` region's counts: a dict
    event -> count, ``Ir`` = instructions; with ``cache`` also the simulated cache misses)."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "child.py"
        script.write_text(code)
        return callgrind_command_regions([sys.executable, str(script)], regions, cache=cache)


def callgrind_command_regions(argv: List[str], regions: int, env: Optional[Dict[str, str]] = None,
                              cache: bool = False) -> tuple:
    """Run the Python command ``argv`` under callgrind: (its stdout, each region's counts, as above)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--collect-atstart=no",
             *(["--cache-sim=yes"] if cache else []),
             "--toggle-collect=_operator_call", "--dump-after=_operator_call", *argv],
            capture_output=True, text=True, env=dict(env if env is not None else os.environ, PYTHONHASHSEED="0"))
        dumps = sorted(Path(tmp).glob("cg.out.*"), key=lambda p: int(p.name.rsplit(".", 1)[1]))
        counts: List[Dict[str, int]] = []
        for d in dumps:
            text = d.read_text()
            events = re.search(r"^events:\s*(.+)$", text, re.M)
            total = re.search(r"^(?:summary|totals):\s*(.+)$", text, re.M)
            if events and total:
                row = dict(zip(events.group(1).split(), (int(v) for v in total.group(1).split())))
                if row.get("Ir", 0) > 0:
                    counts.append(row)
    if proc.returncode != 0 or len(counts) != regions:
        raise RuntimeError(f"callgrind run failed ({proc.returncode}, {len(counts)} dumps): {proc.stderr[-1500:]}")
    return proc.stdout, counts


def estimated_cycles(row: Dict[str, float]) -> float:
    """callgrind_annotate's cycle estimate: instructions + 10 per L1 miss + 100 per last-level miss."""
    l1 = row.get("I1mr", 0) + row.get("D1mr", 0) + row.get("D1mw", 0)
    ll = row.get("ILmr", 0) + row.get("DLmr", 0) + row.get("DLmw", 0)
    return row["Ir"] + 10 * l1 + 100 * ll


def count(provider: str, chunks: int, short_streams: int, src: str = "", cache: bool = False) -> Dict[str, Any]:
    code = CHILD.format(here=str(HERE), provider=provider, chunks=chunks, short_streams=short_streams, src=src)
    stdout, regions = callgrind_regions(code, 6, cache)
    c = re.search(r"CHUNKS (\d+) (\d+)", stdout)
    if not c:
        raise RuntimeError("callgrind child printed no chunk counts")
    long_chunks, short_chunks = int(c.group(1)), int(c.group(2)) * short_streams
    rows = {}
    for i, name in enumerate(CONTENDERS):
        long_r, short_r = regions[2 * i], regions[2 * i + 1]
        if cache:
            long_r, short_r = dict(long_r, est=estimated_cycles(long_r)), dict(short_r, est=estimated_cycles(short_r))
        row: Dict[str, Any] = {"per_stream": long_r["Ir"], "chunks": long_chunks}
        for event in long_r:
            per_chunk = (long_r[event] - short_r[event] / short_streams) / (long_chunks - short_chunks / short_streams)
            per_call = short_r[event] / short_streams - per_chunk * short_chunks / short_streams
            suffix = "" if event == "Ir" else f"_{event}"
            row[f"per_chunk{suffix}"] = round(per_chunk, 1)
            row[f"per_call{suffix}"] = round(per_call)
        rows[name] = row
    return rows


def main(argv: Any = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--providers", default="openai,anthropic")
    p.add_argument("--chunks", type=int, default=1000)
    p.add_argument("--short-streams", type=int, default=4, help="short streams counted together (default 4)")
    p.add_argument("--src", default="", help="a steer source tree (its src/ folder) to count instead of the installed one")
    p.add_argument("--cache", action="store_true",
                   help="simulate the caches too: L1 misses per chunk and callgrind's cycle estimate (2-3x slower)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if not shutil.which("valgrind"):
        print("valgrind not found (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    results = []
    for provider in [x for x in a.providers.split(",") if x]:
        rows = count(provider, a.chunks, a.short_streams, a.src, a.cache)
        print(f"{provider}: {json.dumps(rows)}", file=sys.stderr, flush=True)
        results.append({"provider": provider, "rows": rows})
    if a.json:
        print(json.dumps(results, indent=1))
        return 0
    def counts(row: Dict[str, Any]) -> str:
        return f"{row['per_stream']:,.0f} | {row['per_chunk']:,.0f} | {row['per_call']:,.0f}"

    def counts_diff(row: Dict[str, Any], bare: Dict[str, Any]) -> str:
        d = row["per_chunk"] - bare["per_chunk"]
        return (f"{d:+,.0f} ({100 * d / bare['per_chunk']:.2f}%) | {row['per_call'] - bare['per_call']:+,.0f} | "
                f"{(row['per_stream'] - bare['per_stream']) / row['chunks']:+,.0f}")

    _table(results, "| provider | contender | instructions/stream | per chunk | per call | steer - bare per chunk (% of bare) | "
           "steer - bare per call | steer - bare per stream / chunks |", counts, counts_diff)
    if a.cache:
        def caches(row: Dict[str, Any]) -> str:
            return f"{row['per_chunk']:,.0f} | {_l1(row):,.0f} | {row['per_chunk_est']:,.0f}"

        def caches_diff(row: Dict[str, Any], bare: Dict[str, Any]) -> str:
            d = row["per_chunk_est"] - bare["per_chunk_est"]
            return (f"{row['per_chunk'] - bare['per_chunk']:+,.0f} | {_l1(row) - _l1(bare):+,.0f} | "
                    f"{d:+,.0f} ({100 * d / bare['per_chunk_est']:.2f}%)")

        print()
        print("Per chunk, with the caches simulated (L1 misses = I1mr + D1mr + D1mw; est. cycles = instructions + 10 x L1 "
              "misses + 100 x last-level misses):")
        print()
        _table(results, "| provider | contender | instructions | L1 misses | est. cycles | steer - bare: instructions | "
               "L1 misses | est. cycles (% of bare) |", caches, caches_diff)
    return 0


def _l1(row: Dict[str, Any]) -> float:
    return sum(row.get(f"per_chunk_{e}", 0) for e in ("I1mr", "D1mr", "D1mw"))


def _table(results: List[Dict[str, Any]], header: str, cells: Callable[[Dict[str, Any]], str],
           diff: Callable[[Dict[str, Any], Dict[str, Any]], str]) -> None:
    """One markdown row per provider and contender: its own cells, then its difference to bare."""
    print(header)
    print("|---|---|" + "---:|" * (header.count("|") - 3))
    for r in results:
        bare = r["rows"]["bare"]
        for key, row in r["rows"].items():
            print(f"| {r['provider']} | {key} | {cells(row)} | {'- | - | -' if key == 'bare' else diff(row, bare)} |")


if __name__ == "__main__":
    sys.exit(main())

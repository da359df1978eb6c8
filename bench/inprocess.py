"""Contenders alternated stream by stream in ONE process: the tie-breaker for close contenders.

    .venv/bin/python bench/inprocess.py [--provider openai,anthropic] [--mode sync,async] [--capture off,on]
        [--contenders bare,steer] [--variant FILE.py ...] [--rounds 60] [--processes 2] [--chunks 1000]
    bench/.venv-peers/bin/python bench/inprocess.py --contenders bare,steer,otel-official   # vs a peer
    make bench-tiebreak                                                                     # every cell, every peer

Why: across processes the *same* bare SDK measures 82-86 µs per OpenAI chunk, because each process has
its own memory layout (hash seed, allocation order); steer and OpenTelemetry's openai-v2 differ by less
than that, so ``overhead.py`` and ``peers/peers.py`` (one process per contender, as issue 8 asks) can
call them level when they are not. Here every contender streams in the same process, taking turns:
each round runs every contender once, in a fresh random order, instrumenting it just before its stream
and removing it right after (both outside the timed region). Layout luck is then shared, and a
difference of ~0.2 µs per chunk repeats. One process is still one layout: ``--processes N`` runs N
of them with different hash seeds and reports each one's medians. "Over bare" is over a bare stream in
that same process (every contender imported, their streams in between): what observing costs, not
what having a library loaded costs (``overhead.py``'s ``steer-idle`` placebo measures that for steer).

Contenders: ``bare``; ``steer`` (``steer.instrument()``); the peers that can be removed again
(``otel-official``, ``openinference``: their instrumentors' ``uninstrument()``; not OpenLIT, which
cannot be undone, nor OpenLLMetry, whose ``uninstrument()`` leaves a wrapper behind), set up by
``contenders.py`` exactly as in the peers run. Every stream is checked: each contender must leave
as many spans as on its first stream (a bare one: as many as before any contender ran), else the run
stops — a contender left switched on would otherwise be timed inside the others. ``--variant FILE.py``
adds ``steer+FILE``: steer with a change applied for its streams only — a module whose ``apply()``
patches steer and returns a function that undoes it (``variants/`` has the ones bench/README.md
cites). Timed: process CPU time (all threads) per chunk, the whole call (open, every chunk, end of
stream) as a user's loop sees it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from contenders import CONTENDERS, Ctx, Telemetry  # noqa: E402
from workload import WORKLOADS  # noqa: E402


def _uninstrument_steer() -> None:
    import steer

    steer.uninstrument()


def _instrumentor(module: str, anthropic_module: str = "") -> Callable[[str], None]:
    def undo(provider: str) -> None:
        mod = importlib.import_module(anthropic_module if provider == "anthropic" and anthropic_module else module)
        cls = next(getattr(mod, n) for n in ("OpenAIInstrumentor", "AnthropicInstrumentor") if hasattr(mod, n))
        cls().uninstrument()
    return undo


# How each removable contender is taken out again after its stream. Not here: OpenLIT (no way to undo
# openlit.init()) and OpenLLMetry, whose uninstrument() leaves its wrappers in place (one more span per
# stream after every on/off cycle: checked by ``worker``, which refuses such a run).
REMOVE: Dict[str, Callable[[str], None]] = {
    "steer": lambda provider: _uninstrument_steer(),
    "otel-official": _instrumentor("opentelemetry.instrumentation.openai_v2"),
    "openinference": _instrumentor("openinference.instrumentation.openai", "openinference.instrumentation.anthropic"),
}


def load_variant(path: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"steer_variant_{Path(path).stem}", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load variant {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "apply", None)):
        raise SystemExit(f"variant {path} has no apply() -> undo")
    return module


class Arm:
    """One contender: how to switch it on and off around its stream."""

    def __init__(self, name: str, ctx: Ctx, variant: Any = None) -> None:
        self.name, self.ctx, self.variant = name, ctx, variant
        self.base = "steer" if variant is not None else name
        if self.base not in CONTENDERS or (self.base != "bare" and self.base not in REMOVE):
            raise SystemExit(f"{name}: not a contender that can be switched off again ({', '.join(['bare', *REMOVE])})")
        self._undo: Any = None

    def on(self) -> None:
        if self.base != "bare":
            CONTENDERS[self.base].setup(self.ctx)
        if self.variant is not None:
            self._undo = self.variant.apply()

    def off(self) -> None:
        if self._undo is not None:
            self._undo()
            self._undo = None
        if self.base != "bare":
            REMOVE[self.base](self.ctx.provider)


def worker(a: argparse.Namespace) -> Dict[str, Any]:
    capture = a.capture == "on"
    ctx = Ctx(capture_content=capture, provider=a.provider)
    # Not installed as the globals: each contender is handed the providers (the peers run also installs
    # them globally), and a
    # bare stream stays bare (with a global tracer provider the anthropic SDK makes its own span).
    tel = Telemetry(install_globals=False)
    ctx.tracer_provider, ctx.meter_provider, ctx.logger_provider = tel.tracer_provider, tel.meter_provider, tel.logger_provider
    arms = [Arm(n, ctx) for n in a.contenders.split(",")]
    arms += [Arm(f"steer+{Path(v).stem}", ctx, load_variant(v)) for v in a.variant]
    work = WORKLOADS[a.provider](a.chunks)
    is_async = a.mode == "async"
    client = work.client(is_async)
    loop = asyncio.new_event_loop() if is_async else None

    async def drain_async() -> int:
        n = 0
        async for _ in await work.call(client):
            n += 1
        return n

    def stream() -> float:
        t0 = time.process_time_ns()
        if loop is not None:
            n = loop.run_until_complete(drain_async())
        else:
            n = 0
            for _ in work.call(client):
                n += 1
        spent = time.process_time_ns() - t0
        if n != work.chunks_yielded:
            raise RuntimeError(f"read {n} chunks, expected {work.chunks_yielded}")
        return spent / n

    # What a bare stream leaves is the baseline (no span: nothing is installed globally), and every
    # contender must leave the same number of spans stream after stream.
    stream()
    spans_of: Dict[str, int] = {"bare": len(tel.finished_spans())}
    tel.clear()
    cpu: Dict[str, List[float]] = {arm.name: [] for arm in arms}
    steer_chunks: Dict[str, List[Any]] = {arm.name: [] for arm in arms if arm.base == "steer"}
    rng = random.Random(a.seed)
    for r in range(a.warmup + a.rounds):
        order = arms[:]
        rng.shuffle(order)
        for arm in order:
            arm.on()
            try:
                value = stream()
            finally:
                arm.off()
            spans = tel.finished_spans()
            tel.clear()
            if spans_of.setdefault(arm.name, len(spans)) != len(spans):
                raise RuntimeError(f"{arm.name}: {len(spans)} spans for one stream, {spans_of[arm.name]} before "
                                   f"(round {r}): a contender was not switched off, or stacked")
            if r >= a.warmup:
                cpu[arm.name].append(value)
                if arm.name in steer_chunks:
                    ours = [s for s in spans if s.instrumentation_scope and s.instrumentation_scope.name == "steer"]
                    steer_chunks[arm.name].append((ours[0].attributes or {}).get("steer.stream.chunks") if ours else None)
        for t in threading.enumerate():  # a contender's background start-up work: never inside a timed stream
            if t is not threading.main_thread() and t.daemon and t.name != "steer-end-of-call":  # that one lives on
                t.join(60)
    return {"cpu_ns_per_chunk": cpu, "steer_span_chunks": steer_chunks, "expected_chunks": work.chunks_yielded,
            "spans_per_stream": spans_of,
            "hash_seed": os.environ.get("PYTHONHASHSEED", "")}


def report(cell: Dict[str, Any], runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    names = list(runs[0]["cpu_ns_per_chunk"])
    rows = {}
    for name in names:
        per_process = [statistics.median(r["cpu_ns_per_chunk"][name]) / 1e3 for r in runs]
        over = [p - statistics.median(r["cpu_ns_per_chunk"]["bare"]) / 1e3 for p, r in zip(per_process, runs)] \
            if "bare" in names else [float("nan")] * len(runs)
        rows[name] = {"us_per_chunk": per_process, "over_bare_us": over, "over_bare_median_us": statistics.median(over)}
    print(f"\n{cell['provider']} {cell['mode']}, capture {cell['capture']}, {cell['chunks']}-chunk streams, "
          f"{cell['rounds']} rounds x {len(runs)} process(es); CPU us/chunk (all threads), median per process\n")
    print("| contender | over bare, median of processes | per process: us/chunk (over bare) |")
    print("|---|---:|---|")
    for name, row in rows.items():
        cells = " / ".join(f"{u:.2f} ({o:+.2f})" for u, o in zip(row["us_per_chunk"], row["over_bare_us"]))
        print(f"| {name} | {row['over_bare_median_us']:+.2f} | {cells} |", flush=True)
    return {**cell, "processes": len(runs), "rows": rows, "runs": runs}


def cells(a: argparse.Namespace) -> List[Dict[str, Any]]:
    """Every (provider, mode, capture) asked for, each with the contenders that support its provider."""
    out = []
    for provider in a.provider.split(","):
        names = [n for n in a.contenders.split(",") if n not in CONTENDERS or provider in CONTENDERS[n].providers]
        for mode in a.mode.split(","):
            for capture in a.capture.split(","):
                out.append({"provider": provider, "mode": mode, "capture": capture, "contenders": ",".join(names),
                            "chunks": a.chunks, "rounds": a.rounds})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--provider", default="openai", help="openai, anthropic or both (comma-separated)")
    ap.add_argument("--mode", default="sync", help="sync, async or both (comma-separated)")
    ap.add_argument("--capture", default="off", help="on, off or both (comma-separated)")
    ap.add_argument("--contenders", default="bare,steer", help="peers that do not take part in a provider's scenarios are skipped there")
    ap.add_argument("--variant", action="append", default=[], help="a file with apply() -> undo; runs as steer+NAME")
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--chunks", type=int, default=1000)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="shuffling seed (each process adds its index)")
    ap.add_argument("--out", help="write the figures as JSON here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        json.dump(worker(a), sys.stdout)
        return
    results = []
    for cell in cells(a):
        runs = []
        for i in range(a.processes):  # one at a time: two timed processes would share the CPU and its caches
            args = [sys.executable, __file__, "--worker", "--provider", cell["provider"], "--mode", cell["mode"],
                    "--capture", cell["capture"], "--contenders", cell["contenders"], "--rounds", str(a.rounds),
                    "--warmup", str(a.warmup), "--chunks", str(a.chunks), "--seed", str(a.seed + i)]
            for v in a.variant:
                args += ["--variant", v]
            proc = subprocess.run(args, capture_output=True, text=True, env=dict(os.environ, PYTHONHASHSEED=str(1000 + i)))
            if proc.returncode != 0:
                raise SystemExit(f"worker {i} failed:\n{proc.stderr[-3000:]}")
            runs.append(json.loads(proc.stdout))
        results.append(report(cell, runs))
    if a.out:
        Path(a.out).write_text(json.dumps({"argv": sys.argv[1:], "cells": results}, indent=1))


if __name__ == "__main__":
    main()

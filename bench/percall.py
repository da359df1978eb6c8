"""What one call costs, and how long the caller waits after the last chunk (make bench-percall).

    bench/.venv-peers/bin/python bench/percall.py [--providers openai,anthropic] [--sizes 0,1,10,50,200]
        [--contenders bare,steer,otel-official,openllmetry,openlit,openinference] [--modes sync,async]
        [--captures off,on] [--calls 20] [--rounds 5] [--no-instructions] [--no-after] [--no-timed] [--quick]

Most real calls are short (tool loops, classifiers, agent steps), so the per-call cost matters as much
as the per-chunk one. Every contender (bench/contenders.py: the same shared in-memory SDK
providers for all) runs in its own process per scenario, the real SDK client over a MockTransport
(bench/workload.py). Sizes: 0 = a non-streaming call, N = a stream of N content chunks.

* **Instructions** (callgrind, load-proof; sync, per provider and capture): each size is counted as one
  region of ``--calls`` calls after a warm-up; per call = region / calls; minus bare = the contender's
  cost per call; per chunk = the slope between the two largest sizes. steer runs with
  ``finish_in_background=False`` here so that its end-of-call work is counted (callgrind counts the
  thread that entered the region; on steer's worker it is the same instructions, on another thread).
* **After the last chunk, instructions on the caller's thread** (callgrind; sync and async; streams):
  ``--calls`` streams are read up to and including their last chunk outside the region, then one region
  reads their ends (the SDK reading ``[DONE]`` / ``message_stop`` and closing, plus what the
  instrumentation does on the caller's thread). steer runs as users run it here (end-of-call work on
  its worker, which callgrind does not count in the caller's region), and the cyclic collector is off
  in the region (whether a few ends hold a collection is chance). The load-proof twin of the timed
  after-last-chunk figure, which on a shared machine also holds the scheduler's and the GIL's waits.
* **Timed** (wall, medians, interleaved): the parent drives all contenders' workers round by round,
  rotating their order, one busy at a time. Per call: ``create()`` to the end of the caller's loop.
  After the last chunk: from the caller receiving the last chunk to its ``for`` / ``async for``
  ending (the SDK reading ``[DONE]`` and closing, plus whatever an instrumentation does at the end).

Results: bench/results/percall-<time>.{json,md}. ``--quick``: 1 round, 3 calls, sizes 0,1,10.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

DEFAULT_CONTENDERS = "bare,steer,otel-official,openllmetry,openlit,openinference"
COUNT_PREFIX = "PERCALL_COUNT"


# -- worker (one contender, one provider, one mode, one capture) ----------------------------------------
class Worker:
    def __init__(self, contender: str, provider: str, is_async: bool, capture: bool, inline_end: bool = False) -> None:
        from contenders import CONTENDERS, Ctx, Telemetry
        from workload import WORKLOADS

        spec = CONTENDERS[contender]
        self.tel = Telemetry() if spec.instrumented else None
        ctx = Ctx(capture_content=capture, provider=provider)
        if self.tel is not None:
            ctx.tracer_provider, ctx.meter_provider = self.tel.tracer_provider, self.tel.meter_provider
            ctx.logger_provider = self.tel.logger_provider
        spec.setup(ctx)
        if contender.startswith("steer") and inline_end:
            import steer

            options = dict(providers=[provider], tracer_provider=ctx.tracer_provider, meter_provider=ctx.meter_provider,
                           capture_content=capture)
            try:
                steer.instrument(**options, finish_in_background=False)
            except TypeError:  # a steer tree from before the option (--src): it always ends inline
                steer.instrument(**options)
        self.is_async = is_async
        self.loop = asyncio.new_event_loop() if is_async else None
        self.work: Dict[int, Any] = {}
        self.clients: Dict[int, Any] = {}
        self.factory = WORKLOADS[provider]

    def _client(self, size: int) -> Any:
        if size not in self.clients:
            self.work[size] = work = self.factory(max(size, 1))
            self.clients[size] = work.client(self.is_async, streaming=size > 0)
        return self.work[size], self.clients[size]

    def one(self, size: int) -> tuple:
        """(ns per call, ns from the last chunk to the loop's end, chunks)."""
        work, client = self._client(size)
        if self.loop is not None:
            return self.loop.run_until_complete(self._one_async(work, client, size))
        t0 = time.perf_counter_ns()
        if size == 0:
            work.call(client, streaming=False)
            return time.perf_counter_ns() - t0, 0, 0
        n, last = 0, t0
        for _chunk in work.call(client):
            n += 1
            last = time.perf_counter_ns()
        end = time.perf_counter_ns()
        return end - t0, end - last, n

    async def _one_async(self, work: Any, client: Any, size: int) -> tuple:
        t0 = time.perf_counter_ns()
        if size == 0:
            await work.call(client, streaming=False)
            return time.perf_counter_ns() - t0, 0, 0
        n, last = 0, t0
        async for _chunk in await work.call(client):
            n += 1
            last = time.perf_counter_ns()
        end = time.perf_counter_ns()
        return end - t0, end - last, n

    def open_to_last_chunk(self, size: int, chunks: int) -> Any:
        """A stream read up to and including its last chunk (``chunks``), its end still unread."""
        work, client = self._client(size)
        if self.loop is None:
            it = iter(work.call(client))
            for _ in range(chunks):
                next(it)
            return it

        async def opened() -> Any:
            it = (await work.call(client)).__aiter__()
            for _ in range(chunks):
                await it.__anext__()
            return it

        return self.loop.run_until_complete(opened())

    def read_ends(self, streams: List[Any]) -> None:
        """Read each stream's end: what the caller waits for after its last chunk."""
        if self.loop is None:
            for it in streams:
                for _ in it:
                    raise AssertionError("a chunk after the last one")
            return

        async def ends() -> None:
            for it in streams:
                async for _ in it:
                    raise AssertionError("a chunk after the last one")

        self.loop.run_until_complete(ends())

    def run(self, size: int, calls: int) -> Dict[str, Any]:
        rows = [self.one(size) for _ in range(calls)]
        return {"call_ns": [r[0] for r in rows], "after_ns": [r[1] for r in rows], "chunks": rows[-1][2]}

    def spans(self) -> int:
        return len(self.tel.finished_spans()) if self.tel is not None else 0


def worker_main(a: argparse.Namespace) -> int:
    w = Worker(a.worker, a.provider, a.mode == "async", a.capture == "on", inline_end=a.count is not None and not a.after)
    for size in a.sizes:
        w.run(size, 2)  # warm-up: imports, caches, connection set-up, first allocations
    if a.after:  # under callgrind: one counted region per size, the ends of --count streams
        import gc
        from _operator import call

        for size in a.sizes:
            chunks = w.run(size, 3)["chunks"]  # warm as the timed runs are; and how many chunks a call has
            # The region's own path warmed too (3.11 specialises bytecode after a few runs): else the first
            # size's region carries one-time costs, ~100k instructions per stream in async mode.
            w.read_ends([w.open_to_last_chunk(size, chunks) for _ in range(10)])
            streams = [w.open_to_last_chunk(size, chunks) for _ in range(a.count)]
            settle_worker()
            # Without the cyclic collector: whether a region of a few stream ends holds a collection is
            # chance (±60k instructions per async end), and collections belong to whoever allocates most.
            gc.collect()
            gc.disable()
            call(lambda: w.read_ends(streams))
            gc.enable()
            settle_worker()
        print(COUNT_PREFIX, json.dumps({"spans": w.spans()}), flush=True)
        return 0
    if a.count is not None:  # under callgrind: one counted region per size
        from _operator import call

        for size in a.sizes:
            call(lambda s=size: w.run(s, a.count))
        print(COUNT_PREFIX, json.dumps({"spans": w.spans()}), flush=True)
        return 0
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        before = w.spans()
        out = w.run(cmd["size"], cmd["calls"])
        out["spans"] = w.spans() - before
        print(json.dumps(out), flush=True)
    return 0


def _worker_cmd(a: argparse.Namespace, contender: str, provider: str, mode: str, capture: str) -> List[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--worker", contender, "--provider", provider, "--mode", mode,
            "--capture", capture, "--sizes", ",".join(map(str, a.sizes))]


# -- instructions ---------------------------------------------------------------------------------------
def _per_call_regions(a: argparse.Namespace, what: str, cmd: List[str], regions: int) -> Optional[List[float]]:
    """Run ``cmd`` (a worker) under callgrind: instructions per call of each of its counted regions."""
    from instructions import callgrind_command_regions

    try:
        _, counts = callgrind_command_regions([*cmd, "--count", str(a.calls)], regions, env=_env(a))
    except RuntimeError as exc:
        print(f"  {what}: {exc}", file=sys.stderr)
        return None
    return [c["Ir"] / a.calls for c in counts]


def count_instructions(a: argparse.Namespace, contender: str, provider: str, capture: str) -> Optional[List[float]]:
    """Instructions per call, per size (steer's end-of-call work inline, so that it is counted)."""
    return _per_call_regions(a, f"{contender} {provider} {capture}", _worker_cmd(a, contender, provider, "sync", capture),
                             len(a.sizes))


def count_after_instructions(a: argparse.Namespace, contender: str, provider: str, mode: str,
                             capture: str) -> Optional[List[float]]:
    """Instructions on the caller's thread from the last chunk to the loop's end, per call, per stream size."""
    sizes = [s for s in a.sizes if s > 0]
    cmd = _worker_cmd(a, contender, provider, mode, capture)
    cmd[cmd.index("--sizes") + 1] = ",".join(map(str, sizes))
    return _per_call_regions(a, f"{contender} {provider} {mode} {capture} after the last chunk", [*cmd, "--after"],
                             len(sizes))


def settle_worker() -> None:
    """Let steer's end-of-call worker record what it was handed, outside the counted region."""
    try:
        import steer

        steer.flush()
    except Exception:  # a contender without steer, or a steer tree from before flush()
        pass
    time.sleep(0.01)


# -- timed ----------------------------------------------------------------------------------------------
def _env(a: argparse.Namespace, **extra: str) -> Dict[str, str]:
    """The workers' environment: ``--src`` puts another steer source tree first (before/after figures)."""
    env = dict(os.environ, **extra)
    if a.src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [a.src, env.get("PYTHONPATH", "")]))
    return env


class WorkerProc:
    def __init__(self, cmd: List[str], env: Dict[str, str]) -> None:
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=env)
        self.ok = self._read() is not None

    def _read(self) -> Optional[Dict[str, Any]]:
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        return json.loads(line) if line.strip() else None

    def run(self, size: int, calls: int) -> Optional[Dict[str, Any]]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"size": size, "calls": calls}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(30)


def timed(a: argparse.Namespace, provider: str, mode: str, capture: str, names: List[str]) -> Dict[str, Any]:
    workers = {n: WorkerProc(_worker_cmd(a, n, provider, mode, capture), _env(a)) for n in names}
    samples: Dict[str, Dict[int, Dict[str, List[int]]]] = {n: {s: {"call_ns": [], "after_ns": []} for s in a.sizes} for n in names}
    spans_ok: Dict[str, bool] = {n: True for n in names}
    try:
        for r in range(a.rounds):
            order = [n for n in names if workers[n].ok]
            order = order[r % len(order):] + order[:r % len(order)] if order else order
            for size in a.sizes:
                for n in order:
                    out = workers[n].run(size, a.calls)
                    if out is None:
                        workers[n].ok = False
                        continue
                    samples[n][size]["call_ns"] += out["call_ns"]
                    samples[n][size]["after_ns"] += out["after_ns"]
                    if n != "bare" and out["spans"] < a.calls:
                        spans_ok[n] = False
    finally:
        for w in workers.values():
            w.close()
    medians = {n: {s: {k: statistics.median(v) / 1e3 if v else None for k, v in samples[n][s].items()} for s in a.sizes}
               for n in names}
    return {"medians_us": medians, "spans_ok": spans_ok, "failed": [n for n in names if not workers[n].ok]}


# -- report ---------------------------------------------------------------------------------------------
def _size(s: int) -> str:
    return "non-streaming" if s == 0 else f"{s} chunk" + ("s" if s != 1 else "")


def report(results: Dict[str, Any], a: argparse.Namespace) -> str:
    lines: List[str] = []
    ins = results.get("instructions", {})
    if ins:
        lines += ["### Instructions per call over bare (callgrind, sync)", "",
                  "| provider | capture | contender | " + " | ".join(_size(s) for s in a.sizes) + " | per chunk |",
                  "|---|---|---|" + "---:|" * (len(a.sizes) + 1)]
        for key, rows in ins.items():
            provider, capture = key.split("/")
            bare = rows.get("bare")
            for name, row in rows.items():
                if name == "bare" or row is None or bare is None:
                    continue
                over = [row[i] - bare[i] for i in range(len(a.sizes))]
                streamed = [i for i, s in enumerate(a.sizes) if s > 0]
                slope = ""
                if len(streamed) >= 2:
                    i, j = streamed[-2], streamed[-1]
                    slope = f"{(over[j] - over[i]) / (a.sizes[j] - a.sizes[i]):+,.0f}"
                lines.append(f"| {provider} | {capture} | {name} | " + " | ".join(f"{o:+,.0f}" for o in over) + f" | {slope} |")
        lines.append("")
    after = results.get("after", {})
    if after:
        streamed = [s for s in a.sizes if s > 0]
        lines += ["### After the last chunk: instructions on the caller's thread over bare (callgrind)", "",
                  "| provider | mode | capture | contender | " + " | ".join(_size(s) for s in streamed) + " |",
                  "|---|---|---|---|" + "---:|" * len(streamed)]
        for key, rows in after.items():
            provider, mode, capture = key.split("/")
            bare = rows.get("bare")
            for name, row in rows.items():
                if bare is None or row is None:
                    continue
                cells = [f"{b:,.0f}" if name == "bare" else f"{r - b:+,.0f}" for r, b in zip(row, bare)]
                lines.append(f"| {provider} | {mode} | {capture} | {name} | " + " | ".join(cells) + " |")
        lines.append("")
    for key, res in results.get("timed", {}).items():
        med = res["medians_us"]
        bare = med.get("bare")
        lines += [f"### Timed, {key}: µs per call over bare (after the last chunk: µs over bare)", "",
                  "| contender | " + " | ".join(_size(s) for s in a.sizes) + " | spans ok |", "|---|" + "---:|" * (len(a.sizes) + 1)]
        for name, row in med.items():
            cells = []
            for s in a.sizes:
                c, b = row[s], (bare or {}).get(s)
                if c["call_ns"] is None or b is None or b["call_ns"] is None:
                    cells.append("n/a")
                elif name == "bare":
                    cells.append(f"{c['call_ns']:,.0f}" + (f" ({c['after_ns']:,.1f})" if s else ""))
                else:
                    cell = f"{c['call_ns'] - b['call_ns']:+,.0f}"
                    if s:
                        cell += f" ({c['after_ns'] - b['after_ns']:+,.1f})"
                    cells.append(cell)
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {'yes' if res['spans_ok'].get(name) else 'NO'} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Any = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--providers", default="openai,anthropic")
    p.add_argument("--sizes", default="0,1,10,50,200")
    p.add_argument("--contenders", default=DEFAULT_CONTENDERS)
    p.add_argument("--modes", default="sync,async")
    p.add_argument("--captures", default="off,on")
    p.add_argument("--calls", type=int, default=20, help="calls per size per round (instructions: per region)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--no-instructions", action="store_true")
    p.add_argument("--no-after", action="store_true", help="no callgrind count of the caller's thread after the last chunk")
    p.add_argument("--no-timed", action="store_true")
    p.add_argument("--quick", action="store_true", help="1 round, 3 calls, sizes 0,1,10")
    p.add_argument("--out", default="")
    p.add_argument("--src", default="", help="another steer source tree (its src/ folder) for the steer workers")
    # worker-side
    p.add_argument("--worker", default="")
    p.add_argument("--provider", default="openai")
    p.add_argument("--mode", default="sync")
    p.add_argument("--capture", default="off")
    p.add_argument("--count", type=int, default=None)
    p.add_argument("--after", action="store_true", help="with --count: count the ends of streams read to their last chunk")
    a = p.parse_args(argv)
    a.sizes = [int(s) for s in str(a.sizes).split(",") if s != ""]
    if a.worker:
        return worker_main(a)
    if a.quick:
        a.rounds, a.calls, a.sizes = 1, 3, [0, 1, 10]
    from contenders import CONTENDERS

    names = [n for n in a.contenders.split(",") if n]
    results: Dict[str, Any] = {"argv": sys.argv[1:], "sizes": a.sizes, "instructions": {}, "after": {}, "timed": {}}
    for provider in a.providers.split(","):
        runnable = [n for n in names if provider in CONTENDERS[n].providers and _importable(n)]
        for capture in a.captures.split(","):
            if not a.no_instructions:
                results["instructions"][f"{provider}/{capture}"] = {
                    n: count_instructions(a, n, provider, capture) for n in runnable}
                print(f"instructions {provider}/{capture} done", file=sys.stderr, flush=True)
            if not a.no_after and any(s > 0 for s in a.sizes):
                for mode in a.modes.split(","):
                    results["after"][f"{provider}/{mode}/{capture}"] = {
                        n: count_after_instructions(a, n, provider, mode, capture) for n in runnable}
                    print(f"after the last chunk {provider}/{mode}/{capture} done", file=sys.stderr, flush=True)
            if not a.no_timed:
                for mode in a.modes.split(","):
                    results["timed"][f"{provider}/{mode}/capture {capture}"] = timed(a, provider, mode, capture, runnable)
                    print(f"timed {provider}/{mode}/{capture} done", file=sys.stderr, flush=True)
    md = report(results, a)
    print(md)
    out = Path(a.out) if a.out else HERE / "results" / time.strftime("percall-%Y%m%d-%H%M%S", time.gmtime())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    out.with_suffix(".md").write_text(md)
    return 0


def _importable(name: str) -> bool:
    """A peer's package is only in bench/.venv-peers: elsewhere it is left out, not failed."""
    from contenders import CONTENDERS
    import importlib.metadata as md

    for dist in CONTENDERS[name].dists:
        try:
            md.version(dist)
        except md.PackageNotFoundError:
            return dist == "steer"  # steer is installed editable where this runs
    return True


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Per-chunk overhead of LLM-observability instrumentations on STREAMING openai and anthropic SDK calls.

    python peers.py --chunks 1000 --streams 100 --contenders bare,steer,otel-official,openllmetry,openlit,openinference

Adapted from the team's shared peers harness (shared/bench/peers.py): same method, plus process CPU
time per stream (all threads), an Anthropic Messages workload (``--providers openai,anthropic``), and
the streams of ``bench/workload.py`` (the ones ``bench/overhead.py`` measures). See bench/README.md.

Every contender runs in its own long-lived worker subprocess (so monkey-patches never meet). The
parent drives the workers in interleaved rounds (bare, A, B, ..., then the next round rotated) so
that machine drift hits every contender alike, then asks each worker for diagnostics (did the span
end, what attributes / metrics / log events did it produce, what happens on an early ``break``) and
finally runs a leak check in fresh workers. Results: a table on stdout and a JSON file.

Contenders live in contenders.py; adding one is one decorated function (see README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _p in (HERE, HERE.parent):  # contenders.py here; workload.py (shared with overhead.py) one up
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from contenders import CONTENDERS, DEFAULT_CONTENDERS, Ctx, Telemetry  # noqa: E402
from workload import PROMPT, PROMPT_TOKENS, WORKLOADS  # noqa: E402

BASE_DISTS = ["openai", "anthropic", "httpx", "httpx2", "opentelemetry-api", "opentelemetry-sdk", "wrapt"]

TTFT_RE = re.compile(
    r"ttft|time_to_first|first_token|first_chunk|completion_start|time_per_output|time_between|"
    r"tbt|streaming_time|time_to_generate",
    re.I,
)
USAGE_RE = re.compile(r"usage|token", re.I)


# ==================================================================================================
# Worker side (runs inside the contender's own subprocess)
# ==================================================================================================


def _dist_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _short(v, n: int = 100):
    if isinstance(v, (list, tuple)):
        v = list(v)
    s = repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."


def _pct(values, q: float):
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


class Worker:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.name = a.worker
        self.mode = a.mode
        self.provider = a.provider
        self.spec = CONTENDERS[self.name]
        self.capture = a.capture == "on"
        self.tel: Telemetry | None = None
        t0 = time.perf_counter()
        ctx = Ctx(capture_content=self.capture, provider=self.provider)
        if self.spec.instrumented:
            self.tel = Telemetry()
            ctx.tracer_provider = self.tel.tracer_provider
            ctx.meter_provider = self.tel.meter_provider
            ctx.logger_provider = self.tel.logger_provider
        self.spec.setup(ctx)
        self.setup_s = time.perf_counter() - t0
        self.notes = ctx.notes

        self.stream = WORKLOADS[self.provider](a.chunks, seed=a.seed)
        self.kw = {}
        self.expected_chunks = self.stream.chunks_yielded
        self.loop = asyncio.new_event_loop() if self.mode == "async" else None
        self.client = self._make_client(self.stream)
        self.gaps: list[int] = []

        # Correctness: the instrumented stream must deliver exactly what the server sent.
        texts, n = self._consume_collect(self.client)
        self.correct = {
            "chunks": n,
            "expected_chunks": self.expected_chunks,
            "text_ok": "".join(texts) == self.stream.text,
        }
        if self.tel:
            self.tel.clear()
        for _ in range(a.warmup):
            self._run_batch(1, record=False)
        if self.tel:
            self.tel.clear()
        gc.collect()

        versions = {d: _dist_version(d) for d in BASE_DISTS + list(self.spec.dists)}
        self.info = {
            "contender": self.name,
            "mode": self.mode,
            "provider": self.provider,
            "capture_content": self.capture,
            "setup_s": round(self.setup_s, 3),
            "versions": versions,
            "notes": self.notes,
            "correctness": self.correct,
            "description": self.spec.description,
            "pid": os.getpid(),
        }

    # ---------------------------------------------------------------- helpers
    def _make_client(self, stream):
        if stream.provider == "openai":
            stream.http_lib = self.a.http_lib
        if self.loop is None:
            return stream.client(False)

        async def mk():
            return stream.client(True, yield_per_event=not self.a.no_async_yield)

        return self.loop.run_until_complete(mk())

    def _create_for(self, client, stream=None):
        """``create(**kw)`` for the provider's streaming call (openai chat / anthropic messages)."""
        work = stream or self.stream
        return lambda **_: work.call(client)

    def _consume_collect(self, client):
        texts = []
        n = 0
        text_of = self.stream.chunk_text
        if self.loop is None:
            for ch in self.stream.call(client):
                n += 1
                texts.append(text_of(ch))
            return texts, n

        async def go():
            nonlocal n
            stream = await self.stream.call(client)
            async for ch in stream:
                n += 1
                texts.append(text_of(ch))

        self.loop.run_until_complete(go())
        return texts, n

    # ---------------------------------------------------------------- timed loop
    def _run_batch(self, n: int, record: bool = True):
        pc, cpu = time.perf_counter_ns, time.process_time_ns
        create = self._create_for(self.client)
        kw = self.kw
        totals, cpus, ttfc, counts, tails = [], [], [], [], []
        all_stamps = []
        if self.loop is None:
            for _ in range(n):
                stamps: list[int] = []
                ap = stamps.append
                c0 = cpu()
                t0 = pc()
                for _chunk in create(**kw):
                    ap(pc())
                t1 = pc()
                cpus.append(cpu() - c0)
                totals.append(t1 - t0)
                ttfc.append(stamps[0] - t0 if stamps else 0)
                tails.append(t1 - stamps[-1] if stamps else 0)
                counts.append(len(stamps))
                all_stamps.append(stamps)
        else:

            async def go():
                for _ in range(n):
                    stamps: list[int] = []
                    ap = stamps.append
                    c0 = cpu()
                    t0 = pc()
                    stream = await create(**kw)
                    async for _chunk in stream:
                        ap(pc())
                    t1 = pc()
                    cpus.append(cpu() - c0)
                    totals.append(t1 - t0)
                    ttfc.append(stamps[0] - t0 if stamps else 0)
                    tails.append(t1 - stamps[-1] if stamps else 0)
                    counts.append(len(stamps))
                    all_stamps.append(stamps)

            self.loop.run_until_complete(go())
        if record:
            for stamps in all_stamps:
                self.gaps.extend(b - a for a, b in zip(stamps, stamps[1:]))
        if self.tel:
            self.tel.clear()
        gc.collect()
        return {"total_ns": totals, "cpu_ns": cpus, "ttfc_ns": ttfc, "tail_ns": tails, "chunks": counts}

    # ---------------------------------------------------------------- diagnostics
    def _telemetry_summary(self) -> dict:
        tel = self.tel
        if tel is None:
            return {"instrumented": False}
        spans = tel.finished_spans()
        logs = tel.logs()
        out_marker = self.stream.text[:40]
        in_marker = PROMPT[:40]
        found = {"input": False, "output": False}

        def scan(v):
            if isinstance(v, str):
                if in_marker in v:
                    found["input"] = True
                if out_marker in v:
                    found["output"] = True
            elif isinstance(v, dict):
                for x in v.values():
                    scan(x)
            elif isinstance(v, (list, tuple)):
                for x in v:
                    scan(x)

        span_infos = []
        ttft_keys, usage_keys = set(), set()
        usage_ok = False
        for s in spans:
            attrs = dict(s.attributes or {})
            for k, v in attrs.items():
                scan(v)
                if TTFT_RE.search(k):
                    ttft_keys.add(k)
                if USAGE_RE.search(k) and isinstance(v, int) and not isinstance(v, bool):
                    usage_keys.add(k)
                    if v in (self.stream.completion_tokens, PROMPT_TOKENS):
                        usage_ok = True
            ev = []
            for e in s.events:
                ev.append(e.name)
                if TTFT_RE.search(e.name) or "first token" in e.name.lower():
                    ttft_keys.add(f"event:{e.name}")
                for v in (e.attributes or {}).values():
                    scan(v)
            span_infos.append(
                {
                    "name": s.name,
                    "kind": str(s.kind),
                    "status": str(s.status.status_code),
                    "duration_ms": round((s.end_time - s.start_time) / 1e6, 3) if s.end_time else None,
                    "scope": s.instrumentation_scope.name if s.instrumentation_scope else None,
                    "attributes": {k: _short(v) for k, v in sorted(attrs.items())},
                    "events": ev[:20] + ([f"... {len(ev) - 20} more"] if len(ev) > 20 else []),
                    "n_events": len(ev),
                }
            )
        log_infos = []
        for lr in logs:
            rec = getattr(lr, "log_record", lr)
            body = getattr(rec, "body", None)
            attrs = dict(getattr(rec, "attributes", None) or {})
            scan(body)
            for v in attrs.values():
                scan(v)
            log_infos.append(
                {
                    "event_name": getattr(rec, "event_name", None) or attrs.get("event.name"),
                    "attributes": sorted(attrs),
                    "body": _short(body, 160),
                }
            )
        metric_infos = []
        md = tel.metrics_data()
        if md is not None:
            for rm in md.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        pts = list(m.data.data_points)
                        keys = sorted({k for p in pts for k in (p.attributes or {})})
                        metric_infos.append(
                            {
                                "name": m.name,
                                "unit": m.unit,
                                "type": type(m.data).__name__,
                                "points": len(pts),
                                "attribute_keys": keys,
                                "scope": sm.scope.name,
                            }
                        )
                        if TTFT_RE.search(m.name):
                            ttft_keys.add(f"metric:{m.name}")
        return {
            "instrumented": True,
            "n_spans": len(spans),
            "spans": span_infos,
            "n_logs": len(logs),
            "logs": log_infos[:12],
            "metrics": metric_infos,
            "ttft_like": sorted(ttft_keys),
            "usage_attrs": sorted(usage_keys),
            "usage_matches_stream": usage_ok,
            "content_captured": found,
        }

    def _early_break(self) -> dict:
        """Break after 10 chunks; see when (if ever) the contender's span ends.

        Also run for "bare" (span counts are then None) to check that the stream API itself works the
        same way (e.g. ``await stream.close()``) once wrapped.
        """
        tel = self.tel
        create = self._create_for(self.client)
        kw = self.kw
        res = {}

        def count():
            return len(tel.finished_spans()) if tel is not None else None

        if self.loop is None:

            def v_del_gc():
                stream = create(**kw)
                for i, _ch in enumerate(stream):
                    if i >= 9:
                        break
                r = {"after_break": count()}
                del stream, _ch
                r["after_del"] = count()
                gc.collect()
                r["after_gc"] = count()
                return r

            def v_close():
                stream = create(**kw)
                for i, _ch in enumerate(stream):
                    if i >= 9:
                        break
                r = {"after_break": count()}
                stream.close()
                r["after_close"] = count()
                del stream, _ch
                gc.collect()
                r["after_gc"] = count()
                return r

            def v_with():
                with create(**kw) as stream:
                    for i, _ch in enumerate(stream):
                        if i >= 9:
                            break
                    r = {"after_break": count()}
                r["after_exit"] = count()
                del stream, _ch
                gc.collect()
                r["after_gc"] = count()
                return r

            def v_with_full():
                n = 0
                with create(**kw) as stream:
                    for _ch in stream:
                        n += 1
                r = {"chunks": n, "after_exit": count()}
                if tel is not None:
                    r["usage_attr_on_span"] = any(
                        USAGE_RE.search(k) and "request" not in k for s in tel.finished_spans() for k in (s.attributes or {})
                    )
                return r

        else:

            async def settle():
                for _ in range(5):
                    await asyncio.sleep(0)

            async def v_del_gc():
                stream = await create(**kw)
                i = 0
                async for _ch in stream:
                    i += 1
                    if i >= 10:
                        break
                r = {"after_break": count()}
                del stream, _ch
                r["after_del"] = count()
                gc.collect()
                await settle()
                r["after_gc"] = count()
                return r

            async def v_close():
                stream = await create(**kw)
                i = 0
                async for _ch in stream:
                    i += 1
                    if i >= 10:
                        break
                r = {"after_break": count()}
                await stream.close()
                r["after_close"] = count()
                del stream, _ch
                gc.collect()
                await settle()
                r["after_gc"] = count()
                return r

            async def v_with():
                async with await create(**kw) as stream:
                    i = 0
                    async for _ch in stream:
                        i += 1
                        if i >= 10:
                            break
                    r = {"after_break": count()}
                r["after_exit"] = count()
                del stream, _ch
                gc.collect()
                await settle()
                r["after_gc"] = count()
                return r

            async def v_with_full():
                n = 0
                async with await create(**kw) as stream:
                    async for _ch in stream:
                        n += 1
                r = {"chunks": n, "after_exit": count()}
                if tel is not None:
                    r["usage_attr_on_span"] = any(
                        USAGE_RE.search(k) and "request" not in k for s in tel.finished_spans() for k in (s.attributes or {})
                    )
                return r

        variants = {"break_del_gc": v_del_gc, "break_close": v_close, "break_with": v_with, "with_full": v_with_full}
        for k, fn in variants.items():
            if tel is not None:
                tel.clear()
            gc.collect()
            try:
                res[k] = fn() if self.loop is None else self.loop.run_until_complete(fn())
            except Exception as e:  # noqa: BLE001
                res[k] = {"error": f"{type(e).__name__}: {e}"}
        if tel is not None:
            tel.clear()
        return res

    def diag(self) -> dict:
        if self.tel is not None:
            self.tel.clear()
        gc.collect()
        self._consume_collect(self.client)
        if self.tel is not None:
            try:
                self.tel.meter_provider.force_flush()
            except Exception:  # noqa: BLE001
                pass
        summary = self._telemetry_summary()
        summary["early_break"] = self._early_break()
        return summary

    # ---------------------------------------------------------------- leak check
    def leak(self, streams: int, chunks: int, break_after: int) -> dict:
        import collections
        import resource

        import psutil

        small = WORKLOADS[self.provider](chunks, seed=self.a.seed + 1)
        client = self._make_client(small)
        create = self._create_for(client, small)
        kw = self.kw
        tel = self.tel
        proc = psutil.Process()

        def full_sync():
            for _ in create(**kw):
                pass

        def brk_sync():
            s = create(**kw)
            for i, _ in enumerate(s):
                if i + 1 >= break_after:
                    break
            del s

        async def full_async():
            s = await create(**kw)
            async for _ in s:
                pass

        async def brk_async():
            s = await create(**kw)
            i = 0
            async for _ in s:
                i += 1
                if i >= break_after:
                    break
            del s

        def run_many(kind: str, n: int, clear_every: int = 100) -> int:
            ended = 0
            if self.loop is None:
                fn = full_sync if kind == "full" else brk_sync
                for i in range(n):
                    fn()
                    if tel is not None and (i + 1) % clear_every == 0:
                        ended += len(tel.finished_spans())
                        tel.clear()
            else:
                fn = full_async if kind == "full" else brk_async

                async def go():
                    nonlocal ended
                    for i in range(n):
                        await fn()
                        if tel is not None and (i + 1) % clear_every == 0:
                            ended += len(tel.finished_spans())
                            tel.clear()
                    for _ in range(50):
                        await asyncio.sleep(0)

                self.loop.run_until_complete(go())
            gc.collect()
            if tel is not None:
                ended += len(tel.finished_spans())
                tel.clear()
            return ended

        def snapshot():
            gc.collect()
            objs = gc.get_objects()
            types = collections.Counter(type(o).__name__ for o in objs)
            return {
                "rss": proc.memory_info().rss,
                "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "objects": len(objs),
                "types": types,
            }

        def delta(a, b, n):
            grown = (b["types"] - a["types"]).most_common(6)
            return {
                "streams": n,
                "rss_growth_kib": round((b["rss"] - a["rss"]) / 1024),
                "peak_rss_growth_kib": b["peak_kib"] - a["peak_kib"],
                "gc_objects_growth": b["objects"] - a["objects"],
                "gc_objects_growth_per_stream": round((b["objects"] - a["objects"]) / n, 3),
                "top_growing_types": grown,
            }

        out = {"chunks_per_stream": chunks, "break_after": break_after}
        run_many("full", 100)
        run_many("break", 50)
        t0 = time.perf_counter()
        s0 = snapshot()
        ended = run_many("full", streams)
        s1 = snapshot()
        out["full"] = delta(s0, s1, streams) | {"spans_ended": ended if tel else None}
        ended_b = run_many("break", streams)
        s2 = snapshot()
        out["break"] = delta(s1, s2, streams) | {"spans_ended": ended_b if tel else None}
        out["rss_start_mib"] = round(s0["rss"] / 2**20, 1)
        out["seconds"] = round(time.perf_counter() - t0, 2)
        return out

    # ---------------------------------------------------------------- dispatcher
    def handle(self, cmd: dict) -> dict:
        c = cmd["cmd"]
        if c == "run":
            return self._run_batch(int(cmd["n"]))
        if c == "gaps":
            g = self.gaps
            return {
                "gap_ns": {
                    "n": len(g),
                    "p50": _pct(g, 0.5),
                    "mean": statistics.fmean(g) if g else None,
                    "p90": _pct(g, 0.9),
                    "p99": _pct(g, 0.99),
                    "max": max(g) if g else None,
                }
            }
        if c == "diag":
            return {"diag": self.diag()}
        if c == "leak":
            return {"leak": self.leak(int(cmd["streams"]), int(cmd["chunks"]), int(cmd["break_after"]))}
        if c == "exit":
            return {}
        raise ValueError(f"unknown command {c!r}")


def worker_main(a: argparse.Namespace) -> int:
    # Keep the protocol channel private: whatever a library prints goes to stderr (the log file).
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)

    def send(obj) -> None:
        proto.write(json.dumps(obj, default=str) + "\n")
        proto.flush()

    try:
        w = Worker(a)
    except BaseException:  # noqa: BLE001
        send({"ok": False, "error": traceback.format_exc()[-3000:]})
        return 1
    send({"ok": True, "info": w.info})
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        try:
            res = w.handle(cmd)
            send({"ok": True, **res})
        except BaseException:  # noqa: BLE001
            send({"ok": False, "error": traceback.format_exc()[-3000:]})
        if cmd.get("cmd") == "exit":
            break
    return 0


# ==================================================================================================
# Parent side (orchestrator)
# ==================================================================================================


class WorkerProc:
    def __init__(self, name: str, provider: str, mode: str, capture: str, chunks: int, a: argparse.Namespace,
                 log_path: Path, hash_seed: int = 0):
        self.name = name
        self.log_path = log_path
        self.log = open(log_path, "w")
        cmd = [
            sys.executable,
            str(HERE / "peers.py"),
            "--worker", name,
            "--provider", provider,
            "--mode", mode,
            "--capture", capture,
            "--chunks", str(chunks),
            "--warmup", str(a.warmup),
            "--seed", str(a.seed),
            "--http-lib", a.http_lib,
        ] + (["--no-async-yield"] if a.no_async_yield else [])
        # One hash seed per worker index, the same for every contender: a process's speed moves with its
        # memory layout by a few µs per chunk, so each contender runs in `--processes` of them.
        env = dict(os.environ, PYTHONHASHSEED=str(hash_seed))
        self.p = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1, env=env
        )
        self.info = None
        self.error = None

    def _read(self) -> dict:
        line = self.p.stdout.readline()
        if not line:
            self.p.wait(timeout=10)
            tail = self.log_path.read_text()[-2000:] if self.log_path.exists() else ""
            return {"ok": False, "error": f"worker exited with code {self.p.returncode}\n{tail}"}
        return json.loads(line)

    def ready(self) -> bool:
        r = self._read()
        if r.get("ok"):
            self.info = r["info"]
            return True
        self.error = r.get("error")
        return False

    def call(self, **cmd) -> dict:
        try:
            self.p.stdin.write(json.dumps(cmd) + "\n")
            self.p.stdin.flush()
        except BrokenPipeError:
            return {"ok": False, "error": "worker is gone (broken pipe)"}
        return self._read()

    def close(self) -> None:
        try:
            if self.p.poll() is None:
                self.call(cmd="exit")
                self.p.wait(timeout=15)
        except Exception:  # noqa: BLE001
            self.p.kill()
        self.log.close()


def _stats(values):
    return {
        "median": statistics.median(values),
        "p90": _pct(values, 0.9),
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
    }


def run_scenario(provider: str, mode: str, capture: str, names, a, log_dir: Path) -> dict:
    label = f"{provider}/{mode}/capture-{capture}"
    names = [n for n in names if provider in CONTENDERS[n].providers]
    print(f"\n=== scenario {label}: starting {len(names)} workers ...", flush=True)
    t0 = time.perf_counter()
    procs = {n: [WorkerProc(n, provider, mode, capture, a.chunks, a, log_dir / f"{provider}-{mode}-{capture}-{n}-p{i}.log", i)
                 for i in range(a.processes)] for n in names}
    result = {"provider": provider, "mode": mode, "capture_content": capture == "on", "contenders": {}, "errors": {}}
    alive = []
    for n, wps in procs.items():
        failed = next((wp for wp in wps if not wp.ready()), None)
        if failed is None:
            wp = wps[0]
            alive.append(n)
            result["contenders"][n] = {"info": wp.info, "total_ns": [], "cpu_ns": [], "ttfc_ns": [], "tail_ns": [],
                                       "round_medians_ns": [], "round_cpu_medians_ns": [],
                                       "process_cpu_ns": [[] for _ in wps]}
            for w in wps:
                c = w.info["correctness"]
                if c["chunks"] != c["expected_chunks"] or not c["text_ok"]:
                    print(f"  ! {n}: stream altered by instrumentation: {c}", flush=True)
        else:
            result["errors"][n] = failed.error
            print(f"  ! {n} failed to start: {(failed.error or '').strip().splitlines()[-1:]}", flush=True)
            for w in wps:
                w.close()
    print(f"  workers ready in {time.perf_counter() - t0:.1f}s; {a.rounds} rounds x {a.batch} streams "
          f"x {len(alive)} contenders", flush=True)

    t1 = time.perf_counter()
    for r in range(a.rounds):
        k = r % max(1, len(alive))
        order = alive[k:] + alive[:k]
        for n in list(order):
            if n not in alive:
                continue
            worker = r % len(procs[n])  # round r: worker r mod processes of every contender (same hash seed)
            res = procs[n][worker].call(cmd="run", n=a.batch)
            if not res.get("ok"):
                result["errors"][n] = res.get("error")
                print(f"  ! {n} failed in round {r}: {res.get('error', '')[-300:]}", flush=True)
                alive.remove(n)
                continue
            c = result["contenders"][n]
            c["total_ns"] += res["total_ns"]
            c["cpu_ns"] += res["cpu_ns"]
            c["round_cpu_medians_ns"].append(statistics.median(res["cpu_ns"]))
            c["process_cpu_ns"][worker] += res["cpu_ns"]
            c["ttfc_ns"] += res["ttfc_ns"]
            c["tail_ns"] += res["tail_ns"]
            c["round_medians_ns"].append(statistics.median(res["total_ns"]))
            bad = [x for x in res["chunks"] if x != procs[n][worker].info["correctness"]["expected_chunks"]]
            if bad:
                c.setdefault("chunk_count_mismatch", 0)
                c["chunk_count_mismatch"] += len(bad)
        print(f"  round {r + 1}/{a.rounds} done ({time.perf_counter() - t1:.0f}s)", flush=True)
    for n in alive:  # gaps and diagnostics from the first worker of each contender
        g = procs[n][0].call(cmd="gaps")
        if g.get("ok"):
            result["contenders"][n]["gap_ns"] = g["gap_ns"]
        if not a.no_diag:
            d = procs[n][0].call(cmd="diag")
            if d.get("ok"):
                result["contenders"][n]["diag"] = d["diag"]
            else:
                result["contenders"][n]["diag_error"] = d.get("error")
    for wps in procs.values():
        for wp in wps:
            wp.close()
    for n in list(result["contenders"]):
        if n in result["errors"] and not result["contenders"][n]["total_ns"]:
            del result["contenders"][n]
    summarize_scenario(result)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print_scenario(label, result)
    return result


def summarize_scenario(result: dict) -> None:
    cs = result["contenders"]
    base = cs.get("bare")
    for n, c in cs.items():
        if not c["total_ns"]:
            continue
        chunks = c["info"]["correctness"]["expected_chunks"]
        tot = _stats(c["total_ns"])
        per_chunk = {k: v / chunks for k, v in tot.items()}
        cpu = _stats(c["cpu_ns"])
        c["summary"] = {
            "streams": len(c["total_ns"]),
            "chunks_per_stream": chunks,
            "cpu_per_chunk_us": {k: round(v / chunks / 1e3, 3) for k, v in cpu.items()},
            "stream_ms": {k: round(v / 1e6, 3) for k, v in tot.items()},
            "per_chunk_us": {k: round(v / 1e3, 3) for k, v in per_chunk.items()},
            "ttfc_us_median": round(statistics.median(c["ttfc_ns"]) / 1e3, 1),
            "tail_us_median": round(statistics.median(c["tail_ns"]) / 1e3, 1),
        }
        if "gap_ns" in c and c["gap_ns"]["p50"] is not None:
            c["summary"]["gap_us"] = {
                k: round(c["gap_ns"][k] / 1e3, 2) for k in ("p50", "mean", "p90", "p99", "max")
            }
        if base and base.get("total_ns"):
            b_med = statistics.median(base["total_ns"])
            c_med = statistics.median(c["total_ns"])
            c["summary"]["overhead_us_per_chunk"] = round((c_med - b_med) / chunks / 1e3, 3)
            c["summary"]["ratio_vs_bare"] = round(c_med / b_med, 3)
            b_cpu, c_cpu = statistics.median(base["cpu_ns"]), statistics.median(c["cpu_ns"])
            c["summary"]["cpu_overhead_us_per_chunk"] = round((c_cpu - b_cpu) / chunks / 1e3, 3)
            c["summary"]["cpu_ratio_vs_bare"] = round(c_cpu / b_cpu, 3)
            cdiffs = [(y - x) / chunks / 1e3 for x, y in zip(base["round_cpu_medians_ns"], c["round_cpu_medians_ns"])]
            if cdiffs:
                c["summary"]["cpu_overhead_us_per_chunk_paired"] = {
                    "median": round(statistics.median(cdiffs), 3), "min": round(min(cdiffs), 3), "max": round(max(cdiffs), 3)}
            c["summary"]["ttfc_overhead_us"] = round(
                (statistics.median(c["ttfc_ns"]) - statistics.median(base["ttfc_ns"])) / 1e3, 1
            )
            c["summary"]["tail_overhead_us"] = round(
                (statistics.median(c["tail_ns"]) - statistics.median(base["tail_ns"])) / 1e3, 1
            )
            bg, cg = base.get("gap_ns") or {}, c.get("gap_ns") or {}
            if bg.get("p50") is not None and cg.get("p50") is not None:
                c["summary"]["gap_p50_overhead_us"] = round((cg["p50"] - bg["p50"]) / 1e3, 2)
                c["summary"]["gap_mean_overhead_us"] = round((cg["mean"] - bg["mean"]) / 1e3, 2)
            # Paired per-round estimate (same round => same machine state); spread shows the noise.
            rb, rc = base["round_medians_ns"], c["round_medians_ns"]
            diffs = [(y - x) / chunks / 1e3 for x, y in zip(rb, rc)]
            if diffs:
                c["summary"]["overhead_us_per_chunk_paired"] = {
                    "median": round(statistics.median(diffs), 3),
                    "min": round(min(diffs), 3),
                    "max": round(max(diffs), 3),
                }


def _fmt(v, nd=1):
    return "-" if v is None else f"{v:.{nd}f}"


def print_scenario(label: str, result: dict) -> None:
    cs = result["contenders"]
    print(f"\n--- {label}: per stream = create() + consume every chunk (median / p90 over streams);"
          f"\n    per chunk = per stream / chunks yielded; ovh = median(contender) - median(bare), per chunk;"
          f"\n    [min..max] = the same difference computed within each interleaved round")
    print(f"{'contender':<15}{'ms/stream':>10}{'p90':>8}{'us/chunk':>10}{'p90':>8}{'ovh us/chunk':>14}"
          f"{'[round min..max]':>18}{'ratio':>7}{'CPU us/chunk':>13}{'CPU ovh':>9}{'CPU ratio':>10}")
    for n, c in cs.items():
        sm = c.get("summary")
        if not sm:
            continue
        pr = sm.get("overhead_us_per_chunk_paired")
        rng = f"[{pr['min']:.1f}..{pr['max']:.1f}]" if pr else ""
        print(
            f"{n:<15}{sm['stream_ms']['median']:>10.2f}{sm['stream_ms']['p90']:>8.2f}"
            f"{sm['per_chunk_us']['median']:>10.2f}{sm['per_chunk_us']['p90']:>8.2f}"
            f"{_fmt(sm.get('overhead_us_per_chunk'), 2):>14}{rng:>18}{_fmt(sm.get('ratio_vs_bare'), 3):>7}"
            f"{sm['cpu_per_chunk_us']['median']:>13.2f}{_fmt(sm.get('cpu_overhead_us_per_chunk'), 2):>9}"
            f"{_fmt(sm.get('cpu_ratio_vs_bare'), 3):>10}"
        )
    for n, e in result["errors"].items():
        last = (e or "").strip().splitlines()[-1:] or ["?"]
        print(f"{n:<15}FAILED: {last[0][:150]}")
    print("  where the time goes (us): TTFC = create() to first chunk; gap = between consecutive chunks;"
          "\n  tail = last chunk to end of iteration (span end + export); '+' = minus bare")
    print(f"{'contender':<15}{'TTFC':>8}{'+TTFC':>8}{'gap p50':>9}{'+p50':>7}{'gap mean':>9}{'+mean':>7}"
          f"{'gap p99':>9}{'tail':>8}{'+tail':>8}")
    for n, c in cs.items():
        sm = c.get("summary")
        if not sm:
            continue
        g = sm.get("gap_us") or {}
        print(
            f"{n:<15}{_fmt(sm.get('ttfc_us_median'), 0):>8}{_fmt(sm.get('ttfc_overhead_us'), 0):>8}"
            f"{_fmt(g.get('p50')):>9}{_fmt(sm.get('gap_p50_overhead_us')):>7}"
            f"{_fmt(g.get('mean')):>9}{_fmt(sm.get('gap_mean_overhead_us')):>7}{_fmt(g.get('p99')):>9}"
            f"{_fmt(sm.get('tail_us_median'), 0):>8}{_fmt(sm.get('tail_overhead_us'), 0):>8}"
        )


def _ebs(v: dict) -> str:
    if "error" in v:
        return "ERROR " + v["error"][:70]
    return "/".join(f"{k.replace('after_', '')}={x}" for k, x in v.items())


def print_diag(results: dict) -> None:
    print("\n--- telemetry produced per contender (diag stream after the timed rounds)")
    rows = {}
    for sc in results["scenarios"]:
        for n, c in sc["contenders"].items():
            d = c.get("diag")
            if not d:
                continue
            r = rows.setdefault((n, f"{sc.get('provider', 'openai')}/{sc['mode']}"), {"content": {}, "d": d})
            if d.get("instrumented"):
                r["content"][sc["capture_content"]] = d["content_captured"]
                r["spans_by_capture"] = r.get("spans_by_capture", {}) | {
                    sc["capture_content"]: [(s["n_events"], len(s["attributes"])) for s in d["spans"]]
                }
    for (n, mode), r in rows.items():
        d = r["d"]
        eb = d.get("early_break", {})
        ebline = "; ".join(f"{k}: {_ebs(v)}" for k, v in eb.items())
        if not d.get("instrumented"):
            print(f"* {n} [{mode}]: (no telemetry) stream API checks: {ebline}")
            continue
        spans = ", ".join(
            f"'{s['name']}' status={s['status'].split('.')[-1]} attrs={len(s['attributes'])} events={s['n_events']}"
            + (f" ({s['events'][0]}...)" if s["events"] else "")
            for s in d["spans"]
        ) or "NONE"
        metrics = ", ".join(m["name"] for m in d["metrics"]) or "none"
        cap = "; ".join(
            f"capture {'on' if k else 'off'}: input={v['input']} output={v['output']}"
            for k, v in sorted(r["content"].items(), reverse=True)
        )
        sbc = r.get("spans_by_capture", {})
        if len(sbc) > 1:
            cap += "  [(events, attrs) per span: " + ", ".join(
                f"{'on' if k else 'off'}={v}" for k, v in sorted(sbc.items(), reverse=True)) + "]"
        print(f"* {n} [{mode}]: {d['n_spans']} span(s): {spans}")
        print(f"    metrics: {metrics}; log records: {d['n_logs']}"
              + (f" ({d['logs'][0]['event_name']})" if d["logs"] else ""))
        print(f"    TTFT-like: {', '.join(d['ttft_like']) or 'none'}")
        print(f"    usage attrs: {', '.join(d['usage_attrs']) or 'none'} (values match stream usage: "
              f"{d['usage_matches_stream']})")
        print(f"    content: {cap}")
        print(f"    early break (finished spans): {ebline}")


def run_leaks(names, a, log_dir: Path) -> dict:
    out = {}
    for mode in a.leak_modes:
        for n in names:
            print(f"  leak check {mode} {n} ...", end="", flush=True)
            wp = WorkerProc(n, "openai", mode, "on", a.leak_chunks, a, log_dir / f"leak-{mode}-{n}.log")
            if not wp.ready():
                out.setdefault(mode, {})[n] = {"error": wp.error}
                print(" failed to start", flush=True)
                wp.close()
                continue
            r = wp.call(cmd="leak", streams=a.leak_streams, chunks=a.leak_chunks, break_after=a.leak_break_after)
            wp.close()
            out.setdefault(mode, {})[n] = r.get("leak") if r.get("ok") else {"error": r.get("error")}
            if r.get("ok"):
                L = r["leak"]
                print(f" {L['seconds']}s", flush=True)
            else:
                print(" error", flush=True)
    return out


def print_leaks(leaks: dict, a) -> None:
    if not leaks:
        return
    print(f"\n--- leak check: {a.leak_streams} streams of {a.leak_chunks} chunks consumed fully, then "
          f"{a.leak_streams} broken after {a.leak_break_after} chunks (del, no close); capture on")
    print(f"{'mode':<6}{'contender':<21}{'full: rss KiB':>14}{'peak KiB':>10}{'objs/stream':>12}{'spans':>7}"
          f"{'| break: rss KiB':>17}{'peak KiB':>10}{'objs/stream':>12}{'spans':>7}")
    for mode, per in leaks.items():
        for n, L in per.items():
            if "error" in L:
                print(f"{mode:<6}{n:<21}ERROR {str(L['error']).strip().splitlines()[-1][:100]}")
                continue
            f, b = L["full"], L["break"]
            print(
                f"{mode:<6}{n:<21}{f['rss_growth_kib']:>14}{f['peak_rss_growth_kib']:>10}"
                f"{f['gc_objects_growth_per_stream']:>12}{_fmt(f['spans_ended'], 0):>7}"
                f"{b['rss_growth_kib']:>17}{b['peak_rss_growth_kib']:>10}"
                f"{b['gc_objects_growth_per_stream']:>12}{_fmt(b['spans_ended'], 0):>7}"
            )


def markdown_report(results: dict) -> str:
    """Markdown tables (for README.md) from a results JSON."""
    scs = results["scenarios"]
    names = []
    for sc in scs:
        for n in sc["contenders"]:
            if n not in names:
                names.append(n)
    cols = [f"{sc.get('provider', 'openai')} {sc['mode']}, capture {'on' if sc['capture_content'] else 'off'}" for sc in scs]
    lines = ["Median per-chunk overhead vs bare, wall clock, us/chunk (ratio of median stream time to bare):", ""]
    lines.append("| contender | " + " | ".join(cols) + " |")
    lines.append("|---|" + "---:|" * len(cols))
    for n in names:
        cells = []
        for sc in scs:
            c = sc["contenders"].get(n)
            sm = (c or {}).get("summary")
            if n in sc.get("errors", {}) and not sm:
                cells.append("failed")
            elif not sm:
                cells.append("-")
            elif n == "bare":
                cells.append(f"{sm['per_chunk_us']['median']:.1f} us/chunk (floor)")
            else:
                cells.append(f"{sm.get('overhead_us_per_chunk', 0):+.1f} ({sm.get('ratio_vs_bare', 0):.2f}x)")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", "The same in process CPU time (all threads), us/chunk (ratio of median CPU time per stream to bare):", ""]
    lines.append("| contender | " + " | ".join(cols) + " |")
    lines.append("|---|" + "---:|" * len(cols))
    for n in names:
        cells = []
        for sc in scs:
            sm = (sc["contenders"].get(n) or {}).get("summary")
            if n in sc.get("errors", {}) and not sm:
                cells.append("failed")
            elif not sm or "cpu_per_chunk_us" not in sm:
                cells.append("-")
            elif n == "bare":
                cells.append(f"{sm['cpu_per_chunk_us']['median']:.1f} us/chunk (floor)")
            else:
                cells.append(f"{sm.get('cpu_overhead_us_per_chunk', 0):+.1f} ({sm.get('cpu_ratio_vs_bare', 0):.2f}x)")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", "CPU overhead from the least disturbed stream of each contender (min over streams of CPU time per "
              "stream, minus bare's; us/chunk): on a busy machine the figure least moved by other load:", ""]
    lines.append("| contender | " + " | ".join(cols) + " |")
    lines.append("|---|" + "---:|" * len(cols))
    for n in names:
        cells = []
        for sc in scs:
            c, b = sc["contenders"].get(n), sc["contenders"].get("bare")
            if not c or not c.get("cpu_ns") or not b or not b.get("cpu_ns"):
                cells.append("failed" if n in sc.get("errors", {}) else "-")
                continue
            chunks = c["info"]["correctness"]["expected_chunks"]
            if n == "bare":
                cells.append(f"{min(b['cpu_ns']) / chunks / 1e3:.1f} us/chunk (floor)")
            else:
                cells.append(f"{(min(c['cpu_ns']) - min(b['cpu_ns'])) / chunks / 1e3:+.1f}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", "CPU us/chunk of each worker process (median; one per hash seed, the same seeds for every contender; "
              "a process's speed moves with its memory layout):", ""]
    for sc, col in zip(scs, cols):
        per = []
        for n in names:
            c = sc["contenders"].get(n) or {}
            runs = [r for r in c.get("process_cpu_ns") or [] if r]
            if runs:
                chunks = c["info"]["correctness"]["expected_chunks"]
                per.append(f"{n} " + " / ".join(f"{statistics.median(r) / chunks / 1e3:.1f}" for r in runs))
        if per:
            lines.append(f"- {col}: " + "; ".join(per))
    lines += ["", "Where the overhead goes (medians, us; '+' = minus bare): TTFC = create() to first chunk, "
              "gap = between consecutive chunks, tail = last chunk to end of iteration:", ""]
    lines.append("| scenario | contender | +TTFC | +gap p50 | +gap mean | +tail | gap p99 |")
    lines.append("|---|---|---:|---:|---:|---:|---:|")
    for sc, col in zip(scs, cols):
        for n in names:
            sm = (sc["contenders"].get(n) or {}).get("summary")
            if not sm or n == "bare":
                continue
            g = sm.get("gap_us") or {}
            lines.append(
                f"| {col} | {n} | {_fmt(sm.get('ttfc_overhead_us'), 0)} | {_fmt(sm.get('gap_p50_overhead_us'))} | "
                f"{_fmt(sm.get('gap_mean_overhead_us'))} | {_fmt(sm.get('tail_overhead_us'), 0)} | {_fmt(g.get('p99'))} |"
            )
    return "\n".join(lines) + "\n"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", type=int, default=1000, help="content chunks per stream (default 1000)")
    p.add_argument("--streams", type=int, default=100, help="timed streams per contender per scenario")
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds the streams are split into")
    p.add_argument("--warmup", type=int, default=5, help="untimed warm-up streams per worker")
    p.add_argument("--processes", type=int, default=2,
                   help="worker processes per contender, one per hash seed, rotated by round (default 2)")
    p.add_argument("--contenders", default=",".join(DEFAULT_CONTENDERS),
                   help=f"comma list; known: {','.join(CONTENDERS)}")
    p.add_argument("--modes", default="sync,async", help="sync,async")
    p.add_argument("--capture", default="on,off", help="content capture scenarios: on,off")
    p.add_argument("--leak-streams", type=int, default=2000,
                   help="leak check: streams consumed fully, then as many broken early (0 to skip)")
    p.add_argument("--leak-chunks", type=int, default=20, help="leak check: content chunks per stream")
    p.add_argument("--leak-break-after", type=int, default=10, help="leak check: chunks read before break")
    p.add_argument("--leak-modes", default="sync,async", help="modes for the leak check ('' to skip)")
    p.add_argument("--no-diag", action="store_true", help="skip span/metric inspection and early-break tests")
    p.add_argument("--http-lib", default="httpx", choices=["httpx", "httpx2"],
                   help="module providing the http_client + MockTransport (openai>=3 uses httpx2 natively)")
    p.add_argument("--no-async-yield", action="store_true",
                   help="async transport: do not yield to the event loop before each SSE event")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--out", default=None, help="JSON path (default results/peers-<timestamp>.json)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 200 chunks, 10 streams in 2 rounds, 200-stream leak check (~1 min)")
    p.add_argument("--list", action="store_true", help="list the known contenders and exit")
    p.add_argument("--report", metavar="RESULTS.json", help="print the markdown tables of a results file and exit")
    # internal
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="sync", help=argparse.SUPPRESS)
    p.add_argument("--provider", default="openai", help=argparse.SUPPRESS)
    p.add_argument("--providers", default="openai,anthropic", help="workloads: openai (chat completions), anthropic (messages)")
    a = p.parse_args(argv)

    if a.worker:
        return worker_main(a)
    if a.report:
        print(markdown_report(json.loads(Path(a.report).read_text())), end="")
        return 0
    if a.list:
        for n, spec in CONTENDERS.items():
            print(f"{n:<16}{spec.description}")
        return 0
    if a.quick:
        a.chunks, a.streams, a.rounds, a.warmup, a.leak_streams = 200, 10, 2, 2, 200

    names = [n.strip() for n in a.contenders.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown:
        p.error(f"unknown contender(s) {unknown}; known: {list(CONTENDERS)}")
    if "bare" not in names:
        print("note: 'bare' not selected, so no overhead/ratio columns", flush=True)
    a.batch = max(1, a.streams // a.rounds)
    a.leak_modes = [m for m in a.leak_modes.split(",") if m]
    modes = [m for m in a.modes.split(",") if m]
    captures = [c for c in a.capture.split(",") if c]

    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_path = Path(a.out) if a.out else HERE.parent / "results" / f"peers-{stamp}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    log_dir = out_path.parent / f"logs-{stamp}"
    log_dir.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    results = {
        "args": {k: v for k, v in vars(a).items() if k not in ("worker", "mode", "provider")},
        "host": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "processor": platform.processor(),
            "cpu_model": _cpu_model(),
            "loadavg_start": list(os.getloadavg()),
        },
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "workload": {
            "content_chunks": a.chunks,
            "chunks_yielded_per_stream": {"openai": a.chunks + 3, "anthropic": a.chunks + 5},
            "note": "openai: role chunk + N content chunks (1-4 tokens each) + finish chunk + usage chunk, then [DONE]; "
                    "anthropic: message_start, content_block_start, (ping), N text deltas, content_block_stop, "
                    "message_delta, message_stop (see bench/workload.py)",
        },
        "export_pipeline": "SimpleSpanProcessor->InMemorySpanExporter, InMemoryMetricReader, "
                           "SimpleLogRecordProcessor->InMemoryLogExporter (global providers)",
        "scenarios": [],
    }
    for provider in [x for x in a.providers.split(",") if x]:
        for mode in modes:
            for cap in captures:
                results["scenarios"].append(run_scenario(provider, mode, cap, names, a, log_dir))
                out_path.write_text(json.dumps(results, indent=1, default=str))
    results["host"]["loadavg_end"] = list(os.getloadavg())
    if not a.no_diag:
        print_diag(results)
    if a.leak_modes and a.leak_streams > 0:
        print("\n=== leak check (fresh worker per contender)")
        results["leak"] = run_leaks(names, a, log_dir)
        print_leaks(results["leak"], a)
    # versions (from the first scenario that started each contender)
    versions = {}
    for sc in results["scenarios"]:
        for n, c in sc["contenders"].items():
            versions.setdefault(n, c["info"]["versions"])
    results["versions"] = versions
    results["seconds"] = round(time.perf_counter() - t0, 1)
    out_path.write_text(json.dumps(results, indent=1, default=str))
    out_path.with_suffix(".md").write_text(markdown_report(results))
    print(f"\nversions: {json.dumps(next(iter(versions.values()), {}))}")
    for n, v in versions.items():
        extra = {k: x for k, x in v.items() if k not in BASE_DISTS}
        if extra:
            print(f"  {n}: {extra}")
    print(f"\nwrote {out_path.relative_to(HERE) if out_path.is_relative_to(HERE) else out_path} "
          f"in {results['seconds']}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

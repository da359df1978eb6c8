#!/usr/bin/env python3
"""One contender, one scenario, in its own process: the worker side of every stream benchmark
(``overhead.py``: steer vs bare; ``peers/peers.py``: steer vs the peer libraries), and ``WorkerProc``,
the parent's handle on it.

    python bench/worker.py --contender steer --provider openai --mode sync --capture on --chunks 200

The contender is set up from ``contenders.py`` before any client exists. The worker speaks JSON lines
on a private copy of stdout (whatever a library prints goes to stderr, the worker's log) and answers
commands: ``run`` (timed streams), ``gaps``, ``check`` (is steer's telemetry really on, what does the
end of a stream cost), ``diag`` (what any contender's telemetry holds, what an early ``break`` does),
``alloc`` (tracemalloc), ``rss`` (memory over many streams), ``leak`` (memory over full and broken
streams), ``exit``.

Timing of one stream: ``create()`` plus a ``for``/``async for`` over every chunk, wall clock
(``perf_counter_ns``) and process CPU time (``process_time_ns``: every thread of the process), with
a timestamp at each chunk. Exporter clearing and ``gc.collect()`` happen between batches, outside
the timed region.
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
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from contenders import CONTENDERS, Ctx, Telemetry, dead_otlp_endpoint  # noqa: E402
from workload import PROMPT, PROMPT_TOKENS, WORKLOADS  # noqa: E402

BASE_DISTS = ["openai", "anthropic", "httpx", "httpx2", "opentelemetry-api", "opentelemetry-sdk", "wrapt", "pydantic",
              "steer"]
TTFT_RE = re.compile(
    r"ttft|time_to_first|first_token|first_chunk|completion_start|time_per_output|time_between|"
    r"tbt|streaming_time|time_to_generate",
    re.I,
)
USAGE_RE = re.compile(r"usage|token", re.I)


def pct(values: List[float], q: float) -> Optional[float]:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def _dist_version(name: str) -> Optional[str]:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _short(v: Any, n: int = 100) -> str:
    s = repr(list(v) if isinstance(v, (list, tuple)) else v)
    return s if len(s) <= n else s[: n - 3] + "..."


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:  # Linux; resident pages are the second field
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ==================================================================================================
# Parent side
# ==================================================================================================


def add_run_options(p: argparse.ArgumentParser, warmup: int) -> None:
    """The options of every driver of worker processes (overhead.py, peers/peers.py)."""
    p.add_argument("--chunks", type=int, default=1000, help="content chunks per stream (default 1000)")
    p.add_argument("--streams", type=int, default=100, help="timed streams per contender per scenario (default 100)")
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds the streams are split into (default 10)")
    p.add_argument("--warmup", type=int, default=warmup, help=f"untimed warm-up streams per worker (default {warmup})")
    p.add_argument("--processes", type=int, default=2,
                   help="worker processes per contender, rotated by round, each with its own hash seed (default 2)")
    p.add_argument("--no-async-yield", action="store_true", help="async body: no asyncio.sleep(0) before each event")
    p.add_argument("--seed", type=int, default=1234)


def host_info() -> Dict[str, Any]:
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
            "processor": platform.processor(), "cpu_model": model, "loadavg_start": list(os.getloadavg())}


class WorkerProc:
    """A worker process started by a driver. ``a`` is the driver's arguments (warmup, seed, and where
    they apply quick, alt_src, http_lib, no_async_yield); ``global_providers``: the OTel providers are
    also the globals (the peers harness; overhead.py passes them to steer only)."""

    def __init__(self, contender: str, provider: str, mode: str, capture: str, chunks: int, a: Any, log: Path,
                 hash_seed: int = 0, global_providers: bool = True) -> None:
        self.name = contender
        self.log_path = log
        self.log = open(log, "w")
        cmd = [sys.executable, str(HERE / "worker.py"), "--contender", contender, "--provider", provider, "--mode", mode,
               "--capture", capture, "--chunks", str(chunks), "--warmup", str(a.warmup), "--seed", str(a.seed),
               "--http-lib", getattr(a, "http_lib", "httpx")]
        if getattr(a, "no_async_yield", False):
            cmd.append("--no-async-yield")
        if getattr(a, "alt_src", ""):
            cmd += ["--alt-src", a.alt_src]
        if getattr(a, "quick", False):
            cmd.append("--quick")
        if not global_providers:
            cmd.append("--private-providers")
        # The hash seed changes the process's memory layout (dict/set orders, interned strings), and with it
        # its speed by a few µs per chunk: one seed per worker index, the same for every contender.
        env = dict(os.environ, PYTHONHASHSEED=str(hash_seed))
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                  bufsize=1, env=env)
        self.info: Optional[Dict[str, Any]] = None
        self.error: Optional[str] = None

    def ready(self) -> bool:
        """Waits for the worker's first message: its info, or why it could not start."""
        r = self._read()
        if r.get("ok"):
            self.info = r["info"]
            return True
        self.error = r.get("error")
        return False

    def _read(self) -> Dict[str, Any]:
        line = self.p.stdout.readline()
        if not line:
            self.p.wait(timeout=30)
            tail = self.log_path.read_text()[-2000:] if self.log_path.exists() else ""
            return {"ok": False, "error": f"worker exited with code {self.p.returncode}\n{tail}"}
        return json.loads(line)

    def call(self, **cmd: Any) -> Dict[str, Any]:
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
                self.p.wait(timeout=30)
        except Exception:  # noqa: BLE001 - a stuck worker is killed (it is our own child, by handle)
            self.p.kill()
        self.log.close()


# ==================================================================================================
# Worker side
# ==================================================================================================


class Worker:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.contender, self.provider, self.mode = a.contender, a.provider, a.mode
        self.capture = a.capture == "on"
        spec = CONTENDERS[self.contender]
        t0 = time.perf_counter()
        ctx = Ctx(capture_content=self.capture, provider=WORKLOADS[self.provider].provider, quick=a.quick,
                  alt_src=a.alt_src)
        self.tel: Optional[Telemetry] = None
        if spec.instrumented:
            endpoint = dead_otlp_endpoint(spec.dead_otlp) if spec.dead_otlp else None
            self.tel = Telemetry(install_globals=not a.private_providers, otlp_endpoint=endpoint)
            ctx.tracer_provider, ctx.meter_provider = self.tel.tracer_provider, self.tel.meter_provider
            ctx.logger_provider = self.tel.logger_provider
        spec.setup(ctx)
        if not spec.observes:
            self.tel = None  # the placebo's telemetry sees no stream: nothing to check
        self.setup_s = time.perf_counter() - t0
        self.work = WORKLOADS[self.provider](a.chunks, seed=a.seed)
        self.expected = self.work.chunks_yielded
        self.loop = asyncio.new_event_loop() if self.mode == "async" else None
        self.client = self._client(self.work)
        self.gaps: List[int] = []
        self.spans_checked = self.spans_bad = 0
        texts, n = self._collect()  # the instrumented stream must deliver exactly what the server sent
        self.correct = {"chunks": n, "expected_chunks": self.expected, "text_ok": "".join(texts) == self.work.text}
        for _ in range(a.warmup):
            self.run(1, record=False)
        self.info = {"contender": self.contender, "provider": self.provider, "mode": self.mode,
                     "capture_content": self.capture, "setup_s": round(self.setup_s, 3), "correctness": self.correct,
                     "versions": {d: _dist_version(d) for d in dict.fromkeys(BASE_DISTS + list(spec.dists))},
                     "notes": ctx.notes, "description": spec.description, "threads": threading.active_count(),
                     "pid": os.getpid(), "steer_file": getattr(sys.modules.get("steer"), "__file__", None),
                     "stream_type": self.stream_type}

    def _client(self, work: Any) -> Any:
        if work.provider == "openai":
            work.http_lib = self.a.http_lib
        if self.loop is None:
            return work.client(False)

        async def make() -> Any:
            return work.client(True, yield_per_event=not self.a.no_async_yield)

        return self.loop.run_until_complete(make())

    def _create(self, client: Any = None, work: Any = None) -> Any:
        """``create()`` of the provider's streaming call (openai chat / anthropic messages)."""
        work, client = work or self.work, client or self.client
        return lambda: work.call(client)

    def _collect(self) -> tuple:
        """One untimed stream: its text and chunk count (checked against the workload), and the type of
        the stream object the client returned (a steer proxy exactly when this SDK is observed)."""
        texts: List[str] = []
        chunk_text = self.work.chunk_text
        if self.loop is None:
            stream = self.work.call(self.client)
            self.stream_type = f"{type(stream).__module__}.{type(stream).__qualname__}"
            for chunk in stream:
                texts.append(chunk_text(chunk))
        else:
            async def go() -> None:
                stream = await self.work.call(self.client)
                self.stream_type = f"{type(stream).__module__}.{type(stream).__qualname__}"
                async for chunk in stream:
                    texts.append(chunk_text(chunk))

            self.loop.run_until_complete(go())
        if self.tel is not None:
            self.tel.clear()
        return texts, len(texts)

    # -- timed streams ------------------------------------------------------------------------------
    def run(self, n: int, record: bool = True) -> Dict[str, Any]:
        pc, cpu = time.perf_counter_ns, time.process_time_ns
        call, client = self.work.call, self.client
        out: Dict[str, Any] = {"total_ns": [], "cpu_ns": [], "ttfc_ns": [], "tail_ns": [], "chunks": []}
        all_stamps: List[List[int]] = []

        def done(t0: int, c0: int, stamps: List[int]) -> None:
            t1, c1 = pc(), cpu()
            out["total_ns"].append(t1 - t0)
            out["cpu_ns"].append(c1 - c0)
            out["ttfc_ns"].append(stamps[0] - t0 if stamps else 0)
            out["tail_ns"].append(t1 - stamps[-1] if stamps else 0)
            out["chunks"].append(len(stamps))
            all_stamps.append(stamps)

        if self.loop is None:
            for _ in range(n):
                stamps: List[int] = []
                ap = stamps.append
                c0, t0 = cpu(), pc()
                for _chunk in call(client):
                    ap(pc())
                done(t0, c0, stamps)
        else:
            async def go() -> None:
                for _ in range(n):
                    stamps: List[int] = []
                    ap = stamps.append
                    c0, t0 = cpu(), pc()
                    async for _chunk in await call(client):
                        ap(pc())
                    done(t0, c0, stamps)

            self.loop.run_until_complete(go())
        if record:
            for stamps in all_stamps:
                self.gaps.extend(b - a for a, b in zip(stamps, stamps[1:]))
        out["telemetry"] = self._check_spans(n) if record else None
        if self.tel is not None:
            self.tel.clear()
        gc.collect()
        return out

    def _check_spans(self, n: int) -> Optional[Dict[str, Any]]:
        """Every timed stream must have produced one ended span of steer's that counted every chunk."""
        if self.tel is None:
            return None
        spans = self.tel.finished_spans()
        self.tel.clear()
        good = sum(1 for s in spans if s.end_time is not None and (s.attributes or {}).get("steer.stream.chunks") == self.expected
                   and s.attributes.get("steer.stream.end") == "complete")
        self.spans_checked += len(spans)
        self.spans_bad += len(spans) - good
        return {"streams": n, "spans": len(spans), "spans_ok": good}

    def gap_summary(self) -> Dict[str, Any]:
        g = self.gaps
        return {"n": len(g), "p50": pct(g, 0.5), "mean": statistics.fmean(g) if g else None, "p90": pct(g, 0.9),
                "p99": pct(g, 0.99), "max": max(g) if g else None}

    def _run_quiet(self, create: Any = None) -> None:
        """One stream to its end, untimed (the caller counts the spans)."""
        create = create or self._create()
        if self.loop is None:
            for _ in create():
                pass
            return

        async def go() -> None:
            async for _ in await create():
                pass

        self.loop.run_until_complete(go())

    # -- steer's telemetry, checked (overhead.py) ---------------------------------------------------
    def check(self, end_streams: int) -> Dict[str, Any]:
        out: Dict[str, Any] = {"spans_checked": self.spans_checked, "spans_bad": self.spans_bad}
        if self.tel is None:
            return out
        self.tel.clear()
        self._run_quiet()
        self.tel.meter_provider.force_flush()
        spans = self.tel.finished_spans()
        attrs = dict(spans[-1].attributes or {}) if spans else {}
        out.update({
            "spans": len(spans),
            "span_name": spans[-1].name if spans else None,
            "attributes": sorted(attrs),
            "chunks_attr": attrs.get("steer.stream.chunks"),
            "expected_chunks": self.expected,
            "end": attrs.get("steer.stream.end"),
            "ttfc_s": attrs.get("gen_ai.response.time_to_first_chunk"),
            "max_gap_s": attrs.get("steer.stream.max_chunk_gap"),
            "usage_source": attrs.get("steer.usage.source"),
            "output_tokens": attrs.get("gen_ai.usage.output_tokens"),
            "usage_ok": attrs.get("gen_ai.usage.output_tokens") == self.work.completion_tokens,
            "content_on_span": "gen_ai.output.messages" in attrs and self.work.text[:40] in str(attrs["gen_ai.output.messages"]),
            "span_events": len(spans[-1].events) if spans else None,
            "metrics": self.tel.metric_points(),
            "active_streams": self.tel.active_streams(),
        })
        self.tel.clear()
        out["end_cost"] = {"reported_usage": self._end_cost(self.work, end_streams)}
        no_usage = WORKLOADS[self.provider](self.a.chunks, seed=self.a.seed, include_usage=False)
        out["end_cost"]["estimated_usage"] = self._end_cost(no_usage, end_streams)
        return out

    def _end_cost(self, work: Any, streams: int) -> Dict[str, Any]:
        """Wall and CPU time of ``Session.finish`` (usage, estimation, span end + export, metric points)."""
        from steer.pipeline import Session

        original = Session.finish
        wall: List[int] = []
        cpu: List[int] = []

        def timed_finish(session: Any, *args: Any, **kwargs: Any) -> Any:
            c0, t0 = time.process_time_ns(), time.perf_counter_ns()
            try:
                return original(session, *args, **kwargs)
            finally:
                wall.append(time.perf_counter_ns() - t0)
                cpu.append(time.process_time_ns() - c0)

        Session.finish = timed_finish  # benchmark-only, inside this worker process
        create = self._create(self._client(work), work)
        try:
            for _ in range(streams):
                self._run_quiet(create)
        finally:
            Session.finish = original
        spans = self.tel.finished_spans()
        attrs = dict(spans[-1].attributes or {}) if spans else {}
        self.tel.clear()
        return {"streams": streams, "wall_us_median": round(statistics.median(wall) / 1e3, 1),
                "cpu_us_median": round(statistics.median(cpu) / 1e3, 1), "usage_source": attrs.get("steer.usage.source")}

    # -- any contender's telemetry, surveyed (peers.py) ---------------------------------------------
    def diag(self) -> Dict[str, Any]:
        if self.tel is not None:
            self.tel.clear()
        gc.collect()
        self._run_quiet()  # what follows is one stream's telemetry
        if self.tel is not None:
            try:
                self.tel.meter_provider.force_flush()
            except Exception:  # noqa: BLE001
                pass
        summary = self._telemetry_summary()
        summary["early_break"] = self._early_break()
        return summary

    def _telemetry_summary(self) -> Dict[str, Any]:
        tel = self.tel
        if tel is None:
            return {"instrumented": False}
        spans = tel.finished_spans()
        logs = tel.logs()
        out_marker, in_marker = self.work.text[:40], PROMPT[:40]
        found = {"input": False, "output": False}

        def scan(v: Any) -> None:
            if isinstance(v, str):
                found["input"] |= in_marker in v
                found["output"] |= out_marker in v
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
                    usage_ok |= v in (self.work.completion_tokens, PROMPT_TOKENS)
            ev = []
            for e in s.events:
                ev.append(e.name)
                if TTFT_RE.search(e.name) or "first token" in e.name.lower():
                    ttft_keys.add(f"event:{e.name}")
                for v in (e.attributes or {}).values():
                    scan(v)
            span_infos.append({
                "name": s.name,
                "kind": str(s.kind),
                "status": str(s.status.status_code),
                "duration_ms": round((s.end_time - s.start_time) / 1e6, 3) if s.end_time else None,
                "scope": s.instrumentation_scope.name if s.instrumentation_scope else None,
                "attributes": {k: _short(v) for k, v in sorted(attrs.items())},
                "events": ev[:20] + ([f"... {len(ev) - 20} more"] if len(ev) > 20 else []),
                "n_events": len(ev),
            })
        log_infos = []
        for lr in logs:
            rec = getattr(lr, "log_record", lr)
            body = getattr(rec, "body", None)
            attrs = dict(getattr(rec, "attributes", None) or {})
            scan(body)
            for v in attrs.values():
                scan(v)
            log_infos.append({"event_name": getattr(rec, "event_name", None) or attrs.get("event.name"),
                              "attributes": sorted(attrs), "body": _short(body, 160)})
        metric_infos = []
        md = tel.metrics_data()
        for rm in md.resource_metrics if md is not None else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    pts = list(m.data.data_points)
                    keys = sorted({k for p in pts for k in (p.attributes or {})})
                    metric_infos.append({"name": m.name, "unit": m.unit, "type": type(m.data).__name__, "points": len(pts),
                                         "attribute_keys": keys, "scope": sm.scope.name})
                    if TTFT_RE.search(m.name):
                        ttft_keys.add(f"metric:{m.name}")
        return {"instrumented": True, "n_spans": len(spans), "spans": span_infos, "n_logs": len(logs),
                "logs": log_infos[:12], "metrics": metric_infos, "ttft_like": sorted(ttft_keys),
                "usage_attrs": sorted(usage_keys), "usage_matches_stream": usage_ok, "content_captured": found}

    def _early_break(self) -> Dict[str, Any]:
        """Break after 10 chunks; see when (if ever) the contender's span ends.

        Also run for "bare" (span counts are then None) to check that the stream API itself works the
        same way (e.g. ``await stream.close()``) once wrapped.
        """
        tel = self.tel
        create = self._create()

        def count() -> Optional[int]:
            return len(tel.finished_spans()) if tel is not None else None

        def usage_on_span() -> bool:
            return any(USAGE_RE.search(k) and "request" not in k for s in tel.finished_spans() for k in (s.attributes or {}))

        if self.loop is None:
            def head(stream: Any) -> None:
                for i, _ch in enumerate(stream):
                    if i >= 9:
                        break

            def v_del_gc() -> Dict[str, Any]:
                stream = create()
                head(stream)
                r = {"after_break": count()}
                del stream
                r["after_del"] = count()
                gc.collect()
                r["after_gc"] = count()
                return r

            def v_close() -> Dict[str, Any]:
                stream = create()
                head(stream)
                r = {"after_break": count()}
                stream.close()
                r["after_close"] = count()
                del stream
                gc.collect()
                r["after_gc"] = count()
                return r

            def v_with() -> Dict[str, Any]:
                with create() as stream:
                    head(stream)
                    r = {"after_break": count()}
                r["after_exit"] = count()
                del stream
                gc.collect()
                r["after_gc"] = count()
                return r

            def v_with_full() -> Dict[str, Any]:
                n = 0
                with create() as stream:
                    for _ch in stream:
                        n += 1
                r = {"chunks": n, "after_exit": count()}
                if tel is not None:
                    r["usage_attr_on_span"] = usage_on_span()
                return r
        else:
            async def settle() -> None:
                for _ in range(5):
                    await asyncio.sleep(0)

            async def ahead(stream: Any) -> None:
                i = 0
                async for _ch in stream:
                    i += 1
                    if i >= 10:
                        break

            async def v_del_gc() -> Dict[str, Any]:
                stream = await create()
                await ahead(stream)
                r = {"after_break": count()}
                del stream
                r["after_del"] = count()
                gc.collect()
                await settle()
                r["after_gc"] = count()
                return r

            async def v_close() -> Dict[str, Any]:
                stream = await create()
                await ahead(stream)
                r = {"after_break": count()}
                await stream.close()
                r["after_close"] = count()
                del stream
                gc.collect()
                await settle()
                r["after_gc"] = count()
                return r

            async def v_with() -> Dict[str, Any]:
                async with await create() as stream:
                    await ahead(stream)
                    r = {"after_break": count()}
                r["after_exit"] = count()
                del stream
                gc.collect()
                await settle()
                r["after_gc"] = count()
                return r

            async def v_with_full() -> Dict[str, Any]:
                n = 0
                async with await create() as stream:
                    async for _ch in stream:
                        n += 1
                r = {"chunks": n, "after_exit": count()}
                if tel is not None:
                    r["usage_attr_on_span"] = usage_on_span()
                return r

        res = {}
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

    # -- memory -------------------------------------------------------------------------------------
    def alloc(self, streams: int) -> Dict[str, Any]:
        """tracemalloc over whole streams: what stays allocated per chunk mid-stream (total, and the
        part allocated in steer's own source files), and the transient peak per chunk."""
        import tracemalloc

        steer_files = [tracemalloc.Filter(True, "*/steer/*")]
        per_chunk_total, per_chunk_steer_b, per_chunk_steer_n, peaks = [], [], [], []
        first, last = 50, self.expected - 10
        for _ in range(streams):
            gc.collect()
            tracemalloc.start(1)
            try:
                snaps = []
                peak_sum = 0
                it = self._iterate()
                for i in range(1, self.expected + 1):
                    before = tracemalloc.get_traced_memory()[0]
                    tracemalloc.reset_peak()
                    chunk = next(it)
                    if first < i < last:
                        peak_sum += tracemalloc.get_traced_memory()[1] - before
                    del chunk
                    if i in (first, last):
                        gc.collect()
                        snaps.append((tracemalloc.take_snapshot(), tracemalloc.get_traced_memory()[0]))
                for _ in it:  # drain: the stream ends (and steer records) normally
                    pass
            finally:
                tracemalloc.stop()
            (s1, m1), (s2, m2) = snaps
            span = last - first
            per_chunk_total.append((m2 - m1) / span)
            diff = s2.filter_traces(steer_files).compare_to(s1.filter_traces(steer_files), "filename")
            per_chunk_steer_b.append(sum(d.size_diff for d in diff) / span)
            per_chunk_steer_n.append(sum(d.count_diff for d in diff) / span)
            peaks.append(peak_sum / (span - 1))
        if self.tel is not None:
            self.tel.clear()
        return {"streams": streams, "retained_bytes_per_chunk": round(statistics.median(per_chunk_total), 2),
                "steer_retained_bytes_per_chunk": round(statistics.median(per_chunk_steer_b), 2),
                "steer_retained_blocks_per_chunk": round(statistics.median(per_chunk_steer_n), 3),
                "transient_peak_bytes_per_chunk": round(statistics.median(peaks), 1)}

    def _iterate(self) -> Any:
        """The stream as a plain iterator, also in async mode (the loop drives one ``__anext__`` per item)."""
        if self.loop is None:
            yield from self.work.call(self.client)
            return
        stream = self.loop.run_until_complete(self.work.call(self.client))
        while True:
            try:
                yield self.loop.run_until_complete(stream.__anext__())
            except StopAsyncIteration:
                return

    def rss(self, streams: int, chunks: int, samples: int) -> Dict[str, Any]:
        """RSS and live objects while ``streams`` small streams run to the end (exporter drained every 100)."""
        small = WORKLOADS[self.provider](chunks, seed=self.a.seed + 1)
        create = self._create(self._client(small), small)
        every = max(1, streams // samples)
        series, spans_ended = [], 0
        t0 = time.perf_counter()
        for i in range(streams):
            self._run_quiet(create)
            if self.tel is not None and (i + 1) % 100 == 0:
                spans_ended += len(self.tel.finished_spans())
                self.tel.clear()
            if (i + 1) % every == 0 or i == 0:
                gc.collect()
                series.append({"streams": i + 1, "rss_kib": _rss_bytes() // 1024, "gc_objects": len(gc.get_objects())})
        if self.tel is not None:
            spans_ended += len(self.tel.finished_spans())
            self.tel.clear()
        base = series[min(1, len(series) - 1)]  # after the first sample: caches and pools are warm
        end = series[-1]
        n = end["streams"] - base["streams"]
        return {"streams": streams, "chunks_per_stream": small.chunks_yielded, "series": series,
                "rss_growth_kib": end["rss_kib"] - base["rss_kib"],
                "rss_growth_bytes_per_stream": round((end["rss_kib"] - base["rss_kib"]) * 1024 / n, 2) if n else None,
                "gc_objects_growth": end["gc_objects"] - base["gc_objects"],
                "spans_ended": spans_ended if self.tel is not None else None,
                "active_streams_after": self.tel.active_streams() if self.tel is not None else None,
                "seconds": round(time.perf_counter() - t0, 1)}

    def leak(self, streams: int, chunks: int, break_after: int) -> Dict[str, Any]:
        """Memory and live objects over ``streams`` streams read to the end, then as many broken off
        after ``break_after`` chunks (``del``, no close)."""
        import collections
        import resource

        import psutil

        small = WORKLOADS[self.provider](chunks, seed=self.a.seed + 1)
        create = self._create(self._client(small), small)
        tel = self.tel
        proc = psutil.Process()

        def brk_sync() -> None:
            s = create()
            for i, _ in enumerate(s):
                if i + 1 >= break_after:
                    break
            del s

        async def brk_async() -> None:
            s = await create()
            i = 0
            async for _ in s:
                i += 1
                if i >= break_after:
                    break
            del s

        def run_many(kind: str, n: int, clear_every: int = 100) -> int:
            ended = 0
            if self.loop is None:
                fn = (lambda: self._run_quiet(create)) if kind == "full" else brk_sync
                for i in range(n):
                    fn()
                    if tel is not None and (i + 1) % clear_every == 0:
                        ended += len(tel.finished_spans())
                        tel.clear()
            else:
                async def full_async() -> None:
                    async for _ in await create():
                        pass

                fn = full_async if kind == "full" else brk_async

                async def go() -> None:
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

        def snapshot() -> Dict[str, Any]:
            gc.collect()
            objs = gc.get_objects()
            return {"rss": proc.memory_info().rss, "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                    "objects": len(objs), "types": collections.Counter(type(o).__name__ for o in objs)}

        def delta(a: Dict[str, Any], b: Dict[str, Any], n: int) -> Dict[str, Any]:
            return {"streams": n, "rss_growth_kib": round((b["rss"] - a["rss"]) / 1024),
                    "peak_rss_growth_kib": b["peak_kib"] - a["peak_kib"],
                    "gc_objects_growth": b["objects"] - a["objects"],
                    "gc_objects_growth_per_stream": round((b["objects"] - a["objects"]) / n, 3),
                    "top_growing_types": (b["types"] - a["types"]).most_common(6)}

        out: Dict[str, Any] = {"chunks_per_stream": chunks, "break_after": break_after}
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

    def handle(self, cmd: Dict[str, Any]) -> Dict[str, Any]:
        c = cmd["cmd"]
        if c == "run":
            return self.run(int(cmd["n"]))
        if c == "gaps":
            return {"gap_ns": self.gap_summary()}
        if c == "check":
            return {"diag": self.check(int(cmd.get("end_streams", 5)))}
        if c == "diag":
            return {"diag": self.diag()}
        if c == "alloc":
            return {"alloc": self.alloc(int(cmd["streams"]))}
        if c == "rss":
            return {"rss": self.rss(int(cmd["streams"]), int(cmd["chunks"]), int(cmd.get("samples", 10)))}
        if c == "leak":
            return {"leak": self.leak(int(cmd["streams"]), int(cmd["chunks"]), int(cmd["break_after"]))}
        if c == "exit":
            return {}
        raise ValueError(f"unknown command {c!r}")


def main(argv: Any = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--contender", required=True, help=f"one of {', '.join(CONTENDERS)}")
    p.add_argument("--provider", default="openai", help=f"workload: {', '.join(WORKLOADS)}")
    p.add_argument("--mode", default="sync", choices=["sync", "async"])
    p.add_argument("--capture", default="off", choices=["on", "off"])
    p.add_argument("--chunks", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--http-lib", default="httpx", choices=["httpx", "httpx2"])
    p.add_argument("--no-async-yield", action="store_true")
    p.add_argument("--alt-src", default="")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--private-providers", action="store_true")
    a = p.parse_args(argv)
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # library prints go to stderr (the worker's log), never into the protocol

    def send(obj: Dict[str, Any]) -> None:
        proto.write(json.dumps(obj, default=str) + "\n")
        proto.flush()

    try:
        w = Worker(a)
    except BaseException:  # noqa: BLE001 - reported to the parent, which records the failure
        send({"ok": False, "error": traceback.format_exc()[-3000:]})
        return 1
    send({"ok": True, "info": w.info})
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        try:
            send({"ok": True, **w.handle(cmd)})
        except BaseException:  # noqa: BLE001
            send({"ok": False, "error": traceback.format_exc()[-3000:]})
        if cmd.get("cmd") == "exit":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())

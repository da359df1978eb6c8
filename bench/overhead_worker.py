"""One contender (``bare`` or ``steer``) for one scenario, in its own process: the worker side of
``overhead.py``. It speaks JSON lines on a private copy of stdout (whatever a library prints goes
to stderr) and answers commands: ``run`` (timed streams), ``gaps``, ``diag`` (is steer's telemetry
really on, what does the end of a stream cost), ``alloc`` (tracemalloc), ``rss`` (memory over many
streams), ``exit``.

Timing of one stream: ``create()`` plus a ``for``/``async for`` over every chunk, wall clock
(``perf_counter_ns``) and process CPU time (``process_time_ns``: every thread of the process), with
a timestamp at each chunk. Exporter clearing and ``gc.collect()`` happen between batches, outside
the timed region.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import statistics
import sys
import threading
import time
import traceback
from typing import Any, Dict, List, Optional

from workload import WORKLOADS

STEER_CONTENDERS = {"steer": {}, "steer-alt": {}, "steer-per-chunk-gaps": {"chunk_gap_metric": "per_chunk"},
                    "steer-otlp-refused": {}, "steer-otlp-hanging": {}}
# Contenders whose telemetry also goes to an OTLP endpoint that is down (issue: an exporter that refuses or
# hangs must not change the stream's timing): spans through a BatchSpanProcessor, metrics every second.
DEAD_OTLP = {"steer-otlp-refused": "refused", "steer-otlp-hanging": "hanging"}
# The placebo: steer and the OpenTelemetry SDK imported and instrument()ed exactly as for "steer", but for
# the *other* provider, so the measured SDK is not hooked. steer-idle - bare is what merely having them in
# the process costs (imports, a larger heap for the GC to walk, another memory layout); steer - steer-idle
# is what observing the stream costs.
IDLE = "steer-idle"
OTHER_PROVIDER = {"openai": "anthropic", "openai-json": "anthropic", "anthropic": "openai"}


def dead_otlp_endpoint(kind: str) -> str:
    """A loopback URL that refuses connections, or accepts them and never answers."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    if kind == "refused":
        sock.close()  # nothing listens there now
    else:
        sock.listen(64)
        held: List[Any] = []

        def accept() -> None:  # keep every connection open, read nothing back, answer nothing
            while True:
                held.append(sock.accept()[0])

        threading.Thread(target=accept, daemon=True, name="hanging-otlp").start()
    return f"http://127.0.0.1:{port}"


def _pct(values: List[float], q: float) -> Optional[float]:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:  # Linux; resident pages are the second field
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Telemetry:
    """In-memory OpenTelemetry SDK pipeline, the same one the peers harness gives every contender."""

    def __init__(self, otlp_endpoint: Optional[str] = None) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        resource = Resource.create({"service.name": "steer-overhead-bench"})
        self.exporter = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        if otlp_endpoint:  # steer's own providers (otel_setup), with the OTLP exporters pointed at it
            from steer import otel_setup

            os.environ.update(OTEL_BSP_SCHEDULE_DELAY="200", OTEL_METRIC_EXPORT_INTERVAL="1000",
                              OTEL_EXPORTER_OTLP_TIMEOUT="10", OTEL_SERVICE_NAME="steer-overhead-bench")
            self.tracer_provider = otel_setup.build_tracer_provider([SimpleSpanProcessor(self.exporter)],
                                                                    otlp_endpoint=otlp_endpoint)
            self.meter_provider = otel_setup.build_meter_provider([self.reader], otlp_endpoint=otlp_endpoint)
            return
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.meter_provider = MeterProvider(resource=resource, metric_readers=[self.reader])

    def spans(self) -> List[Any]:
        self.tracer_provider.force_flush()  # steer records a call's end on its background thread
        return list(self.exporter.get_finished_spans())

    def clear(self) -> None:
        # Flush first: a call still in steer's end-of-call queue would otherwise land after the clear and
        # be counted with the next batch.
        self.tracer_provider.force_flush()
        self.exporter.clear()

    def metric_points(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        self.tracer_provider.force_flush()  # drains steer's end-of-call queue (metric points too)
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    out[m.name] = out.get(m.name, 0) + len(list(m.data.data_points))
        return out

    def active_streams(self) -> int:
        total = 0
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == "steer.client.streams.active":
                        total += sum(p.value for p in m.data.data_points)
        return total


class Worker:
    def __init__(self, a: Any) -> None:
        self.a = a
        self.contender, self.provider, self.mode = a.worker, a.provider, a.mode
        self.capture = a.capture == "on"
        self.tel: Optional[Telemetry] = None
        t0 = time.perf_counter()
        if self.contender == IDLE or self.contender in STEER_CONTENDERS:
            if self.contender == "steer-alt":  # `--alt-src`: another steer tree, timed next to the installed one
                sys.path.insert(0, a.alt_src)
            import steer

            dead = DEAD_OTLP.get(self.contender)
            tel = Telemetry(dead_otlp_endpoint(dead) if dead else None)
            hooked = OTHER_PROVIDER[self.provider] if self.contender == IDLE else WORKLOADS[self.provider].provider
            steer.instrument(providers=[hooked], tracer_provider=tel.tracer_provider, meter_provider=tel.meter_provider,
                             capture_content=self.capture, **STEER_CONTENDERS.get(self.contender, {}))
            self.tel = None if self.contender == IDLE else tel  # the placebo's telemetry sees no stream: nothing to check
            if not a.quick:  # the smoke run does not time anything: no need to wait
                self._join_background_threads()
        self.setup_s = time.perf_counter() - t0
        self.work = WORKLOADS[self.provider](a.chunks, seed=a.seed)
        self.expected = self.work.chunks_yielded
        self.loop = asyncio.new_event_loop() if self.mode == "async" else None
        self.client = self._client(self.work)
        self.gaps: List[int] = []
        self.spans_checked = self.spans_bad = 0
        texts, n = self._collect()
        self.correct = {"chunks": n, "expected_chunks": self.expected, "text_ok": "".join(texts) == self.work.text}
        for _ in range(a.warmup):
            self.run(1, record=False)
        from importlib import metadata

        versions = {}
        for dist in ("openai", "anthropic", "httpx", "httpx2", "opentelemetry-sdk", "wrapt", "pydantic", "steer"):
            try:
                versions[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                versions[dist] = None
        self.info = {"contender": self.contender, "provider": self.provider, "mode": self.mode,
                     "capture_content": self.capture, "setup_s": round(self.setup_s, 3), "correctness": self.correct,
                     "versions": versions, "threads": threading.active_count(), "pid": os.getpid(),
                     "steer_file": getattr(sys.modules.get("steer"), "__file__", None), "stream_type": self.stream_type}

    @staticmethod
    def _join_background_threads(timeout: float = 30.0) -> None:
        # steer loads tokenizer encodings in a daemon thread at instrument(); let it finish so that
        # its CPU time does not land in the timed streams (CPU is measured for every thread).
        deadline = time.monotonic() + timeout
        for t in threading.enumerate():
            if t is not threading.main_thread() and t.daemon and t.name != "steer-end-of-call":  # that one lives on
                t.join(max(0.0, deadline - time.monotonic()))

    def _client(self, work: Any) -> Any:
        if self.loop is None:
            return work.client(False)

        async def make() -> Any:
            return work.client(True, yield_per_event=not self.a.no_async_yield)

        return self.loop.run_until_complete(make())

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
            return texts, len(texts)

        async def go() -> None:
            stream = await self.work.call(self.client)
            self.stream_type = f"{type(stream).__module__}.{type(stream).__qualname__}"
            async for chunk in stream:
                texts.append(chunk_text(chunk))

        self.loop.run_until_complete(go())
        return texts, len(texts)

    # -- timed streams ------------------------------------------------------------------------------
    def run(self, n: int, record: bool = True) -> Dict[str, Any]:
        pc, cpu = time.perf_counter_ns, time.process_time_ns
        call, client = self.work.call, self.client
        out: Dict[str, List[int]] = {"total_ns": [], "cpu_ns": [], "ttfc_ns": [], "tail_ns": [], "chunks": []}
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
        """Every timed stream must have produced one ended span that counted every chunk."""
        if self.tel is None:
            return None
        spans = self.tel.spans()
        self.tel.clear()
        good = sum(1 for s in spans if s.end_time is not None and (s.attributes or {}).get("steer.stream.chunks") == self.expected
                   and s.attributes.get("steer.stream.end") == "complete")
        self.spans_checked += len(spans)
        self.spans_bad += len(spans) - good
        return {"streams": n, "spans": len(spans), "spans_ok": good}

    def gap_summary(self) -> Dict[str, Any]:
        g = self.gaps
        return {"n": len(g), "p50": _pct(g, 0.5), "mean": statistics.fmean(g) if g else None, "p99": _pct(g, 0.99)}

    # -- diagnostics --------------------------------------------------------------------------------
    def diag(self, end_streams: int) -> Dict[str, Any]:
        out: Dict[str, Any] = {"spans_checked": self.spans_checked, "spans_bad": self.spans_bad}
        if self.tel is None:
            return out
        self.tel.clear()
        self._run_quiet()
        self.tel.meter_provider.force_flush()
        spans = self.tel.spans()
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
        client = self._client(work)
        saved_work, saved_client = self.work, self.client
        self.work, self.client = work, client
        try:
            for _ in range(streams):
                self._run_quiet()
        finally:
            Session.finish = original
            self.work, self.client = saved_work, saved_client
        attrs = dict(self.tel.spans()[-1].attributes or {}) if self.tel and self.tel.spans() else {}
        self.tel.clear()
        return {"streams": streams, "wall_us_median": round(statistics.median(wall) / 1e3, 1),
                "cpu_us_median": round(statistics.median(cpu) / 1e3, 1), "usage_source": attrs.get("steer.usage.source")}

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
        self.work, self.client = small, self._client(small)
        every = max(1, streams // samples)
        series, spans_ended = [], 0
        t0 = time.perf_counter()
        for i in range(streams):
            self._run_quiet()
            if self.tel is not None and (i + 1) % 100 == 0:
                spans_ended += len(self.tel.spans())
                self.tel.clear()
            if (i + 1) % every == 0 or i == 0:
                gc.collect()
                series.append({"streams": i + 1, "rss_kib": _rss_bytes() // 1024, "gc_objects": len(gc.get_objects())})
        if self.tel is not None:
            spans_ended += len(self.tel.spans())
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

    def _run_quiet(self) -> None:
        # run() checks spans per batch and clears the exporter; here the caller counts them instead.
        if self.loop is None:
            for _ in self.work.call(self.client):
                pass
            return

        async def go() -> None:
            async for _ in await self.work.call(self.client):
                pass

        self.loop.run_until_complete(go())

    def handle(self, cmd: Dict[str, Any]) -> Dict[str, Any]:
        c = cmd["cmd"]
        if c == "run":
            return self.run(int(cmd["n"]))
        if c == "gaps":
            return {"gap_ns": self.gap_summary()}
        if c == "diag":
            return {"diag": self.diag(int(cmd.get("end_streams", 5)))}
        if c == "alloc":
            return {"alloc": self.alloc(int(cmd["streams"]))}
        if c == "rss":
            return {"rss": self.rss(int(cmd["streams"]), int(cmd["chunks"]), int(cmd.get("samples", 10)))}
        if c == "exit":
            return {}
        raise ValueError(f"unknown command {c!r}")


def worker_main(a: Any) -> int:
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

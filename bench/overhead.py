#!/usr/bin/env python3
"""steer's overhead per chunk against the bare SDK, on the same synthetic streams, in one run.

    .venv/bin/python bench/overhead.py            # full run (make bench), ~12-15 min on an idle 2-core VM
    .venv/bin/python bench/overhead.py --quick    # smoke run (tests/test_bench_smoke.py), ~1 min
    .venv/bin/python bench/overhead.py --report bench/results/overhead-XXXX.json

Contenders: ``bare`` (the SDK alone) and ``steer`` (``steer.instrument()`` with its full default
telemetry: span with time to first chunk, max/mean chunk gap, chunk count, usage, finish reasons,
content when capture is on; metrics; usage estimation when none is reported). Scenarios: provider
(OpenAI Chat Completions, Anthropic Messages) x sync/async x content capture on/off. Each contender
of a scenario runs in its own long-lived worker process; the parent drives them in interleaved,
rotated rounds so that drift on the machine hits both alike. Reported per scenario (medians over
streams): wall and CPU time per chunk (CPU = ``time.process_time``, every thread of the process),
overhead in µs per chunk and as a ratio to bare, TTFC, chunk gap and tail (last chunk to end of
iteration). Then, per steer worker: the telemetry check (every timed stream gave one ended span that
counted every chunk), the end-of-stream cost (``Session.finish``) with reported and with estimated
usage, tracemalloc allocations per chunk, and RSS over many streams. Results: markdown on stdout,
JSON + markdown in ``bench/results/`` (git-ignored). See bench/README.md for the method.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from overhead_report import markdown, targets  # noqa: E402
from worker import WorkerProc, add_run_options, host_info  # noqa: E402

TARGET_CPU_US, TARGET_RATIO = 2.0, 1.02


def _stats(values: List[float]) -> Dict[str, float]:
    s = sorted(values)
    return {"median": statistics.median(s), "p90": s[int(0.9 * (len(s) - 1))], "min": s[0]}


def run_scenario(provider: str, mode: str, capture: str, a: Any, log_dir: Path) -> Dict[str, Any]:
    label = f"{provider}/{mode}/capture-{capture}"
    print(f"=== {label}", flush=True)
    res: Dict[str, Any] = {"provider": provider, "mode": mode, "capture": capture == "on", "contenders": {}, "errors": {}}
    # `a.processes` workers per contender: a process's own speed differs by a few µs per chunk from the
    # next one's (memory layout), so one process per contender cannot tell steer from layout luck.
    # Round r uses worker r % processes of every contender; medians pool all of them.
    procs: Dict[str, List[WorkerProc]] = {}
    for name in a.contenders:
        for i in range(a.processes):
            wp = WorkerProc(name, provider, mode, capture, a.chunks, a,
                            log_dir / f"{provider}-{mode}-{capture}-{name}-{i}.log", hash_seed=i, global_providers=False)
            if not wp.ready():
                res["errors"][name] = wp.error
                print(f"  ! {name} failed to start: {wp.error.strip().splitlines()[-1:]}", flush=True)
                wp.close()
                break
            procs.setdefault(name, []).append(wp)
            c = wp.info["correctness"]
            if c["chunks"] != c["expected_chunks"] or not c["text_ok"]:
                res["errors"][name] = f"stream altered: {c}"
        if name in res["errors"]:
            for wp in procs.pop(name, []):
                wp.close()
            continue
        res["contenders"][name] = {"info": procs[name][0].info, "total_ns": [], "cpu_ns": [], "ttfc_ns": [],
                                   "tail_ns": [], "round_ns": [], "round_cpu_ns": [], "telemetry": [],
                                   "process_cpu_ns": [[] for _ in procs[name]]}
    alive = list(procs)
    batch = max(1, a.streams // a.rounds)
    for r in range(a.rounds):
        k = r % max(1, len(alive))
        for name in alive[k:] + alive[:k]:
            index = r % len(procs[name])
            out = procs[name][index].call(cmd="run", n=batch)
            c = res["contenders"][name]
            if not out.get("ok"):
                res["errors"][name] = out.get("error")
                continue
            for key in ("total_ns", "cpu_ns", "ttfc_ns", "tail_ns"):
                c[key] += out[key]
            c["round_ns"].append(statistics.median(out["total_ns"]))
            c["round_cpu_ns"].append(statistics.median(out["cpu_ns"]))
            c["process_cpu_ns"][index] += out["cpu_ns"]
            if out.get("telemetry"):
                c["telemetry"].append(out["telemetry"])
            if any(n != c["info"]["correctness"]["expected_chunks"] for n in out["chunks"]):
                c["chunk_count_mismatch"] = True
    for name, workers in procs.items():
        for extra in workers[1:]:
            extra.close()
        wp = workers[0]  # diagnostics (end of stream, allocations) from the first worker
        c = res["contenders"][name]
        g = wp.call(cmd="gaps")
        c["gap_ns"] = g.get("gap_ns") if g.get("ok") else None
        d = wp.call(cmd="check", end_streams=a.end_streams)
        c["diag"] = d.get("diag") if d.get("ok") else {"error": d.get("error")}
        if c["telemetry"] and "error" not in c["diag"]:  # the span check of every worker's timed batches
            c["diag"]["spans_checked"] = sum(t["spans"] for t in c["telemetry"])
            c["diag"]["spans_bad"] = sum(t["spans"] - t["spans_ok"] for t in c["telemetry"])
        if a.alloc_streams and mode == "sync":
            m = wp.call(cmd="alloc", streams=a.alloc_streams)
            c["alloc"] = m.get("alloc") if m.get("ok") else {"error": m.get("error")}
        wp.close()
    summarize(res)
    for name, c in res["contenders"].items():
        sm = c.get("summary")
        if sm:
            extra = (f"  overhead {sm['overhead_us']:+.2f} µs/chunk wall ({sm['ratio']:.3f}x), "
                     f"{sm['cpu_overhead_us']:+.2f} µs/chunk CPU ({sm['cpu_ratio']:.3f}x)") if "overhead_us" in sm else ""
            print(f"  {name:<22}{sm['wall_us']:8.2f} µs/chunk wall {sm['cpu_us']:8.2f} µs/chunk CPU{extra}", flush=True)
    return res


def summarize(res: Dict[str, Any]) -> None:
    cs = res["contenders"]
    base = cs.get("bare")
    for name, c in cs.items():
        if not c["total_ns"]:
            continue
        n = c["info"]["correctness"]["expected_chunks"]
        wall, cpu = _stats(c["total_ns"]), _stats(c["cpu_ns"])
        sm: Dict[str, Any] = {
            "streams": len(c["total_ns"]), "chunks_per_stream": n,
            "wall_us": round(wall["median"] / n / 1e3, 3), "wall_p90_us": round(wall["p90"] / n / 1e3, 3),
            "cpu_us": round(cpu["median"] / n / 1e3, 3), "cpu_min_us": round(cpu["min"] / n / 1e3, 3),
            "ttfc_us": round(statistics.median(c["ttfc_ns"]) / 1e3, 1),
            "tail_us": round(statistics.median(c["tail_ns"]) / 1e3, 1),
        }
        if c.get("gap_ns") and c["gap_ns"].get("p50") is not None:
            sm["gap_p50_us"] = round(c["gap_ns"]["p50"] / 1e3, 2)
            sm["gap_p99_us"] = round(c["gap_ns"]["p99"] / 1e3, 2)
        tel = c.get("telemetry") or []
        per_process = [statistics.median(v) / n / 1e3 for v in c.get("process_cpu_ns", []) if v]
        if len(per_process) > 1:
            sm["process_cpu_us"] = [round(v, 2) for v in per_process]  # each worker's median: the layout spread
        if tel:
            sm["spans_ok"] = sum(t["spans_ok"] for t in tel)
            sm["spans_expected"] = sum(t["streams"] for t in tel)
        if base and base.get("total_ns") and name != "bare":
            b_wall, b_cpu = statistics.median(base["total_ns"]), statistics.median(base["cpu_ns"])
            sm["overhead_us"] = round((wall["median"] - b_wall) / n / 1e3, 3)
            sm["ratio"] = round(wall["median"] / b_wall, 4)
            sm["cpu_overhead_us"] = round((cpu["median"] - b_cpu) / n / 1e3, 3)
            sm["cpu_ratio"] = round(cpu["median"] / b_cpu, 4)
            # The same differences inside each round (both workers ran back to back): the noise band.
            pairs = list(zip(base["round_ns"], c["round_ns"]))
            cpairs = list(zip(base["round_cpu_ns"], c["round_cpu_ns"]))
            sm["round_overhead_us"] = [round(min((y - x) / n / 1e3 for x, y in pairs), 2), round(max((y - x) / n / 1e3 for x, y in pairs), 2)]
            sm["round_cpu_overhead_us"] = [round(min((y - x) / n / 1e3 for x, y in cpairs), 2), round(max((y - x) / n / 1e3 for x, y in cpairs), 2)]
            sm["ttfc_overhead_us"] = round(sm["ttfc_us"] - statistics.median(base["ttfc_ns"]) / 1e3, 1)
            sm["tail_overhead_us"] = round(sm["tail_us"] - statistics.median(base["tail_ns"]) / 1e3, 1)
            if base.get("gap_ns") and "gap_p50_us" in sm:
                sm["gap_p50_overhead_us"] = round(sm["gap_p50_us"] - base["gap_ns"]["p50"] / 1e3, 2)
        c["summary"] = sm


def run_rss(a: Any, log_dir: Path) -> List[Dict[str, Any]]:
    out = []
    for provider in a.rss_providers:
        for mode in a.rss_modes:
            for name in a.rss_contenders:
                print(f"=== rss {provider}/{mode} {name}: {a.rss_streams} streams of {a.rss_chunks} chunks ...", flush=True)
                wp = WorkerProc(name, provider, mode, "on", a.rss_chunks, a, log_dir / f"rss-{provider}-{mode}-{name}.log",
                                global_providers=False)
                if not wp.ready():
                    out.append({"provider": provider, "mode": mode, "contender": name, "error": wp.error})
                    wp.close()
                    continue
                r = wp.call(cmd="rss", streams=a.rss_streams, chunks=a.rss_chunks, samples=10)
                wp.close()
                row = {"provider": provider, "mode": mode, "contender": name}
                row.update(r["rss"] if r.get("ok") else {"error": r.get("error")})
                out.append(row)
                if "rss_growth_kib" in row:
                    print(f"  RSS growth {row['rss_growth_kib']} KiB, gc objects {row['gc_objects_growth']:+d}, "
                          f"spans ended {row['spans_ended']}, {row['seconds']} s", flush=True)
    return out


def main(argv: Any = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(p, warmup=3)
    p.add_argument("--contenders", default="bare,steer", help="bare,steer[,steer-idle,steer-alt,steer-per-chunk-gaps,steer-otlp-refused,steer-otlp-hanging]")
    p.add_argument("--providers", default="openai,anthropic")
    p.add_argument("--modes", default="sync,async")
    p.add_argument("--capture", default="on,off")
    p.add_argument("--scenarios", default="", help="instead of the product above: a list like openai/sync/on,anthropic/async/off")
    p.add_argument("--end-streams", type=int, default=20, help="streams timing Session.finish per steer worker")
    p.add_argument("--alloc-streams", type=int, default=3, help="tracemalloc streams per sync worker (0 skips)")
    p.add_argument("--rss-streams", type=int, default=20000, help="streams in the RSS check (0 skips)")
    p.add_argument("--rss-chunks", type=int, default=20, help="content chunks per stream in the RSS check")
    p.add_argument("--rss-providers", default="openai")
    p.add_argument("--rss-modes", default="sync,async")
    p.add_argument("--rss-contenders", default="steer")
    p.add_argument("--alt-src", default="",
                   help="another steer source tree (its src/ folder) for the contender steer-alt: before/after in one run")
    p.add_argument("--out", help="results JSON (default bench/results/overhead-<timestamp>.json)")
    p.add_argument("--quick", action="store_true", help="smoke run: 200 chunks, 4 streams, 300-stream RSS check")
    p.add_argument("--report", metavar="RESULTS.json", help="print the markdown of an earlier run and exit")
    a = p.parse_args(argv)
    if a.report:
        print(markdown(json.loads(Path(a.report).read_text())), end="")
        return 0
    if a.quick:
        a.chunks, a.streams, a.rounds, a.warmup, a.end_streams, a.alloc_streams = 200, 4, 2, 1, 2, 1
        a.processes = min(a.processes, 2)
        a.rss_streams = min(a.rss_streams, 300)
    a.contenders = [c for c in a.contenders.split(",") if c]
    for key in ("providers", "modes", "capture", "rss_providers", "rss_modes", "rss_contenders"):
        setattr(a, key, [x for x in getattr(a, key).split(",") if x])
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(a.out) if a.out else HERE / "results" / f"overhead-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    log_dir = out.parent / f"overhead-logs-{stamp}"
    log_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results: Dict[str, Any] = {"args": {k: v for k, v in vars(a).items()},
                               "host": host_info(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "scenarios": []}
    chosen = [tuple(x.split("/")) for x in a.scenarios.split(",") if x] or [
        (provider, mode, cap) for provider in a.providers for mode in a.modes for cap in a.capture]
    for provider, mode, cap in chosen:
        results["scenarios"].append(run_scenario(provider, mode, cap, a, log_dir))
        out.write_text(json.dumps(results, indent=1, default=str))
    if a.rss_streams > 0:
        results["rss"] = run_rss(a, log_dir)
    results["host"]["loadavg_end"] = list(os.getloadavg())
    results["seconds"] = round(time.perf_counter() - t0, 1)
    results["targets"] = targets(results, TARGET_CPU_US, TARGET_RATIO)
    out.write_text(json.dumps(results, indent=1, default=str))
    md = markdown(results)
    out.with_suffix(".md").write_text(md)
    print()
    print(md, end="")
    print(f"\nwrote {out} ({results['seconds']} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

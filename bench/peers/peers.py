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

Contenders live in bench/contenders.py (adding one is one decorated function, see README.md); each
runs in a bench/worker.py process, the worker overhead.py drives too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the contenders, the workloads and the worker are shared with overhead.py

from contenders import CONTENDERS, DEFAULT_CONTENDERS  # noqa: E402
from worker import BASE_DISTS, WorkerProc, add_run_options, host_info, pct  # noqa: E402


def _stats(values):
    return {
        "median": statistics.median(values),
        "p90": pct(values, 0.9),
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(p, warmup=5)
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
    p.add_argument("--out", default=None, help="JSON path (default results/peers-<timestamp>.json)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 200 chunks, 10 streams in 2 rounds, 200-stream leak check (~1 min)")
    p.add_argument("--list", action="store_true", help="list the known contenders and exit")
    p.add_argument("--report", metavar="RESULTS.json", help="print the markdown tables of a results file and exit")
    p.add_argument("--providers", default="openai,anthropic", help="workloads: openai (chat completions), anthropic (messages)")
    a = p.parse_args(argv)

    if a.report:
        print(markdown_report(json.loads(Path(a.report).read_text())), end="")
        return 0
    if a.list:
        for n, spec in CONTENDERS.items():
            print(f"{n:<22}{spec.description}")
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
        "args": {k: v for k, v in vars(a).items()},
        "host": host_info(),
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

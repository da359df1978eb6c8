"""Markdown tables and the target check for ``overhead.py`` results (also ``overhead.py --report``)."""

from __future__ import annotations

from typing import Any, Dict, List


def _f(v: Any, nd: int = 1, sign: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:+.{nd}f}" if sign else f"{v:.{nd}f}"


def _label(sc: Dict[str, Any]) -> str:
    return f"{sc['provider']} | {sc['mode']} | {'on' if sc['capture'] else 'off'}"


def targets(results: Dict[str, Any], cpu_us: float, ratio: float) -> Dict[str, Any]:
    """Did steer stay within +cpu_us µs CPU per chunk and ratio x bare wall time, in every scenario?"""
    rows = []
    for sc in results["scenarios"]:
        sm = (sc["contenders"].get("steer") or {}).get("summary") or {}
        if "cpu_overhead_us" not in sm:
            continue
        rows.append({"scenario": _label(sc).replace(" | ", "/"), "cpu_overhead_us": sm["cpu_overhead_us"],
                     "ratio": sm["ratio"], "cpu_ok": sm["cpu_overhead_us"] <= cpu_us, "ratio_ok": sm["ratio"] <= ratio})
    return {"cpu_us_per_chunk": cpu_us, "wall_ratio": ratio, "rows": rows,
            "cpu_met": bool(rows) and all(r["cpu_ok"] for r in rows),
            "ratio_met": bool(rows) and all(r["ratio_ok"] for r in rows)}


def markdown(results: Dict[str, Any]) -> str:
    host, args = results["host"], results["args"]
    first = next((c["info"] for sc in results["scenarios"] for c in sc["contenders"].values() if c.get("info")), {})
    versions = ", ".join(f"{k} {v}" for k, v in (first.get("versions") or {}).items() if v)
    lines: List[str] = [
        f"Run {results.get('date', '?')}: {host['cpus']} CPUs ({host.get('cpu_model', '?')}), Python {host['python']}, "
        f"load average {_f(host['loadavg_start'][0], 2)} at start / {_f((host.get('loadavg_end') or [None])[0], 2)} at end.",
        f"Versions: {versions}.",
        f"{args['chunks']} content chunks per stream, {args['streams']} timed streams per contender per scenario in "
        f"{args['rounds']} interleaved rounds; medians over streams.", "",
        "Per chunk = per stream / chunks yielded. Overhead = median(steer) - median(bare); ratio = median(steer) / "
        "median(bare); [a..b] = the same difference inside each round. CPU = process CPU time, all threads; "
        "min = the same from the least disturbed stream of each (min over streams), the figure least moved by other "
        "load on the machine.", "",
        "| provider | mode | capture | bare µs/chunk | steer µs/chunk | overhead µs/chunk (ratio) | per round | "
        "bare CPU µs/chunk | steer CPU µs/chunk | CPU overhead µs/chunk (ratio) | CPU overhead, min | +TTFC µs | +gap p50 µs | "
        "+tail µs | spans ok |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for sc in results["scenarios"]:
        b = (sc["contenders"].get("bare") or {}).get("summary") or {}
        for name, c in sc["contenders"].items():
            s = c.get("summary") or {}
            if name == "bare" or "overhead_us" not in s:
                continue
            label = _label(sc) if name == "steer" else f"{_label(sc)} ({name})"
            rr, rc = s.get("round_overhead_us") or [None, None], s.get("round_cpu_overhead_us") or [None, None]
            lines.append(
                f"| {label} | {_f(b.get('wall_us'))} | {_f(s['wall_us'])} | {_f(s['overhead_us'], 2, True)} ({s['ratio']:.3f}x) | "
                f"[{_f(rr[0], 1)}..{_f(rr[1], 1)}] | {_f(b.get('cpu_us'))} | {_f(s['cpu_us'])} | "
                f"{_f(s['cpu_overhead_us'], 2, True)} ({s['cpu_ratio']:.3f}x) [{_f(rc[0], 1)}..{_f(rc[1], 1)}] | "
                f"{_f(s['cpu_min_us'] - b['cpu_min_us'] if 'cpu_min_us' in b else None, 2, True)} | "
                f"{_f(s.get('ttfc_overhead_us'), 0, True)} | {_f(s.get('gap_p50_overhead_us'), 2, True)} | "
                f"{_f(s.get('tail_overhead_us'), 0, True)} | {s.get('spans_ok', '-')}/{s.get('spans_expected', '-')} |")
    spread = []
    for sc in results["scenarios"]:
        per = {n: (c.get("summary") or {}).get("process_cpu_us") for n, c in sc["contenders"].items()}
        if all(per.values()) and len(per) > 1:
            spread.append(f"{_label(sc).replace(' | ', '/')}: " + ", ".join(f"{n} {per[n]}" for n in per))
    if spread:
        lines += ["", "CPU µs/chunk of each worker process (one per hash seed; the same seeds for every contender): "
                  + "; ".join(spread) + "."]
    for sc in results["scenarios"]:
        for name, err in sc.get("errors", {}).items():
            lines.append(f"\n**{_label(sc)} {name} failed:** `{(err or '').strip().splitlines()[-1:]}`")
    t = results.get("targets")
    if t:
        lines += ["", f"Targets: CPU overhead <= {t['cpu_us_per_chunk']} µs/chunk: **{'met' if t['cpu_met'] else 'NOT met'}**; "
                      f"wall time <= {t['wall_ratio']}x bare: **{'met' if t['ratio_met'] else 'NOT met'}** "
                      f"(in every scenario above)."]
    lines += ["", "End of stream (`Session.finish`: usage, span end + export, metric points), per call, medians:", "",
              "| provider | mode | capture | reported usage: wall µs | CPU µs | estimated usage: wall µs | CPU µs |",
              "|---|---|---|---:|---:|---:|---:|"]
    for sc in results["scenarios"]:
        d = ((sc["contenders"].get("steer") or {}).get("diag") or {}).get("end_cost")
        if d:
            r, e = d["reported_usage"], d["estimated_usage"]
            lines.append(f"| {_label(sc)} | {_f(r['wall_us_median'], 0)} | {_f(r['cpu_us_median'], 0)} | "
                         f"{_f(e['wall_us_median'], 0)} | {_f(e['cpu_us_median'], 0)} |")
    alloc_rows = []
    for sc in results["scenarios"]:
        b = (sc["contenders"].get("bare") or {}).get("alloc") or {}
        s = (sc["contenders"].get("steer") or {}).get("alloc") or {}
        if "retained_bytes_per_chunk" in s:
            alloc_rows.append(
                f"| {_label(sc)} | {_f(b.get('retained_bytes_per_chunk'))} | {_f(s['retained_bytes_per_chunk'])} | "
                f"{_f(s['steer_retained_bytes_per_chunk'])} ({_f(s['steer_retained_blocks_per_chunk'], 3)} blocks) | "
                f"{_f(b.get('transient_peak_bytes_per_chunk'), 0)} | {_f(s['transient_peak_bytes_per_chunk'], 0)} |")
    if alloc_rows:
        lines += ["", "Allocations (tracemalloc, mid-stream, per chunk): bytes still allocated per chunk (whole process), "
                      "the part allocated in steer's own files, and the transient peak above the live size while one chunk "
                      "is produced:", "",
                  "| provider | mode | capture | bare retained B/chunk | steer retained B/chunk | in steer's files B/chunk | "
                  "bare peak B/chunk | steer peak B/chunk |", "|---|---|---|---:|---:|---:|---:|---:|"] + alloc_rows
    rss = results.get("rss") or []
    if rss:
        lines += ["", "Memory over many streams (capture on; exporter drained every 100 streams; growth measured from the "
                      "first sample after warm-up):", "",
                  "| provider | mode | contender | streams x chunks | RSS start → end KiB | growth KiB | bytes/stream | "
                  "gc objects growth | spans ended | active streams after |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rss:
            if "error" in r:
                lines.append(f"| {r['provider']} | {r['mode']} | {r['contender']} | failed | | | | | | |")
                continue
            ser = r["series"]
            lines.append(f"| {r['provider']} | {r['mode']} | {r['contender']} | {r['streams']} x {r['chunks_per_stream']} | "
                         f"{ser[0]['rss_kib']} → {ser[-1]['rss_kib']} | {r['rss_growth_kib']:+d} | "
                         f"{_f(r['rss_growth_bytes_per_stream'], 2)} | {r['gc_objects_growth']:+d} | {r['spans_ended']} | "
                         f"{r['active_streams_after']} |")
    lines += ["", "steer's telemetry in the timed workers (one stream inspected after the rounds):", ""]
    for sc in results["scenarios"]:
        d = (sc["contenders"].get("steer") or {}).get("diag") or {}
        if "spans" not in d:
            continue
        lines.append(f"- {_label(sc).replace(' | ', '/')}: span `{d['span_name']}` with {len(d['attributes'])} attributes, "
                     f"{d['span_events']} span events, chunks {d['chunks_attr']}/{d['expected_chunks']}, end `{d['end']}`, "
                     f"TTFC {_f((d['ttfc_s'] or 0) * 1e3, 2)} ms, usage {d['usage_source']} (matches: {d['usage_ok']}), "
                     f"content on span: {d['content_on_span']}; metrics: {', '.join(sorted(d['metrics']))}; "
                     f"timed streams with a bad span: {d['spans_bad']} of {d['spans_checked']}.")
    return "\n".join(lines) + "\n"

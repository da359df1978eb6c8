"""The stream benchmarks run, and what they time is steer with its telemetry really on.

In ``make test``: ``bench/overhead.py`` (make bench) and ``bench/peers/peers.py`` (make bench-peers) at a
tiny size, one worker process per contender (``bench/worker.py``, the one both drive): every contender
started, its streams reached the client unaltered, steer's spans counted every chunk, a peer's
instrumentation ran beside them, and the report was written. Under ``-m heavy`` (make test-heavy):
``overhead.py --quick`` on two scenarios (200-chunk streams; OpenAI sync and Anthropic async, capture on)
with the placebo and the other-tree contenders, two processes per contender and a 150-stream memory run.
Timings are printed by the benchmarks and never asserted here: they depend on the machine and its load.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "overhead.py"
PEERS = ROOT / "bench" / "peers" / "peers.py"
# A tiny run: 20-chunk streams, 2 timed streams in one round, one worker process per contender.
TINY = ["--chunks", "20", "--streams", "2", "--rounds", "1", "--warmup", "1", "--processes", "1"]


def _bench(script: Path, out: Path, *args: str, timeout: int = 240) -> dict:
    proc = subprocess.run([sys.executable, str(script), "--out", str(out), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    data["_stdout"] = proc.stdout
    data["_md"] = out.with_suffix(".md").read_text()
    return data


def test_overhead_bench_tiny_run(tmp_path: Path) -> None:
    """``make bench`` at a tiny size: bare and steer each ran every timed stream unaltered, every steer
    stream ended one span that counted every chunk, the memory run ended every span, the report is out."""
    data = _bench(BENCH, tmp_path / "overhead.json", *TINY, "--scenarios", "openai/sync/on", "--end-streams", "1",
                  "--alloc-streams", "0", "--rss-streams", "20", "--rss-modes", "sync")
    (sc,) = data["scenarios"]
    assert sc["errors"] == {}
    for name in ("bare", "steer"):
        c = sc["contenders"][name]
        assert c["info"]["correctness"]["text_ok"] and c["summary"]["streams"] == 2
        assert c["info"]["correctness"]["chunks"] == c["info"]["correctness"]["expected_chunks"] == 23
    steer = sc["contenders"]["steer"]
    assert steer["summary"]["spans_ok"] == steer["summary"]["spans_expected"] == 2
    assert steer["diag"]["chunks_attr"] == 23 and steer["diag"]["end"] == "complete" and steer["diag"]["usage_ok"]
    assert steer["info"]["stream_type"].startswith("steer.") and "spans" not in sc["contenders"]["bare"]["diag"]
    (rss,) = data["rss"]
    assert rss["streams"] == rss["spans_ended"] == 20 and rss["active_streams_after"] == 0
    assert "| provider | mode | capture | bare µs/chunk | steer µs/chunk |" in data["_md"]
    assert data["_md"] in data["_stdout"]


def test_peers_bench_tiny_run_with_a_peer(tmp_path: Path) -> None:
    """``make bench-peers`` at a tiny size with bare, steer and one peer (OpenInference, installed with the
    test extra; the others live in bench/.venv-peers): each ran every timed stream unaltered, steer and
    the peer each produced their span, and the report tables name all three."""
    data = _bench(PEERS, tmp_path / "peers.json", *TINY, "--contenders", "bare,steer,openinference",
                  "--providers", "openai", "--modes", "sync", "--capture", "on", "--leak-streams", "0")
    (sc,) = data["scenarios"]
    assert sc["errors"] == {}
    for name in ("bare", "steer", "openinference"):
        c = sc["contenders"][name]
        assert c["info"]["correctness"]["text_ok"] and c["summary"]["streams"] == 2, name
        assert f"| {name} |" in data["_md"]
    assert sc["contenders"]["bare"]["diag"]["instrumented"] is False
    for name, scope in (("steer", "steer"), ("openinference", "openinference.instrumentation.openai")):
        diag = sc["contenders"][name]["diag"]
        assert diag["n_spans"] == 1 and diag["spans"][0]["scope"] == scope, diag["spans"]
        assert diag["content_captured"] == {"input": True, "output": True}
    assert "Median per-chunk overhead vs bare" in data["_md"]


def heavy_test(fn):
    """The full smoke (two scenarios, every contender kind, two processes each; ~25 s CPU): make
    test-heavy, its tests on one xdist worker so that the module fixture runs once."""
    for mark in (pytest.mark.heavy, pytest.mark.timeout(900), pytest.mark.xdist_group("bench_smoke")):
        fn = mark(fn)
    return fn


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("bench")
    alt = tmp / "alt-src"  # a copy of this tree's steer, for the steer-alt contender (before/after in one run)
    shutil.copytree(ROOT / "src", alt, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return _bench(BENCH, tmp / "overhead.json", "--quick", "--scenarios", "openai/sync/on,anthropic/async/on",
                  "--contenders", "bare,steer,steer-idle,steer-alt", "--alt-src", str(alt),
                  "--rss-streams", "150", "--rss-modes", "sync", timeout=900)


@heavy_test
def test_every_scenario_ran_both_contenders(results: dict) -> None:
    seen = {(sc["provider"], sc["mode"]) for sc in results["scenarios"]}
    assert seen == {("openai", "sync"), ("anthropic", "async")}
    for sc in results["scenarios"]:
        assert sc["errors"] == {}, sc["errors"]
        for name in ("bare", "steer", "steer-idle", "steer-alt"):
            c = sc["contenders"][name]
            assert c["info"]["correctness"]["text_ok"], (sc["provider"], sc["mode"], name)
            assert c["info"]["correctness"]["chunks"] == c["info"]["correctness"]["expected_chunks"]
            assert not c.get("chunk_count_mismatch")
            assert c["summary"]["streams"] == results["args"]["streams"]
        # overhead and ratio are computed (their values are the benchmark's business, not this test's)
        assert {"overhead_us", "ratio", "cpu_overhead_us", "cpu_ratio"} <= set(sc["contenders"]["steer"]["summary"])


@heavy_test
def test_steer_telemetry_was_on_in_every_timed_stream(results: dict) -> None:
    for sc in results["scenarios"]:
        steer = sc["contenders"]["steer"]
        sm, diag = steer["summary"], steer["diag"]
        # Each timed batch: one ended span per stream, steer.stream.chunks == chunks yielded, end complete.
        assert sm["spans_expected"] == sm["streams"] and sm["spans_ok"] == sm["streams"], sm
        assert diag["spans_bad"] == 0 and diag["spans_checked"] == sm["streams"]
        # Two worker processes per contender took turns (one per hash seed): both ran timed streams.
        assert len(sm["process_cpu_us"]) == 2 and len(sc["contenders"]["bare"]["summary"]["process_cpu_us"]) == 2
        assert diag["spans"] == 1
        assert diag["chunks_attr"] == diag["expected_chunks"]
        assert diag["end"] == "complete"
        assert diag["ttfc_s"] and diag["ttfc_s"] > 0
        assert diag["max_gap_s"] is not None
        assert diag["usage_source"] == "reported" and diag["usage_ok"]
        assert diag["content_on_span"]  # capture on
        assert diag["span_events"] == 0  # no per-chunk span events
        for metric in ("gen_ai.client.operation.duration", "gen_ai.client.operation.time_to_first_chunk",
                       "gen_ai.client.operation.time_per_output_chunk", "gen_ai.client.token.usage",
                       "steer.client.stream.chunks"):
            assert diag["metrics"].get(metric), metric
        assert diag["active_streams"] == 0
        # bare really is bare
        assert "spans" not in sc["contenders"]["bare"]["diag"]


@heavy_test
def test_end_of_stream_cost_covers_reported_and_estimated_usage(results: dict) -> None:
    for sc in results["scenarios"]:
        end = sc["contenders"]["steer"]["diag"]["end_cost"]
        assert end["reported_usage"]["usage_source"] == "reported"
        assert end["estimated_usage"]["usage_source"] == "estimated"
        assert end["reported_usage"]["wall_us_median"] > 0 and end["estimated_usage"]["cpu_us_median"] >= 0


@heavy_test
def test_allocations_and_memory_are_measured(results: dict) -> None:
    for sc in results["scenarios"]:
        if sc["mode"] == "sync":
            for name in ("bare", "steer"):
                alloc = sc["contenders"][name]["alloc"]
                assert "error" not in alloc, alloc
                assert {"retained_bytes_per_chunk", "steer_retained_bytes_per_chunk", "transient_peak_bytes_per_chunk"} <= set(alloc)
    (rss,) = results["rss"]
    assert rss["contender"] == "steer" and rss["streams"] == 150
    assert rss["spans_ended"] == 150  # every stream of the memory run ended its span
    assert rss["active_streams_after"] == 0
    assert len(rss["series"]) >= 2


@heavy_test
def test_report_is_written(results: dict) -> None:
    md = results["_md"]
    assert "| provider | mode | capture | bare µs/chunk | steer µs/chunk |" in md
    assert "End of stream" in md and "Allocations" in md and "Memory over many streams" in md
    assert md in results["_stdout"]


@heavy_test
def test_placebo_and_alternative_tree_contenders(results: dict) -> None:
    """steer-idle has steer and OpenTelemetry loaded but the measured SDK unobserved; steer-alt is steer
    imported from ``--alt-src``, observing with full telemetry like the installed one."""
    installed = str(ROOT / "src" / "steer")
    for sc in results["scenarios"]:
        cs = sc["contenders"]
        assert cs["bare"]["info"]["steer_file"] is None and cs["bare"]["info"]["stream_type"].split(".")[0] in ("openai", "anthropic")
        idle = cs["steer-idle"]
        assert idle["info"]["steer_file"].startswith(installed)  # steer imported and instrument()ed ...
        assert idle["info"]["stream_type"] == cs["bare"]["info"]["stream_type"]  # ... but this SDK not hooked
        assert "spans" not in idle["diag"]
        alt = cs["steer-alt"]
        assert "alt-src" in alt["info"]["steer_file"] and not alt["info"]["steer_file"].startswith(installed)
        assert alt["info"]["stream_type"].startswith("steer.") and cs["steer"]["info"]["stream_type"].startswith("steer.")
        assert alt["summary"]["spans_ok"] == alt["summary"]["streams"]
        assert alt["diag"]["spans"] == 1 and alt["diag"]["chunks_attr"] == alt["diag"]["expected_chunks"]


INPROCESS = ROOT / "bench" / "inprocess.py"


def test_inprocess_tiebreaker_switches_each_contender_on_and_off(tmp_path: Path) -> None:
    """``bench/inprocess.py``: contenders take turns in one process. Every steer stream (plain and with a
    variant applied) made its span with every chunk counted; bare streams around them made no span of
    steer's, so switching off worked; each contender was timed once per round."""
    out = tmp_path / "inprocess.json"
    variants = sorted((ROOT / "bench" / "variants").glob("*.py"))
    assert {v.stem for v in variants} >= {"unfolded_text", "text_not_kept", "usage_only_decoder"}
    proc = subprocess.run(
        [sys.executable, str(INPROCESS), "--provider", "openai,anthropic", "--mode", "sync,async", "--capture", "off",
         "--contenders", "bare,steer", *(a for v in variants for a in ("--variant", str(v))),
         "--rounds", "3", "--warmup", "1", "--processes", "1", "--chunks", "60", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cells = json.loads(out.read_text())["cells"]
    assert {(c["provider"], c["mode"]) for c in cells} == {(p, m) for p in ("openai", "anthropic") for m in ("sync", "async")}
    for cell in cells:
        run = cell["runs"][0]
        steers = ["steer"] + [f"steer+{v.stem}" for v in variants]
        assert set(run["cpu_ns_per_chunk"]) == {"bare", *steers}
        assert all(len(v) == 3 for v in run["cpu_ns_per_chunk"].values())
        # every steer arm, variants included, observed every stream to its end
        assert run["steer_span_chunks"] == {name: [run["expected_chunks"]] * 3 for name in steers}
        # nothing installed globally: a bare stream makes no span (not even the anthropic SDK's own)
        assert run["spans_per_stream"] == {"bare": 0, **{name: 1 for name in steers}}
        assert cell["rows"]["bare"]["over_bare_median_us"] == 0
    assert "| steer+unfolded_text |" in proc.stdout


def test_inprocess_refuses_a_contender_it_cannot_switch_off() -> None:
    proc = subprocess.run([sys.executable, str(INPROCESS), "--contenders", "bare,openlit", "--processes", "1", "--rounds", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "not a contender that can be switched off again" in proc.stderr


def _percall(tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "percall"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "percall.py"), "--contenders", "bare,steer", "--providers", "openai",
         "--captures", "off", "--sizes", "0,1,3", "--calls", "2", "--rounds", "2", "--out", str(out), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.with_suffix(".json").read_text())
    data["_md"] = out.with_suffix(".md").read_text()
    return data


def test_percall_bench_times_every_size_and_the_wait_after_the_last_chunk(tmp_path: Path) -> None:
    """``make bench-percall`` at a tiny size (bare and steer; the peers live in bench/.venv-peers): every
    size ran in both modes, every steer call ended its span, the after-last-chunk column is filled."""
    data = _percall(tmp_path, "--modes", "sync,async", "--no-instructions", "--no-after")
    for key in ("openai/sync/capture off", "openai/async/capture off"):
        timed = data["timed"][key]
        assert timed["failed"] == [] and timed["spans_ok"]["steer"], timed
        for name in ("bare", "steer"):
            cells = timed["medians_us"][name]
            assert all(cells[str(s)]["call_ns"] > 0 for s in (0, 1, 3))
            assert all(cells[str(s)]["after_ns"] > 0 for s in (1, 3))  # streams: the loop's end after the last chunk
    assert "after the last chunk" in data["_md"]


@pytest.mark.heavy
@pytest.mark.timeout(1200)  # six callgrind runs (instructions per call, then the ends of sync and async streams)
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind")
def test_percall_bench_counts_instructions_per_size(tmp_path: Path) -> None:
    data = _percall(tmp_path, "--no-timed")
    rows = data["instructions"]["openai/off"]
    assert len(rows["bare"]) == len(rows["steer"]) == 3
    assert all(s > b for s, b in zip(rows["steer"], rows["bare"]))  # steer's end of call counted, not left on a thread
    assert "Instructions per call over bare" in data["_md"]
    # After the last chunk, on the caller's thread: steer leaves its end-of-call work to its worker, so
    # the caller's extra is a small part of what a call costs in all (fails if that work comes back).
    for mode in ("sync", "async"):
        after = data["after"][f"openai/{mode}/off"]
        assert len(after["bare"]) == len(after["steer"]) == 2  # the streamed sizes, 1 and 3 chunks
        for i, size in enumerate((1, 3)):
            whole = rows["steer"][i + 1] - rows["bare"][i + 1]
            assert 0 < after["steer"][i] - after["bare"][i] < whole / 5, (mode, size, after, rows)
    assert "After the last chunk: instructions on the caller's thread" in data["_md"]
